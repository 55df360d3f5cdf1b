"""A fault-injecting HTTP proxy in front of a real registry: counts requests, injects faults.

`FaultProxy(upstream_url)` is a small real HTTP/1.1 server on 127.0.0.1 (kernel-chosen port)
that forwards every request to an upstream registry (normally a docker-registry started by
`RegistryProcess`) and streams bodies both ways in bounded chunks, so 1 GiB blobs pass through
without being held in memory. It rewrites `Location`/`Link` headers that point at the upstream
so clients keep talking to the proxy, and passes every other end-to-end header through.

On the way it:
- classifies each request into an *action* (`ProxyAction`, same names as
  `ocync_core.policies.Action` plus `catalog` and `other`);
- logs it (`RequestRecord`: start, duration, action, status, bytes, in-flight, faults) and
  summarises the log per action or group of actions (`ActionStats`: requests, statuses,
  bytes, current/peak/time-weighted mean in-flight);
- applies `FaultRule`s, configurable at construction and at runtime: 429 above a concurrency
  or request-rate limit, failures with any status and a registry-style JSON error body,
  connection resets (before the response or mid-body), slow or stalled bodies, truncated
  bodies, corrupted bodies, and plain added latency;
- adds response headers to what it relays (`add_headers`), fixed or computed per request
  (an emulated registry's rate-limit headers).

Implementation choice: `ThreadingHTTPServer` (one thread per client connection) with one
`http.client` upstream connection per client connection. Threads rather than trio because the
proxy must serve sync tests, trio tests, subprocess-based tests and the benchmark alike; the
data path is a plain recv/sendall loop that releases the GIL, which keeps it near loopback
speed. Everything is stdlib: the kit's plugin imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ocync_conformance.certs import ServerCert

__all__ = [
    "MANIFEST_ACTIONS",
    "UPLOAD_ACTIONS",
    "ActionStats",
    "FaultKind",
    "FaultProxy",
    "FaultRule",
    "ProxyAction",
    "RequestRecord",
    "RequestView",
    "classify",
]

# Most bytes per recv/send on the data path: large enough to amortise the per-call Python
# overhead, small enough to bound the proxy's memory to ~1 MiB per connection.
CHUNK_SIZE = 1024 * 1024


class ProxyAction(enum.StrEnum):
    """What a request does. Values equal `ocync_core.policies.Action` values where both exist."""

    PING = "ping"
    CATALOG = "catalog"
    MANIFEST_HEAD = "manifest_head"
    MANIFEST_GET = "manifest_get"
    MANIFEST_PUT = "manifest_put"
    BLOB_HEAD = "blob_head"
    BLOB_GET = "blob_get"
    UPLOAD_START = "upload_start"
    UPLOAD_CHUNK = "upload_chunk"
    UPLOAD_FINISH = "upload_finish"
    MOUNT = "mount"
    TAG_LIST = "tag_list"
    REFERRERS = "referrers"
    OTHER = "other"


# The requests of a blob upload session (not mounts: those are a separate ECR action).
UPLOAD_ACTIONS: frozenset[str] = frozenset(
    {ProxyAction.UPLOAD_START, ProxyAction.UPLOAD_CHUNK, ProxyAction.UPLOAD_FINISH}
)
MANIFEST_ACTIONS: frozenset[str] = frozenset(
    {ProxyAction.MANIFEST_HEAD, ProxyAction.MANIFEST_GET, ProxyAction.MANIFEST_PUT}
)

# Repository names contain slashes; the suffix decides what the request is. The groups let
# other kit servers (the ECR emulator) read the repository and reference from the same patterns.
_NAME = r"(?P<name>[^?#]+?)"
_MANIFEST_RE = re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[^/]+)$")
_UPLOAD_START_RE = re.compile(rf"^/v2/{_NAME}/blobs/uploads/?$")
_UPLOAD_SESSION_RE = re.compile(rf"^/v2/{_NAME}/blobs/uploads/[^/]+$")
_BLOB_RE = re.compile(rf"^/v2/{_NAME}/blobs/[^/]+$")
_TAGS_RE = re.compile(rf"^/v2/{_NAME}/tags/list$")
_REFERRERS_RE = re.compile(rf"^/v2/{_NAME}/referrers/[^/]+$")


def classify(method: str, target: str) -> ProxyAction:
    """The action of a request from its method and request target (path plus query)."""
    method = method.upper()
    path, _, query = target.partition("?")
    if path in ("/v2", "/v2/"):
        return ProxyAction.PING
    if path == "/v2/_catalog":
        return ProxyAction.CATALOG
    if _MANIFEST_RE.match(path):
        return {
            "HEAD": ProxyAction.MANIFEST_HEAD,
            "GET": ProxyAction.MANIFEST_GET,
            "PUT": ProxyAction.MANIFEST_PUT,
        }.get(method, ProxyAction.OTHER)
    # Upload paths before blob paths: `blobs/uploads/<uuid>` also matches `blobs/<x>`.
    if _UPLOAD_START_RE.match(path):
        if method != "POST":
            return ProxyAction.OTHER
        params = (p.partition("=")[0] for p in query.split("&"))
        return ProxyAction.MOUNT if "mount" in params else ProxyAction.UPLOAD_START
    if _UPLOAD_SESSION_RE.match(path):
        return {"PATCH": ProxyAction.UPLOAD_CHUNK, "PUT": ProxyAction.UPLOAD_FINISH}.get(
            method, ProxyAction.OTHER
        )
    if _BLOB_RE.match(path):
        return {"HEAD": ProxyAction.BLOB_HEAD, "GET": ProxyAction.BLOB_GET}.get(
            method, ProxyAction.OTHER
        )
    if _TAGS_RE.match(path) and method in ("GET", "HEAD"):
        return ProxyAction.TAG_LIST
    if _REFERRERS_RE.match(path) and method in ("GET", "HEAD"):
        return ProxyAction.REFERRERS
    return ProxyAction.OTHER


def _action_name(action: ActionLike) -> str:
    """Accept ProxyAction, ocync_core.policies.Action (an Enum with a str value) or a str."""
    if isinstance(action, str):
        name = str(action)
    elif isinstance(action, enum.Enum) and isinstance(action.value, str):
        name = action.value
    else:
        raise TypeError(f"not an action: {action!r}")
    return name


ActionLike = str | enum.Enum
# One action, several, or None for "every action".
ActionsArg = ActionLike | Iterable[ActionLike] | None


def _action_set(actions: ActionsArg) -> frozenset[str] | None:
    """None means every action; a single action or any iterable of actions is accepted."""
    if actions is None:
        return None
    if isinstance(actions, str | enum.Enum):
        return frozenset({_action_name(actions)})
    if isinstance(actions, Iterable):
        return frozenset(_action_name(a) for a in actions)
    raise TypeError(f"not an action or actions: {actions!r}")


# --------------------------------------------------------------------------------------------
# records and statistics


@dataclass(frozen=True)
class RequestRecord:
    """One request as the proxy saw it.

    `started` is `time.monotonic()` when the request head was parsed; the request is "in
    flight" from then until its response was sent (or the connection dropped). `status` is 0
    when no response was sent (reset before the response, client gone). `in_flight_at_start`
    counts requests of the same action in flight at arrival, this one included.
    """

    started: float
    duration: float
    action: str
    method: str
    path: str
    status: int
    bytes_in: int
    bytes_out: int
    in_flight_at_start: int
    faults: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.duration

    @property
    def fault(self) -> str | None:
        """The first fault rule that fired on this request, if any."""
        return self.faults[0] if self.faults else None


@dataclass(frozen=True)
class ActionStats:
    """A snapshot for one action or a group of actions (then the figures are combined).

    `mean_in_flight` is the time-weighted mean number of requests in flight between the first
    request's start and the last one's end (the sum of durations divided by that span);
    `busy_mean_in_flight` divides by only the time when at least one was in flight.
    Requests still in flight count with their duration so far; their status is not known yet.
    """

    actions: frozenset[str]
    requests: int = 0
    completed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    mean_in_flight: float = 0.0
    busy_mean_in_flight: float = 0.0
    span: float = 0.0

    @property
    def throttled(self) -> int:
        """Responses with status 429."""
        return self.statuses[429]


# --------------------------------------------------------------------------------------------
# fault rules


class FaultKind(enum.StrEnum):
    LIMIT_CONCURRENCY = "limit_concurrency"
    LIMIT_RATE = "limit_rate"
    FAIL = "fail"
    RESET_CONNECTION = "reset_connection"
    SLOW_BODY = "slow_body"
    TRUNCATE_BODY = "truncate_body"
    CORRUPT_BODY = "corrupt_body"
    DELAY = "delay"
    ADD_HEADERS = "add_headers"


@dataclass(frozen=True)
class RequestView:
    """What a rule's `when` predicate sees of a request (headers with lowercase names)."""

    method: str
    target: str
    headers: Mapping[str, str]

    @property
    def content_length(self) -> int:
        try:
            return int(self.headers.get("content-length", "0"))
        except ValueError:
            return 0


