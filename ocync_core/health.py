"""The HTTP endpoints of a long-running mirror: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz``: 200 while the process serves at all (liveness);
- ``/readyz``: 200 when the last sync cycle ended less than two intervals ago and was not a
  total failure, else 503; the body says why either way;
- ``/metrics``: the Prometheus text format of `SyncMetrics`.

A small threaded `http.server` in a daemon thread: a scrape never waits for the sync's trio
loop, and a sync never waits for a slow scraper.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST

from ocync_core.errors import BadInput

if TYPE_CHECKING:
    from types import TracebackType

    from ocync_core.metrics import SyncMetrics

__all__ = ["HealthServer", "Readiness", "parse_listen"]

_TEXT = "text/plain; charset=utf-8"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` → (host, port); host "" is every interface,
    IPv6 and IPv4 alike (a Kubernetes pod may have either, or both)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise BadInput(f"--listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:9090 or :9090")
    return host.strip("[]"), int(port_text)


@dataclass
class _CycleEnd:
    at: float  # on the readiness clock
    usable: bool  # not a total failure


class Readiness:
    """Whether the mirror is keeping up; written by the sync loop, read by probes (threads)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: _CycleEnd | None = None

    def cycle_ended(self, usable: bool) -> None:
        with self._lock:
            self._last = _CycleEnd(self._clock(), usable)

    def check(self) -> tuple[bool, str]:
        """(ready, the reason in words)."""
        with self._lock:
            last = self._last
        if last is None:
            return False, "no sync cycle has ended yet"
        age = self._clock() - last.at
        if not last.usable:
            return False, f"the last sync cycle, {age:.0f}s ago, failed completely"
        limit = 2 * self.interval
        if age > limit:
            return False, f"the last sync cycle ended {age:.0f}s ago, more than 2 intervals"
        return True, f"the last sync cycle ended {age:.0f}s ago"


class HealthServer:
    """Serves the three endpoints on `host:port` (port 0: the kernel picks one) until closed."""

    def __init__(self, host: str, port: int, readiness: Readiness, metrics: SyncMetrics) -> None:
        handler = _handler_for(readiness, metrics)
        server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
        if not host and socket.has_dualstack_ipv6():
            host, server_class = "::", _DualStackServer
        elif not host:
            host = "0.0.0.0"
        elif ":" in host:
            server_class = _IPv6Server
        self._server = server_class((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ocync-health", daemon=True
        )

    @property
    def address(self) -> str:
        """``host:port`` actually bound (with the kernel's port when 0 was asked)."""
        host, port = self._server.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{shown}:{port}"

    def __enter__(self) -> HealthServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _DualStackServer(_IPv6Server):
    """Every interface: IPv6, and IPv4 through v4-mapped addresses."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _handler_for(readiness: Readiness, metrics: SyncMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ocync"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(200, b"ok\n")
            elif path == "/readyz":
                ready, reason = readiness.check()
                self._answer(200 if ready else 503, f"{reason}\n".encode())
            elif path == "/metrics":
                self._answer(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            else:
                self._answer(404, b"not found: try /healthz, /readyz or /metrics\n")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _answer(
            self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the sync's own log lines

    return Handler
