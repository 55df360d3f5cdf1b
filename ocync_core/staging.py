"""Content-addressed staging of blobs on disk, for runs that push to several target registries.

With one target registry a blob streams source → target and never touches disk. With several,
fetching it from the source once per target would multiply the source's egress and its rate
limits, so the first fetch writes it here (verified, written under a temporary name and renamed
into place) and every target uploads from the file. A disk that is full or read-only turns
staging off for the rest of the run, with a warning: the run goes on streaming.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.manifest import Descriptor

__all__ = ["STALE_PARTIAL_SECONDS", "BlobStaging", "StagedBlob"]

log = logging.getLogger(__name__)

_READ_CHUNK = 1024 * 1024
# A download nothing has written to for this long belongs to a run that no longer exists.
STALE_PARTIAL_SECONDS = 3600.0


class StagedBlob:
    """A verified blob on disk."""

    def __init__(self, path: Path, digest: Digest, size: int) -> None:
        self.path = path
        self.digest = digest
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        async with await trio.open_file(self.path, "rb") as handle:
            while chunk := await handle.read(_READ_CHUNK):
                yield chunk


class BlobStaging:
    """A directory of blobs named by digest, each fetched at most once per run."""

    def __init__(self, directory: Path, *, stale_after: float = STALE_PARTIAL_SECONDS) -> None:
        self.directory = directory
        self.enabled = True
        self._locks: dict[Digest, trio.Lock] = {}
        self._verified: set[Digest] = set()  # written or checked by this run
        self._remove_stale_partials(stale_after)

    def _remove_stale_partials(self, stale_after: float) -> None:
        """Delete downloads a killed run left half-written in a kept `staging_dir`.

        Only files nothing has written to for `stale_after` seconds go: another run sharing
        the directory may be writing one right now.
        """
        cutoff = time.time() - stale_after
        try:
            partials = [p for p in self.directory.glob("*/.*") if p.is_file()]
        except OSError:
            return
        for partial in partials:
            try:
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    log.info("removed %s, left half-written by an earlier run", partial)
            except OSError:
                continue  # gone already, or not ours to remove: the next run tries again

    def _path(self, digest: Digest) -> Path:
        return self.directory / digest.algorithm / digest.hex

    async def fetch(
        self, source: RegistryClient, repository: str, blob: Descriptor
    ) -> StagedBlob | None:
        """The staged blob, fetching it first if needed; None when staging is off."""
        if not self.enabled:
            return None
        lock = self._locks.setdefault(blob.digest, trio.Lock())
        async with lock:
            path = self._path(blob.digest)
            if await self._usable(path, blob):
                return StagedBlob(path, blob.digest, blob.size)
            if not self.enabled:
                return None  # another blob's failure turned staging off meanwhile
            try:
                await self._download(source, repository, blob, path)
            except OSError as exc:
                self._disable(exc)
                return None
            self._verified.add(blob.digest)
            return StagedBlob(path, blob.digest, blob.size)

    def _disable(self, error: OSError) -> None:
        # Downloads in flight fail together when the disk fills up: one warning says it all.
        if not self.enabled:
            return
        self.enabled = False
        log.warning(
            "staging disabled for the rest of the run: cannot write %s (%s); "
            "blobs now stream from the source once per target",
            self.directory,
            error.strerror or error,
        )

    async def _usable(self, path: Path, blob: Descriptor) -> bool:
        """Whether a staged copy is there and intact (hashed once if an earlier run left it)."""
        try:
            if path.stat().st_size != blob.size:
                return False
        except OSError:
            return False
        if blob.digest in self._verified:
            return True
        if not await trio.to_thread.run_sync(_intact, path, blob.digest):
            log.info("staged copy of %s does not match its digest; fetching it again", blob.digest)
            return False
        self._verified.add(blob.digest)
        return True

    async def _download(
        self, source: RegistryClient, repository: str, blob: Descriptor, path: Path
    ) -> None:
        await trio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
        handle_fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{blob.digest.hex}.")
        os.close(handle_fd)
        try:
            async with (
                await trio.open_file(partial, "wb") as handle,
                source.open_blob(repository, blob.digest, blob.size) as reader,
            ):
                async for chunk in reader.chunks():
                    await handle.write(chunk)
            await trio.to_thread.run_sync(os.replace, partial, path)
        except BaseException:
            await trio.to_thread.run_sync(lambda: Path(partial).unlink(missing_ok=True))
            raise


def _intact(path: Path, digest: Digest) -> bool:
    verifier = digest.verifier()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                verifier.update(chunk)
    except OSError:
        return False
    return verifier.actual() == digest
