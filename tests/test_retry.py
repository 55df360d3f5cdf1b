"""Retries, backoff and Retry-After, over httpx.MockTransport on trio's mock clock."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from ocync_core.errors import TransferError
from ocync_core.retry import (
    MAX_RETRY_AFTER,
    RETRYABLE_STATUSES,
    RetryEvent,
    RetryExhausted,
    RetryPolicy,
    describe_request,
    is_retryable_exception,
    parse_retry_after,
    with_retries,
)

NOW = 1_700_000_000.0
UPLOAD = "https://registry.example/v2/team/app/blobs/uploads/abc?_state=SECRET&digest=sha256:00"
FAST = RetryPolicy(attempts=5, base=0.1, factor=2.0, max_delay=1.0, jitter=0.5)


# -- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("120", 120.0),
        ("3600", MAX_RETRY_AFTER),  # long but plausible: capped
        ("999999", None),  # more than a day: absurd, ignored
        ("-1", None),
        ("-0.5", None),
        ("soon", None),
        ("2 seconds", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
    ],
)
def test_parse_retry_after_seconds_and_garbage(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now_wall=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    in_30s = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(in_30s, now_wall=NOW) == pytest.approx(30)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(past, now_wall=NOW) == 0.0  # "retry now"
    in_a_week = email.utils.formatdate(NOW + 7 * 86400, usegmt=True)
    assert parse_retry_after(in_a_week, now_wall=NOW) is None
    in_an_hour = email.utils.formatdate(NOW + 3600, usegmt=True)
    assert parse_retry_after(in_an_hour, now_wall=NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("Wed, 32 Foo 2015 07:28:00 GMT", now_wall=NOW) is None
    # RFC 850 and asctime forms are HTTP-dates too; the zone-less asctime form is UTC.
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(NOW + 10))
    assert parse_retry_after(asctime, now_wall=NOW) == pytest.approx(10)


# -- the backoff -------------------------------------------------------------------------------


class FixedDraw(random.Random):
    """A Random whose `random()` always answers the same number."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_delay_grows_then_caps() -> None:
    policy = RetryPolicy(attempts=10, base=0.5, factor=2.0, max_delay=30.0, jitter=0.5)
    highs = [policy.delay(n, None, FixedDraw(0.0)) for n in range(1, 12)]
    lows = [policy.delay(n, None, FixedDraw(0.999999)) for n in range(1, 12)]
    assert highs[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert all(h <= 30.0 for h in highs)
    for n in range(len(highs) - 1):
        assert lows[n] <= highs[n]
        if highs[n + 1] < 30.0:
            # Equal jitter with factor 2: below the cap, the next attempt's range starts where
            # this one's ends, so a later retry never waits less than an earlier one.
            assert lows[n + 1] >= highs[n] - 1e-5
    assert policy.delay(1000, None) <= 30.0  # no overflow for absurd attempt numbers


def test_delay_honours_retry_after() -> None:
    assert FAST.delay(1, 2.0, FixedDraw(0.5)) == 2.0
    assert FAST.delay(1, 0.0, FixedDraw(0.0)) == 0.1  # a small Retry-After keeps the backoff
    assert FAST.delay(3, 120.0) == 120.0  # above max_delay: the registry's word wins


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValueError):
        RetryPolicy(factor=0.5)


@settings(max_examples=300, deadline=None)
@given(
    attempts=st.integers(1, 10),
    base=st.floats(0, 10),
    factor=st.floats(1, 10),
    max_delay=st.floats(0, 100),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 500),
    retry_after=st.none() | st.floats(0, MAX_RETRY_AFTER),
    seed=st.integers(0, 2**32),
)
def test_delay_bounds(
    attempts: int,
    base: float,
    factor: float,
    max_delay: float,
    jitter: float,
    attempt: int,
    retry_after: float | None,
    seed: int,
) -> None:
    policy = RetryPolicy(attempts, base, factor, max_delay, jitter)
    delay = policy.delay(attempt, retry_after, random.Random(seed))
    assert delay >= 0
    if retry_after is not None:
        assert delay >= retry_after
    assert delay <= max(max_delay, retry_after or 0.0)


# -- with_retries over a mock transport ----------------------------------------------------------


def scripted(
    *steps: httpx.Response | type[Exception],
) -> tuple[httpx.AsyncClient, list[float]]:
    """A client whose transport plays `steps` in order (the last one repeats forever)."""
    times: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        step = steps[min(len(times), len(steps) - 1)]
        times.append(trio.current_time())
        if isinstance(step, type):
            raise step("connection refused", request=request)
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), times


def sender(client: httpx.AsyncClient, method: str = "GET", url: str = UPLOAD) -> Callable:
    return lambda: client.request(method, url)


