"""Corpus size presets: `tiny` (the harness's own test), `small` (CI, seconds), `medium`
(about 1 GiB of blobs plus a 1 GiB blob), `large` (several GiB)."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Platform sets cycle over the families: image families ship 2 or 3 platforms.
PLATFORM_SETS: tuple[tuple[str, ...], ...] = (
    ("linux/amd64", "linux/arm64"),
    ("linux/amd64", "linux/arm64", "linux/s390x"),
)


@dataclass(frozen=True)
class Preset:
    """Shape of the three corpora a preset builds (sizes are uncompressed content sizes).

    main: `repositories` x `tags` multi-arch images in `families`; per (family, platform)
    `base_layers` shared by every tag of every repository of the family; per (repository,
    platform) a dependencies layer shared by `deps_every` consecutive tags; per (repository,
    tag, platform) an application layer. Sizes are drawn log-uniformly from the ranges.
    small: `small_repositories` x `small_tags` images of a few KiB (request overhead).
    big: one single-platform image whose one layer is `big_blob` bytes of random content.
    """

    name: str
    repositories: int
    tags: int
    families: int
    base_layers: int
    base_size: tuple[int, int]
    deps_size: tuple[int, int]
    deps_every: int
    app_size: tuple[int, int]
    small_repositories: int
    small_tags: int
    big_blob: int
    # Share of content that is text-like (compresses ~4x); the rest is random binary.
    text_fraction: float = 0.5


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="tiny",
            repositories=2,
            tags=2,
            families=1,
            base_layers=1,
            base_size=(16 * KIB, 32 * KIB),
            deps_size=(4 * KIB, 8 * KIB),
            deps_every=2,
            app_size=(2 * KIB, 4 * KIB),
            small_repositories=2,
            small_tags=2,
            big_blob=1 * MIB,
        ),
        Preset(
            name="small",
            repositories=6,
            tags=3,
            families=2,
            base_layers=1,
            base_size=(512 * KIB, 4 * MIB),
            deps_size=(64 * KIB, 1 * MIB),
            deps_every=2,
            app_size=(4 * KIB, 128 * KIB),
            small_repositories=8,
            small_tags=3,
            big_blob=48 * MIB,
        ),
        Preset(
            name="medium",
            repositories=24,
            tags=6,
            families=4,
            base_layers=2,
            base_size=(2 * MIB, 64 * MIB),
            deps_size=(256 * KIB, 24 * MIB),
            deps_every=3,
            app_size=(4 * KIB, 6 * MIB),
            small_repositories=40,
            small_tags=5,
            big_blob=1 * GIB,
        ),
        Preset(
            name="large",
            repositories=48,
            tags=8,
            families=6,
            base_layers=3,
            base_size=(4 * MIB, 320 * MIB),
            deps_size=(1 * MIB, 48 * MIB),
            deps_every=4,
            app_size=(4 * KIB, 16 * MIB),
            small_repositories=100,
            small_tags=6,
            big_blob=4 * GIB,
        ),
    )
}
