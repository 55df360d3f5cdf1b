"""AIMD windows, token buckets and the per-registry gate, on trio's mock clock.

Simulated registries are `httpx.MockTransport` handlers that sleep on the mock clock, so
every run is deterministic and takes no real time.
"""

from __future__ import annotations

import itertools
import math
import random

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec
from ocync_core.retry import RetryPolicy, with_retries
from ocync_core.throttle import AimdWindow, RegistryThrottle, TokenBucket, parse_budget

URL = "https://registry.example/v2/team/app/blobs/sha256:00"


class CapacityServer:
    """A registry that serves at most `capacity` requests at once and refuses the rest with 429."""

    def __init__(self, capacity: int, service: float = 0.05) -> None:
        self.capacity = capacity
        self.service = service
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self.refused = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.in_flight + 1 > self.capacity:
            self.refused += 1
            return httpx.Response(429)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.service)
        finally:
            self.in_flight -= 1
        self.served += 1
        return httpx.Response(200)


def single_window(initial: float = 4, cap: int | None = None, **spec: float) -> ThrottlePolicy:
    return ThrottlePolicy(
        windows={"all": WindowSpec(initial=initial, cap=cap, **spec)},  # type: ignore[arg-type]
        window_of={},
        default_window="all",
    )


async def throttled_get(
    throttle: RegistryThrottle, client: httpx.AsyncClient, action: Action, url: str = URL
) -> httpx.Response:
    async with throttle.slot(action) as ticket:
        response = await client.get(url)
        ticket.observe(response)
        return response


# -- the sawtooth ------------------------------------------------------------------------------


async def test_sawtooth_settles_between_half_and_full_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    capacity, total, workers, warmup = 12, 1000, 40, 0.5
    server = CapacityServer(capacity)
    throttle = RegistryThrottle(single_window(initial=4), max_concurrent=64)
    window = throttle.window("all")
    rng = random.Random(7)
    retry = RetryPolicy(attempts=20, base=0.01, max_delay=0.2)
    pending = iter(range(total))
    samples: list[float] = []
    done = trio.Event()

    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as client:

        async def worker() -> None:
            for _ in pending:
                response = await with_retries(
                    lambda: throttled_get(throttle, client, Action.BLOB_GET),
                    policy=retry,
                    describe="GET blob",
                    rng=rng,
                )
                assert response.status_code == 200

        async def sampler() -> None:
            await trio.sleep(warmup)
            window.reset_stats()
            while not done.is_set():
                samples.append(window.size)
                await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            async with trio.open_nursery() as workers_nursery:
                for _ in range(workers):
                    workers_nursery.start_soon(worker)
            done.set()

    elapsed = trio.current_time()
    mean_size = window.mean_size()
    mean_in_flight = window.mean_in_flight()
    refused_fraction = server.refused / (server.served + server.refused)
    print(
        f"\nsawtooth C={capacity}: {elapsed:.2f}s mock, mean window {mean_size:.2f} "
        f"(sampled {sum(samples) / len(samples):.2f}, range {min(samples):.2f}..{max(samples):.2f})"
        f", mean in flight {mean_in_flight:.2f}, final {window.size:.2f}, "
        f"halvings {window.halvings}, 429s {server.refused}/{server.served + server.refused}"
        f" = {refused_fraction:.1%}, server peak {server.peak}"
    )
    assert server.served == total
    assert capacity / 2 <= mean_size <= capacity
    assert capacity / 2 <= sum(samples) / len(samples) <= capacity
    # After warm-up the window only ever dips to half of C+1 and climbs to C+1 (the probe that
    # draws the 429): floor(size) stays within [C/2, C+1].
    assert min(samples) >= capacity / 2
    assert math.floor(max(samples)) <= capacity + 1
    assert capacity / 2 <= window.limit <= capacity + 1
    assert refused_fraction < 0.05
    assert window.halvings >= 5  # it really is a sawtooth, not a window parked below C
    assert server.peak <= capacity


# -- epochs ------------------------------------------------------------------------------------


async def test_ten_429s_in_one_epoch_halve_once(autojump_clock: trio.testing.MockClock) -> None:
    window = AimdWindow(16, cap=32, epoch=0.1)
    for _ in range(10):
        window.on_congestion()
        await trio.sleep(0.005)  # spread over 50 ms, well inside the epoch
    assert window.size == 8
    assert window.halvings == 1
    assert window.congestions == 10

    await trio.sleep(0.1)  # the epoch is over: the next 429 is a new congestion event
    assert window.on_congestion()
    assert window.size == 4
    assert window.halvings == 2


