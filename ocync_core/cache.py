"""The transfer-state cache: what the sync engine remembers between runs.

A second run skips work without asking the registries. For each *target* registry host it
records

* which blobs are known to exist in which repository (uploaded, mounted, or confirmed by an
  existence check), so a blob is neither uploaded nor checked again, and a repository known to
  hold a blob can serve as a cross-repository mount source;
* which manifest digest a tag had when we last pushed or saw it, so `immutable_tags` skips with
  zero requests and a warm run can trust a tag.

Nothing is remembered about sources: source tags move.

Entries age out per entry. Each carries `seen_at`, the (integer) Unix time it was last
*verified* (`add_blob`, `set_tag`); lookups do not refresh it. An entry older than `ttl` is
ignored on lookup and dropped on load and save, so the engine re-verifies it (one HEAD) and
refreshes it, while a frequently run mirror keeps everything it keeps confirming.

On disk (`CACHE_VERSION` 1) the file is one JSON document::

    {"version": 1, "written_at": <unix time>, "checksum": "sha256:<hex>", "payload": {
        "blobs": {HOST: {REPOSITORY: {ALGORITHM: {HEX: SEEN_AT, ...}}}},
        "tags":  {HOST: {REPOSITORY: {TAG: [DIGEST, SEEN_AT]}}}}}

`checksum` is the SHA-256 of the payload's canonical JSON (sorted keys, no whitespace, ASCII).
A file that is unreadable, not JSON, of another version, or whose checksum does not match is
ignored with a warning: the run starts with an empty cache, and the next save replaces it.

`save` is atomic and merges: under an exclusive `fcntl.flock` on the sidecar `<path>.lock` it
reads what is on disk now (another run may have saved meanwhile), merges in what this process
learned since its last save (union of blobs, the newest `seen_at` wins for tags, entries this
process forgot stay forgotten), writes a temporary file in the same directory, fsyncs it, renames
it over the cache and fsyncs the directory. A reader therefore sees the old file or the new one,
never a mix, which is why loading takes no lock. Any I/O error (disk full, read-only file system,
permission) makes `save` return False with a warning naming the path and the error; the old
file is left as it was. Locking is POSIX-only (`fcntl`); where `fcntl` is missing (Windows), saves
still are atomic but concurrent runs may drop each other's latest entries.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocync_core.digest import Digest

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_VERSION", "CacheStats", "TransferCache"]

CACHE_VERSION = 1
DEFAULT_TTL = 86400.0
DEFAULT_LOCK_TIMEOUT = 10.0

_log = logging.getLogger(__name__)
_LOCK_POLL = 0.05

BlobKey = tuple[str, str, str]  # (host, repository, digest)
TagKey = tuple[str, str, str]  # (host, repository, tag)
TagValue = tuple[str, int]  # (digest, seen_at)


@dataclass(frozen=True)
class CacheStats:
    """Counts of live (unexpired) entries."""

    blobs: int
    tags: int
    repositories: int


class _Unusable(Exception):
    """The cache file's content cannot be used; the message says why."""


@dataclass
class _State:
    blobs: dict[BlobKey, int]
    tags: dict[TagKey, TagValue]


def _digest_text(digest: Digest | str) -> str:
    if isinstance(digest, Digest):
        return str(digest)
    return str(Digest.parse(digest))


def _canonical(payload: Any) -> bytes:
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _checksum(payload: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(payload)).hexdigest()


def _os_error_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def _encode(state: _State) -> dict[str, Any]:
    blobs: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for (host, repository, digest), seen in state.blobs.items():
        algorithm, _, hex_part = digest.partition(":")
        by_alg = blobs.setdefault(host, {}).setdefault(repository, {})
        by_alg.setdefault(algorithm, {})[hex_part] = seen
    tags: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for (host, repository, tag), (digest, seen) in state.tags.items():
        tags.setdefault(host, {}).setdefault(repository, {})[tag] = [digest, seen]
    return {"blobs": blobs, "tags": tags}


def _is_time(value: object) -> bool:
    return type(value) is int and value >= 0


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unusable(f"{where} is not an object")
    return value


