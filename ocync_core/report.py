"""What a sync did: per-image results, totals, the exit code, and their text and JSON forms."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocync_core.errors import EXIT_AUTH, EXIT_FAILURE
from ocync_core.transfer import BlobStats

__all__ = ["EXIT_PARTIAL", "ImageResult", "SyncReport", "human_size"]

EXIT_PARTIAL = 1

SYNCED = "synced"
SKIPPED = "skipped"
FAILED = "failed"
WOULD_SYNC = "would-sync"


@dataclass
class ImageResult:
    """One (source tag, target) pair."""

    source: str
    target: str
    status: str
    digest: str = ""
    reason: str = ""
    blobs: BlobStats = field(default_factory=BlobStats)
    duration: float = 0.0
    auth_failure: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "status": self.status,
            "digest": self.digest,
            "reason": self.reason,
            "bytes": self.blobs.bytes,
            "blobs_transferred": self.blobs.transferred,
            "blobs_mounted": self.blobs.mounted,
            "blobs_skipped": self.blobs.skipped,
            "duration": round(self.duration, 3),
        }

    def line(self) -> str:
        """The one line printed for a synced or failed image (skipped ones are silent)."""
        if self.status == FAILED:
            return f"failed  {self.source} -> {self.target}: {self.reason}"
        note = f" ({self.reason})" if self.reason else ""
        verb = "would sync" if self.status == WOULD_SYNC else "synced"
        return (
            f"{verb}  {self.source} -> {self.target} {self.digest[:19]}{note} "
            f"[{self.blobs.transferred} blobs, {human_size(self.blobs.bytes)}, "
            f"{self.blobs.mounted} mounted]"
        )


@dataclass
class SyncReport:
    images: list[ImageResult] = field(default_factory=list)
    duration: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)  # failures that are no single image's

    def count(self, status: str) -> int:
        return sum(1 for image in self.images if image.status == status)

    @property
    def blobs(self) -> BlobStats:
        total = BlobStats()
        for image in self.images:
            total.add(image.blobs)
        return total

    @property
    def exit_code(self) -> int:
        failed = self.count(FAILED) + len(self.errors)
        done = len(self.images) - self.count(FAILED)
        if failed == 0 and not self.interrupted:
            return 0
        if done == 0:
            failures = [i for i in self.images if i.status == FAILED]
            if failures and not self.errors and all(i.auth_failure for i in failures):
                return EXIT_AUTH
            return EXIT_FAILURE
        return EXIT_PARTIAL

    def summary(self) -> str:
        blobs = self.blobs
        head = "interrupted: " if self.interrupted else ""
        return (
            f"{head}{self.count(SYNCED) + self.count(WOULD_SYNC)} images synced, "
            f"{self.count(SKIPPED)} skipped, {self.count(FAILED) + len(self.errors)} failed; "
            f"blobs {blobs.transferred} transferred, {blobs.mounted} mounted, "
            f"{blobs.skipped} skipped; {human_size(blobs.bytes)} in {self.duration:.2f}s"
        )

    def as_json(self) -> dict[str, object]:
        blobs = self.blobs
        return {
            "images": [image.as_json() for image in self.images],
            "errors": self.errors,
            "interrupted": self.interrupted,
            "totals": {
                "synced": self.count(SYNCED),
                "would_sync": self.count(WOULD_SYNC),
                "skipped": self.count(SKIPPED),
                "failed": self.count(FAILED) + len(self.errors),
                "blobs_transferred": blobs.transferred,
                "blobs_mounted": blobs.mounted,
                "blobs_skipped": blobs.skipped,
                "bytes": blobs.bytes,
                "duration": round(self.duration, 3),
            },
            "exit_code": self.exit_code,
        }


def human_size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