async def test_429_for_a_request_sent_before_the_halving_is_the_same_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    window = AimdWindow(16, cap=32, epoch=0.1)
    sent = trio.current_time()
    await trio.sleep(1)
    assert window.on_congestion(sent_at=sent)
    await trio.sleep(1)  # long after the epoch, but this request saw the old window
    assert not window.on_congestion(sent_at=sent)
    assert window.size == 8


async def test_additive_increase_adds_about_one_per_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    window = AimdWindow(8, cap=100)
    for _ in range(8):
        window.on_success()
    assert 8.9 < window.size < 9.0
    capped = AimdWindow(3.5, cap=4)
    for _ in range(100):
        capped.on_success()
    assert capped.size == 4


Op = tuple[str, float]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("success"), st.just(0.0)),
        st.tuples(st.just("congestion"), st.just(0.0)),
        st.tuples(st.just("advance"), st.floats(0.0, 1.0)),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(-10, 300, allow_nan=False),
    cap=st.integers(1, 200),
    epoch=st.floats(0.0, 0.5),
    ops=OPS,
)
def test_window_stays_within_one_and_cap(
    initial: float, cap: int, epoch: float, ops: list[Op]
) -> None:
    async def run() -> None:
        window = AimdWindow(initial, cap, epoch=epoch)
        assert 1 <= window.size <= cap
        for op, dt in ops:
            if op == "success":
                window.on_success()
            elif op == "congestion":
                window.on_congestion()
            else:
                clock.jump(dt)
            assert 1 <= window.size <= cap
            assert 1 <= window.limit <= cap

    clock = trio.testing.MockClock()
    trio.run(run, clock=clock)


async def test_window_hands_slots_over_in_fifo_order() -> None:
    window = AimdWindow(1, cap=4)
    order: list[int] = []
    await window.acquire()
    async with trio.open_nursery() as nursery:
        for i in range(3):

            async def waiter(i: int = i) -> None:
                async with window.slot():
                    order.append(i)
                    await trio.sleep(0)

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
        assert window.waiting == 3
        window.release()
    assert order == [0, 1, 2]
    assert window.in_flight == 0


async def test_growing_window_wakes_waiters() -> None:
    window = AimdWindow(1.9, cap=4)
    got = trio.Event()
    await window.acquire()

    async def second() -> None:
        await window.acquire()
        got.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert not got.is_set()
        window.on_success()  # 1.9 + 1/1.9 > 2: a second slot opens without any release
        await got.wait()
    assert window.in_flight == 2


async def test_cancelled_waiter_takes_no_slot() -> None:
    window = AimdWindow(1, cap=1)
    await window.acquire()
    with trio.move_on_after(0.01):
        await window.acquire()
    window.release()
    assert window.in_flight == 0
    assert window.waiting == 0


# -- token buckets -----------------------------------------------------------------------------


