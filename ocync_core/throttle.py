"""Adaptive per-registry throttling: AIMD concurrency windows, token buckets, budget headers.

Registries punish clients that guess their capacity, so ocync learns it by feedback the way TCP
does: each window grows by ``1/size`` per success (about one slot per round trip) and halves on a
429, at most once per congestion epoch. A `RegistryThrottle` holds one window per window key of
the registry's `ThrottlePolicy`, an optional token bucket in front of each (documented TPS caps),
and one aggregate limit on the registry's requests in flight.

Every clock read is `trio.current_time()`, so the whole module runs deterministically under
`trio.testing.MockClock`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AimdWindow",
    "RegistryThrottle",
    "Ticket",
    "TokenBucket",
    "parse_budget",
]

log = logging.getLogger(__name__)

# The longest pause `discovery_pause` takes, reached when the remaining budget is zero. Short on
# purpose: it slows discovery down while transfers drain, it does not wait out a quota window.
DEFAULT_BUDGET_PAUSE = 1.0


class AimdWindow:
    """An additive-increase / multiplicative-decrease concurrency window.

    `size` is a float; the number of requests allowed in flight is ``floor(size)``, always within
    ``[1, cap]``. `on_success` adds ``1/size`` (so a full window of successes adds one slot);
    `on_congestion` halves, but congestion reported within `epoch` seconds of the last halving
    (or by a request sent before it) belongs to the same event: ten simultaneous 429s are one
    overload, not ten.

    Slots are handed over directly to the longest waiter when they free up or the window grows,
    so waiting is FIFO and a woken waiter cannot lose its slot to a newcomer.
    """

    def __init__(self, initial: float, cap: int, *, epoch: float = 0.1) -> None:
        if cap < 1:
            raise ValueError(f"window cap must be at least 1, got {cap}")
        if not math.isfinite(initial):
            raise ValueError(f"window initial size must be finite, got {initial}")
        self.cap = cap
        self.epoch = epoch
        self._size = min(float(cap), max(1.0, float(initial)))
        self._in_flight = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._last_halving = -math.inf
        self.halvings = 0
        self.successes = 0
        self.congestions = 0  # every congestion report, including those folded into one epoch
        self.peak_in_flight = 0
        # Time-weighted integrals for mean in-flight and mean size, started lazily on first use
        # so that constructing a window needs no running trio loop.
        self._stats_start: float | None = None
        self._stats_last = 0.0
        self._in_flight_area = 0.0
        self._size_area = 0.0

    # -- state ---------------------------------------------------------------------------------

    @property
    def size(self) -> float:
        return self._size

    @property
    def limit(self) -> int:
        """Requests allowed in flight now: ``floor(size)``, never below 1."""
        return max(1, math.floor(self._size))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._lot)

    # -- slots ---------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for a slot. Cancellation while waiting takes none."""
        # Checkpoint before taking a slot, not after: under load a trip through trio's run
        # queue takes milliseconds, and a slot held meanwhile is capacity the registry never sees.
        await trio.lowlevel.checkpoint()
        if self._in_flight < self.limit and not self._lot:
            self._set_in_flight(self._in_flight + 1)
            return
        # `_wake` counts the slot as ours before unparking us, so when park returns we hold it;
        # a task that is already rescheduled can no longer be cancelled out of park.
        await self._lot.park()

    def release(self) -> None:
        if self._in_flight <= 0:
            raise RuntimeError("AimdWindow.release() without a matching acquire()")
        self._set_in_flight(self._in_flight - 1)
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _wake(self) -> None:
        free = self.limit - self._in_flight
        if free > 0 and self._lot:
            woken = self._lot.unpark(count=free)
            self._set_in_flight(self._in_flight + len(woken))

    # -- feedback ------------------------------------------------------------------------------

    def on_success(self) -> None:
        self.successes += 1
        if self._size >= self.cap:
            return
        self._set_size(min(float(self.cap), self._size + 1.0 / self._size))
        self._wake()

    def on_congestion(self, *, sent_at: float | None = None) -> bool:
        """Report an overload (a 429); returns True when it halved the window.

        `sent_at` is when the refused request was sent: a request sent before the last halving
        was refused for the old, larger window and says nothing about the new one.
        """
        self.congestions += 1
        now = trio.current_time()
        if now - self._last_halving < self.epoch:
            return False
        if sent_at is not None and sent_at < self._last_halving:
            return False
        self._last_halving = now
        self.halvings += 1
        self._set_size(max(1.0, self._size / 2.0))
        return True

    # -- statistics ----------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Restart the time-weighted means (e.g. after a warm-up) and the in-flight peak."""
        now = trio.current_time()
        self._stats_start = self._stats_last = now
        self._in_flight_area = self._size_area = 0.0
        self.peak_in_flight = self._in_flight

    def mean_in_flight(self) -> float:
        """Time-weighted mean of requests in flight since the first use or `reset_stats`."""
        self._accumulate()
        return self._per_second(self._in_flight_area, self._in_flight)

    def mean_size(self) -> float:
        """Time-weighted mean window size since the first use or `reset_stats`."""
        self._accumulate()
        return self._per_second(self._size_area, self._size)

    def _per_second(self, area: float, current: float) -> float:
        span = self._stats_last - (self._stats_start or 0.0)
        return area / span if span > 0 else float(current)

    def _accumulate(self) -> None:
        now = trio.current_time()
        if self._stats_start is None:
            self._stats_start = self._stats_last = now
            return
        elapsed = now - self._stats_last
        if elapsed > 0:
            self._in_flight_area += self._in_flight * elapsed
            self._size_area += self._size * elapsed
            self._stats_last = now

    def _set_in_flight(self, value: int) -> None:
        self._accumulate()
        self._in_flight = value
        self.peak_in_flight = max(self.peak_in_flight, value)

    def _set_size(self, value: float) -> None:
        self._accumulate()
        self._size = value

    def __repr__(self) -> str:
        return (
            f"AimdWindow(size={self._size:.2f}, cap={self.cap}, in_flight={self._in_flight}, "
            f"waiting={self.waiting}, halvings={self.halvings})"
        )


