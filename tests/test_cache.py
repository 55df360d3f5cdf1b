"""The persistent transfer-state cache: round trips, TTL, damage, failures to write, concurrency.

Everything here uses real files; the concurrency and write-failure tests use real processes and
real OS conditions (ENOTDIR, EFBIG via RLIMIT_FSIZE, and, where a mount namespace is allowed,
ENOSPC and EROFS on a tiny tmpfs). Only one test fakes an error, to reach the rename step.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocync_core.cache import CACHE_VERSION, CacheStats, TransferCache
from ocync_core.digest import Digest
from ocync_core.errors import InvalidDigest

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "registry.example:5000"
OTHER = "other.example"


def dig(n: int | str) -> Digest:
    return Digest.of(str(n).encode())


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def populated(path: Path, clock: Clock | None = None) -> TransferCache:
    cache = TransferCache(path, now=clock or time.time)
    cache.add_blob(HOST, "library/app", dig(1))
    cache.add_blob(HOST, "library/app", dig(2))
    cache.add_blob(HOST, "library/base", dig(1))
    cache.add_blob(OTHER, "team/tool", "sha512:" + "ab" * 64)
    cache.set_tag(HOST, "library/app", "v1", dig("m1"))
    cache.set_tag(OTHER, "team/tool", "latest", str(dig("m2")))
    return cache


# -- round trip and format --------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = populated(path)
    assert cache.save() is True
    loaded = TransferCache.open(path)
    assert loaded.blob_entries() == cache.blob_entries()
    assert loaded.tag_entries() == cache.tag_entries()
    assert loaded.has_blob(HOST, "library/app", dig(1))
    assert loaded.has_blob(HOST, "library/app", str(dig(2)))
    assert not loaded.has_blob(HOST, "library/app", dig(3))
    assert not loaded.has_blob(OTHER, "library/app", dig(1))  # hosts are separate
    assert loaded.has_blob(OTHER, "team/tool", Digest("sha512", "ab" * 64))
    assert loaded.tag_digest(HOST, "library/app", "v1") == str(dig("m1"))
    assert loaded.tag_digest(HOST, "library/app", "v2") is None
    assert sorted(loaded.repositories_with_blob(HOST, dig(1))) == ["library/app", "library/base"]
    assert loaded.repositories_with_blob(OTHER, dig(1)) == []
    assert loaded.stats() == CacheStats(blobs=4, tags=2, repositories=3)
    assert len(loaded) == 6


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    clock = Clock()
    populated(path, clock).save()
    doc = json.loads(path.read_bytes())
    assert set(doc) == {"version", "written_at", "checksum", "payload"}
    assert doc["version"] == CACHE_VERSION == 1
    assert doc["written_at"] == int(clock.t)
    canonical = json.dumps(doc["payload"], sort_keys=True, separators=(",", ":")).encode()
    assert doc["checksum"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    # Digests are stored as hex grouped by host / repository / algorithm, with seen_at.
    assert doc["payload"]["blobs"][HOST]["library/app"]["sha256"] == {
        dig(1).hex: int(clock.t),
        dig(2).hex: int(clock.t),
    }
    assert doc["payload"]["tags"][HOST]["library/app"]["v1"] == [str(dig("m1")), int(clock.t)]
    assert b" " not in path.read_bytes()  # compact


def test_in_memory_cache_never_touches_disk(tmp_path: Path) -> None:
    cache = TransferCache.open(None)
    cache.add_blob(HOST, "r", dig(1))
    assert cache.has_blob(HOST, "r", dig(1))
    assert cache.save() is True
    assert cache.path is None


def test_missing_file_is_an_empty_cache_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TransferCache.open(tmp_path / "nope" / "cache.json")
    assert len(cache) == 0
    assert warnings_of(caplog) == []
    cache.add_blob(HOST, "r", dig(1))
    assert cache.save() is True  # creates the directory
    assert TransferCache.open(tmp_path / "nope" / "cache.json").has_blob(HOST, "r", dig(1))


def test_save_without_changes_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    assert TransferCache(path).save() is True
    assert not path.exists()
    cache = populated(path)
    cache.save()
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert TransferCache.open(path).save() is True
    assert cache.save() is True
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_bad_digest_arguments_are_refused() -> None:
    cache = TransferCache(None)
    with pytest.raises(InvalidDigest):
        cache.add_blob(HOST, "r", "sha256:xyz")
    with pytest.raises(InvalidDigest):
        cache.set_tag(HOST, "r", "t", "md5:" + "0" * 32)


def test_forget_blob_and_tag(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = populated(path)
    cache.save()
    cache.forget_blob(HOST, "library/app", dig(1))
    cache.forget_tag(HOST, "library/app", "v1")
    assert not cache.has_blob(HOST, "library/app", dig(1))
    assert cache.repositories_with_blob(HOST, dig(1)) == ["library/base"]
    assert cache.tag_digest(HOST, "library/app", "v1") is None
    assert cache.save()
    loaded = TransferCache.open(path)
    assert not loaded.has_blob(HOST, "library/app", dig(1))
    assert loaded.has_blob(HOST, "library/base", dig(1))
    assert loaded.tag_digest(HOST, "library/app", "v1") is None
    # Re-adding after forgetting counts.
    cache.add_blob(HOST, "library/app", dig(1))
    cache.save()
    assert TransferCache.open(path).has_blob(HOST, "library/app", dig(1))


def test_forget_repository(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    populated(path).save()
    other_run = TransferCache.open(path)  # loaded the entries, will save something else
    cache = TransferCache.open(path)
    assert cache.forget_repository(HOST, "library/app") == 3  # two blobs, one tag
    assert cache.repositories_with_blob(HOST, dig(1)) == ["library/base"]
    assert cache.tag_digest(HOST, "library/app", "v1") is None
    assert cache.save()
    other_run.add_blob(HOST, "x", dig(9))
    assert other_run.save()
    final = TransferCache.open(path)
    assert not any(repo == "library/app" for host, repo, _ in final.blob_entries() if host == HOST)
    assert final.has_blob(HOST, "library/base", dig(1)) and final.has_blob(HOST, "x", dig(9))
    assert final.tag_digest(HOST, "library/app", "v1") is None


def test_repositories_with_blob_freshest_first(tmp_path: Path) -> None:
    clock = Clock()
    cache = TransferCache(tmp_path / "c.json", now=clock)
    cache.add_blob(HOST, "b", dig(1))
    clock.t += 10
    cache.add_blob(HOST, "a", dig(1))
    cache.add_blob(HOST, "c", dig(1))
    assert cache.repositories_with_blob(HOST, dig(1)) == ["a", "c", "b"]


def test_a_tag_seen_again_soon_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    clock = Clock()
    first = TransferCache(path, ttl=800, now=clock)
    first.set_tag(HOST, "r", "v1", dig("m1"))
    first.save()
    written = path.read_bytes()

    clock.t += 50  # under ttl/8: a sync with nothing to do writes nothing
    again = TransferCache.open(path, ttl=800, now=clock)
    again.set_tag(HOST, "r", "v1", dig("m1"))
    assert again.save()
    assert path.read_bytes() == written

    clock.t += 60  # 110 s since it was written: past ttl/8, the timestamp is refreshed
    later = TransferCache.open(path, ttl=800, now=clock)
    later.set_tag(HOST, "r", "v1", dig("m1"))
    later.save()
    doc = json.loads(path.read_text())
    assert doc["payload"]["tags"][HOST]["r"]["v1"] == [str(dig("m1")), int(clock.t)]

    moved = TransferCache.open(path, ttl=800, now=clock)
    moved.set_tag(HOST, "r", "v1", dig("m2"))  # a new digest is always recorded
    moved.save()
    reread = TransferCache.open(path, ttl=800, now=clock)
    assert reread.tag_digest(HOST, "r", "v1") == str(dig("m2"))


# -- TTL --------------------------------------------------------------------------------------


def test_ttl_is_per_entry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.json"
    clock = Clock()
    cache = TransferCache(path, ttl=100, now=clock)
    cache.add_blob(HOST, "r", dig("old"))
    cache.set_tag(HOST, "r", "old", dig("m-old"))
    clock.t += 60
    cache.add_blob(HOST, "r", dig("new"))
    cache.set_tag(HOST, "r", "new", dig("m-new"))
    assert cache.save()

    clock.t += 50  # "old" is 110 s old, "new" 50 s
    assert not cache.has_blob(HOST, "r", dig("old"))  # a live instance ages entries too
    loaded = TransferCache.open(path, ttl=100, now=clock)
    assert loaded.blob_entries() == {(HOST, "r", str(dig("new")))}
    assert loaded.tag_entries() == {(HOST, "r", "new"): str(dig("m-new"))}
    assert warnings_of(caplog) == []  # ageing out is routine, not a warning

    # A frequently run mirror keeps what it keeps confirming.
    loaded.add_blob(HOST, "r", dig("new"))
    loaded.save()
    clock.t += 90  # 140 s after the first sighting of "new", 90 s after the refresh
    assert TransferCache.open(path, ttl=100, now=clock).has_blob(HOST, "r", dig("new"))
    # Lookups do not refresh.
    clock.t += 20
    assert not TransferCache.open(path, ttl=100, now=clock).has_blob(HOST, "r", dig("new"))


def test_whole_file_older_than_ttl_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.json"
    clock = Clock()
    populated(path, clock).save()
    clock.t += 86400 + 1
    cache = TransferCache.open(path, now=clock)
    assert len(cache) == 0
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "ttl" in warning


def test_future_timestamps_count_as_now(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    clock = Clock()
    skewed = Clock(clock.t + 10_000)  # a run on a machine whose clock was ahead
    populated(path, skewed).save()
    cache = TransferCache.open(path, ttl=100, now=clock)
    assert cache.has_blob(HOST, "library/app", dig(1))
    clock.t += 101
    assert not cache.has_blob(HOST, "library/app", dig(1))


# -- damaged files ----------------------------------------------------------------------------


def _valid_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "valid.json"
    populated(path).save()
    return path.read_bytes()


def _reseal(doc: dict) -> bytes:
    payload = doc["payload"]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    doc["checksum"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
    return json.dumps(doc).encode()


def _damage(kind: str, good: bytes) -> bytes:
    doc = json.loads(good)
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "not json":
        return b"\x00\xff garbage \x89PNG"
    if kind == "json array":
        return b"[1, 2, 3]"
    if kind == "wrong version":
        doc["version"] = 2
        return json.dumps(doc).encode()
    if kind == "no version":
        del doc["version"]
        return json.dumps(doc).encode()
    if kind == "bad checksum":
        doc["payload"]["blobs"][HOST]["library/app"]["sha256"][dig(99).hex] = 1
        return json.dumps(doc).encode()
    if kind == "missing checksum":
        del doc["checksum"]
        return json.dumps(doc).encode()
    if kind == "bad written_at":
        doc["written_at"] = "yesterday"
        return json.dumps(doc).encode()
    if kind == "bad digest, valid checksum":
        doc["payload"]["blobs"][HOST]["library/app"]["sha256"]["nothex"] = 1
        return _reseal(doc)
    if kind == "bad seen_at, valid checksum":
        doc["payload"]["tags"][HOST]["library/app"]["v1"][1] = "soon"
        return _reseal(doc)
    if kind == "bad shape, valid checksum":
        doc["payload"]["blobs"] = [1]
        return _reseal(doc)
    if kind == "NaN":
        return good.replace(b'"written_at":', b'"written_at":NaN,"x":')
    if kind == "deeply nested":
        return b"[" * 100_000 + b"]" * 100_000
    raise AssertionError(kind)


DAMAGE = [
    "truncated",
    "empty",
    "not json",
    "json array",
    "wrong version",
    "no version",
    "bad checksum",
    "missing checksum",
    "bad written_at",
    "bad digest, valid checksum",
    "bad seen_at, valid checksum",
    "bad shape, valid checksum",
    "NaN",
    "deeply nested",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_file_gives_empty_cache_and_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(_damage(kind, _valid_bytes(tmp_path)))
    cache = TransferCache.open(path)
    assert len(cache) == 0
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "empty cache" in warning
    # The next save replaces the damaged file with a valid one.
    caplog.clear()
    cache.add_blob(HOST, "r", dig(1))
    assert cache.save() is True
    assert TransferCache.open(path).blob_entries() == {(HOST, "r", str(dig(1)))}
    # At most the note that the damaged file is being replaced.
    assert all("replacing" in w for w in warnings_of(caplog))


def test_unreadable_path_gives_empty_cache_and_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.json"
    path.mkdir()  # a directory where the file should be: EISDIR
    cache = TransferCache.open(path)
    assert len(cache) == 0
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "EISDIR" in warning
    cache.add_blob(HOST, "r", dig(1))
    caplog.clear()
    assert cache.save() is False  # cannot rename a file over a directory
    assert any(str(path) in w for w in warnings_of(caplog))


# -- failures to save -------------------------------------------------------------------------


def test_save_under_a_regular_file_fails_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real condition, works as root: the cache's parent is a regular file (ENOTDIR/EEXIST)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    path = blocker / "cache.json"
    cache = TransferCache.open(path)
    assert str(path) in warnings_of(caplog)[0]  # reading it: ENOTDIR
    caplog.clear()
    cache.add_blob(HOST, "r", dig(1))
    assert cache.save() is False
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "could not save" in warning
    assert "ENOTDIR" in warning or "EEXIST" in warning
    assert blocker.read_text() == "not a directory"
    assert cache.has_blob(HOST, "r", dig(1))  # the run goes on with what it knows


def test_save_where_no_file_can_be_created_fails_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real refusals even for root: sysfs (EACCES, or EROFS where mounted ro) and procfs."""
    for candidate in (Path("/sys/ocync-cache.json"), Path("/proc/ocync-cache.json")):
        cache = TransferCache.open(candidate)
        cache.add_blob(HOST, "r", dig(1))
        caplog.clear()
        assert cache.save() is False
        [warning] = warnings_of(caplog)
        assert str(candidate) in warning
        assert not candidate.exists()