@dataclass(eq=False, kw_only=True)
class FaultRule:
    """One fault. Build them with the `FaultProxy` helpers (`limit_concurrency`, `fail`, ...).

    Scope: `actions` (None = all), `path` (regex searched in the request target, query
    included), `methods` (None = all), `when` (None = all: a predicate on the request's
    method, target and headers, for quirks such as "a PATCH above 4 MiB").

    Trigger (all kinds except the two limits, which apply whenever their limit is exceeded):
    `skip` matching requests pass first; then each matching request fires with probability
    `rate` (None = always), at most `count` times (None = unbounded). Draws come from the
    proxy's seeded RNG, so a given request order gives
    the same faults. `fired` counts firings; the rule's `name` goes in the log.
    """

    kind: FaultKind
    actions: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    when: Callable[[RequestView], bool] | None = None
    # A quirk is how the emulated registry behaves, not a fault: `clear_faults` keeps it.
    quirk: bool = False
    rate: float | None = None
    count: int | None = None
    skip: int = 0
    name: str = ""
    # limits
    limit: float = 0.0
    window: float = 1.0
    retry_after: float | str | None = None
    # fail
    status: int = 503
    code: str | None = None
    message: str | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    after_upstream: bool = False
    # add_headers: `headers` and, per request, what `header_source` returns
    header_source: Callable[[RequestView], Mapping[str, str]] | None = None
    # body effects
    after_bytes: int = 0
    keep_bytes: int = 0
    offset: int = 0
    bytes_per_second: float | None = None
    stall_seconds: float | None = None
    seconds: float = 0.0
    # runtime state, guarded by the proxy's lock
    fired: int = 0
    seen: int = 0
    active: int = 0
    arrivals: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.kind)
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate is a probability in [0, 1]")

    def matches(self, action: str, request: RequestView) -> bool:
        return (
            (self.actions is None or action in self.actions)
            and (self.methods is None or request.method in self.methods)
            and (self.path is None or self.path.search(request.target) is not None)
            and (self.when is None or self.when(request))
        )

    def __repr__(self) -> str:
        scope = sorted(self.actions) if self.actions is not None else "all"
        return f"<FaultRule {self.name} {scope} fired={self.fired}>"


