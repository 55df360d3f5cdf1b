"""The benchmark corpus: generated once per (preset, seed), cached on disk, seeded into a registry.

Three corpora share one OCI layout and one source registry, each under its own namespace:
- `bench/...`: image families (see `Preset`): multi-arch indexes of 2 or 3 platforms whose
  base layers are shared across repositories and tags, dependency layers shared across
  consecutive tags, and an application layer per tag; layer sizes log-uniform in each range.
  `updates` holds the new images of the partial scenario (5% of the tags get a new app layer).
- `bench-small/...`: many images of a few KiB, built by the conformance kit's `build_corpus`.
- `bench-big/blob:v1`: one single-platform image with one large random layer.

The cache directory holds the OCI layout (`layout/`), the model (`corpus.json`, written
last: its presence means the cache is complete) and the storage of a docker-registry the
corpus was pushed into (`registry/storage`). A run starts its source registry on a copy of that
storage whose blob files are hard links: ready in milliseconds, whatever the corpus size.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.layers import LayerSpec, WrittenLayer, write_blob, write_layer
from bench.model import Blob, Image, Manifest, Snapshot
from bench.presets import KIB, PLATFORM_SETS, Preset
from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.images import push_manifest
from ocync_conformance.registry_process import RegistryProcess

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY_ANNOTATION = "org.ocync.bench.repository"

MAIN, SMALL, BIG = "bench", "bench-small", "bench-big"
PARTIAL_FRACTION = 0.05
_INLINE = 16 * 1024 * 1024
_FORMAT = 1  # bump when the generator changes: old caches are then rebuilt


def default_cache_dir() -> Path:
    base = os.environ.get("OCYNC_BENCH_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "ocync-bench" if base else Path.home() / ".cache" / "ocync-bench"


@dataclass(frozen=True)
class BenchCorpus:
    preset: Preset
    seed: int
    root: Path
    main: Snapshot
    updates: Snapshot
    small: Snapshot
    big: Snapshot

    @property
    def layout(self) -> Path:
        return self.root / "layout"

    @property
    def storage(self) -> Path:
        return self.root / "registry" / "storage"

    @property
    def big_blob(self) -> Blob:
        image = self.big.images[0]
        return max(image.root.blobs, key=lambda b: b.size)

    def summary(self) -> dict[str, Any]:
        return {
            "preset": self.preset.name,
            "seed": self.seed,
            "main": self.main.summary(),
            "updated_tags": len(self.updates),
            "small": self.small.summary(),
            "big_blob_bytes": self.big_blob.size,
        }


def load_or_build(preset: Preset, seed: int, cache_dir: Path | None = None) -> BenchCorpus:
    """The cached corpus for (preset, seed), generating and seeding it first when missing."""
    root = (cache_dir or default_cache_dir()) / f"{preset.name}-{seed}-v{_FORMAT}"
    model = root / "corpus.json"
    if not model.exists():
        if root.exists():
            shutil.rmtree(root)  # an interrupted build: start over
        _build(preset, seed, root)
    doc = json.loads(model.read_text())

    def snap(key: str) -> Snapshot:
        return Snapshot(tuple(Image.from_json(i) for i in doc[key]))

    return BenchCorpus(
        preset, seed, root, snap("main"), snap("updates"), snap("small"), snap("big")
    )


# -- generation ----------------------------------------------------------------------------


def _size(label: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return int(math.exp(random.Random(label).uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class _PlannedImage:
    repository: str
    tag: str
    platforms: tuple[str, ...]
    layers: dict[str, tuple[LayerSpec, ...]]  # per platform, bottom first
    label: str


def _plan_main(preset: Preset, seed: int) -> tuple[list[_PlannedImage], list[_PlannedImage]]:
    images: list[_PlannedImage] = []
    for r in range(preset.repositories):
        family = r % preset.families
        platforms = PLATFORM_SETS[family % len(PLATFORM_SETS)]
        for t in range(preset.tags):
            images.append(_plan_image(preset, seed, r, family, t, platforms, revision=""))
    count = max(1, math.ceil(PARTIAL_FRACTION * len(images)))
    chosen = random.Random(f"{seed}:partial").sample(range(len(images)), count)
    updates = []
    for n in sorted(chosen):
        old = images[n]
        r, t = int(old.repository.rsplit("app", 1)[1]), int(old.tag.split(".")[1])
        family = r % preset.families
        updates.append(_plan_image(preset, seed, r, family, t, old.platforms, revision="r2"))
    return images, updates


def _plan_image(
    preset: Preset,
    seed: int,
    r: int,
    family: int,
    t: int,
    platforms: tuple[str, ...],
    revision: str,
) -> _PlannedImage:
    layers: dict[str, tuple[LayerSpec, ...]] = {}
    for platform in platforms:
        specs = [
            _spec(preset, f"{seed}:base:{family}:{platform}:{k}", preset.base_size)
            for k in range(preset.base_layers)
        ]
        specs.append(
            _spec(preset, f"{seed}:deps:{r}:{platform}:{t // preset.deps_every}", preset.deps_size)
        )
        specs.append(_spec(preset, f"{seed}:app:{r}:{t}:{platform}:{revision}", preset.app_size))
        layers[platform] = tuple(specs)
    repository, tag = f"{MAIN}/app{r:02d}", f"1.{t}.0"
    return _PlannedImage(repository, tag, platforms, layers, f"{repository}:{tag}{revision}")


def _spec(preset: Preset, label: str, bounds: tuple[int, int]) -> LayerSpec:
    return LayerSpec(label, _size(label, bounds), preset.text_fraction)


def _write_layers(blobs_dir: Path, specs: Iterable[LayerSpec]) -> dict[str, WrittenLayer]:
    unique = {s.label: s for s in specs}
    # Biggest first, so the pool never waits on one large layer at the end.
    ordered = sorted(unique.values(), key=lambda s: -s.size)
    if sum(s.size for s in ordered) < 16 * 1024 * 1024:  # not worth starting processes
        return {s.label: write_layer(blobs_dir, s) for s in ordered}
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        written = pool.map(write_layer, [blobs_dir] * len(ordered), ordered)
        return {spec.label: layer for spec, layer in zip(ordered, written, strict=True)}


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


def _assemble(blobs_dir: Path, plan: _PlannedImage, layers: dict[str, WrittenLayer]) -> Image:
    children: list[Manifest] = []
    for platform in plan.platforms:
        os_name, arch = platform.split("/")[:2]
        written = [layers[s.label] for s in plan.layers[platform]]
        config = _json_bytes(
            {
                "created": "2024-01-01T00:00:00Z",
                "architecture": arch,
                "os": os_name,
                "config": {"Labels": {"org.ocync.bench": plan.label}},
                "rootfs": {"type": "layers", "diff_ids": [w.diff_id for w in written]},
            }
        )
        config_blob = Blob(write_blob(blobs_dir, config), len(config))
        children.append(_image_manifest(blobs_dir, config_blob, written, platform))
    index = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                _descriptor(c, platform=p) for c, p in zip(children, plan.platforms, strict=True)
            ],
        }
    )
    root = Manifest(write_blob(blobs_dir, index), len(index), OCI_INDEX)
    return Image(plan.repository, plan.tag, root, tuple(children))


def _image_manifest(
    blobs_dir: Path, config: Blob, layers: list[WrittenLayer], platform: str | None
) -> Manifest:
    body = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": w.digest, "size": w.size} for w in layers
            ],
        }
    )
    blobs = (config, *(Blob(w.digest, w.size) for w in layers))
    return Manifest(write_blob(blobs_dir, body), len(body), OCI_MANIFEST, blobs)


def _descriptor(m: Manifest, platform: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"mediaType": m.media_type, "digest": m.digest, "size": m.size}
    if platform is not None:
        os_name, arch = platform.split("/")[:2]
        doc["platform"] = {"architecture": arch, "os": os_name}
    return doc


def _small_images(preset: Preset, seed: int, blobs_dir: Path) -> list[Image]:
    corpus: Corpus = build_corpus(
        preset.small_repositories,
        preset.small_tags,
        base_size=4 * KIB,
        app_size=1 * KIB,
        seed=seed,
        prefix=SMALL,
    )
    images = []
    for image in corpus.images:
        for data in image.blobs.values():
            write_blob(blobs_dir, data)
        sizes = {d: len(b) for d, b in image.blobs.items()}
        children = []
        for ref, body, media_type in image.manifests[:-1]:
            doc = json.loads(body)
            refs = [doc["config"], *doc["layers"]]
            blobs = tuple(Blob(d["digest"], sizes[d["digest"]]) for d in refs)
            children.append(Manifest(write_blob(blobs_dir, body), len(body), media_type, blobs))
            assert children[-1].digest == ref
        _, index, media_type = image.manifests[-1]
        root = Manifest(write_blob(blobs_dir, index), len(index), media_type)
        images.append(Image(image.repository, image.tag, root, tuple(children)))
    return images


def _big_image(preset: Preset, seed: int, blobs_dir: Path) -> Image:
    layer = write_layer(blobs_dir, LayerSpec(f"{seed}:big", preset.big_blob, text_fraction=0.0))
    config = _json_bytes(
        {
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
    )
    config_blob = Blob(write_blob(blobs_dir, config), len(config))
    root = _image_manifest(blobs_dir, config_blob, [layer], platform=None)
    return Image(f"{BIG}/blob", "v1", root)


def _build(preset: Preset, seed: int, root: Path) -> None:
    layout = root / "layout"
    blobs_dir = layout / "blobs" / "sha256"
    plans, update_plans = _plan_main(preset, seed)
    specs = [s for p in (*plans, *update_plans) for layers in p.layers.values() for s in layers]
    layers = _write_layers(blobs_dir, specs)
    main = [_assemble(blobs_dir, p, layers) for p in plans]
    updates = [_assemble(blobs_dir, p, layers) for p in update_plans]
    small = _small_images(preset, seed, blobs_dir)
    big = [_big_image(preset, seed, blobs_dir)]
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}\n')
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **_descriptor(i.root),
                "annotations": {REF_NAME: i.tag, REPOSITORY_ANNOTATION: i.repository},
            }
            for i in (*main, *small, *big)
        ],
    }
    (layout / "index.json").write_text(json.dumps(index, indent=2))
    with RegistryProcess(workdir=root / "registry") as registry:
        push_images(registry.url, layout, [*main, *small, *big])
        registry.stop(cleanup=False)
    doc = {
        "preset": preset.name,
        "seed": seed,
        **{
            key: [i.to_json() for i in images]
            for key, images in (("main", main), ("updates", updates), ("small", small))
        },
        "big": [i.to_json() for i in big],
    }
    (root / "corpus.json").write_text(json.dumps(doc))


# -- seeding -------------------------------------------------------------------------------


def _chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def push_images(url: str, layout: Path, images: Iterable[Image]) -> None:
    """Push images from the layout over HTTP: blobs (large ones streamed from disk), then
    children, then roots; eight requests at a time, as docker-registry takes ~50 ms a PUT."""
    images = list(images)
    blobs_dir = layout / "blobs" / "sha256"
    blobs = {(i.repository, b.digest): b.size for i in images for m in i.manifests for b in m.blobs}
    children = {(i.repository, c.digest): c for i in images for c in i.children}
    with httpx.Client(base_url=url, timeout=300) as http, ThreadPoolExecutor(8) as pool:

        def push_blob(key: tuple[str, str]) -> None:
            (repo, digest), size = key, blobs[key]
            started = http.post(f"/v2/{repo}/blobs/uploads/")
            started.raise_for_status()
            location = started.headers["Location"]
            sep = "&" if "?" in location else "?"
            path = blobs_dir / digest.split(":")[1]
            # Small bodies in one write: a body sent after its headers in a second small
            # write waits out Nagle plus a delayed ACK.
            content = path.read_bytes() if size <= _INLINE else _chunks(path)
            http.put(
                f"{location}{sep}digest={digest}",
                content=content,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            ).raise_for_status()

        def push(repo: str, ref: str, manifest: Manifest) -> None:
            body = (blobs_dir / manifest.digest.split(":")[1]).read_bytes()
            push_manifest(http, repo, ref, body, manifest.media_type)

        list(pool.map(push_blob, blobs))
        list(pool.map(lambda k: push(k[0], k[1], children[k]), children))
        list(pool.map(lambda i: push(i.repository, i.tag, i.root), images))


def clone_storage(template: Path, storage: Path) -> None:
    """Copy registry storage; blob data files (content-addressed, never rewritten in place:
    the registry renames new uploads over them) become hard links."""

    def link_or_copy(src: str, dst: str) -> None:
        if os.sep + "blobs" + os.sep in src and src.endswith(os.sep + "data"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(template, storage, copy_function=link_or_copy)