def test_file_size_limit_mid_write_leaves_old_file_intact(tmp_path: Path) -> None:
    """Real write failure (EFBIG from RLIMIT_FSIZE) half-way through the temporary file."""
    path = tmp_path / "cache.json"
    populated(path).save()
    before = path.read_bytes()
    result = run_python(
        """
        import logging, resource, signal, sys
        from pathlib import Path
        from ocync_core.cache import TransferCache
        from ocync_core.digest import Digest
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        path = Path(sys.argv[1])
        cache = TransferCache.open(path)
        for i in range(5000):
            cache.add_blob("registry.example:5000", f"repo{i % 7}", Digest.of(str(i).encode()))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = path.stat().st_size + 4096  # the old file fits, the new one does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        print("SAVED" if cache.save() else "NOT SAVED")
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    assert "NOT SAVED" in result.stdout
    assert str(path) in result.stdout and "EFBIG" in result.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]


def _can_unshare_mounts() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _can_unshare_mounts(),
    reason="needs a private mount namespace (root or user namespaces)",
)
def test_disk_full_and_read_only_file_system_leave_old_file_intact(tmp_path: Path) -> None:
    """Real ENOSPC and EROFS: a 64 KiB tmpfs in a private mount namespace, filled, then ro."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = textwrap.dedent(
        """
        import logging, os, subprocess, sys
        from pathlib import Path
        from ocync_core.cache import TransferCache
        from ocync_core.digest import Digest
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        mnt = Path(sys.argv[1])
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
        path = mnt / "cache.json"
        first = TransferCache(path)
        first.add_blob("h", "r", Digest.of(b"0"))
        assert first.save()
        before = path.read_bytes()
        # Fill the file system up to the last byte.
        with open(mnt / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"x" * 512)
            except OSError:
                pass
        cache = TransferCache.open(path)
        for i in range(2000):
            cache.add_blob("h", "r", Digest.of(str(i).encode()))
        print("ENOSPC-SAVE", cache.save())
        assert path.read_bytes() == before, "old file changed on ENOSPC"
        print("TEMPS", sorted(p.name for p in mnt.iterdir()))
        os.unlink(mnt / "filler")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        print("EROFS-SAVE", cache.save())
        assert path.read_bytes() == before, "old file changed on EROFS"
        print("RELOADED", len(TransferCache.open(path)))
        """
    )
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            script,
            str(mount),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ENOSPC-SAVE False" in out and "EROFS-SAVE False" in out
    assert f"could not save the transfer cache {mount}/cache.json" in out
    assert "ENOSPC" in out and "EROFS" in out
    assert "TEMPS ['cache.json', 'cache.json.lock', 'filler']" in out  # no temporary left
    assert "RELOADED 1" in out