def _decode(payload: object) -> _State:
    """The state a payload describes; raises `_Unusable` naming the first bad part."""
    doc = _mapping(payload, "payload")
    if set(doc) != {"blobs", "tags"}:
        raise _Unusable("payload must have exactly the keys 'blobs' and 'tags'")
    state = _State({}, {})
    try:
        for host, repos in _mapping(doc["blobs"], "blobs").items():
            for repository, by_alg in _mapping(repos, f"blobs.{host}").items():
                for algorithm, hexes in _mapping(by_alg, f"blobs.{host}.{repository}").items():
                    for hex_part, seen in _mapping(hexes, f"blobs...{algorithm}").items():
                        if not _is_time(seen):
                            raise _Unusable(f"blob {algorithm}:{hex_part} has a bad seen_at")
                        digest = str(Digest(algorithm, hex_part))
                        state.blobs[(host, repository, digest)] = seen
        for host, repos in _mapping(doc["tags"], "tags").items():
            for repository, tags in _mapping(repos, f"tags.{host}").items():
                for tag, entry in _mapping(tags, f"tags.{host}.{repository}").items():
                    if not (isinstance(entry, list) and len(entry) == 2):
                        raise _Unusable(f"tag {tag!r} is not [digest, seen_at]")
                    digest, seen = entry
                    if not isinstance(digest, str) or not _is_time(seen):
                        raise _Unusable(f"tag {tag!r} is not [digest, seen_at]")
                    state.tags[(host, repository, tag)] = (str(Digest.parse(digest)), seen)
    except ValueError as exc:  # InvalidDigest is a ValueError
        raise _Unusable(str(exc)) from None
    return state


