"""Docker Hub's pull quota, emulated on a `FaultProxy` for the ``dockerhub`` environment."""

from __future__ import annotations

import threading
import time
from collections import deque

from ocync_conformance.proxy import FaultProxy, ProxyAction, RequestView

__all__ = ["PULL_WINDOW", "PullQuota"]

PULL_WINDOW = 6 * 3600  # Docker Hub's window: `w=21600` in its RateLimit headers
_REFUSAL = (
    "You have reached your pull rate limit. You may increase the limit by authenticating "
    "and upgrading"
)


class PullQuota:
    """Manifest GETs allowed in a sliding window; HEADs are free and only read the figures.

    Installed on a proxy (`install`), every manifest response carries ``RateLimit-Limit`` and
    ``RateLimit-Remaining`` as ``<n>;w=<seconds>``, and a GET beyond the quota is refused with
    429 ``TOOMANYREQUESTS``, as Docker Hub does.
    """

    def __init__(self, limit: int, window: float = PULL_WINDOW) -> None:
        if limit < 1:
            raise ValueError(f"a pull quota allows at least one pull, got {limit}")
        self.limit = limit
        self.window = window
        self._pulls: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Pulls counted in the current window."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._pulls)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def exhausted(self, request: RequestView) -> bool:
        """The `when` of the refusing rule: no pull is left for this GET."""
        return self.remaining == 0

    def charge(self, request: RequestView) -> dict[str, str]:
        """The header source of the figures: counts a GET, then reports what is left."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if request.method == "GET":
                self._pulls.append(now)
            left = max(0, self.limit - len(self._pulls))
        return self.headers(left)

    def headers(self, remaining: int) -> dict[str, str]:
        window = int(self.window)
        return {
            "RateLimit-Limit": f"{self.limit};w={window}",
            "RateLimit-Remaining": f"{remaining};w={window}",
        }

    def install(self, proxy: FaultProxy) -> None:
        """Make the quota part of the registry behind `proxy` (rules that survive resets)."""
        # The refusal first: a GET it stops is neither counted nor given the figures twice.
        proxy.emulate(
            proxy.fail(
                ProxyAction.MANIFEST_GET,
                429,
                code="TOOMANYREQUESTS",
                message=_REFUSAL,
                headers=self.headers(0),
                when=self.exhausted,
                name="pull-quota",
            )
        )
        proxy.emulate(
            proxy.add_headers(
                [ProxyAction.MANIFEST_HEAD, ProxyAction.MANIFEST_GET],
                self.charge,
                name="pull-quota-headers",
            )
        )

    def _expire(self, now: float) -> None:
        while self._pulls and self._pulls[0] <= now - self.window:
            self._pulls.popleft()
