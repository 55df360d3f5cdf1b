"""The theoretical minimum: the fewest requests and bytes any correct sync could use.

For a source snapshot S and, per target registry, what that target already holds (T):

- source: one tag list per repository (the mappings name repositories, not tags); per tag one
  manifest request, a GET when the tag must be copied (its body is the root manifest), a HEAD
  otherwise; one GET per child manifest to copy (once per (repository, digest), whatever the
  number of targets); one GET per unique blob some target must upload (once in total: a blob
  fetched for one target serves every other).
- each target: one manifest HEAD per tag the target already holds under that name (the only
  way to learn its digest); per manifest to copy one PUT (children by digest, the root by tag);
  per blob a target repository lacks, an upload (POST + PUT = 2 requests, docker-registry 2.8
  ignores a body on the POST) when no repository of that target registry has it yet, else a
  cross-repository mount (1 request).
- bytes: bodies only: blobs and manifests fetched from the source, blobs uploaded and
  manifests pushed to the targets. Tag-list and error bodies are not counted (tiny).

A fresh target holds nothing, so a cold sync has no existence checks at all; the minimum is a
lower bound, which assumes the tool somehow knows the target is empty. A warm sync costs one
HEAD per tag on each side plus the tag lists. No pings: open registries need no auth dance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.model import Blob, Image, Snapshot


@dataclass
class Side:
    """Requests by action and body bytes on one side (the source, or all targets together)."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.total, "by_action": dict(self.requests), "bytes": self.bytes}


@dataclass
class Minimum:
    source: Side
    target: Side
    tags: int
    targets: int

    @property
    def requests(self) -> int:
        return self.source.total + self.target.total

    @property
    def bytes(self) -> int:
        return self.source.bytes + self.target.bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "tags": self.tags,
            "targets": self.targets,
            "source": self.source.to_json(),
            "target": self.target.to_json(),
        }


class _TargetState:
    """What one target registry holds, updated as the minimal plan copies things into it."""

    def __init__(self, held: Snapshot) -> None:
        self.tags = {(i.repository, i.tag): i.root.digest for i in held}
        self.manifests = {(i.repository, m.digest) for i in held for m in i.manifests}
        self.blobs = {(i.repository, d) for i in held for d in i.blobs}
        self.anywhere = {d for i in held for d in i.blobs}


def minimum(source: Snapshot, held: Sequence[Snapshot]) -> Minimum:
    """The minimal cost of syncing `source` to one target per entry of `held` (its content)."""
    src, dst = Side(), Side()
    src.requests["tag_list"] = len(source.repositories)
    targets = [_TargetState(h) for h in held]
    fetched_manifests: set[tuple[str, str]] = set()
    fetched_blobs: set[str] = set()
    for image in source:
        key = (image.repository, image.tag)
        stale = [t for t in targets if t.tags.get(key) != image.root.digest]
        heads = sum(1 for t in targets if key in t.tags)
        if heads:
            dst.requests["manifest_head"] += heads
        if not stale:
            src.requests["manifest_head"] += 1
            continue
        src.requests["manifest_get"] += 1
        src.bytes += image.root.size
        fetched_manifests.add((image.repository, image.root.digest))
        for target in stale:
            _copy_image(image, target, src, dst, fetched_manifests, fetched_blobs)
    return Minimum(src, dst, tags=len(source), targets=len(held))


def _copy_image(
    image: Image,
    target: _TargetState,
    src: Side,
    dst: Side,
    fetched_manifests: set[tuple[str, str]],
    fetched_blobs: set[str],
) -> None:
    repo = image.repository
    for manifest in image.children:
        if (repo, manifest.digest) in target.manifests:
            continue
        if (repo, manifest.digest) not in fetched_manifests:
            fetched_manifests.add((repo, manifest.digest))
            src.requests["manifest_get"] += 1
            src.bytes += manifest.size
        _copy_blobs(manifest.blobs, repo, target, src, dst, fetched_blobs)
        dst.requests["manifest_put"] += 1
        dst.bytes += manifest.size
        target.manifests.add((repo, manifest.digest))
    _copy_blobs(image.root.blobs, repo, target, src, dst, fetched_blobs)
    dst.requests["manifest_put"] += 1
    dst.bytes += image.root.size
    target.manifests.add((repo, image.root.digest))
    target.tags[(repo, image.tag)] = image.root.digest


def _copy_blobs(
    blobs: Sequence[Blob],
    repo: str,
    target: _TargetState,
    src: Side,
    dst: Side,
    fetched_blobs: set[str],
) -> None:
    for blob in blobs:
        if (repo, blob.digest) in target.blobs:
            continue
        if blob.digest in target.anywhere:
            dst.requests["mount"] += 1
        else:
            if blob.digest not in fetched_blobs:
                fetched_blobs.add(blob.digest)
                src.requests["blob_get"] += 1
                src.bytes += blob.size
            dst.requests["upload_start"] += 1
            dst.requests["upload_finish"] += 1
            dst.bytes += blob.size
            target.anywhere.add(blob.digest)
        target.blobs.add((repo, blob.digest))