async def test_retry_after_2_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    client, times = scripted(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200))
    events: list[RetryEvent] = []
    async with client:
        response = await with_retries(
            sender(client), policy=FAST, describe="GET x", on_retry=events.append
        )
    assert response.status_code == 200
    assert len(times) == 2
    assert times[1] - times[0] >= 2.0  # the backoff alone would have been ~0.1 s
    assert events[0].status == 429 and events[0].retry_after == 2.0 and events[0].delay == 2.0


async def test_retry_after_http_date_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    date = email.utils.formatdate(NOW + 5, usegmt=True)
    client, times = scripted(
        httpx.Response(503, headers={"Retry-After": date}), httpx.Response(201)
    )
    async with client:
        response = await with_retries(
            sender(client, "PUT"), policy=FAST, describe="PUT x", wall_clock=lambda: NOW
        )
    assert response.status_code == 201
    assert times[1] - times[0] == pytest.approx(5.0)


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
async def test_retryable_status_then_success(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    client, times = scripted(httpx.Response(status), httpx.Response(200))
    async with client:
        response = await with_retries(sender(client), policy=FAST, describe="GET x")
    assert response.status_code == 200
    assert len(times) == 2
    assert 0.05 <= times[1] - times[0] <= 0.1  # equal jitter on a 0.1 s base


async def test_connection_error_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    client, times = scripted(httpx.ConnectError, httpx.ReadTimeout, httpx.Response(200))
    events: list[RetryEvent] = []
    async with client:
        response = await with_retries(
            sender(client), policy=FAST, describe="GET x", on_retry=events.append
        )
    assert response.status_code == 200
    assert len(times) == 3
    assert [type(e.error) for e in events] == [httpx.ConnectError, httpx.ReadTimeout]
    assert times[2] - times[1] >= times[1] - times[0]  # the backoff grows


async def test_exhausted_on_exceptions_raises_naming_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, times = scripted(httpx.Response(503), httpx.ConnectError)
    async with client:
        with pytest.raises(RetryExhausted) as caught:
            await with_retries(
                sender(client, "PATCH"),
                policy=FAST,
                describe=describe_request("PATCH", UPLOAD),
            )
    error = caught.value
    assert isinstance(error, TransferError)
    assert len(times) == FAST.attempts == error.attempts
    assert isinstance(error.last_error, httpx.ConnectError)
    assert isinstance(error.__cause__, httpx.ConnectError)
    message = str(error)
    assert "PATCH https://registry.example/v2/team/app/blobs/uploads/abc" in message
    assert "SECRET" not in message and "_state" not in message
    assert "ConnectError: connection refused" in message
    assert "5 attempts" in message


async def test_exhausted_on_status_returns_the_last_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
    client, times = scripted(httpx.Response(429, content=body))
    async with client:
        response = await with_retries(sender(client), policy=FAST, describe="GET x")
        # Returned open, so the caller reads the registry's message into a RegistryError.
        assert response.status_code == 429
        assert b"slow down" in await response.aread()
    assert len(times) == FAST.attempts


async def test_not_retryable_status_is_returned_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, times = scripted(httpx.Response(404), httpx.Response(200))
    async with client:
        response = await with_retries(sender(client), policy=FAST, describe="GET x")
    assert response.status_code == 404
    assert len(times) == 1


async def test_not_retryable_exception_propagates_at_once() -> None:
    client, times = scripted(httpx.UnsupportedProtocol, httpx.Response(200))
    async with client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await with_retries(sender(client), policy=FAST, describe="GET x")
    assert len(times) == 1


async def test_single_attempt_policy_does_not_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, times = scripted(httpx.ConnectError)
    async with client:
        with pytest.raises(RetryExhausted, match="1 attempts"):
            await with_retries(sender(client), policy=RetryPolicy(attempts=1), describe="GET x")
    assert len(times) == 1


async def test_cancellation_during_backoff_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, times = scripted(httpx.Response(503, headers={"Retry-After": "60"}))
    async with client:
        with trio.move_on_after(10) as scope:
            await with_retries(sender(client), policy=FAST, describe="GET x")
    assert scope.cancelled_caught
    assert len(times) == 1


def test_describe_request_drops_query_and_credentials() -> None:
    described = describe_request("put", "https://user:pw@reg.example:5000/v2/a/b?sig=SECRET#x")
    assert described == "PUT https://reg.example:5000/v2/a/b"


def test_certificate_failures_are_not_retryable() -> None:
    import ssl

    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert not is_retryable_exception(error)
    wrapped = httpx.ConnectError("handshake failed")
    wrapped.__cause__ = ssl.SSLCertVerificationError("self-signed certificate")
    assert not is_retryable_exception(wrapped)
    assert is_retryable_exception(httpx.ConnectError("refused"))
    assert is_retryable_exception(httpx.PoolTimeout("pool"))
    assert is_retryable_exception(httpx.RemoteProtocolError("peer closed"))
    assert not is_retryable_exception(httpx.LocalProtocolError("ours"))
