"""The registry transport: a checkout connection pool, and the environment's proxies."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from ocync_conformance.images import push_blob
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.http_transport import RegistryTransport, environment_proxy
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings


def _client(max_connections: int) -> tuple[httpx.AsyncClient, list[str]]:
    """A client on a `RegistryTransport`, and the list of connections it opened."""
    opened: list[str] = []

    async def trace(event: str, info: dict[str, object]) -> None:
        if event == "connection.connect_tcp.complete":
            opened.append(event)

    async def add_trace(request: httpx.Request) -> None:
        request.extensions["trace"] = trace

    transport = RegistryTransport(ssl_context=None, max_connections=max_connections)
    return httpx.AsyncClient(transport=transport, event_hooks={"request": [add_trace]}), opened


async def test_many_concurrent_requests_share_a_bounded_set_of_connections(shared_registry):
    http, opened = _client(max_connections=4)
    statuses: list[int] = []

    async def ping() -> None:
        statuses.append((await http.get(f"{shared_registry.url}/v2/")).status_code)

    async with http, trio.open_nursery() as nursery:
        for _ in range(60):
            nursery.start_soon(ping)
    assert statuses == [200] * 60
    assert 1 <= len(opened) <= 4


async def test_sequential_requests_reuse_one_connection(shared_registry):
    http, opened = _client(max_connections=8)
    async with http:
        for _ in range(10):
            assert (await http.get(f"{shared_registry.url}/v2/")).status_code == 200
        assert http._transport.pool.idle_connections == 1  # type: ignore[attr-defined]
    assert len(opened) == 1


async def test_a_connection_the_server_closes_is_not_reused():
    accepted = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        http, _ = _client(max_connections=1)
        async with http:
            for _ in range(3):
                response = await http.get(f"http://127.0.0.1:{port}/")
                assert response.text == "ok"
        nursery.cancel_scope.cancel()
    assert accepted == 3


async def test_a_cancelled_stream_gives_its_connection_slot_back(shared_registry):
    with httpx.Client(base_url=shared_registry.url) as sync_http:
        digest = push_blob(sync_http, "transport/big", b"x" * (4 * 1024 * 1024))
    http, _ = _client(max_connections=1)
    url = f"{shared_registry.url}/v2/transport/big/blobs/{digest}"
    async with http:
        with trio.move_on_after(5):
            async with http.stream("GET", url) as response:
                async for _ in response.aiter_raw():
                    break  # leave mid-body: the connection cannot carry another request
        # With one connection allowed, this hangs unless the first one was handed back.
        with trio.fail_after(5):
            assert (await http.get(f"{shared_registry.url}/v2/")).status_code == 200


async def test_transport_errors_are_httpx_errors():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    http, _ = _client(max_connections=1)
    async with http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/v2/")


@pytest.mark.parametrize(
    ("url", "environment", "expected"),
    [
        ("https://ghcr.io/v2/", {"https": "http://proxy:3128"}, "http://proxy:3128"),
        ("http://10.0.0.5:5000/v2/", {"https": "http://proxy:3128"}, None),
        ("http://10.0.0.5:5000/v2/", {"all": "http://proxy:3128"}, "http://proxy:3128"),
        ("https://ghcr.io/v2/", {"https": "http://p:1", "no": "ghcr.io"}, None),
        ("https://eu.gcr.io/v2/", {"https": "http://p:1", "no": ".gcr.io,localhost"}, None),
        ("https://gcr.io.evil/v2/", {"https": "http://p:1", "no": ".gcr.io"}, "http://p:1"),
        ("http://127.0.0.1:5000/v2/", {"http": "http://p:1", "no": "127.0.0.1"}, None),
        ("https://quay.io/v2/", {"https": "http://p:1", "no": "*"}, None),
        ("https://quay.io/v2/", {}, None),
    ],
)
def test_environment_proxy_follows_no_proxy(
    url: str, environment: dict[str, str], expected: str | None
) -> None:
    assert environment_proxy(httpx.URL(url), environment) == expected


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: absolute-form requests, answered by asking the origin."""

    seen: list[str] = []

    def _forward(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(target.netloc, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream.request(self.command, path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[tuple[str, list[str]]]:
    _ForwardProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _ForwardProxy.seen
    finally:
        server.shutdown()
        server.server_close()


async def test_registry_client_goes_through_the_environment_proxy(
    shared_registry, forward_proxy, monkeypatch
):
    proxy_url, seen = forward_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    with httpx.Client(base_url=shared_registry.url) as http:
        digest = Digest.parse(push_blob(http, "transport/proxied", b"through the proxy"))
    settings = RegistrySettings(host=shared_registry.host, insecure_http=True)
    async with RegistryClient(settings, Plugins.load()) as client:
        assert await client.blob_exists("transport/proxied", digest) == len(b"through the proxy")
    assert any(f"/v2/transport/proxied/blobs/{digest}" in line for line in seen), seen