class TokenBucket:
    """Paces requests to at most `rate` per second, with bursts of up to `burst`.

    Implemented as GCRA (the "virtual scheduling" form of a token bucket): it keeps the
    theoretical arrival time of the next request and sleeps *until* an absolute instant, so no
    float remainder can leave it spinning on sleeps too small to move the clock. The bucket
    starts full. Waiters are served in arrival order (a `trio.Lock` is FIFO), and a waiter
    cancelled while sleeping takes no token.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"token bucket rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"token bucket burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tolerance = (burst - 1) / rate
        # The theoretical arrival time of the next request is `_origin + _count / rate`: computed
        # from an anchor rather than summed interval by interval, so a long run does not drift
        # (100 takes at 10/s end at exactly 9.9 s, not 9.8999999).
        self._origin = -math.inf
        self._count = 0
        self._lock = trio.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Tasks inside `take` that have not got their token yet."""
        return self._waiting

    async def take(self) -> None:
        self._waiting += 1
        try:
            async with self._lock:
                now = trio.current_time()
                if self._origin + self._count / self.rate < now:
                    self._origin, self._count = now, 0  # idle: the schedule restarts from now
                # Up to `burst` requests may run ahead of the steady schedule.
                await trio.sleep_until(self._origin + self._count / self.rate - self._tolerance)
                self._count += 1
        finally:
            self._waiting -= 1


class Ticket:
    """One request's pass through a `RegistryThrottle` slot; the caller reports its outcome.

    Only the first report counts. A slot left without a report (the request raised) feeds the
    window nothing: a connection error is not evidence about the registry's capacity.
    """

    def __init__(self, throttle: RegistryThrottle, window: AimdWindow, key: str) -> None:
        self._throttle = throttle
        self._window = window
        self.window_key = key
        self.sent_at = trio.current_time()
        self.outcome: str | None = None  # "ok", "congested", "neutral"

    def ok(self) -> None:
        """The registry served the request: the window may grow."""
        if self.outcome is None:
            self.outcome = "ok"
            self._window.on_success()

    def congested(self) -> None:
        """The registry refused for load (429): the window halves, once per epoch."""
        if self.outcome is None:
            self.outcome = "congested"
            if self._window.on_congestion(sent_at=self.sent_at):
                log.debug("window %s halved to %.2f", self.window_key, self._window.size)

    def neutral(self) -> None:
        """An answer that says nothing about capacity; later reports are ignored."""
        if self.outcome is None:
            self.outcome = "neutral"

    def report(self, status: int) -> None:
        """Report by status: 429 is congestion, other 5xx neutral, anything else success.

        A 404 or 401 is a prompt answer from a registry that had capacity for it; a 5xx may be
        overload or a fault, and halving on faults would starve a registry that is merely flaky.
        """
        if status == 429:
            self.congested()
        elif status >= 500:
            self.neutral()
        else:
            self.ok()

    def observe(self, response: httpx.Response) -> None:
        """`report` the response's status and feed its rate-limit headers to the throttle."""
        self._throttle.observe_budget(response.headers)
        self.report(response.status_code)


