"""Sharding: N independent processes split one configuration's mappings, with no overlap.

Each mapping goes to shard ``h mod N``, where ``h`` is the SHA-256 of its canonical key
(source host and repository, then its targets' hosts and repositories, sorted). The hash
depends on the mapping alone, so every process computes the same split without talking to the
others, and adding or removing a mapping never moves the other mappings between shards.
Python's `hash()` is never used: it is salted per process.

A shard keeps its own transfer-state cache: ``transfer-state.json`` becomes
``transfer-state.shard-I-of-N.json``, so shards never contend for one cache file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ocync_core.errors import BadInput

if TYPE_CHECKING:
    from ocync_core.config import Config, ResolvedMapping

__all__ = ["Shard", "mapping_key", "shard_config", "shard_of"]

_SHARD = re.compile(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise BadInput(f"shard {self}: the number of shards must be at least 1")
        if not 0 <= self.index < self.count:
            raise BadInput(
                f"shard {self}: the shard index must be within 0..{self.count - 1} "
                f"(shards are numbered from 0, as a Kubernetes Indexed Job's completion index)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read ``I/N``, e.g. ``0/4``; BadInput names what is wrong."""
        match = _SHARD.fullmatch(text)
        if match is None:
            raise BadInput(f"--shard {text!r}: expected I/N, e.g. 0/4 (shard 0 of 4)")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, mapping: ResolvedMapping) -> bool:
        return shard_of(mapping, self.count) == self.index

    def cache_path(self, path: Path) -> Path:
        """The shard's own cache file beside `path`."""
        suffix = f".shard-{self.index}-of-{self.count}"
        return path.with_name(f"{path.stem}{suffix}{path.suffix}")


def mapping_key(mapping: ResolvedMapping) -> str:
    """The canonical text hashed for sharding: registries by host, not by alias, so renaming
    an alias in the config does not move a mapping to another shard."""
    targets = sorted(f"{t.registry.host}/{t.repository}" for t in mapping.targets)
    return f"{mapping.source.host}/{mapping.source_repository} -> {', '.join(targets)}"


def shard_of(mapping: ResolvedMapping, count: int) -> int:
    """The shard (``0..count-1``) that syncs `mapping` when the work is split `count` ways."""
    digest = hashlib.sha256(mapping_key(mapping).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_config(config: Config, shard: Shard) -> Config:
    """The part of `config` that `shard` syncs, with the shard's own cache file."""
    from ocync_core.config import Config

    settings = config.settings
    if settings.cache is not None:
        settings = settings.model_copy(update={"cache": shard.cache_path(Path(settings.cache))})
    model = config.model.model_copy(update={"global_": settings})
    mappings = [m for m in config.mappings if shard.holds(m)]
    return Config(model, dict(config.registries), mappings, source=config.source)
