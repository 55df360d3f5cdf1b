"""A deterministic corpus of image families for sync tests: many repositories and tags,
multi-arch indexes, base layers shared across repositories and tags like real image families.

Every repository belongs to a family; every tag of every repository of a family shares the
family's base layer per platform, and each (repository, tag, platform) adds one layer of its
own. The corpus is pushed over HTTP (no skopeo), and knows its own unique blobs, so tests can
compare what a sync fetched with the minimum.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from ocync_conformance.images import push_blob, push_manifest

__all__ = ["Corpus", "CorpusImage", "build_corpus"]

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(label: str, size: int) -> tuple[bytes, str]:
    """A gzip tar layer with `size` bytes of content; returns (blob, diff_id)."""
    rng = random.Random(label)
    payload = rng.randbytes(size)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"opt/{hashlib.sha1(label.encode()).hexdigest()[:12]}.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0), _digest(raw)


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=False).encode() + b"\n"


@dataclass
class CorpusImage:
    repository: str
    tag: str
    digest: str  # the index digest
    children: list[str]
    blobs: dict[str, bytes] = field(repr=False, default_factory=dict)
    manifests: list[tuple[str, bytes, str]] = field(repr=False, default_factory=list)


@dataclass
class Corpus:
    images: list[CorpusImage]

    @property
    def repositories(self) -> list[str]:
        return sorted({image.repository for image in self.images})

    @property
    def unique_blobs(self) -> set[str]:
        return {digest for image in self.images for digest in image.blobs}

    def blobs_by_repository(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for image in self.images:
            found.setdefault(image.repository, set()).update(image.blobs)
        return found

    def push(self, registry_url: str) -> None:
        with httpx.Client(base_url=registry_url, timeout=60) as http:
            for image in self.images:
                for digest, data in image.blobs.items():
                    if http.head(f"/v2/{image.repository}/blobs/{digest}").status_code != 200:
                        push_blob(http, image.repository, data, digest=digest)
                for reference, body, media_type in image.manifests:
                    push_manifest(http, image.repository, reference, body, media_type)


def build_corpus(
    repositories: int = 10,
    tags: int = 3,
    *,
    families: int = 3,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    base_size: int = 64 * 1024,
    app_size: int = 8 * 1024,
    seed: int = 0,
    prefix: str = "corpus",
) -> Corpus:
    """Build (in memory) `repositories` x `tags` multi-arch images; deterministic per seed."""
    images: list[CorpusImage] = []
    for r in range(repositories):
        family = r % families
        repository = f"{prefix}/app{r:02d}"
        for t in range(tags):
            tag = f"1.{t}.0"
            blobs: dict[str, bytes] = {}
            manifests: list[tuple[str, bytes, str]] = []
            children: list[dict[str, object]] = []
            for platform in platforms:
                os_name, arch = platform.split("/")[:2]
                base, base_diff = _layer(f"{seed}:family{family}:{platform}", base_size)
                app, app_diff = _layer(f"{seed}:{repository}:{tag}:{platform}", app_size)
                config = _json(
                    {
                        "architecture": arch,
                        "os": os_name,
                        "config": {"Labels": {"org.ocync.corpus": f"{repository}:{tag}"}},
                        "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]},
                    }
                )
                for blob in (base, app, config):
                    blobs[_digest(blob)] = blob
                manifest = _json(
                    {
                        "schemaVersion": 2,
                        "mediaType": _OCI_MANIFEST,
                        "config": {
                            "mediaType": _OCI_CONFIG,
                            "digest": _digest(config),
                            "size": len(config),
                        },
                        "layers": [
                            {"mediaType": _OCI_LAYER, "digest": _digest(b), "size": len(b)}
                            for b in (base, app)
                        ],
                    }
                )
                manifests.append((_digest(manifest), manifest, _OCI_MANIFEST))
                children.append(
                    {
                        "mediaType": _OCI_MANIFEST,
                        "digest": _digest(manifest),
                        "size": len(manifest),
                        "platform": {"architecture": arch, "os": os_name},
                    }
                )
            index = _json({"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": children})
            manifests.append((tag, index, _OCI_INDEX))
            images.append(
                CorpusImage(
                    repository,
                    tag,
                    _digest(index),
                    [str(c["digest"]) for c in children],
                    blobs,
                    manifests,
                )
            )
    return Corpus(images)