async def test_token_bucket_paces_to_rate(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(rate=10, burst=1)
    stamps: list[float] = []

    async def taker() -> None:
        await bucket.take()
        stamps.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(taker)
    assert len(stamps) == 100
    assert trio.current_time() - start >= 9.9
    _assert_paced(stamps, rate=10, burst=1)


async def test_token_bucket_allows_its_burst_then_paces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bucket = TokenBucket(rate=5, burst=3)
    stamps: list[float] = []
    for _ in range(13):
        await bucket.take()
        stamps.append(trio.current_time())
    assert stamps[:3] == [0.0, 0.0, 0.0]
    assert stamps[-1] == pytest.approx(2.0)  # 10 more tokens at 5 per second
    _assert_paced(stamps, rate=5, burst=3)


def _assert_paced(stamps: list[float], *, rate: float, burst: int) -> None:
    """No closed interval of length 1 s holds more than rate + burst takes."""
    stamps = sorted(stamps)
    for i, first in enumerate(stamps):
        inside = sum(1 for t in stamps[i:] if t <= first + 1.0 + 1e-9)
        assert inside <= rate + burst, (first, inside)


async def test_paced_requests_hold_no_window_slot(autojump_clock: trio.testing.MockClock) -> None:
    policy = single_window(initial=8, rate=10, burst=1)
    throttle = RegistryThrottle(policy, max_concurrent=16)
    window = throttle.window("all")
    bucket = throttle.bucket("all")
    assert bucket is not None
    peak_waiting = 0
    peak_in_flight = 0
    served: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal peak_waiting, peak_in_flight
        peak_waiting = max(peak_waiting, bucket.waiting)
        peak_in_flight = max(peak_in_flight, window.in_flight, throttle.aggregate.borrowed_tokens)
        await trio.sleep(0.02)  # shorter than the 0.1 s pacing interval
        served.append(trio.current_time())
        return httpx.Response(200)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(50):
            nursery.start_soon(throttled_get, throttle, client, Action.MANIFEST_PUT)
    assert len(served) == 50
    assert peak_waiting >= 40  # nearly everyone queued on the bucket ...
    assert peak_in_flight == 1  # ... while holding neither a window nor an aggregate slot
    assert window.peak_in_flight == 1


# -- isolation between windows -------------------------------------------------------------------


STORM_POLICY = ThrottlePolicy(
    windows={"storm": WindowSpec(initial=8), "calm": WindowSpec(initial=4)},
    window_of={Action.MANIFEST_PUT: "storm", Action.BLOB_GET: "calm"},
    default_window="calm",
)


async def _run_calm_traffic(
    with_storm: bool, span: float
) -> tuple[int, list[float], RegistryThrottle]:
    """Calm requests always succeed; storm requests (when on) are always refused with 429.

    Returns the calm requests completed within `span`, the calm window's size every 0.1 s,
    and the throttle.
    """
    throttle = RegistryThrottle(STORM_POLICY, max_concurrent=64)
    calm_done = 0
    calm_sizes: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manifests/storm"):
            await trio.sleep(0.005)
            return httpx.Response(429)
        await trio.sleep(0.05)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:

        async def calm_worker() -> None:
            nonlocal calm_done
            while True:
                response = await throttled_get(throttle, client, Action.BLOB_GET)
                assert response.status_code == 200
                calm_done += 1

        async def storm_worker() -> None:
            url = "https://registry.example/v2/team/app/manifests/storm"
            while True:
                response = await throttled_get(throttle, client, Action.MANIFEST_PUT, url)
                assert response.status_code == 429

        async def sampler() -> None:
            # Offset from the 0.05 s completions: at a tie, the scheduler's order would decide
            # whether a sample sees that instant's successes.
            await trio.sleep(0.025)
            while True:
                await trio.sleep(0.1)
                calm_sizes.append(throttle.window("calm").size)

        with trio.move_on_after(span):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sampler)
                for _ in range(40):
                    nursery.start_soon(calm_worker)
                if with_storm:
                    for _ in range(80):  # more storm workers than the aggregate limit
                        nursery.start_soon(storm_worker)
    return calm_done, calm_sizes, throttle


async def test_429_storm_leaves_other_windows_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 80 storm workers could fill the whole aggregate limit if they queued on it; they queue on
    # their own collapsed window instead. The span is not a multiple of the service time, so no
    # completion ties the deadline, and short enough that the calm window is still growing.
    span = 1.013
    calm_alone, sizes_alone, _ = await _run_calm_traffic(with_storm=False, span=span)
    calm_stormy, sizes_stormy, throttle = await _run_calm_traffic(with_storm=True, span=span)

    storm = throttle.window("storm")
    print(
        f"\ncalm requests alone {calm_alone}, during storm {calm_stormy}; calm window "
        f"{sizes_alone[-1]:.2f} vs {sizes_stormy[-1]:.2f}; storm window {storm.size} after "
        f"{storm.halvings} halvings, {storm.congestions} 429s"
    )
    assert storm.size == 1
    assert storm.halvings >= 3
    assert storm.congestions > 100
    assert sizes_stormy == sizes_alone  # the same trajectory, sample for sample
    assert all(b > a for a, b in itertools.pairwise(sizes_stormy))  # growing
    assert sizes_stormy[-1] > 2 * STORM_POLICY.windows["calm"].initial
    assert calm_stormy == calm_alone


