"""ACR's throttle policy: one window for reads, one for writes, each paced at the SKU's quota.

ACR limits a registry's ReadOps and WriteOps per minute by service tier ("Azure Container
Registry service tiers", https://learn.microsoft.com/azure/container-registry/container-registry-skus):
Basic 1,000 / 100, Standard 3,000 / 500, Premium 10,000 / 2,000. Every pull request counts
against the read quota and every push request against the write quota, whatever its kind, so
the actions of each share one window and one token bucket; a 429 on writes must not slow reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec

__all__ = [
    "READ_ACTIONS",
    "SKU_LIMITS",
    "WRITE_ACTIONS",
    "SkuLimits",
    "paced_rate",
    "throttle_policy",
]

READ = "read"
WRITE = "write"
OTHER = "other"

READ_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.MANIFEST_HEAD,
        Action.MANIFEST_GET,
        Action.BLOB_HEAD,
        Action.BLOB_GET,
        Action.BLOB_CHECK,
        Action.TAG_LIST,
        Action.REFERRERS,
    }
)
WRITE_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.MANIFEST_PUT,
        Action.UPLOAD_START,
        Action.UPLOAD_CHUNK,
        Action.UPLOAD_FINISH,
        Action.MOUNT,
    }
)


@dataclass(frozen=True)
class SkuLimits:
    """One service tier's documented request quotas."""

    reads_per_minute: int
    writes_per_minute: int

    def describe(self, sku: str) -> str:
        return (
            f"{self.reads_per_minute} reads/min, {self.writes_per_minute} writes/min "
            f"({sku.capitalize()})"
        )


SKU_LIMITS: dict[str, SkuLimits] = {
    "basic": SkuLimits(reads_per_minute=1000, writes_per_minute=100),
    "standard": SkuLimits(reads_per_minute=3000, writes_per_minute=500),
    "premium": SkuLimits(reads_per_minute=10000, writes_per_minute=2000),
}

# Our clock and ACR's differ, and the quotas are "minimum estimates": pace a tenth under them.
_PACE = 0.9


def paced_rate(per_minute: int) -> float:
    """Requests per second ocync sends against a quota of `per_minute`."""
    return per_minute / 60 * _PACE


def _spec(per_minute: int, initial: float) -> WindowSpec:
    rate = paced_rate(per_minute)
    # A small burst (a fifteenth of a second's worth, at least 1): the burst plus a second of
    # steady pacing stays under the quota's per-second share.
    return WindowSpec(initial=initial, rate=rate, burst=max(1, int(rate // 15)))


@cache
def throttle_policy(sku: str) -> ThrottlePolicy:
    """The policy for a registry of service tier `sku` (basic, standard, premium)."""
    limits = SKU_LIMITS[sku]
    return ThrottlePolicy(
        windows={
            READ: _spec(limits.reads_per_minute, initial=8),
            WRITE: _spec(limits.writes_per_minute, initial=4),
            OTHER: WindowSpec(initial=4),  # the ping: no quota is documented for it
        },
        window_of={
            **dict.fromkeys(READ_ACTIONS, READ),
            **dict.fromkeys(WRITE_ACTIONS, WRITE),
        },
        default_window=OTHER,
    )