class RegistryThrottle:
    """The concurrency gate of one registry: per-window AIMD, token buckets, aggregate limit.

    Windows (and their buckets) are created lazily from `policy.windows`; a window key the
    policy names but does not describe gets a default `WindowSpec`. A window's cap is its spec's
    `cap`, else `max_concurrent`.
    """

    def __init__(
        self,
        policy: ThrottlePolicy,
        max_concurrent: int,
        *,
        epoch: float = 0.1,
        budget_pause: float = DEFAULT_BUDGET_PAUSE,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.policy = policy
        self.max_concurrent = max_concurrent
        self.epoch = epoch
        self.budget_pause = budget_pause
        self.aggregate = trio.CapacityLimiter(max_concurrent)
        self._windows: dict[str, AimdWindow] = {}
        self._buckets: dict[str, TokenBucket | None] = {}
        self.budget_remaining: int | None = None

    def window(self, key: str) -> AimdWindow:
        """The window for a window key, created on first use."""
        window = self._windows.get(key)
        if window is None:
            spec = self.policy.windows.get(key, WindowSpec())
            cap = min(spec.cap, self.max_concurrent) if spec.cap else self.max_concurrent
            window = self._windows[key] = AimdWindow(spec.initial, cap, epoch=self.epoch)
            self._buckets[key] = TokenBucket(spec.rate, spec.burst) if spec.rate else None
        return window

    def bucket(self, key: str) -> TokenBucket | None:
        self.window(key)
        return self._buckets[key]

    def window_for(self, action: Action) -> AimdWindow:
        return self.window(self.policy.window_for(action))

    @asynccontextmanager
    async def slot(self, action: Action) -> AsyncIterator[Ticket]:
        """Hold one request slot for `action`; report the outcome on the yielded `Ticket`.

        Order of waiting: the token bucket first (a paced request holds no slot while it waits
        for its turn), then the action's window, then the registry's aggregate limit. The window
        comes before the aggregate on purpose: requests queued behind a small or collapsed window
        must not sit on aggregate slots, or a 429 storm in one window would starve the others.
        """
        key = self.policy.window_for(action)
        window = self.window(key)
        bucket = self._buckets[key]
        if bucket is not None:
            await bucket.take()
        await window.acquire()
        try:
            # A private borrower per slot: one task may hold several slots at once (a blob GET
            # streaming into an upload PUT), which a task-keyed CapacityLimiter would refuse.
            borrower = object()
            try:
                self.aggregate.acquire_on_behalf_of_nowait(borrower)  # the window checkpointed
            except trio.WouldBlock:
                await self.aggregate.acquire_on_behalf_of(borrower)
            try:
                yield Ticket(self, window, key)
            finally:
                self.aggregate.release_on_behalf_of(borrower)
        finally:
            window.release()

    # -- rate-limit budget ---------------------------------------------------------------------

    def observe_budget(self, headers: Mapping[str, str]) -> int | None:
        """Read the remaining request budget from response headers; returns it when present.

        The policy's `budget_headers` are read (case-insensitively when given `httpx.Headers`);
        the tightest value announced wins. Headers that do not parse are ignored.
        """
        found: list[int] = []
        for name in self.policy.budget_headers:
            value = _header(headers, name)
            if value is None:
                continue
            parsed = parse_budget(value)
            if parsed is not None:
                found.append(parsed)
        if not found:
            return None
        self.budget_remaining = min(found)
        if self.budget_low:
            log.debug("rate-limit budget low: %d requests remaining", self.budget_remaining)
        return self.budget_remaining

    @property
    def budget_low(self) -> bool:
        return self.budget_remaining is not None and self.budget_remaining < self.policy.low_budget

    def discovery_pause_seconds(self) -> float:
        """How long `discovery_pause` sleeps now: zero unless the budget is low, then more the
        lower it is, up to `budget_pause` at an exhausted budget."""
        if not self.budget_low:
            return 0.0
        assert self.budget_remaining is not None
        low = max(1, self.policy.low_budget)
        shortfall = (low - max(0, self.budget_remaining)) / low
        return self.budget_pause * min(1.0, shortfall)

    async def discovery_pause(self) -> None:
        """Awaited before each discovery request: slows discovery while the budget is low."""
        pause = self.discovery_pause_seconds()
        if pause > 0:
            await trio.sleep(pause)
        else:
            await trio.lowlevel.checkpoint()

    # -- metrics -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        """The current size of every window created so far, by window key."""
        return {key: window.size for key, window in self._windows.items()}

    @property
    def windows(self) -> Mapping[str, AimdWindow]:
        return self._windows


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict is case-sensitive; httpx.Headers is not and already answered above.
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_budget(value: str) -> int | None:
    """The remaining budget a rate-limit header announces, or None when it does not parse.

    Accepts a plain integer (``x-ratelimit-remaining: 42``), the IETF draft item form with
    parameters (``RateLimit-Remaining: 100;w=21600``, Docker Hub), and structured items
    carrying ``r=`` (``"default";r=50;t=30``). A list (several quota policies) gives its
    smallest value.
    """
    values: list[int] = []
    for item in value.split(","):
        parts = [part.strip() for part in item.split(";")]
        remaining: str | None = None
        for param in parts[1:]:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "r":
                remaining = raw.strip()
        if remaining is None:
            remaining = parts[0]
        try:
            number = int(remaining)
        except ValueError:
            try:
                as_float = float(remaining)
            except ValueError:
                continue
            if not math.isfinite(as_float):
                continue
            number = math.floor(as_float)
        values.append(max(0, number))
    return min(values) if values else None
