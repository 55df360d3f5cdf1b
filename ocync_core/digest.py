"""Content digests (`algorithm:hex`) and a verifier that hashes a stream as it flows."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ocync_core.errors import DigestMismatch, InvalidDigest

__all__ = ["ALGORITHMS", "Digest", "DigestVerifier"]

# Hex length per algorithm, from the OCI image spec's registered algorithms.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_ALGORITHM_GRAMMAR = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_HEX = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest. Construct with `Digest.parse` or `Digest.of`."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InvalidDigest(
                f"digest algorithm {self.algorithm!r} is not supported "
                f"(expected one of {', '.join(ALGORITHMS)})"
            )
        want = ALGORITHMS[self.algorithm]
        if len(self.hex) != want or not _HEX.fullmatch(self.hex):
            raise InvalidDigest(
                f"digest {self.algorithm}:{self.hex[:80]!r} must have {want} lowercase hex "
                f"characters after '{self.algorithm}:'"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `algorithm:hex`; the error names what is wrong."""
        algorithm, sep, hex_part = text.partition(":")
        if not sep:
            raise InvalidDigest(f"digest {text[:100]!r} has no ':' between algorithm and hex")
        if not _ALGORITHM_GRAMMAR.fullmatch(algorithm):
            raise InvalidDigest(f"digest {text[:100]!r} has a malformed algorithm {algorithm!r}")
        return cls(algorithm, hex_part)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of `data`."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def verifier(self) -> DigestVerifier:
        return DigestVerifier(self)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """`sha256:0123456789ab`, for human output."""
        return f"{self.algorithm}:{self.hex[:12]}"


class DigestVerifier:
    """Hashes chunks as they stream past and checks them against an expected digest."""

    def __init__(self, expected: Digest, what: str = "blob") -> None:
        self.expected = expected
        self.size = 0
        self._what = what
        self._hash = hashlib.new(expected.algorithm)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def actual(self) -> Digest:
        return Digest(self.expected.algorithm, self._hash.hexdigest())

    def verify(self) -> None:
        """Raise `DigestMismatch` unless everything seen so far hashes to the expected digest."""
        actual = self.actual()
        if actual != self.expected:
            raise DigestMismatch(self.expected, actual, self._what)