_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NOT_FOUND",
    408: "TIMEOUT",
    413: "SIZE_INVALID",
    429: "TOOMANYREQUESTS",
    500: "UNKNOWN",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}


def _error_body(status: int, code: str | None, message: str | None) -> bytes:
    code = code or _ERROR_CODES.get(status, "UNKNOWN")
    if message is None:
        try:
            message = http.client.responses[status].lower()
        except KeyError:
            message = "injected failure"
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def _retry_after_text(value: float | str) -> str:
    if isinstance(value, str):
        return value  # e.g. an HTTP date
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class _Reply:
    """A response the proxy makes up instead of (or after) forwarding."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _BodyPlan:
    """Response-body effects decided at arrival; applied while streaming."""

    reset_after: int | None = None  # RST after this many body bytes
    truncate_after: int | None = None  # graceful close after this many body bytes
    corrupt_offsets: list[int] = field(default_factory=list)
    bytes_per_second: float | None = None
    stall_after: int | None = None
    stall_seconds: float = 0.0

    @property
    def cut(self) -> int | None:
        cuts = [c for c in (self.reset_after, self.truncate_after) if c is not None]
        return min(cuts) if cuts else None


@dataclass
class _Decision:
    delay: float = 0.0
    reply: _Reply | None = None  # answer without forwarding
    reset_now: bool = False  # RST before any response
    after_reply: _Reply | None = None  # forward, discard the response, answer this instead
    body: _BodyPlan = field(default_factory=_BodyPlan)
    faults: list[str] = field(default_factory=list)
    slots: list[FaultRule] = field(default_factory=list)  # concurrency slots to release
    headers: dict[str, str] = field(default_factory=dict)  # added to the relayed response


@dataclass
class _Live:
    action: str
    started: float
    epoch: int


class _HasUrl(Protocol):
    @property
    def url(self) -> str: ...


# Hop-by-hop headers (RFC 9110 §7.6.1) are per connection, never forwarded. Expect is
# answered by the proxy itself; Host is the upstream's.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {"host", "expect"}
_REWRITTEN = frozenset({"location", "content-location", "link"})


class _ClientGone(Exception):
    """The client connection failed while we wrote to it."""


class _UpstreamError(Exception):
    """Talking to the upstream failed."""


# --------------------------------------------------------------------------------------------
# the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck handler must never keep the interpreter alive
    # Default backlog 5 drops SYNs under a burst of parallel connections (1 s retransmits).
    request_queue_size = 1024
    proxy: FaultProxy
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake runs in the connection's own thread (`_Handler.setup`), so a slow
            # or broken client never stalls the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a registry
    server: _Server
    _upstream: http.client.HTTPConnection | None = None
    _drop_upstream_after = False  # the upstream said it closes after this response
    _bytes_in = 0
    _bytes_out = 0

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the socket was reset/closed on purpose
        finally:
            self._drop_upstream()
            self.server.proxy._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the proxy keeps its own log; stderr noise would drown test output

    # -- one request ------------------------------------------------------------------------

    def _proxy_request(self) -> None:
        proxy = self.server.proxy
        method = self.command.upper()
        target = self.path
        action = classify(method, target)
        live, in_flight = proxy._begin(action)
        status = 0
        error: str | None = None
        self._bytes_in = 0
        self._bytes_out = 0
        decision = _Decision()
        try:
            request = RequestView(method, target, {k.lower(): v for k, v in self.headers.items()})
            decision = proxy._decide(action, request)
            if decision.delay > 0 and proxy._stopping.wait(decision.delay):
                error = "proxy stopped"
                self.close_connection = True
                return
            if decision.reset_now:
                self._reset()
                error = "reset by fault"
                return
            if decision.reply is not None:
                self._drain_request_body()
                status = decision.reply.status
                self._send_reply(decision.reply)
                return
            status, error = self._forward(method, target, decision)
        except _ClientGone as e:
            error = f"client connection failed: {e}"
            self.close_connection = True
        except OSError as e:
            error = f"connection failed: {e}"
            self.close_connection = True
        finally:
            proxy._end(
                live,
                decision,
                method=method,
                target=target,
                status=status,
                bytes_in=self._bytes_in,
                bytes_out=self._bytes_out,
                in_flight=in_flight,
                error=error,
            )

    # Every method goes to the one forwarding handler.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _proxy_request

    # -- request body -----------------------------------------------------------------------

    def _iter_request_body(self) -> Iterator[bytes]:
        """The client's body, de-chunked, in pieces of at most CHUNK_SIZE."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        rfile = self.rfile
        if "chunked" in te:
            while True:
                line = rfile.readline(65537)
                if not line:
                    raise _ClientGone("EOF in chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers: dropped
                    return
                while size > 0:
                    data = rfile.read1(min(size, CHUNK_SIZE))
                    if not data:
                        raise _ClientGone("EOF in chunked body")
                    size -= len(data)
                    self._bytes_in += len(data)
                    yield data
                rfile.readline(3)  # CRLF after the chunk
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = rfile.read1(min(remaining, CHUNK_SIZE))
            if not data:
                raise _ClientGone("EOF in request body")
            remaining -= len(data)
            self._bytes_in += len(data)
            yield data

    def _drain_request_body(self) -> None:
        # Read (and drop) the body so the connection stays usable and the client, still
        # writing, is not cut off before it can read our answer.
        for _ in self._iter_request_body():
            pass

    # -- responses made up by the proxy -----------------------------------------------------

    def _send_reply(self, reply: _Reply) -> None:
        headers = [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Docker-Distribution-Api-Version", "registry/2.0"),
            ("Content-Length", str(len(reply.body))),
            *reply.headers.items(),
        ]
        body = b"" if self.command.upper() == "HEAD" else reply.body
        self._write(self._head_bytes(reply.status, headers) + body)
        self._bytes_out += len(body)

    def _head_bytes(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        reason = http.client.responses.get(status, "")
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self.wfile.write(data)
        except OSError as e:
            raise _ClientGone(str(e)) from e

    def _reset(self) -> None:
        """Abort the client connection with a TCP RST (SO_LINGER 0), not a clean FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    # -- forwarding -------------------------------------------------------------------------

    def _connect_upstream(self) -> http.client.HTTPConnection:
        if self._upstream is None:
            self._upstream = self.server.proxy._new_upstream_connection()
        return self._upstream

    def _drop_upstream(self) -> None:
        conn, self._upstream = self._upstream, None
        if conn is not None:
            if conn.sock is not None:
                self.server.proxy._unregister(conn.sock)
            conn.close()

    def _has_body(self) -> bool:
        return (
            "Transfer-Encoding" in self.headers or int(self.headers.get("Content-Length") or 0) > 0
        )

    def _send_upstream(self, method: str, target: str) -> http.client.HTTPResponse:
        proxy = self.server.proxy
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        has_body = self._has_body()
        # A kept-alive upstream connection may have been closed by the upstream meanwhile;
        # a request without a body is retried once on a fresh connection.
        for attempt in (1, 2):
            fresh = self._upstream is None
            conn = self._connect_upstream()
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", proxy._upstream_netloc)
                for k, v in self.headers.items():
                    if k.lower() not in _NOT_FORWARDED:
                        conn.putheader(k, v)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                if conn.sock is not None:
                    proxy._register(conn.sock)
                if has_body:
                    for data in self._iter_request_body():
                        if chunked:
                            conn.send(b"%x\r\n" % len(data) + data + b"\r\n")
                        else:
                            conn.send(data)
                    if chunked:
                        conn.send(b"0\r\n\r\n")
                return conn.getresponse()
            except _ClientGone:
                self._drop_upstream()
                raise
            except (OSError, http.client.HTTPException) as e:
                self._drop_upstream()
                if attempt == 1 and not fresh and not has_body:
                    continue
                raise _UpstreamError(f"{type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")

    def _rewrite(self, value: str) -> str:
        proxy = self.server.proxy
        host = self.headers.get("Host") or proxy.host
        return value.replace(proxy.upstream, f"{proxy.scheme}://{host}")

    def _forward(self, method: str, target: str, decision: _Decision) -> tuple[int, str | None]:
        try:
            resp = self._send_upstream(method, target)
        except _UpstreamError as e:
            self.close_connection = True
            reply = _Reply(502, _error_body(502, "UNAVAILABLE", f"upstream: {e}"), {})
            with contextlib.suppress(_ClientGone):
                self._send_reply(reply)
            return 502, f"upstream failed: {e}"
        if decision.after_reply is not None:
            # The upstream did the work (e.g. stored the manifest); the client hears otherwise.
            try:
                while resp.read(CHUNK_SIZE):
                    pass
            except (OSError, http.client.HTTPException):
                self._drop_upstream()
            self._send_reply(decision.after_reply)
            return decision.after_reply.status, None
        try:
            return self._relay_response(method, resp, decision.body, decision.headers)
        except BaseException:
            # The upstream response was not read to its end: that connection is unusable.
            self._drop_upstream()
            raise

    def _relay_response(
        self,
        method: str,
        resp: http.client.HTTPResponse,
        plan: _BodyPlan,
        added: Mapping[str, str],
    ) -> tuple[int, str | None]:
        status = resp.status
        headers: list[tuple[str, str]] = []
        length: int | None = None
        replaced = {name.lower() for name in added}
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in _HOP_BY_HOP or lk in replaced:
                continue
            if lk in _REWRITTEN:
                v = self._rewrite(v)
            elif lk == "content-length":
                with contextlib.suppress(ValueError):
                    length = int(v)
            headers.append((k, v))
        headers.extend(added.items())
        self._drop_upstream_after = bool(resp.will_close)
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        chunked_out = not no_body and length is None
        if chunked_out:
            headers.append(("Transfer-Encoding", "chunked"))
        head = self._head_bytes(status, headers)
        if no_body:
            resp.read()
            self._write(head)
            self._after_upstream_response(resp)
            return status, None
        return self._relay_body(resp, head, status, chunked_out, plan)

    def _relay_body(
        self,
        resp: http.client.HTTPResponse,
        head: bytes,
        status: int,
        chunked_out: bool,
        plan: _BodyPlan,
    ) -> tuple[int, str | None]:
        proxy = self.server.proxy
        cut = plan.cut
        sent = 0
        started = time.monotonic()
        # The head goes out with the first body chunk (one send): fewer syscalls, no Nagle.
        pending: bytes | None = head
        buf = memoryview(bytearray(CHUNK_SIZE))  # reused: no 1 MiB allocation per chunk
        if cut == 0 or plan.stall_after == 0:
            self._write(head)
            pending = None
        while True:
            if cut is not None and sent >= cut:
                return self._cut(status, plan, sent, resp)
            if plan.stall_after is not None and sent >= plan.stall_after:
                plan.stall_after = None
                if proxy._stopping.wait(plan.stall_seconds):
                    raise _ClientGone("proxy stopped")
            want = CHUNK_SIZE
            if cut is not None:
                want = min(want, cut - sent)
            if plan.stall_after is not None:
                want = min(want, max(1, plan.stall_after - sent))
            if plan.bytes_per_second is not None:
                want = min(want, max(1, int(plan.bytes_per_second / 20)))
            try:
                data = self._read_body(resp, buf, want)
            except (OSError, http.client.HTTPException) as e:
                # Upstream died mid-body: the client sees a cut connection too.
                self._drop_upstream()
                self._reset()
                return status, f"upstream failed mid-body: {e}"
            if not data:
                break
            if plan.corrupt_offsets:
                data = self._corrupt(data, sent, plan)
            if plan.bytes_per_second is not None:
                # Pace: never ahead of bytes_per_second since the body started.
                ahead = (sent + len(data)) / plan.bytes_per_second - (time.monotonic() - started)
                if ahead > 0 and proxy._stopping.wait(ahead):
                    raise _ClientGone("proxy stopped")
            if chunked_out:
                self._write(b"%x\r\n" % len(data) + data + b"\r\n")
            elif pending is not None:
                self._write(pending + data)
            else:
                self._write(data)
            pending = None
            sent += len(data)
            self._bytes_out = sent
        tail = b"0\r\n\r\n" if chunked_out else b""
        if pending is not None or tail:
            self._write((pending or b"") + tail)
        self._after_upstream_response(resp)
        return status, None

    @staticmethod
    def _read_body(
        resp: http.client.HTTPResponse, buf: memoryview, want: int
    ) -> bytes | memoryview:
        """Up to `want` body bytes as soon as any are there (never waits to fill `want`)."""
        length = resp.length
        if resp.chunked or length is None or resp.fp is None:
            return resp.read1(want)
        # Content-Length body: read straight into the reused buffer. One recv per call
        # (readinto1), and http.client's own bookkeeping kept (length) so the upstream
        # connection is reusable after the last byte.
        n = resp.fp.readinto1(buf[: min(want, length)]) if length > 0 else 0
        if n == 0 and length > 0:
            raise http.client.IncompleteRead(b"", length)
        resp.length = length - n
        return buf[:n]

    def _cut(
        self, status: int, plan: _BodyPlan, sent: int, resp: http.client.HTTPResponse
    ) -> tuple[int, str | None]:
        self._drop_upstream()
        if plan.reset_after is not None and sent >= plan.reset_after:
            self._reset()
            return status, f"reset after {sent} body bytes"
        # Truncation: a clean close (FIN) short of Content-Length.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
        return status, f"truncated after {sent} body bytes"

    @staticmethod
    def _corrupt(data: bytes | memoryview, sent: int, plan: _BodyPlan) -> bytes | memoryview:
        hits = [o - sent for o in plan.corrupt_offsets if sent <= o < sent + len(data)]
        if not hits:
            return data
        buf = bytearray(data)
        for i in hits:
            buf[i] ^= 0xFF
        plan.corrupt_offsets = [o for o in plan.corrupt_offsets if o >= sent + len(data)]
        return bytes(buf)

    def _after_upstream_response(self, resp: http.client.HTTPResponse) -> None:
        resp.close()
        if self._drop_upstream_after:
            self._drop_upstream()


# --------------------------------------------------------------------------------------------
# the proxy


class FaultProxy:
    """A counting, fault-injecting HTTP proxy in front of `upstream` (a registry base URL).

    Starts serving at construction (in a background thread) on 127.0.0.1, kernel-chosen
    port. Use as a context manager or call `stop()`: it closes every connection and joins
    every thread it started.

    Args:
        upstream: the registry's base URL (http or https), or anything with a `.url`
            (e.g. a `RegistryProcess`; its `.verify` SSL context is used for https).
        name: shown in reprs and error messages.
        rules: fault rules active from the start (more via `add_rule` and the helpers).
        seed: seeds the RNG behind probabilistic rules.
        ssl_context: for an https upstream (default: the upstream's `.verify` or system trust).
        server_cert: serve HTTPS with this certificate (e.g. the upstream's own, so a client
            that trusts the registry's CA trusts the proxy too); plain HTTP when None.
    """

    def __init__(
        self,
        upstream: str | _HasUrl,
        *,
        name: str = "proxy",
        rules: Iterable[FaultRule] = (),
        seed: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        server_cert: ServerCert | None = None,
    ) -> None:
        if not isinstance(upstream, str):
            verify = getattr(upstream, "verify", None)
            if ssl_context is None and isinstance(verify, ssl.SSLContext):
                ssl_context = verify
            upstream = upstream.url
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream must be an http(s) base URL, not {upstream!r}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self._upstream_netloc = parts.netloc
        self._upstream_https = parts.scheme == "https"
        self._ssl_context = ssl_context
        self.name = name

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = list(rules)
        self._log: list[RequestRecord] = []
        self._live: dict[int, _Live] = {}
        self._live_count: Counter[str] = Counter()
        self._next_id = 0
        self._epoch = 0
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.scheme = "http"
        if server_cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(server_cert.cert_file, server_cert.key_file)
            self._server.tls = tls
            self.scheme = "https"
        self._port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FaultProxy-{name}-{self._port}",
            daemon=True,
        )
        self._thread.start()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry part of image references through the proxy."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return not self._stopping.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut every open connection, wake sleeping faults, join all threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()  # returns once serve_forever has left its loop
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for s in sockets:
            # shutdown() (not close()) wakes a thread blocked in recv on that socket.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for t in [*threads, self._thread]:
            t.join(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FaultProxy {self.name} {self.url} -> {self.upstream} {state}>"

    # -- internals used by the handler ------------------------------------------------------

    def _new_upstream_connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._upstream_https:
            ctx = self._ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(self._upstream_netloc, timeout=None, context=ctx)
        else:
            conn = http.client.HTTPConnection(self._upstream_netloc, timeout=None)
        conn.connect()
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._threads.add(threading.current_thread())
        self._register(sock)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._threads.discard(threading.current_thread())
            self._sockets.discard(sock)

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            stopping = self._stopping.is_set()
        if stopping:  # raced with stop(): do not leave this one running
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _unregister(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _begin(self, action: str) -> tuple[int, int]:
        with self._lock:
            self._next_id += 1
            self._live[self._next_id] = _Live(action, time.monotonic(), self._epoch)
            self._live_count[action] += 1
            return self._next_id, self._live_count[action]

    def _end(
        self,
        live_id: int,
        decision: _Decision,
        *,
        method: str,
        target: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        in_flight: int,
        error: str | None,
    ) -> None:
        now = time.monotonic()
        with self._idle:
            for rule in decision.slots:
                rule.active -= 1
            live = self._live.pop(live_id)
            self._live_count[live.action] -= 1
            # A request that began before reset() belongs to the previous measurement.
            if live.epoch == self._epoch:
                self._log.append(
                    RequestRecord(
                        started=live.started,
                        duration=now - live.started,
                        action=live.action,
                        method=method,
                        path=target,
                        status=status,
                        bytes_in=bytes_in,
                        bytes_out=bytes_out,
                        in_flight_at_start=in_flight,
                        faults=tuple(decision.faults),
                        error=error,
                    )
                )
            if not self._live:
                self._idle.notify_all()

    def _triggered(self, rule: FaultRule) -> bool:
        # Caller holds the lock.
        rule.seen += 1
        if rule.seen <= rule.skip:
            return False
        if rule.count is not None and rule.fired >= rule.count:
            return False
        if rule.rate is not None and self._rng.random() >= rule.rate:
            return False
        rule.fired += 1
        return True

    def _decide(self, action: str, request: RequestView) -> _Decision:
        d = _Decision()
        now = time.monotonic()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(action, request):
                    continue
                kind = rule.kind
                if kind is FaultKind.LIMIT_CONCURRENCY:
                    if rule.active >= rule.limit:
                        rule.fired += 1
                        d.reply = self._throttle_reply(rule)
                    else:
                        rule.active += 1
                        d.slots.append(rule)
                        continue
                elif kind is FaultKind.LIMIT_RATE:
                    # Sliding window over admitted requests: refused ones do not count, so a
                    # client pacing itself at the limit is never starved by its own retries.
                    while rule.arrivals and rule.arrivals[0] <= now - rule.window:
                        rule.arrivals.popleft()
                    if len(rule.arrivals) >= rule.limit:
                        rule.fired += 1
                        d.reply = self._throttle_reply(rule)
                    else:
                        rule.arrivals.append(now)
                        continue
                elif not self._triggered(rule):
                    continue
                elif kind is FaultKind.DELAY:
                    d.delay += rule.seconds
                elif kind is FaultKind.ADD_HEADERS:
                    d.headers.update(rule.headers)
                    if rule.header_source is not None:
                        d.headers.update(rule.header_source(request))
                elif kind is FaultKind.FAIL:
                    reply = self._fail_reply(rule)
                    if rule.after_upstream:
                        d.after_reply = d.after_reply or reply
                    else:
                        d.reply = reply
                elif kind is FaultKind.RESET_CONNECTION:
                    if rule.after_bytes <= 0:
                        d.reset_now = True
                    else:
                        prev = d.body.reset_after
                        d.body.reset_after = (
                            rule.after_bytes if prev is None else min(prev, rule.after_bytes)
                        )
                elif kind is FaultKind.TRUNCATE_BODY:
                    prev = d.body.truncate_after
                    d.body.truncate_after = (
                        rule.keep_bytes if prev is None else min(prev, rule.keep_bytes)
                    )
                elif kind is FaultKind.CORRUPT_BODY:
                    d.body.corrupt_offsets.append(rule.offset)
                elif kind is FaultKind.SLOW_BODY:
                    if rule.bytes_per_second is not None:
                        d.body.bytes_per_second = rule.bytes_per_second
                    if rule.stall_seconds is not None:
                        d.body.stall_after = rule.after_bytes
                        d.body.stall_seconds = rule.stall_seconds
                d.faults.append(rule.name)
                if d.reply is not None or d.reset_now:
                    break  # the request ends here; later rules do not see it
        return d

    @staticmethod
    def _throttle_reply(rule: FaultRule) -> _Reply:
        headers = dict(rule.headers)
        if rule.retry_after is not None:
            headers["Retry-After"] = _retry_after_text(rule.retry_after)
        message = rule.message or "too many requests (injected by FaultProxy)"
        return _Reply(429, rule.body or _error_body(429, rule.code, message), headers)

    @staticmethod
    def _fail_reply(rule: FaultRule) -> _Reply:
        headers = dict(rule.headers)
        if rule.retry_after is not None:
            headers["Retry-After"] = _retry_after_text(rule.retry_after)
        body = (
            rule.body
            if rule.body is not None
            else _error_body(rule.status, rule.code, rule.message)
        )
        return _Reply(rule.status, body, headers)

    # -- rules ------------------------------------------------------------------------------

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def add_rule(self, rule: FaultRule) -> FaultRule:
        """Activate a rule (applies to requests arriving from now on); returns it."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: FaultRule) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._rules.remove(rule)

    def clear_faults(self) -> None:
        """Remove every rule but the quirks (`emulate`); requests in flight keep the effects
        already decided for them."""
        with self._lock:
            self._rules[:] = [rule for rule in self._rules if rule.quirk]

    def emulate(self, rule: FaultRule) -> FaultRule:
        """Make `rule` part of the emulated registry: it stays through `clear_faults`.

        Build it with a helper first, e.g. ``proxy.emulate(proxy.fail(...))``: the helper
        activates it, this marks it permanent.
        """
        with self._lock:
            rule.quirk = True
            if rule not in self._rules:
                self._rules.append(rule)
        return rule

    def _rule(
        self,
        kind: FaultKind,
        actions: ActionsArg,
        *,
        path: str | re.Pattern[str] | None,
        methods: Iterable[str] | None,
        when: Callable[[RequestView], bool] | None = None,
        **params: Any,
    ) -> FaultRule:
        rule = FaultRule(
            kind=kind,
            actions=_action_set(actions),
            when=when,
            path=re.compile(path) if isinstance(path, str) else path,
            methods=frozenset(m.upper() for m in methods) if methods is not None else None,
            **params,
        )
        return self.add_rule(rule)

    def limit_concurrency(
        self,
        actions: ActionsArg,
        n: int,
        *,
        retry_after: float | str | None = None,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """429 TOOMANYREQUESTS for a request arriving while `n` admitted requests of these
        actions (together) are in flight; `Retry-After` only when `retry_after` is given."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._rule(
            FaultKind.LIMIT_CONCURRENCY,
            actions,
            path=path,
            methods=methods,
            limit=n,
            retry_after=retry_after,
            name=name,
        )

    def limit_rate(
        self,
        actions: ActionsArg,
        per_second: float,
        *,
        retry_after: float | str | None = None,
        window: float = 1.0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """429 for a request arriving when `per_second * window` requests of these actions
        were admitted within the last `window` seconds (a sliding window)."""
        return self._rule(
            FaultKind.LIMIT_RATE,
            actions,
            path=path,
            methods=methods,
            limit=per_second * window,
            window=window,
            retry_after=retry_after,
            name=name,
        )

    def fail(
        self,
        actions: ActionsArg = None,
        status: int = 503,
        *,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        code: str | None = None,
        message: str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | str | None = None,
        after_upstream: bool = False,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        when: Callable[[RequestView], bool] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Answer `status` with a registry-style JSON error (`code`, `message`, or a raw
        `body`) instead of forwarding; with `after_upstream` the request is forwarded first
        (the registry acts on it) and its response replaced. `when` narrows the rule to
        requests a predicate accepts (e.g. ``lambda r: r.content_length > 4 << 20``)."""
        return self._rule(
            FaultKind.FAIL,
            actions,
            path=path,
            methods=methods,
            when=when,
            status=status,
            rate=rate,
            count=count,
            skip=skip,
            code=code,
            message=message,
            body=body,
            headers=dict(headers or {}),
            retry_after=retry_after,
            after_upstream=after_upstream,
            name=name,
        )

    def reset_connection(
        self,
        actions: ActionsArg = None,
        *,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        after_bytes: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """TCP RST on the client connection: with `after_bytes` 0 before anything is
        forwarded or answered; otherwise after the response head and `after_bytes` body bytes."""
        return self._rule(
            FaultKind.RESET_CONNECTION,
            actions,
            path=path,
            methods=methods,
            rate=rate,
            count=count,
            skip=skip,
            after_bytes=after_bytes,
            name=name,
        )

    def slow_body(
        self,
        actions: ActionsArg = None,
        *,
        bytes_per_second: float | None = None,
        stall_seconds: float | None = None,
        after_bytes: int = 0,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Throttle the response body to `bytes_per_second`, and/or send the head and
        `after_bytes` body bytes then nothing for `stall_seconds` (then the rest)."""
        if bytes_per_second is None and stall_seconds is None:
            raise ValueError("give bytes_per_second and/or stall_seconds")
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0")
        return self._rule(
            FaultKind.SLOW_BODY,
            actions,
            path=path,
            methods=methods,
            bytes_per_second=bytes_per_second,
            stall_seconds=stall_seconds,
            after_bytes=after_bytes,
            rate=rate,
            count=count,
            skip=skip,
            name=name,
        )

    def truncate_body(
        self,
        actions: ActionsArg = None,
        keep_bytes: int = 0,
        *,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Send the head (original Content-Length) and `keep_bytes` of the body, then close
        the connection cleanly (FIN)."""
        return self._rule(
            FaultKind.TRUNCATE_BODY,
            actions,
            path=path,
            methods=methods,
            keep_bytes=keep_bytes,
            rate=rate,
            count=count,
            skip=skip,
            name=name,
        )

    def corrupt_body(
        self,
        actions: ActionsArg = None,
        *,
        offset: int = 0,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Flip (XOR 0xFF) the response body byte at `offset`: same length, wrong digest."""
        return self._rule(
            FaultKind.CORRUPT_BODY,
            actions,
            path=path,
            methods=methods,
            offset=offset,
            rate=rate,
            count=count,
            skip=skip,
            name=name,
        )

    def delay(
        self,
        actions: ActionsArg = None,
        seconds: float = 0.05,
        *,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Wait `seconds` before forwarding (added latency; the request is in flight)."""
        return self._rule(
            FaultKind.DELAY,
            actions,
            path=path,
            methods=methods,
            seconds=seconds,
            rate=rate,
            count=count,
            skip=skip,
            name=name,
        )

    def add_headers(
        self,
        actions: ActionsArg = None,
        headers: Mapping[str, str] | Callable[[RequestView], Mapping[str, str]] | None = None,
        *,
        rate: float | None = None,
        count: int | None = None,
        skip: int = 0,
        path: str | re.Pattern[str] | None = None,
        methods: Iterable[str] | None = None,
        when: Callable[[RequestView], bool] | None = None,
        name: str = "",
    ) -> FaultRule:
        """Add `headers` to the upstream's response as relayed (replacing headers of the same
        names): a mapping, or a function of the request called once per matching request when
        it arrives (e.g. a registry's rate-limit headers). Responses the proxy makes up itself
        (a `fail`, a limit's 429) carry only their own headers."""
        fixed = headers if isinstance(headers, Mapping) else {}
        source = None if headers is None or isinstance(headers, Mapping) else headers
        return self._rule(
            FaultKind.ADD_HEADERS,
            actions,
            path=path,
            methods=methods,
            when=when,
            headers=dict(fixed),
            header_source=source,
            rate=rate,
            count=count,
            skip=skip,
            name=name,
        )

    # -- counting ---------------------------------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        """Every completed request since start or the last `reset()`, in completion order."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Forget the log (and so all counts). Requests in flight now are not logged when they
        complete. Rules stay, with their state (limits' in-flight slots included)."""
        with self._lock:
            self._log.clear()
            self._epoch += 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in flight: a client has its response slightly before the
        proxy has logged it. True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._live, timeout)

    def stats(
        self,
        actions: ActionsArg = None,
        *,
        where: Callable[[RequestRecord], bool] | None = None,
    ) -> ActionStats:
        """Figures for one action, a group of actions (combined) or, with None, everything.

        `where` keeps only the completed requests it accepts (e.g. `lambda r: r.status != 429`
        for the requests a limit admitted); requests still in flight are then left out, as
        their outcome is unknown.
        """
        wanted = _action_set(actions)
        now = time.monotonic()
        with self._lock:
            records = [
                r
                for r in self._log
                if (wanted is None or r.action in wanted) and (where is None or where(r))
            ]
            live = [
                v
                for v in self._live.values()
                if where is None
                and v.epoch == self._epoch
                and (wanted is None or v.action in wanted)
            ]
            every = frozenset(self._live_count) | {r.action for r in self._log}
        intervals = [(r.started, r.ended) for r in records] + [(v.started, now) for v in live]
        peak, busy = 0, 0.0
        if intervals:
            # Sweep line: ends sort before starts at the same instant (touching != overlapping).
            events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
            level, last = 0, events[0][0]
            for t, delta in events:
                if level > 0:
                    busy += t - last
                level += delta
                last = t
                peak = max(peak, level)
        total = sum(e - s for s, e in intervals)
        span = (max(e for _, e in intervals) - min(s for s, _ in intervals)) if intervals else 0.0
        return ActionStats(
            actions=wanted if wanted is not None else every,
            requests=len(records) + len(live),
            completed=len(records),
            statuses=Counter(r.status for r in records),
            faults=Counter(f for r in records for f in r.faults),
            bytes_in=sum(r.bytes_in for r in records),
            bytes_out=sum(r.bytes_out for r in records),
            in_flight=len(live),
            peak_in_flight=peak,
            mean_in_flight=total / span if span > 0 else 0.0,
            busy_mean_in_flight=total / busy if busy > 0 else 0.0,
            span=span,
        )

    def count(self, actions: ActionsArg = None, status: int | None = None) -> int:
        """Completed requests of these actions (optionally with this status)."""
        s = self.stats(actions)
        return s.completed if status is None else s.statuses[status]
