"""Making blobs present in target repositories, each at the lowest price.

One `BlobMover` serves a whole run. For every (target registry, repository, digest) it does the
cheapest thing that is correct, in this order:

1. nothing, when this run or the transfer cache already knows the repository holds it;
2. a mount from a sibling repository of the same target registry that holds it (or is
   uploading it right now: wait for that upload, then mount) — no existence check needed;
3. nothing, when the registry's existence check says it is there — or, where the mount
   policy allows it (`probe_existence`), when a mount from the repository itself answers 201:
   that one request replaces the check, and its 202 opens the session step 5 uploads into;
4. a mount from the source repository, when source and target are the same registry;
5. an upload, streamed from the source or, with several target registries, from a staged copy.

So each unique blob is fetched from the source once per target registry at most (once per run
when staged), and uploaded once per target registry; every other repository mounts it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import OcyncError, RegistryError, TransferError
from ocync_core.manifest import Descriptor
from ocync_core.retry import (
    RETRYABLE_STATUSES,
    RetryExhausted,
    is_retryable_exception,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ocync_core.cache import TransferCache
    from ocync_core.staging import BlobStaging

__all__ = ["BlobMover", "BlobStats"]

log = logging.getLogger(__name__)

# Answers to a self-mount probe that mean "not understood here", not "failed".
_PROBE_REFUSALS = frozenset({400, 405, 501})


@dataclass
class BlobStats:
    """What happened to the blobs of one image."""

    transferred: int = 0
    mounted: int = 0
    skipped: int = 0
    bytes: int = 0

    def add(self, other: BlobStats) -> None:
        self.transferred += other.transferred
        self.mounted += other.mounted
        self.skipped += other.skipped
        self.bytes += other.bytes


class _Flight:
    """One blob move in progress; later askers wait on it and share its outcome."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: BaseException | None = None


