"""Retries with exponential backoff and jitter, honouring `Retry-After`.

A request is retried on 408, 429 and the 5xx statuses that mean "try again" (500, 502, 503,
504), and on transport errors that are plausibly transient (connect/read/write failures,
timeouts, a peer that broke the protocol). Every sleep is `trio.sleep`, so tests run under
`trio.testing.MockClock`.

`with_retries` re-invokes a *factory*: each attempt must build and send a fresh request, because
a streamed body cannot be replayed and a retried upload must open a new upload session.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC

import httpx
import trio

from ocync_core.errors import TransferError

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRYABLE_EXCEPTIONS",
    "RETRYABLE_STATUSES",
    "RetryEvent",
    "RetryExhausted",
    "RetryPolicy",
    "describe_request",
    "is_certificate_error",
    "is_retryable_exception",
    "parse_retry_after",
    "with_retries",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

# Transient transport failures. Deliberately not all of httpx.TransportError: UnsupportedProtocol
# and LocalProtocolError are our own mistakes, and a ProxyError is configuration; retrying them
# only delays the error.
RETRYABLE_EXCEPTIONS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,  # connect, read, write and pool timeouts
    httpx.NetworkError,  # ConnectError, ReadError, WriteError, CloseError
    httpx.RemoteProtocolError,  # the peer dropped the connection mid-response
)

# Longest wait a Retry-After may impose: a registry asking for more is capped to this (the next
# attempt then gets a fresh answer). Beyond `_ABSURD_RETRY_AFTER` the value is taken for garbage
# or a skewed clock and ignored, as if absent.
MAX_RETRY_AFTER = 300.0
_ABSURD_RETRY_AFTER = 86_400.0

_SECONDS = re.compile(r"^\d+(\.\d+)?$")


def parse_retry_after(value: str | None, *, now_wall: float) -> float | None:
    """Seconds to wait according to a `Retry-After` header value, or None when unusable.

    Accepts delta-seconds (``"2"``, also ``"1.5"``) and an HTTP-date, taken relative to
    `now_wall` (a wall-clock `time.time()` value; dates without a zone are UTC). A date in the
    past means "now" (0.0). Malformed and negative values give None. A value above one day is
    absurd and gives None; a value between `MAX_RETRY_AFTER` (300 s) and one day is capped at
    `MAX_RETRY_AFTER`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _SECONDS.match(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # older Pythons returned None for unparsable dates
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - now_wall)
    if not math.isfinite(seconds) or seconds > _ABSURD_RETRY_AFTER:
        return None
    return min(seconds, MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    `attempts` counts every try, the first included. The backoff before retry number ``n`` (after
    failed attempt ``n``) is ``b = min(max_delay, base * factor**(n-1))``, jittered downward to a
    uniform value in ``[b * (1 - jitter), b]``: ``jitter=0.5`` is "equal jitter", ``jitter=1``
    "full jitter", ``jitter=0`` none. Equal jitter keeps a floor under the wait (no hammering
    retries) while still spreading clients apart, and with ``factor >= 2`` the ranges of
    successive attempts do not overlap, so the delays never shrink before the cap.
    """

    attempts: int = 5
    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not (self.base >= 0 and self.max_delay >= 0 and self.factor >= 1):
            raise ValueError("base and max_delay must be >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def backoff(self, attempt: int) -> float:
        """The un-jittered backoff after failed attempt `attempt` (1-based), capped."""
        try:
            raw = self.base * self.factor ** max(0, attempt - 1)
        except OverflowError:
            raw = math.inf
        return min(self.max_delay, raw)

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt `attempt`: jittered backoff, never less than
        `retry_after` (the registry's `Retry-After`: no retry before it) when given."""
        backoff = self.backoff(attempt)
        draw = (rng or random).random()
        wait = backoff * (1.0 - self.jitter * draw)
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait


class RetryExhausted(TransferError):
    """Every attempt failed on a transport error; names the request, the last error and count."""

    def __init__(
        self,
        describe: str,
        attempts: int,
        last_error: BaseException | None = None,
        last_status: int | None = None,
    ) -> None:
        self.describe = describe
        self.attempts = attempts
        self.last_error = last_error
        self.last_status = last_status
        if last_error is not None:
            text = str(last_error)
            last = f"{type(last_error).__name__}: {text}" if text else type(last_error).__name__
        else:
            last = f"status {last_status}"
        super().__init__(f"{describe}: gave up after {attempts} attempts (last: {last})")


@dataclass(frozen=True)
class RetryEvent:
    """Passed to `on_retry` before each backoff sleep."""

    describe: str
    attempt: int  # the attempt that failed, 1-based
    delay: float  # seconds about to be slept
    status: int | None = None
    error: BaseException | None = None
    retry_after: float | None = None


def describe_request(method: str, url: str | httpx.URL) -> str:
    """``METHOD url`` without query or userinfo: upload locations carry session state (and
    sometimes signatures) in their query, which must not reach logs or error messages."""
    parsed = httpx.URL(url)
    return f"{method.upper()} {parsed.copy_with(query=None, fragment=None, userinfo=b'')}"


def is_certificate_error(error: BaseException) -> bool:
    """True when a TLS certificate was refused anywhere in the exception's chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_retryable_exception(error: BaseException) -> bool:
    """A transient transport failure; a TLS certificate refusal is not transient."""
    return isinstance(error, RETRYABLE_EXCEPTIONS) and not is_certificate_error(error)


async def with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    policy: RetryPolicy,
    describe: str,
    on_retry: Callable[[RetryEvent], None] | None = None,
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES,
    rng: random.Random | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> httpx.Response:
    """Call `send` until it returns a non-retryable response or `policy.attempts` run out.

    - A response with a retryable status is closed (``aclose``) and retried after
      ``policy.delay`` (at least its `Retry-After`). When the attempts run out on a status, the
      **last response is returned, open and unread**, so the caller turns it into a
      `RegistryError` carrying the registry's own message, as for any other error status.
    - A retryable transport exception is retried likewise; when the attempts run out on one,
      `RetryExhausted` is raised (chained from that exception), naming `describe`, the last
      error and the attempt count.
    - Any other exception (and cancellation) propagates at once.

    `send` must build a fresh request each call (a retried upload opens a new session).
    `describe` names the request in errors; build it with `describe_request` so query secrets
    stay out. `wall_clock` resolves HTTP-date `Retry-After` values.
    """
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = await send()
        except RETRYABLE_EXCEPTIONS as exc:
            if not is_retryable_exception(exc):
                raise
            if last:
                raise RetryExhausted(describe, attempt, last_error=exc) from exc
            wait = policy.delay(attempt, None, rng)
            _notify(on_retry, RetryEvent(describe, attempt, wait, error=exc))
            await trio.sleep(wait)
            continue
        if response.status_code not in retryable_statuses or last:
            return response
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now_wall=wall_clock())
        await response.aclose()
        wait = policy.delay(attempt, retry_after, rng)
        _notify(
            on_retry,
            RetryEvent(
                describe, attempt, wait, status=response.status_code, retry_after=retry_after
            ),
        )
        await trio.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _notify(on_retry: Callable[[RetryEvent], None] | None, event: RetryEvent) -> None:
    cause = event.status if event.status is not None else repr(event.error)
    log.debug(
        "%s: attempt %d failed (%s), retrying in %.2fs",
        event.describe,
        event.attempt,
        cause,
        event.delay,
    )
    if on_retry is not None:
        on_retry(event)
