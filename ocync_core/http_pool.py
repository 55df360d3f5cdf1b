"""A checkout pool of HTTP/1.1 connections: a connection belongs to one request at a time.

httpcore's `AsyncConnectionPool` assigns connections in a pass over every waiting request, and
a connection it assigned stays "available" until its request actually starts on it. Under
load, several waiting requests are handed the same idle connection; all but one then fail with
`ConnectionNotAvailable` and queue again (encode/httpcore#822). Measured through the counting
proxy, a cold sync of 100 images spent about 6,000 such retries on 8,700 requests, and an
upload request waited longer for its connection than it spent on the wire.

ocync already bounds the requests in flight per registry (the throttle), so the pool only has
to be correct and cheap: taking a connection removes it from the idle stack at once, so no
connection can be promised twice. Idle connections are reused newest first, and those the
server closed or that outlived the keep-alive are dropped on the way.
"""

from __future__ import annotations

import ssl
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import httpcore
import trio

__all__ = ["CheckoutPool"]

_OriginKey = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _OriginKey:
    return (origin.scheme, origin.host, origin.port)


class CheckoutPool:
    """Sends each request on an idle connection to its origin, or on a new one.

    At most `max_connections` connections are busy at once (more requests wait for one to be
    returned); at most `max_idle` are kept for reuse.
    """

    def __init__(
        self,
        *,
        ssl_context: Callable[[], ssl.SSLContext] | None,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._max_idle = max_idle
        self._busy = trio.Semaphore(max_connections)
        self._idle: defaultdict[_OriginKey, list[httpcore.AsyncHTTPConnection]] = defaultdict(list)
        self._idle_count = 0

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        try:
            # Without a checkpoint when a connection is free: under load, every needless
            # trip through trio's run queue is time a request holds a throttle slot idle.
            self._busy.acquire_nowait()
        except trio.WouldBlock:
            await self._busy.acquire()
        try:
            connection = await self._checkout(request.url.origin)
            try:
                response = await connection.handle_async_request(request)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await connection.aclose()
                raise
        except BaseException:
            self._busy.release()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_ReturningStream(self, request.url.origin, connection, response),
            extensions=response.extensions,
        )

    async def _checkout(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        idle = self._idle[_key(origin)]
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not connection.has_expired():
                return connection
            with trio.CancelScope(shield=True):
                await connection.aclose()
        # The context is made on the first TLS connection: loading the CA bundle costs tens of
        # milliseconds that a run against plain-HTTP registries never needs to spend.
        make_context = self._ssl_context if origin.scheme == b"https" else None
        return httpcore.AsyncHTTPConnection(
            origin,
            ssl_context=make_context() if make_context is not None else None,
            keepalive_expiry=self._keepalive_expiry,
        )

    async def _return(
        self, origin: httpcore.Origin, connection: httpcore.AsyncHTTPConnection
    ) -> None:
        """Back to the idle stack if it can carry another request, else closed."""
        try:
            if connection.is_idle() and self._idle_count < self._max_idle:
                self._idle[_key(origin)].append(connection)
                self._idle_count += 1
            else:
                with trio.CancelScope(shield=True):
                    await connection.aclose()
        finally:
            self._busy.release()

    async def aclose(self) -> None:
        connections = [c for stack in self._idle.values() for c in stack]
        self._idle.clear()
        self._idle_count = 0
        with trio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()


class _ReturningStream:
    """A response body that gives its connection back to the pool once closed."""

    def __init__(
        self,
        pool: CheckoutPool,
        origin: httpcore.Origin,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._stream = response.stream
        self._returned = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:  # type: ignore[union-attr]
            yield chunk

    async def aclose(self) -> None:
        if self._returned:
            return
        self._returned = True
        try:
            with trio.CancelScope(shield=True):
                await self._stream.aclose()  # type: ignore[union-attr]
        finally:
            await self._pool._return(self._origin, self._connection)