class BlobMover:
    """Run-wide coordinator of blob transfers (see the module docstring for the order)."""

    def __init__(
        self,
        limit: int = 8,
        *,
        cache: TransferCache | None = None,
        staging: BlobStaging | None = None,
    ) -> None:
        self._limiter = trio.CapacityLimiter(limit)
        self._cache = cache
        self._staging = staging
        self._flights: dict[tuple[str, str, Digest], _Flight] = {}
        # (target host, digest) -> repositories known to hold it, and uploads under way.
        self._holders: dict[tuple[str, Digest], list[str]] = {}
        self._uploading: dict[tuple[str, Digest], _Flight] = {}
        self._shares: Counter[Digest] = Counter()  # how many images named each blob so far
        # (target host, repository) whose cached blobs the registry contradicted this run.
        self._distrusted: set[tuple[str, str]] = set()

    def forget_repository(self, target: RegistryClient, repository: str) -> None:
        """Distrust, for the rest of the run, what was known of a repository's blobs (the
        registry disagreed with it): each is checked again before it is relied on.

        The cache file keeps its entries: which one was wrong is unknown, and another run
        sharing the file may have just written the right ones. A blob checked again is
        recorded afresh; one found missing is uploaded, and then recorded.
        """
        host = target.registry.host
        self._distrusted.add((host, repository))
        for (holder_host, _), repos in self._holders.items():
            if holder_host == host and repository in repos:
                repos.remove(repository)

    async def ensure(
        self,
        source: RegistryClient,
        source_repo: str,
        target: RegistryClient,
        target_repo: str,
        blobs: Sequence[Descriptor],
        stats: BlobStats,
    ) -> None:
        """Make every blob present in `target_repo`; raises the first failure."""
        host = target.registry.host
        unique = list({blob.digest: blob for blob in blobs}.values())
        self._shares.update(blob.digest for blob in unique)
        todo: list[Descriptor] = []
        for blob in unique:
            if self._holds(host, target_repo, blob.digest):
                stats.skipped += 1
            else:
                todo.append(blob)
        # Blobs a sibling repository holds (or is receiving) are mounted without a check; the
        # others are checked, unless the self-mount probe will tell on the way to uploading.
        unknown = [b for b in todo if not self._sibling_source(host, target_repo, b.digest)]
        if target.probes_existence_by_mount:
            unknown = []
        present = await target.blobs_exist(target_repo, [b.digest for b in unknown])
        missing: list[Descriptor] = []
        for blob in todo:
            if present.get(blob.digest):
                self._record(host, target_repo, blob.digest)
                stats.skipped += 1
            else:
                missing.append(blob)
        # Most shared first (every image waiting on a base layer moves once it lands), then
        # largest first: the long transfers start early and the small ones fill the gaps.
        missing.sort(key=lambda b: (self._shares[b.digest], b.size), reverse=True)
        async with trio.open_nursery() as nursery:
            for blob in missing:
                nursery.start_soon(
                    self._ensure_one, source, source_repo, target, target_repo, blob, stats
                )

    def _holds(self, host: str, repository: str, digest: Digest) -> bool:
        if repository in self._holders.get((host, digest), ()):
            return True
        if (host, repository) in self._distrusted:
            return False
        return self._cache is not None and self._cache.has_blob(host, repository, digest)

    def _sibling_source(self, host: str, repository: str, digest: Digest) -> bool:
        holders = [r for r in self._holders.get((host, digest), ()) if r != repository]
        return bool(holders) or (host, digest) in self._uploading

    def _record(self, host: str, repository: str, digest: Digest) -> None:
        repos = self._holders.setdefault((host, digest), [])
        if repository not in repos:
            repos.append(repository)
        if self._cache is not None:
            self._cache.add_blob(host, repository, digest)

    async def _ensure_one(
        self,
        source: RegistryClient,
        source_repo: str,
        target: RegistryClient,
        target_repo: str,
        blob: Descriptor,
        stats: BlobStats,
    ) -> None:
        key = (target.registry.host, target_repo, blob.digest)
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            # Again after forget_repository (a manifest the registry refused): still held.
            self._record(key[0], target_repo, blob.digest)
            stats.skipped += 1
            return
        flight = self._flights[key] = _Flight()
        try:
            await self._move(source, source_repo, target, target_repo, blob, stats)
        except BaseException as exc:
            flight.error = exc
            del self._flights[key]  # a later image may try again
            raise
        finally:
            flight.done.set()

    async def _move(
        self,
        source: RegistryClient,
        source_repo: str,
        target: RegistryClient,
        target_repo: str,
        blob: Descriptor,
        stats: BlobStats,
    ) -> None:
        host = target.registry.host
        session = await self._mount_from_sibling(target, target_repo, blob.digest, stats)
        if session is True:
            return
        upload_key = (host, blob.digest)
        upload = self._uploading.get(upload_key)
        if upload is None:
            upload = self._uploading[upload_key] = _Flight()
        else:
            # Another repository is receiving this blob: mount from it once it has it.
            await upload.done.wait()
            session = await self._mount_from_sibling(target, target_repo, blob.digest, stats)
            if session is True:
                return
            upload = self._uploading.setdefault(upload_key, _Flight())
        try:
            async with self._limiter:
                await self._upload(source, source_repo, target, target_repo, blob, stats, session)
            self._record(host, target_repo, blob.digest)
        finally:
            if self._uploading.get(upload_key) is upload:
                del self._uploading[upload_key]
            upload.done.set()

    async def _mount_from_sibling(
        self, target: RegistryClient, target_repo: str, digest: Digest, stats: BlobStats
    ) -> bool | str | None:
        """Mount from a repository known to hold the blob: True if mounted, else a session."""
        host = target.registry.host
        candidates = [r for r in self._holders.get((host, digest), ()) if r != target_repo]
        if self._cache is not None:
            known = self._cache.repositories_with_blob(host, digest)
            candidates += [r for r in known if r not in candidates]
        session: str | None = None
        for from_repo in candidates[:2]:
            try:
                result = await target.mount_blob(target_repo, digest, from_repo)
            except OcyncError as exc:  # a failed mount is never a failed image
                log.debug("mount of %s from %s failed: %s", digest, from_repo, exc)
                continue
            if result.mounted:
                stats.mounted += 1
                self._record(host, target_repo, digest)
                return True
            session = result.session or session
        return session

    async def _upload(
        self,
        source: RegistryClient,
        source_repo: str,
        target: RegistryClient,
        target_repo: str,
        blob: Descriptor,
        stats: BlobStats,
        session: bool | str | None,
    ) -> None:
        session = session if isinstance(session, str) else None
        same_registry = source.registry.host == target.registry.host
        if same_registry and source_repo != target_repo and session is None:
            result = await target.mount_blob(target_repo, blob.digest, source_repo)
            if result.mounted:
                stats.mounted += 1
                return
            session = result.session
        if session is None and target.probes_existence_by_mount:
            try:
                probe = await target.mount_blob(target_repo, blob.digest, target_repo)
            except RegistryError as error:
                # A registry that does not take a mount from the repository itself (400 for a
                # repository it has not created yet, say) gets plain uploads from now on.
                if error.status not in _PROBE_REFUSALS:
                    raise
                target.probe_refused(error)
            else:
                if probe.mounted:  # the repository held it already
                    stats.skipped += 1
                    return
                session = probe.session
        policy = target.retry_policy
        reauthorized = False
        for attempt in range(1, policy.attempts + 1):
            try:
                await self._stream(source, source_repo, target, target_repo, blob, session)
                break
            except Exception as exc:
                # A streamed body is sent once, so the client cannot re-authorize a 401 on it
                # (a token that expired or rotated mid-upload): restart the move once, whose
                # first (replayable) request re-authorizes.
                refused = isinstance(exc, RegistryError) and exc.status == 401 and not reauthorized
                if attempt == policy.attempts or not (refused or _worth_retrying(exc)):
                    raise
                reauthorized = reauthorized or refused
                # A streamed upload cannot be resumed portably: start a new session.
                session = None
                wait = policy.delay(attempt, _retry_after(exc))
                log.info("retrying %s -> %s in %.1fs: %s", blob.digest, target_repo, wait, exc)
                await trio.sleep(wait)
        stats.transferred += 1
        stats.bytes += blob.size

    async def _stream(
        self,
        source: RegistryClient,
        source_repo: str,
        target: RegistryClient,
        target_repo: str,
        blob: Descriptor,
        session: str | None,
    ) -> None:
        """One attempt: from the staged copy when there is one, else straight from the source."""
        if self._staging is not None and source.registry.host != target.registry.host:
            staged = await self._staging.fetch(source, source_repo, blob)
            if staged is not None:
                await target.upload_blob(
                    target_repo, blob.digest, blob.size, staged.chunks(), session=session
                )
                return
        async with source.open_blob(source_repo, blob.digest, blob.size) as reader:
            await target.upload_blob(
                target_repo, blob.digest, blob.size, reader.chunks(), session=session
            )


def _worth_retrying(error: BaseException) -> bool:
    """Transient failures of a blob move: throttling, 5xx, broken or corrupted transfers."""
    if isinstance(error, RegistryError):
        return error.status in RETRYABLE_STATUSES
    if isinstance(error, RetryExhausted):
        return False  # the client already tried that request its full number of times
    # A truncated or corrupted body in transit may be the network's fault: fetch again.
    return isinstance(error, TransferError) or is_retryable_exception(error)


def _retry_after(error: BaseException) -> float | None:
    if isinstance(error, RegistryError):
        return parse_retry_after(error.retry_after, now_wall=time.time())
    return None