def _parse_file(data: bytes) -> tuple[_State, int]:
    """The state and `written_at` of a cache file's bytes; raises `_Unusable`."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _Unusable(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _Unusable("not a JSON object")
    version = doc.get("version")
    if version != CACHE_VERSION:
        raise _Unusable(f"version {version!r}, this ocync reads version {CACHE_VERSION}")
    written_at = doc.get("written_at")
    if (
        not isinstance(written_at, int | float)
        or isinstance(written_at, bool)
        or not math.isfinite(written_at)
    ):
        raise _Unusable("'written_at' is missing or not a number")
    if "payload" not in doc or not isinstance(doc.get("checksum"), str):
        raise _Unusable("'payload' or 'checksum' is missing")
    try:
        actual = _checksum(doc["payload"])
    except (ValueError, RecursionError) as exc:
        raise _Unusable(f"payload cannot be checksummed ({exc})") from None
    if actual != doc["checksum"]:
        raise _Unusable("checksum does not match its payload (truncated or edited?)")
    return _decode(doc["payload"]), int(written_at)


class TransferCache:
    """Blobs known present and tag digests, per target host and repository.

    `has_blob`/`add_blob` and friends run on the engine's trio thread; `save` does blocking I/O
    and may run in a worker thread (`trio.to_thread.run_sync(cache.save)`) while the engine
    keeps adding entries: every method holds a `threading.Lock` for the few microseconds it
    touches the state, and `save` copies the state under it before doing any I/O.
    """

    def __init__(
        self,
        path: Path | str | None,
        *,
        ttl: float = DEFAULT_TTL,
        now: Callable[[], float] = time.time,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        log: logging.Logger = _log,
    ) -> None:
        """An empty cache that saves to `path` (None: in memory only, `save` does nothing)."""
        if ttl < 0:
            raise ValueError(f"cache ttl must be >= 0 seconds, not {ttl}")
        self.path = Path(path) if path is not None else None
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self._now = now
        self._log = log
        self._lock = threading.Lock()
        self._blobs: dict[BlobKey, int] = {}
        self._holders: dict[tuple[str, str], dict[str, int]] = {}  # (host, digest) → repos
        self._tags: dict[TagKey, TagValue] = {}
        # Learned since the last successful save: what `save` merges into the file.
        self._dirty_blobs: dict[BlobKey, int] = {}
        self._dirty_tags: dict[TagKey, TagValue] = {}
        # Forgotten here at time T: entries seen at or before T are dropped from the file too.
        self._forgotten_blobs: dict[BlobKey, int] = {}
        self._forgotten_tags: dict[TagKey, int] = {}
        self._changes = 0  # mutations so far; `save` skips writing when none since the last
        self._saved_changes = 0

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str | None,
        *,
        ttl: float = DEFAULT_TTL,
        now: Callable[[], float] = time.time,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        log: logging.Logger = _log,
    ) -> TransferCache:
        """The cache saved at `path`, or an empty one (with a warning) if it cannot be used.

        Never raises for a missing, unreadable, corrupt, foreign-version or stale file.
        """
        cache = cls(path, ttl=ttl, now=now, lock_timeout=lock_timeout, log=log)
        if cache.path is None:
            return cache
        state = cache._read_disk(purpose="load")
        if state is not None:
            cache._replace_state(state)
        return cache

    def _read_disk(self, *, purpose: str) -> _State | None:
        """The unexpired state on disk; None (with a warning when it exists) if unusable."""
        assert self.path is not None
        path = self.path
        consequence = "starting with an empty cache" if purpose == "load" else "replacing it"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._log.debug("no transfer cache at %s yet", path)
            return None
        except OSError as exc:
            self._log.warning(
                "cannot read the transfer cache %s: %s; %s", path, _os_error_text(exc), consequence
            )
            return None
        try:
            state, written_at = _parse_file(data)
        except _Unusable as exc:
            self._log.warning("ignoring the transfer cache %s: %s; %s", path, exc, consequence)
            return None
        now = self._now_int()
        if (state.blobs or state.tags) and now - written_at > self.ttl:
            self._log.warning(
                "ignoring the transfer cache %s: written %d s ago, older than its ttl (%g s); %s",
                path,
                now - written_at,
                self.ttl,
                consequence,
            )
            return _State({}, {})
        before = len(state.blobs) + len(state.tags)
        # Loading clamps future times so skewed entries still age out; saving keeps them, so
        # that merging compares what each run recorded.
        state = self._fresh(state, now, clamp=purpose == "load")
        dropped = before - len(state.blobs) - len(state.tags)
        if dropped:
            self._log.debug("transfer cache %s: %d entries older than the ttl", path, dropped)
        return state

    def _fresh(self, state: _State, now: int, *, clamp: bool = False) -> _State:
        """Unexpired entries; with `clamp`, a `seen_at` in the future (skew) becomes now."""
        limit = now - self.ttl
        if not clamp:
            return _State(
                {k: s for k, s in state.blobs.items() if s >= limit},
                {k: v for k, v in state.tags.items() if v[1] >= limit},
            )
        return _State(
            {k: min(s, now) for k, s in state.blobs.items() if s >= limit},
            {k: (d, min(s, now)) for k, (d, s) in state.tags.items() if s >= limit},
        )

    def _replace_state(self, state: _State) -> None:
        """Install `state` (consumed) plus what this process learned or forgot meanwhile."""
        with self._lock:
            blobs = state.blobs
            for key, seen in self._dirty_blobs.items():
                if blobs.get(key, -1) < seen:
                    blobs[key] = seen
            for key, when in self._forgotten_blobs.items():
                if key in blobs and blobs[key] <= when:
                    del blobs[key]
            tags = state.tags
            for key, value in self._dirty_tags.items():
                if key not in tags or tags[key][1] <= value[1]:
                    tags[key] = value
            for key, when in self._forgotten_tags.items():
                if key in tags and tags[key][1] <= when:
                    del tags[key]
            holders: dict[tuple[str, str], dict[str, int]] = {}
            for (host, repository, digest), seen in blobs.items():
                holders.setdefault((host, digest), {})[repository] = seen
            self._blobs, self._holders, self._tags = blobs, holders, tags

    # -- lookups and updates --------------------------------------------------------------

    def _now_int(self) -> int:
        return int(self._now())

    def _live(self, seen: int) -> bool:
        return self._now_int() - seen <= self.ttl

    def has_blob(self, host: str, repository: str, digest: Digest | str) -> bool:
        """Whether `digest` was verified present in `host/repository` within the ttl."""
        key = (host, repository, _digest_text(digest))
        with self._lock:
            seen = self._blobs.get(key)
        return seen is not None and self._live(seen)

    def add_blob(self, host: str, repository: str, digest: Digest | str) -> None:
        """Record that `digest` is (now) present in `host/repository`."""
        text = _digest_text(digest)
        key = (host, repository, text)
        seen = self._now_int()
        with self._lock:
            self._blobs[key] = seen
            self._holders.setdefault((host, text), {})[repository] = seen
            self._dirty_blobs[key] = seen
            self._forgotten_blobs.pop(key, None)
            self._changes += 1

    def forget_blob(self, host: str, repository: str, digest: Digest | str) -> None:
        """Drop the entry (the registry says the blob is not there); the next save drops it too."""
        text = _digest_text(digest)
        key = (host, repository, text)
        with self._lock:
            self._blobs.pop(key, None)
            repos = self._holders.get((host, text))
            if repos is not None:
                repos.pop(repository, None)
                if not repos:
                    del self._holders[(host, text)]
            self._dirty_blobs.pop(key, None)
            self._forgotten_blobs[key] = self._now_int()
            self._changes += 1

    def forget_repository(self, host: str, repository: str) -> int:
        """Drop every blob and tag entry of `host/repository` (the registry disagreed with the
        cache, e.g. the repository was deleted); the next save drops them too. Returns the count.
        """
        now = self._now_int()
        with self._lock:
            blobs = [k for k in self._blobs if k[0] == host and k[1] == repository]
            tags = [k for k in self._tags if k[0] == host and k[1] == repository]
            for key in blobs:
                del self._blobs[key]
                repos = self._holders.get((host, key[2]))
                if repos is not None:
                    repos.pop(repository, None)
                    if not repos:
                        del self._holders[(host, key[2])]
                self._dirty_blobs.pop(key, None)
                self._forgotten_blobs[key] = now
            for key in tags:
                del self._tags[key]
                self._dirty_tags.pop(key, None)
                self._forgotten_tags[key] = now
            self._changes += 1
        return len(blobs) + len(tags)

    def repositories_with_blob(self, host: str, digest: Digest | str) -> list[str]:
        """Repositories of `host` known to hold `digest` (mount sources), freshest first."""
        text = _digest_text(digest)
        limit = self._now_int() - self.ttl
        with self._lock:
            repos = list(self._holders.get((host, text), {}).items())
        live = [(seen, repo) for repo, seen in repos if seen >= limit]
        return [repo for _, repo in sorted(live, key=lambda item: (-item[0], item[1]))]

    def tag_digest(self, host: str, repository: str, tag: str) -> str | None:
        """The digest `host/repository:tag` had when last pushed or seen, within the ttl."""
        with self._lock:
            entry = self._tags.get((host, repository, tag))
        if entry is None or not self._live(entry[1]):
            return None
        return entry[0]

    def set_tag(self, host: str, repository: str, tag: str, digest: Digest | str) -> None:
        """Record that `host/repository:tag` now points at `digest`."""
        key = (host, repository, tag)
        value = (_digest_text(digest), self._now_int())
        with self._lock:
            known = self._tags.get(key)
            if known is not None and known[0] == value[0] and value[1] - known[1] < self.ttl / 8:
                # Seen again soon after: a fresher timestamp is not worth rewriting the file
                # (a sync with nothing to do then saves nothing); it still holds 7/8 of the ttl.
                return
            self._tags[key] = value
            self._dirty_tags[key] = value
            self._forgotten_tags.pop(key, None)
            self._changes += 1

    def forget_tag(self, host: str, repository: str, tag: str) -> None:
        """Drop the tag's entry (it is gone or unknown); the next save drops it too."""
        key = (host, repository, tag)
        with self._lock:
            self._tags.pop(key, None)
            self._dirty_tags.pop(key, None)
            self._forgotten_tags[key] = self._now_int()
            self._changes += 1

    # -- inspection -----------------------------------------------------------------------

    def blob_entries(self) -> set[BlobKey]:
        """Live blob entries as (host, repository, digest)."""
        limit = self._now_int() - self.ttl
        with self._lock:
            return {key for key, seen in self._blobs.items() if seen >= limit}

    def tag_entries(self) -> dict[TagKey, str]:
        """Live tag entries: (host, repository, tag) → digest."""
        limit = self._now_int() - self.ttl
        with self._lock:
            return {key: d for key, (d, seen) in self._tags.items() if seen >= limit}

    def stats(self) -> CacheStats:
        blobs = self.blob_entries()
        tags = self.tag_entries()
        repositories = {(h, r) for h, r, _ in blobs} | {(h, r) for h, r, _ in tags}
        return CacheStats(blobs=len(blobs), tags=len(tags), repositories=len(repositories))

    def __len__(self) -> int:
        """Live entries, blobs plus tags."""
        stats = self.stats()
        return stats.blobs + stats.tags

    def __repr__(self) -> str:
        return f"TransferCache({str(self.path) if self.path else None!r}, entries={len(self)})"

    # -- saving ---------------------------------------------------------------------------

    def save(self) -> bool:
        """Merge what this process learned into the file at `path`, atomically.

        Returns True when saved (or nothing to save, or no path), False with a warning when the
        file could not be written or locked in time. Never raises for I/O errors and never
        leaves the old file truncated or half-written.
        """
        if self.path is None:
            return True
        path = self.path
        with self._lock:
            if self._changes == self._saved_changes:
                return True
            changes = self._changes
            dirty_blobs = dict(self._dirty_blobs)
            dirty_tags = dict(self._dirty_tags)
            forgotten_blobs = dict(self._forgotten_blobs)
            forgotten_tags = dict(self._forgotten_tags)
            memory = _State(dict(self._blobs), dict(self._tags))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._file_lock() as locked:
                if not locked:
                    self._log.warning(
                        "not saving the transfer cache %s: another run held its lock %s for "
                        "more than %g s; the next run will re-check what this run learned",
                        path,
                        self._lock_path(),
                        self.lock_timeout,
                    )
                    return False
                if fcntl is not None:  # only safe while holding the lock
                    self._remove_stale_temporaries()
                on_disk = self._read_disk(purpose="save")
                now = self._now_int()
                base = self._fresh(on_disk if on_disk is not None else memory, now)
                merged = _merge(base, dirty_blobs, dirty_tags, forgotten_blobs, forgotten_tags)
                merged = self._fresh(merged, now)
                self._write_atomically(merged, now)
        except OSError as exc:
            self._log.warning(
                "could not save the transfer cache %s: %s; the run goes on without it and the "
                "next run will re-check what this run learned",
                path,
                _os_error_text(exc),
            )
            return False
        with self._lock:
            self._saved_changes = max(self._saved_changes, changes)
            # What was saved is no longer pending, unless it changed while we wrote.
            for key, seen in dirty_blobs.items():
                if self._dirty_blobs.get(key) == seen:
                    del self._dirty_blobs[key]
            for key, value in dirty_tags.items():
                if self._dirty_tags.get(key) == value:
                    del self._dirty_tags[key]
        self._replace_state(merged)
        return True

    def _lock_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[bool]:
        """Hold an exclusive flock on `<path>.lock`; yields False if not acquired in time."""
        if fcntl is None:  # pragma: no cover - Windows: atomic, but not serialised
            yield True
            return
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(_LOCK_POLL)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _temp_prefix(self) -> str:
        assert self.path is not None
        return f".{self.path.name}."

    def _remove_stale_temporaries(self) -> None:
        """Delete temporaries a killed run left behind; safe because we hold the lock."""
        assert self.path is not None
        prefix = self._temp_prefix()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path.parent):
                if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _write_atomically(self, state: _State, now: int) -> None:
        assert self.path is not None
        payload = _encode(state)
        doc = {
            "version": CACHE_VERSION,
            "written_at": now,
            "checksum": _checksum(payload),
            "payload": payload,
        }
        data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(dir=directory, prefix=self._temp_prefix(), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode("ascii") + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_directory(directory)


def _merge(
    base: _State,
    dirty_blobs: dict[BlobKey, int],
    dirty_tags: dict[TagKey, TagValue],
    forgotten_blobs: dict[BlobKey, int],
    forgotten_tags: dict[TagKey, int],
) -> _State:
    """`base` (what is on disk) with this process's news: blobs unite, newer tags win."""
    blobs = dict(base.blobs)
    for key, when in forgotten_blobs.items():
        if key in blobs and blobs[key] <= when:
            del blobs[key]
    for key, seen in dirty_blobs.items():
        if blobs.get(key, -1) < seen:
            blobs[key] = seen
    tags = dict(base.tags)
    for key, when in forgotten_tags.items():
        if key in tags and tags[key][1] <= when:
            del tags[key]
    for key, value in dirty_tags.items():
        if key not in tags or tags[key][1] <= value[1]:
            tags[key] = value
    return _State(blobs, tags)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; best effort (some file systems refuse fsync on directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