# -- rate-limit budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        (" 7 ", 7),
        ("100;w=21600", 100),
        ("76;w=21600, 5;w=60", 5),
        ('"default";r=50;t=30', 50),
        ("0", 0),
        ("-3", 0),
        ("12.0", 12),
        ("", None),
        ("lots", None),
        ("nan", None),
    ],
)
def test_parse_budget(value: str, expected: int | None) -> None:
    assert parse_budget(value) == expected


async def test_observe_budget_and_discovery_pause(autojump_clock: trio.testing.MockClock) -> None:
    throttle = RegistryThrottle(single_window(), max_concurrent=8, budget_pause=1.0)
    assert throttle.policy.low_budget == 10

    async def pause() -> float:
        start = trio.current_time()
        await throttle.discovery_pause()
        return trio.current_time() - start

    assert await pause() == 0  # nothing known: no pause
    assert throttle.observe_budget(httpx.Headers({"RateLimit-Remaining": "100;w=21600"})) == 100
    assert not throttle.budget_low
    assert await pause() == 0

    assert throttle.observe_budget(httpx.Headers({"ratelimit-remaining": "5;w=21600"})) == 5
    assert throttle.budget_low
    half = await pause()
    assert half == pytest.approx(0.5)

    assert throttle.observe_budget({"X-RateLimit-Remaining": "0"}) == 0  # a plain dict too
    assert await pause() == pytest.approx(1.0)  # the lower the budget, the longer the pause

    assert throttle.observe_budget({"Content-Type": "text/plain"}) is None  # nothing new
    assert throttle.budget_remaining == 0
    assert throttle.observe_budget({"x-ratelimit-remaining": "garbage"}) is None

    assert throttle.observe_budget({"x-ratelimit-remaining": "500"}) == 500  # budget refilled
    assert await pause() == 0


async def test_ticket_observe_reads_status_and_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    responses = iter(
        [
            httpx.Response(200, headers={"RateLimit-Remaining": "3;w=60"}),
            httpx.Response(404),
            httpx.Response(503),
            httpx.Response(429),
        ]
    )

    async def handler(request: httpx.Request) -> httpx.Response:
        return next(responses)

    throttle = RegistryThrottle(single_window(initial=4), max_concurrent=8)
    window = throttle.window("all")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for _ in range(3):
            await throttled_get(throttle, client, Action.TAG_LIST)
        assert throttle.budget_remaining == 3
        assert window.successes == 2  # the 200 and the 404; the 503 is neutral
        grown = window.size
        assert grown > 4
        await throttled_get(throttle, client, Action.TAG_LIST)
    assert window.size == grown / 2
    assert throttle.snapshot() == {"all": grown / 2}


async def test_slot_without_report_and_with_exception_is_neutral() -> None:
    throttle = RegistryThrottle(single_window(initial=2), max_concurrent=8)
    window = throttle.window("all")
    async with throttle.slot(Action.PING):
        assert window.in_flight == 1
        assert throttle.aggregate.borrowed_tokens == 1
    with pytest.raises(RuntimeError):
        async with throttle.slot(Action.PING) as ticket:
            raise RuntimeError("boom")
    assert ticket.outcome is None
    assert window.size == 2
    assert window.in_flight == 0
    assert throttle.aggregate.borrowed_tokens == 0


async def test_one_task_may_hold_several_slots() -> None:
    throttle = RegistryThrottle(single_window(initial=4), max_concurrent=8)
    async with throttle.slot(Action.BLOB_GET), throttle.slot(Action.UPLOAD_FINISH):
        assert throttle.aggregate.borrowed_tokens == 2


def test_window_caps_come_from_spec_or_max_concurrent() -> None:
    policy = ThrottlePolicy(
        windows={"a": WindowSpec(initial=50), "b": WindowSpec(initial=2, cap=3)},
        window_of={Action.BLOB_GET: "a", Action.MANIFEST_PUT: "b"},
        default_window="unlisted",
    )
    throttle = RegistryThrottle(policy, max_concurrent=10)
    assert throttle.window_for(Action.BLOB_GET).cap == 10
    assert throttle.window_for(Action.BLOB_GET).size == 10  # the initial size is capped too
    assert throttle.window_for(Action.MANIFEST_PUT).cap == 3
    assert throttle.window_for(Action.PING).size == WindowSpec().initial
    assert set(throttle.snapshot()) == {"a", "b", "unlisted"}
