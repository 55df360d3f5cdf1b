"""Moving blobs from a source repository to a target repository.

A `BlobMover` is shared by everything one command copies, so each (target repository, digest)
is moved at most once however many manifests name it; concurrent askers wait for the first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.manifest import Descriptor

__all__ = ["BlobMover", "BlobStats"]

log = logging.getLogger(__name__)


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
    """Makes blobs present in target repositories: skip, mount, or stream from the source."""

    def __init__(self, limit: int = 8) -> None:
        self._limiter = trio.CapacityLimiter(limit)
        self._flights: dict[tuple[str, str, Digest], _Flight] = {}

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
        unique = list({blob.digest: blob for blob in blobs}.values())
        present = await target.blobs_exist(target_repo, [b.digest for b in unique])
        missing = [b for b in unique if not present.get(b.digest)]
        stats.skipped += len(unique) - len(missing)
        # Largest first: the long transfers start early and the small ones fill the gaps.
        missing.sort(key=lambda b: b.size, reverse=True)
        async with trio.open_nursery() as nursery:
            for blob in missing:
                nursery.start_soon(
                    self._ensure_one, source, source_repo, target, target_repo, blob, stats
                )

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
            stats.skipped += 1
            return
        flight = self._flights[key] = _Flight()
        try:
            async with self._limiter:
                await self._move(source, source_repo, target, target_repo, blob, stats)
        except BaseException as exc:
            flight.error = exc
            # A failed move may be retried by a later image.
            del self._flights[key]
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
        session: str | None = None
        if source.registry.host == target.registry.host and source_repo != target_repo:
            result = await target.mount_blob(target_repo, blob.digest, source_repo)
            if result.mounted:
                stats.mounted += 1
                log.debug("mounted %s into %s from %s", blob.digest, target_repo, source_repo)
                return
            session = result.session
        async with source.open_blob(source_repo, blob.digest, blob.size) as reader:
            await target.upload_blob(
                target_repo, blob.digest, blob.size, reader.chunks(), session=session
            )
        stats.transferred += 1
        stats.bytes += blob.size