def test_failed_rename_leaves_old_file_and_no_temporary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one faked failure: os.replace raising ENOSPC, to exercise the rename step."""
    path = tmp_path / "cache.json"
    populated(path).save()
    before = path.read_bytes()
    cache = TransferCache.open(path)
    cache.add_blob(HOST, "r", dig(7))

    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", refuse)
    assert cache.save() is False
    monkeypatch.undo()
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "ENOSPC" in warning
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]
    # Nothing learned is lost: a later save succeeds with it.
    assert cache.save() is True
    assert TransferCache.open(path).has_blob(HOST, "r", dig(7))


def test_lock_held_too_long_gives_up_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.json"
    populated(path).save()
    before = path.read_bytes()
    cache = TransferCache.open(path, lock_timeout=0.3)
    cache.add_blob(HOST, "r", dig(8))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(path) + ".lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert cache.save() is False
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "lock" in warning
    assert path.read_bytes() == before
    assert cache.save() is True  # the lock is free again
    assert TransferCache.open(path).has_blob(HOST, "r", dig(8))


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    leftover = tmp_path / ".cache.json.abc123.tmp"
    leftover.write_text('{"half": ')
    unrelated = tmp_path / ".other.json.abc.tmp"
    unrelated.write_text("keep")
    populated(path).save()
    assert not leftover.exists()
    assert unrelated.exists()


# -- merging and concurrency ------------------------------------------------------------------


def test_two_instances_merge_instead_of_clobbering(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    clock_a, clock_b = Clock(), Clock()
    a = TransferCache.open(path, now=clock_a)
    b = TransferCache.open(path, now=clock_b)
    a.add_blob(HOST, "r", dig("a"))
    a.set_tag(HOST, "r", "t", dig("a-tag"))
    clock_b.t += 5  # b saw the tag later: its value wins, whatever the save order
    b.add_blob(HOST, "r", dig("b"))
    b.set_tag(HOST, "r", "t", dig("b-tag"))
    assert b.save() and a.save()
    merged = TransferCache.open(path, now=clock_b)
    assert merged.blob_entries() == {(HOST, "r", str(dig("a"))), (HOST, "r", str(dig("b")))}
    assert merged.tag_digest(HOST, "r", "t") == str(dig("b-tag"))
    # After saving, each instance also knows what the other saved.
    assert a.has_blob(HOST, "r", dig("b"))
    assert a.tag_digest(HOST, "r", "t") == str(dig("b-tag"))


def test_forgotten_blob_is_not_resurrected_by_another_run(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    clock = Clock()
    populated(path, clock).save()
    clock.t += 1
    a = TransferCache.open(path, now=clock)
    b = TransferCache.open(path, now=clock)  # loaded the blob, never touched it
    a.forget_blob(HOST, "library/app", dig(1))
    a.save()
    b.add_blob(HOST, "elsewhere", dig(5))
    b.save()
    final = TransferCache.open(path, now=clock)
    assert not final.has_blob(HOST, "library/app", dig(1))
    assert final.has_blob(HOST, "elsewhere", dig(5))
    assert not b.has_blob(HOST, "library/app", dig(1))  # b's memory follows the file


def test_save_in_a_thread_while_adding(tmp_path: Path) -> None:
    """The engine adds entries on its thread while `save` runs in a worker thread."""
    path = tmp_path / "cache.json"
    cache = TransferCache.open(path)
    stop = threading.Event()
    results: list[bool] = []
    errors: list[BaseException] = []

    def saver() -> None:
        try:
            while not stop.is_set():
                results.append(cache.save())
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    thread = threading.Thread(target=saver)
    thread.start()
    try:
        for i in range(3000):
            cache.add_blob(HOST, f"r{i % 5}", dig(i))
            if i % 3 == 0:
                cache.set_tag(HOST, f"r{i % 5}", f"t{i % 11}", dig(f"m{i}"))
            if i % 7 == 0:
                cache.forget_blob(HOST, f"r{(i - 7) % 5}", dig(i - 7))
    finally:
        stop.set()
        thread.join()
    assert not errors and results and all(results)
    assert cache.save()
    assert TransferCache.open(path).blob_entries() == cache.blob_entries()
    assert TransferCache.open(path).tag_entries() == cache.tag_entries()


WRITER = """
import logging, sys
from pathlib import Path
from ocync_core.cache import TransferCache
from ocync_core.digest import Digest
logging.basicConfig(level=logging.WARNING, format="%(message)s")
path, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cache = TransferCache.open(path, lock_timeout=60)
for i in range(rounds):
    for j in range(3):
        cache.add_blob("h", f"repo-{name}", Digest.of(f"{name}-{i}-{j}".encode()))
    cache.add_blob("h", "shared", Digest.of(f"{name}-{i}".encode()))
    cache.set_tag("h", "shared", "latest", Digest.of(f"{name}-{i}".encode()))
    if not cache.save():
        sys.exit("save failed")
