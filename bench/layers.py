"""Gzip tar layers with realistic content, streamed straight into an OCI layout's blob store.

A layer is a tar of files between 4 KiB and 8 MiB; each file is either text-like (slices of a
seeded pool of source-code-like lines: compresses about 3-4x) or random binary (does not
compress), like the mix of scripts, configs and executables of real images. Content is
deterministic per label. Writing bypasses `tarfile`'s 16 KiB copy loop (tar headers from
`TarInfo.tobuf`, data in 1 MiB chunks) so a 1 GiB layer takes seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import os
import random
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1024 * 1024
_BLOCK = 512
# Level 1: generation speed matters more than the last percent of ratio; the tools under test
# move the compressed bytes as they are.
_GZIP_LEVEL = 1
_WORD_TEXT = (
    "return if else for while import from def class self value error config path name "
    "data list dict none true false int str bytes async await yield lambda with open "
    "request response status header digest layer manifest index blob tag registry"
)
_WORDS = _WORD_TEXT.split()


def _text_pool(size: int = 4 * 1024 * 1024) -> bytes:
    rng = random.Random("bench-text-pool")
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "    " * rng.randrange(4)
        line = indent + " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(2, 12))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


_POOL = _text_pool()


@dataclass(frozen=True)
class LayerSpec:
    label: str  # identity: the same label always gives the same bytes
    size: int  # uncompressed content bytes
    text_fraction: float


@dataclass(frozen=True)
class WrittenLayer:
    digest: str
    size: int
    diff_id: str


class _Sink:
    """Tar bytes in; gzip bytes out to a file; both hashed on the way."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.diff = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.zip = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
        self.tar_bytes = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.diff.update(data)
        self.tar_bytes += len(data)
        self._emit(self.zip.compress(data))

    def close(self) -> None:
        self._emit(self.zip.flush())

    def _emit(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self.out.write(data)


def _file_sizes(rng: random.Random, total: int) -> list[int]:
    sizes: list[int] = []
    while total > 0:
        n = min(total, int(2 ** rng.uniform(12, 23)))  # 4 KiB .. 8 MiB
        sizes.append(n)
        total -= n
    return sizes


def _write_file(sink: _Sink, rng: random.Random, name: str, size: int, text: bool) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    sink.write(info.tobuf(tarfile.PAX_FORMAT))
    header = f"# {name}\n".encode()[:size]
    sink.write(header)
    left = size - len(header)
    while left > 0:
        n = min(left, _CHUNK)
        if text:
            start = rng.randrange(len(_POOL) - n) if n < len(_POOL) else 0
            chunk = _POOL[start : start + n]
            chunk += _POOL[: n - len(chunk)]
        else:
            chunk = rng.randbytes(n)
        sink.write(chunk)
        left -= n
    if size % _BLOCK:
        sink.write(b"\0" * (_BLOCK - size % _BLOCK))


def write_layer(blobs_dir: Path, spec: LayerSpec) -> WrittenLayer:
    """Write the layer into `blobs_dir` (an OCI layout's `blobs/sha256`) and describe it."""
    rng = random.Random(spec.label)
    blobs_dir.mkdir(parents=True, exist_ok=True)
    tmp = blobs_dir / f".tmp-{os.getpid()}-{hashlib.sha1(spec.label.encode()).hexdigest()}"
    with open(tmp, "wb") as out:
        sink = _Sink(out)
        tag = hashlib.sha1(spec.label.encode()).hexdigest()[:12]
        for n, size in enumerate(_file_sizes(rng, spec.size)):
            text = rng.random() < spec.text_fraction
            name = f"usr/share/{tag}/{n:04d}.{'txt' if text else 'bin'}"
            _write_file(sink, rng, name, size, text)
        sink.write(b"\0" * (2 * _BLOCK))
        sink.close()
    digest = sink.digest.hexdigest()
    os.replace(tmp, blobs_dir / digest)
    return WrittenLayer(f"sha256:{digest}", sink.size, f"sha256:{sink.diff.hexdigest()}")


def write_blob(blobs_dir: Path, data: bytes) -> str:
    """Store small bytes (configs, manifests) in the layout; return their digest."""
    digest = hashlib.sha256(data).hexdigest()
    blobs_dir.mkdir(parents=True, exist_ok=True)
    path = blobs_dir / digest
    if not path.exists():
        path.write_bytes(data)
    return f"sha256:{digest}"
