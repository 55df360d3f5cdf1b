"""Copying one image, or a whole multi-arch index, from one repository to another.

Children go before their index, blobs before their manifest, so the target never holds a
manifest that names something it lacks. Manifests are pushed as the exact bytes received.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ocync_core.client import RegistryClient
from ocync_core.errors import RegistryError, RegistryErrorDetail
from ocync_core.manifest import ImageIndex, Manifest
from ocync_core.reference import Reference
from ocync_core.transfer import BlobMover, BlobStats

__all__ = ["CopyResult", "ManifestTree", "copy_image", "target_identifier"]


@dataclass
class CopyResult:
    """The outcome of copying one image reference."""

    source: str
    target: str
    status: str  # "copied" | "skipped" | "failed"
    digest: str = ""
    media_type: str = ""
    reason: str = ""
    platforms: list[str] = field(default_factory=list)
    manifests_pushed: int = 0
    blobs: BlobStats = field(default_factory=BlobStats)
    duration: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "status": self.status,
            "digest": self.digest,
            "media_type": self.media_type,
            "reason": self.reason,
            "platforms": self.platforms,
            "manifests_pushed": self.manifests_pushed,
            "blobs_transferred": self.blobs.transferred,
            "blobs_mounted": self.blobs.mounted,
            "blobs_skipped": self.blobs.skipped,
            "bytes": self.blobs.bytes,
            "duration": round(self.duration, 3),
        }


def target_identifier(source: Reference, target: Reference) -> str:
    """Where the copy lands: the target's tag or digest, else the source's."""
    if target.tag:
        return target.tag
    if target.digest:
        return str(target.digest)
    return source.tag or (str(source.digest) if source.digest else "latest")


async def copy_image(
    source: RegistryClient,
    source_ref: Reference,
    target: RegistryClient,
    target_ref: Reference,
    *,
    mover: BlobMover | None = None,
) -> CopyResult:
    """Copy `source_ref` to `target_ref`; a target that already has the digest is skipped."""
    started = time.monotonic()
    destination = target_identifier(source_ref, target_ref)
    result = CopyResult(
        source=str(source_ref),
        target=f"{target_ref.name}{'@' if ':' in destination else ':'}{destination}",
        status="copied",
    )
    src_head, dst_head = None, None

    async def head_source() -> None:
        nonlocal src_head
        src_head = await source.head_manifest(source_ref.repository, source_ref.identifier)

    async def head_target() -> None:
        nonlocal dst_head
        dst_head = await target.head_manifest(target_ref.repository, destination)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(head_source)
        nursery.start_soon(head_target)

    if src_head is None:
        raise _missing(source_ref)
    result.digest = str(src_head.digest)
    result.media_type = src_head.media_type
    if dst_head is not None and dst_head.digest == src_head.digest:
        result.status = "skipped"
        result.reason = "target has the same digest"
        result.duration = time.monotonic() - started
        return result

    manifest = await source.get_manifest(source_ref.repository, str(src_head.digest))
    result.media_type = manifest.media_type
    if isinstance(manifest, ImageIndex):
        result.platforms = [str(d.platform) for d in manifest.manifests if d.platform]
    preparer = target.repository_preparer
    if preparer is not None:
        await preparer.ensure(target_ref.repository)
    tree = ManifestTree(
        source, source_ref.repository, target, target_ref.repository, mover or BlobMover()
    )
    # Children of an index are HEADed at the target only when the tag existed there before:
    # then they may be present already; on a fresh target the HEADs would only cost requests.
    await tree.copy(manifest, destination, check_children=dst_head is not None)
    result.blobs = tree.blobs
    result.manifests_pushed = tree.manifests_pushed
    if tree.skipped and tree.skipped[-1].startswith(f"{destination}:"):
        result.status = "skipped"
        result.reason = tree.skipped[-1].split(": ", 1)[1]
    result.duration = time.monotonic() - started
    return result


def _missing(reference: Reference) -> Exception:
    return RegistryError(
        404,
        "HEAD",
        f"{reference.name}/manifests/{reference.identifier}",
        (RegistryErrorDetail("MANIFEST_UNKNOWN", f"{reference} does not exist at the source"),),
        what=f"copy {reference}",
    )


@dataclass
class ManifestTree:
    """Copies a manifest and everything it names, children and blobs before the manifest."""

    source: RegistryClient
    source_repo: str
    target: RegistryClient
    target_repo: str
    mover: BlobMover
    blobs: BlobStats = field(default_factory=BlobStats)
    manifests_pushed: int = 0
    skipped: list[str] = field(default_factory=list)  # pushes the registry refused as done
    # Reads a child manifest from the source; a sync shares one reader among the targets of
    # a tag, so each child is fetched once however many targets need it.
    fetch: Callable[[str], Awaitable[Manifest]] | None = None

    async def copy(self, manifest: Manifest, destination: str, *, check_children: bool) -> None:
        """Copy what `manifest` names, then push it under `destination`."""
        if isinstance(manifest, ImageIndex):
            async with trio.open_nursery() as nursery:
                for child in manifest.manifests:
                    nursery.start_soon(self._copy_child, str(child.digest), check_children)
        else:
            await self.mover.ensure(
                self.source,
                self.source_repo,
                self.target,
                self.target_repo,
                manifest.blobs,
                self.blobs,
            )
        try:
            await self.target.put_manifest(self.target_repo, destination, manifest)
        except RegistryError as error:
            if not await self._already_there(error, manifest, destination):
                raise
            return
        self.manifests_pushed += 1

    async def _already_there(self, error: RegistryError, manifest: Manifest, where: str) -> bool:
        """A refused push that the plugin reads as success (an immutable tag), verified.

        The hook only says what the error means; the tag must really hold our digest.
        """
        target = self.target
        outcome = target.plugins.manifest_push_outcome(target.registry, error, manifest.digest)
        if outcome is None or not outcome.skipped:
            return False
        present = await target.head_manifest(self.target_repo, where)
        if present is None or present.digest != manifest.digest:
            return False
        self.skipped.append(f"{where}: {outcome.reason}")
        return True

    async def _copy_child(self, digest: str, check_target: bool) -> None:
        if check_target and await self.target.head_manifest(self.target_repo, digest) is not None:
            return
        if self.fetch is not None:
            child = await self.fetch(digest)
        else:
            child = await self.source.get_manifest(self.source_repo, digest)
        await self.copy(child, digest, check_children=check_target)
