"""The httpx transport every registry client uses: a checkout pool, and the environment's proxies.

Handing httpx a transport of our own (for `CheckoutPool`) switches off httpx's reading of
`HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`, and a mirror behind a corporate proxy must
keep working. So this transport reads them itself, with the standard library's rules, and sends
a request that must go through a proxy on an httpx proxy transport (one per proxy URL).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager

import httpcore
import httpx

from ocync_core.http_pool import CheckoutPool

__all__ = ["RegistryTransport", "environment_proxy"]

# Most specific first: an httpcore.ReadTimeout must become httpx.ReadTimeout, not the
# generic TimeoutException.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


def environment_proxy(url: httpx.URL, environment: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL the environment names for `url`, or None to connect directly.

    `environment` is the lower-cased scheme → proxy map of `urllib.request.getproxies()`
    (read afresh when omitted), with `no` holding `NO_PROXY`.
    """
    proxies = urllib.request.getproxies_environment() if environment is None else environment
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    if urllib.request.proxy_bypass_environment(host, dict(proxies)):
        return None
    return proxy


class RegistryTransport(httpx.AsyncBaseTransport):
    """Direct requests through a `CheckoutPool`; proxied ones through httpx's proxy transport."""

    def __init__(
        self,
        *,
        ssl_context: Callable[[], ssl.SSLContext] | None,
        max_connections: int,
        trust_env: bool = True,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._pool = CheckoutPool(
            ssl_context=ssl_context, max_connections=max_connections, max_idle=max_connections
        )
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._proxied: dict[str, httpx.AsyncHTTPTransport] = {}

    @property
    def pool(self) -> CheckoutPool:
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = environment_proxy(request.url, self._proxies) if self._proxies else None
        if proxy is not None:
            return await self._through(proxy).handle_async_request(request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    def _through(self, proxy: str) -> httpx.AsyncHTTPTransport:
        transport = self._proxied.get(proxy)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._ssl_context() if self._ssl_context is not None else True,
                proxy=proxy,
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
            )
            self._proxied[proxy] = transport
        return transport

    async def aclose(self) -> None:
        await self._pool.aclose()
        for transport in self._proxied.values():
            await transport.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:  # type: ignore[attr-defined]
                yield chunk

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._stream.aclose()  # type: ignore[attr-defined]
