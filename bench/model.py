"""What a benchmark corpus contains, without its bytes: images, manifests, blobs and sizes.

The theoretical minimum and the checks are computed from this model; the bytes live in the
OCI layout and the seeded registry storage on disk (see `bench.corpus`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A manifest and the blobs it references directly (config and layers; none for an index)."""

    digest: str
    size: int
    media_type: str
    blobs: tuple[Blob, ...] = ()


@dataclass(frozen=True)
class Image:
    """A tag: its root manifest (an index or an image manifest) and the index's children."""

    repository: str
    tag: str
    root: Manifest
    children: tuple[Manifest, ...] = ()

    @property
    def manifests(self) -> tuple[Manifest, ...]:
        """Children before the root: the order a registry accepts them in."""
        return (*self.children, self.root)

    @property
    def blobs(self) -> dict[str, int]:
        return {b.digest: b.size for m in self.manifests for b in m.blobs}

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "root": _manifest_json(self.root),
            "children": [_manifest_json(c) for c in self.children],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Image:
        return cls(
            doc["repository"],
            doc["tag"],
            _manifest_from(doc["root"]),
            tuple(_manifest_from(c) for c in doc["children"]),
        )


def _manifest_json(m: Manifest) -> dict[str, Any]:
    return {
        "digest": m.digest,
        "size": m.size,
        "media_type": m.media_type,
        "blobs": [[b.digest, b.size] for b in m.blobs],
    }


def _manifest_from(doc: dict[str, Any]) -> Manifest:
    blobs = tuple(Blob(d, s) for d, s in doc["blobs"])
    return Manifest(doc["digest"], doc["size"], doc["media_type"], blobs)


@dataclass(frozen=True)
class Snapshot:
    """The images of one registry (or of one namespace of it) at one moment."""

    images: tuple[Image, ...]

    def __iter__(self) -> Iterator[Image]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def repositories(self) -> list[str]:
        return sorted({i.repository for i in self.images})

    @property
    def unique_blobs(self) -> dict[str, int]:
        return {d: s for i in self.images for d, s in i.blobs.items()}

    @property
    def blob_bytes(self) -> int:
        return sum(self.unique_blobs.values())

    @property
    def manifest_count(self) -> int:
        return len({(i.repository, m.digest) for i in self.images for m in i.manifests})

    def tag(self, repository: str, tag: str) -> Image | None:
        for image in self.images:
            if image.repository == repository and image.tag == tag:
                return image
        return None

    def replaced(self, updates: Iterable[Image]) -> Snapshot:
        """This snapshot with the tags of `updates` pointing at their new images."""
        new = {(u.repository, u.tag): u for u in updates}
        return Snapshot(tuple(new.get((i.repository, i.tag), i) for i in self.images))

    def summary(self) -> dict[str, int]:
        return {
            "repositories": len(self.repositories),
            "tags": len(self.images),
            "manifests": self.manifest_count,
            "unique_blobs": len(self.unique_blobs),
            "blob_bytes": self.blob_bytes,
        }


EMPTY = Snapshot(())