print("done", len(cache))
"""

READER = """
import logging, sys, time
from pathlib import Path
from ocync_core.cache import TransferCache
class Fail(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            print("WARNING:", record.getMessage(), flush=True)
            sys.exit(1)
logging.getLogger().addHandler(Fail())
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
deadline, loads = time.monotonic() + 120, 0
while not stop.exists() and time.monotonic() < deadline:
    TransferCache.open(path)
    loads += 1
print("loads", loads)
"""


def test_concurrent_processes_keep_every_entry(tmp_path: Path) -> None:
    """Four real processes save the same cache 40 times each; a fifth reads it throughout."""
    path = tmp_path / "cache.json"
    names, rounds = ["w0", "w1", "w2", "w3"], 40
    populated(path).save()  # a reader must never see a missing, half-written or mixed file
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(tmp_path / "stop")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(rounds)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for proc in [*writers, reader]:
        if proc is reader:
            (tmp_path / "stop").touch()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert "WARNING" not in out + err, out + err
    (tmp_path / "stop").unlink()
    final = TransferCache.open(path)
    expected = {
        ("h", f"repo-{name}", str(Digest.of(f"{name}-{i}-{j}".encode())))
        for name in names
        for i in range(rounds)
        for j in range(3)
    } | {
        ("h", "shared", str(Digest.of(f"{name}-{i}".encode())))
        for name in names
        for i in range(rounds)
    }
    assert expected <= final.blob_entries()
    assert final.tag_digest("h", "shared", "latest") in {
        str(Digest.of(f"{name}-{rounds - 1}".encode())) for name in names
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]


def test_sigkill_during_saves_never_corrupts(tmp_path: Path) -> None:
    """Kill a process that saves in a tight loop at random moments; the file stays valid."""
    path = tmp_path / "cache.json"
    loop = """
import sys
from pathlib import Path
from ocync_core.cache import TransferCache
from ocync_core.digest import Digest
cache = TransferCache.open(Path(sys.argv[1]))
i = 0
print("started", flush=True)
while True:
    for j in range(200):
        cache.add_blob("h", f"r{j % 3}", Digest.of(f"{sys.argv[2]}-{i}-{j}".encode()))
    cache.save()
    i += 1
"""
    rng = random.Random(1234)
    known = 0
    for attempt in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", loop, str(path), str(attempt)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.exists():
            doc = json.loads(path.read_bytes())  # never half-written
            assert doc["version"] == CACHE_VERSION
        cache = TransferCache.open(path)
        assert len(cache) >= known  # nothing saved earlier is lost
        known = len(cache)
    assert known > 0


# -- property: any sequence of operations round-trips -----------------------------------------

hosts = st.sampled_from([HOST, OTHER, "ünïcode.example"])
repos = st.sampled_from(["a", "b/c", "deep/er/path", ""])
tags = st.sampled_from(["latest", "v1.0", "x" * 128])
digests = st.integers(0, 5).map(dig)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), hosts, repos, digests),
        st.tuples(st.just("forget"), hosts, repos, digests),
        st.tuples(st.just("set"), hosts, repos, tags, digests),
        st.tuples(st.just("forget_tag"), hosts, repos, tags),
        st.tuples(st.just("forget_repo"), hosts, repos),
        st.tuples(st.just("save")),
        st.tuples(st.just("tick"), st.integers(0, 50)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_any_sequence_round_trips(ops: list[tuple]) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cache.json"
        cache = TransferCache.open(path, ttl=1000, now=clock)
        model_blobs: set[tuple[str, str, str]] = set()
        model_tags: dict[tuple[str, str, str], str] = {}
        for op in ops:
            match op:
                case ("add", host, repo, digest):
                    cache.add_blob(host, repo, digest)
                    model_blobs.add((host, repo, str(digest)))
                case ("forget", host, repo, digest):
                    cache.forget_blob(host, repo, digest)
                    model_blobs.discard((host, repo, str(digest)))
                case ("set", host, repo, tag, digest):
                    cache.set_tag(host, repo, tag, digest)
                    model_tags[(host, repo, tag)] = str(digest)
                case ("forget_tag", host, repo, tag):
                    cache.forget_tag(host, repo, tag)
                    model_tags.pop((host, repo, tag), None)
                case ("forget_repo", host, repo):
                    cache.forget_repository(host, repo)
                    model_blobs = {k for k in model_blobs if k[:2] != (host, repo)}
                    model_tags = {k: v for k, v in model_tags.items() if k[:2] != (host, repo)}
                case ("save",):
                    assert cache.save()
                case ("tick", seconds):
                    clock.t += seconds
        assert cache.blob_entries() == model_blobs
        assert cache.tag_entries() == model_tags
        assert cache.save()
        loaded = TransferCache.open(path, ttl=1000, now=clock)
        assert loaded.blob_entries() == model_blobs
        assert loaded.tag_entries() == model_tags
        for host, repo, digest in model_blobs:
            assert loaded.has_blob(host, repo, digest)
            assert repo in loaded.repositories_with_blob(host, digest)


def test_lock_file_is_a_real_flock(tmp_path: Path) -> None:
    """Another process's flock on the sidecar is what `save` waits for (documents the choice)."""
    path = tmp_path / "cache.json"
    populated(path).save()
    with open(str(path) + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        cache = TransferCache.open(path, lock_timeout=0.1)
        cache.add_blob(HOST, "r", dig(1234))
        assert cache.save() is False
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert cache.save() is True
