"""Referrers (signatures, SBOMs, attestations) copied after their subject.

The source's referrers come from its referrers API or, failing that, its fallback tag
`sha256-<hex>`. Each referrer is checked to really name the subject (a fallback tag can lie),
copied by digest with its blobs, and — when the target has no referrers API — listed in the
target's fallback tag. Where the target had no fallback tag yet and the source used one, the
source's index is pushed byte for byte, so even that digest is the source's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass

from ocync_core import mediatypes
from ocync_core.client import ReferrersListing, RegistryClient, fallback_tag
from ocync_core.copy import ManifestTree
from ocync_core.digest import Digest
from ocync_core.errors import OcyncError
from ocync_core.manifest import Descriptor, ImageIndex, Manifest, parse_manifest
from ocync_core.transfer import BlobMover, BlobStats

__all__ = ["ArtifactRules", "copy_referrers"]

log = logging.getLogger(__name__)

_MAX_DEPTH = 3  # a signature of an SBOM of an image: referrers of referrers, bounded


@dataclass(frozen=True)
class ArtifactRules:
    enabled: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    require: bool = False

    @classmethod
    def from_model(cls, model: object) -> ArtifactRules:
        return cls(
            enabled=bool(getattr(model, "enabled", True)),
            include=tuple(getattr(model, "include", ()) or ()),
            exclude=tuple(getattr(model, "exclude", ()) or ()),
            require=bool(getattr(model, "require_artifacts", False)),
        )

    def wants(self, descriptor: Descriptor) -> bool:
        kind = descriptor.artifact_type or ""
        if self.include and kind not in self.include:
            return False
        return kind not in self.exclude


class MissingArtifacts(OcyncError):
    """`require_artifacts` is set and the image has no referrers."""


async def copy_referrers(
    source: RegistryClient,
    source_repo: str,
    target: RegistryClient,
    target_repo: str,
    subject: Digest,
    mover: BlobMover,
    rules: ArtifactRules,
    stats: BlobStats,
    *,
    depth: int = 0,
    source_tags: Container[str] | None = None,
) -> int:
    """Copy the referrers of `subject`; returns how many manifests were pushed.

    `source_tags`: the source repository's tags, when discovery listed them (fallback tags
    included), so that a subject without a fallback tag costs no request.
    """
    if not rules.enabled or depth >= _MAX_DEPTH:
        return 0
    listing = await source.referrers_listing(source_repo, subject, known_tags=source_tags)
    wanted = [d for d in listing.descriptors if rules.wants(d)]
    if not wanted:
        if rules.require and depth == 0:
            raise MissingArtifacts(f"{source_repo}@{subject}: no referrers (require_artifacts)")
        return 0
    copied: list[Descriptor] = []
    pushed = 0
    for descriptor in wanted:
        manifest = await source.get_manifest(source_repo, str(descriptor.digest))
        if manifest.subject is None or manifest.subject.digest != subject:
            log.warning(
                "%s: referrer %s does not name %s as its subject; not copied",
                source_repo,
                descriptor.digest,
                subject,
            )
            continue
        tree = ManifestTree(source, source_repo, target, target_repo, mover, stats)
        await tree.copy(manifest, str(descriptor.digest), check_children=True)
        pushed += tree.manifests_pushed
        copied.append(descriptor)
        nested = ArtifactRules(include=rules.include, exclude=rules.exclude)
        pushed += await copy_referrers(
            source,
            source_repo,
            target,
            target_repo,
            descriptor.digest,
            mover,
            nested,
            stats,
            depth=depth + 1,
            source_tags=source_tags,
        )
    if copied:
        pushed += await _update_target_fallback(target, target_repo, subject, copied, listing)
    return pushed


async def _update_target_fallback(
    target: RegistryClient,
    target_repo: str,
    subject: Digest,
    copied: Sequence[Descriptor],
    source_listing: ReferrersListing,
) -> int:
    """List the referrers in the target's fallback tag unless its referrers API does it."""
    at_target = await target.referrers_listing(target_repo, subject)
    if at_target.via_api:
        return 0  # the registry indexes referrers itself from their `subject`
    existing = at_target.fallback_index
    known = {d.digest for d in existing.manifests} if existing else set()
    if all(d.digest in known for d in copied):
        return 0
    source_index = source_listing.fallback_index
    if existing is None and source_index is not None and _lists_exactly(source_index, copied):
        index: Manifest = source_index  # the source's own bytes: its digest is kept too
    else:
        index = _merged_index(existing, copied)
    await target.put_manifest(target_repo, fallback_tag(subject), index)
    return 1


def _lists_exactly(index: ImageIndex, descriptors: Sequence[Descriptor]) -> bool:
    return {d.digest for d in index.manifests} == {d.digest for d in descriptors}


def _merged_index(existing: ImageIndex | None, added: Sequence[Descriptor]) -> ImageIndex:
    entries: list[dict[str, object]] = []
    if existing is not None:
        entries = list(json.loads(existing.raw).get("manifests", []))
    known = {str(e.get("digest")) for e in entries}
    for descriptor in added:
        if str(descriptor.digest) in known:
            continue
        entry: dict[str, object] = {
            "mediaType": descriptor.media_type,
            "digest": str(descriptor.digest),
            "size": descriptor.size,
        }
        if descriptor.artifact_type:
            entry["artifactType"] = descriptor.artifact_type
        if descriptor.annotations:
            entry["annotations"] = dict(descriptor.annotations)
        entries.append(entry)
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries},
        separators=(",", ":"),
    ).encode()
    index = parse_manifest(raw, mediatypes.OCI_INDEX, what="fallback referrers index")
    assert isinstance(index, ImageIndex)
    return index
