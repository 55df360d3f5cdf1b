"""A small, real token server implementing the Docker/OCI distribution token spec.

docker-registry (`auth.token`) sends clients here with a `Bearer realm=...` challenge. The
server issues RS256 JWTs whose header carries the signing cert in `x5c`; the registry accepts
them because that cert is its `rootcertbundle`. It runs in a daemon thread (stdlib
`ThreadingHTTPServer`) so it works from sync pytest fixtures and from trio tests alike.

Supported:
- `GET /token?service=...&scope=...[&scope=...][&offline_token=true]` with optional Basic auth.
- `POST /token` form: `grant_type=password` (username/password) or `grant_type=refresh_token`.

Every request is recorded in `.requests` so tests can count token fetches.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import secrets
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt

from ocync_conformance.certs import SigningCert, make_signing_cert

__all__ = [
    "AccessPolicy",
    "Scope",
    "TokenRequest",
    "TokenServer",
    "parse_scope",
]


@dataclass(frozen=True)
class Scope:
    """One parsed `type:name:actions` scope (e.g. `repository:demo/app:pull,push`)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class TokenRequest:
    """What the server saw: method, path, requested scopes, authenticated user (None = anon)."""

    method: str
    path: str
    scopes: tuple[Scope, ...]
    user: str | None
    grant_type: str | None = None
    status: int = 200


# (user or None, requested scope) -> actions granted. Lets a test deny push, etc.
AccessPolicy = Callable[[str | None, Scope], Iterable[str]]


def parse_scope(raw: str) -> list[Scope]:
    """Parse a `scope` parameter value; several scopes may be space-separated in one value.

    The resource type may carry a class (`repository(plugin):name:pull`); the name is
    everything between the first and the last colon, so it may itself contain colons.
    """
    scopes: list[Scope] = []
    for part in raw.split():
        first = part.find(":")
        last = part.rfind(":")
        if first < 0 or last == first:
            continue  # malformed scope: ignore like distribution's reference server does
        typ, name, actions = part[:first], part[first + 1 : last], part[last + 1 :]
        scopes.append(Scope(typ, name, tuple(a for a in actions.split(",") if a)))
    return scopes


@dataclass
class _State:
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> user


class TokenServer:
    """Issue registry bearer tokens over real HTTP on 127.0.0.1:<random port>.

    Args:
        users: username -> password accepted via Basic auth / password grant.
        service: expected `service` (also the JWT `aud`); must match the registry config.
        issuer: JWT `iss`; must match the registry config.
        allow_anonymous: if False, requests without credentials get 401.
        anonymous_actions: actions granted to anonymous callers (default: pull only).
        expires_in: token lifetime in seconds (mutable attribute; tests may shorten it).
        policy: optional override deciding the granted actions per (user, scope).
        signing: reuse an existing signing key/cert (saves RSA key generation).
        workdir: where to write the signing key/cert (a temp dir by default).
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        service: str = "ocync-test-registry",
        issuer: str = "ocync-test-token-server",
        allow_anonymous: bool = True,
        anonymous_actions: Iterable[str] = ("pull",),
        expires_in: int = 300,
        policy: AccessPolicy | None = None,
        signing: SigningCert | None = None,
        workdir: Path | str | None = None,
    ) -> None:
        self.users: dict[str, str] = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.allow_anonymous = allow_anonymous
        self.anonymous_actions = tuple(anonymous_actions)
        self.expires_in = expires_in
        self.policy = policy
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if signing is None:
            if workdir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="ocync-token-")
                workdir = self._tmp.name
            signing = make_signing_cert(workdir)
        self.signing: SigningCert = signing
        self._requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TokenServer:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True  # a hung client must not block interpreter exit
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # fast shutdown()
            name=f"ocync-tokenserver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("TokenServer is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The `auth.token.realm` to configure in the registry."""
        return f"{self.url}/token"

    @property
    def cert_file(self) -> Path:
        """The `auth.token.rootcertbundle` to configure in the registry."""
        return self.signing.cert_file

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of every request served so far (including rejected ones)."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def add_user(self, username: str, password: str) -> None:
        self.users[username] = password

    # -- token logic -------------------------------------------------------------------------

    def granted_actions(self, user: str | None, scope: Scope) -> list[str]:
        if self.policy is not None:
            return list(self.policy(user, scope))
        if user is None:
            return [a for a in scope.actions if a in self.anonymous_actions]
        return list(scope.actions)  # authenticated users get everything they ask for

    def issue(self, user: str | None, scopes: Iterable[Scope]) -> tuple[str, int, str]:
        """Return (jwt, expires_in, issued_at RFC 3339) for `user` and requested `scopes`."""
        now = int(time.time())
        access = []
        for s in scopes:
            actions = self.granted_actions(user, s)
            if actions:
                access.append({"type": s.type, "name": s.name, "actions": actions})
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            # nbf slightly in the past: the registry checks it with little leeway.
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(
            claims,
            self.signing.key_pem,
            algorithm="RS256",
            headers={"x5c": self.signing.x5c},
        )
        issued_at = _dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return token, self.expires_in, issued_at

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _new_refresh_token(self, user: str) -> str:
        tok = secrets.token_urlsafe(24)
        with self._lock:
            self._state.refresh_tokens[tok] = user
        return tok

    def _user_for_refresh(self, tok: str) -> str | None:
        with self._lock:
            return self._state.refresh_tokens.get(tok)


def _make_handler(ts: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real token endpoint
        server_version = "ocync-tokenserver/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # silence stderr noise in test output; requests are recorded instead

        def _send_json(self, status: int, body: dict[str, Any], **headers: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            self.wfile.write(data)

        def _unauthorized(self, path: str, scopes: tuple[Scope, ...], grant: str | None) -> None:
            ts._record(TokenRequest(self.command, path, scopes, None, grant, 401))
            self._send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                WWW_Authenticate=f'Basic realm="{ts.service}"',
            )

        def _basic_user(self) -> tuple[bool, str | None]:
            """(ok, user): ok=False means credentials were given and are wrong."""
            header = self.headers.get("Authorization")
            if not header:
                return True, None
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return False, None
            try:
                user, _, pw = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False, None
            if ts.users.get(user) == pw and user in ts.users:
                return True, user
            return False, None

        def _reply_token(
            self,
            path: str,
            scopes: tuple[Scope, ...],
            user: str | None,
            grant: str | None,
            refresh: bool,
        ) -> None:
            ts._record(TokenRequest(self.command, path, scopes, user, grant, 200))
            token, exp, issued = ts.issue(user, scopes)
            body: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": exp,
                "issued_at": issued,
            }
            if grant is not None:
                body["scope"] = " ".join(str(s) for s in scopes)
            if refresh and user is not None:
                body["refresh_token"] = ts._new_refresh_token(user)
            self._send_json(200, body)

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(parsed.query)
            scopes = tuple(s for raw in q.get("scope", []) for s in parse_scope(raw))
            if parsed.path != "/token":
                self._send_json(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            if q.get("service", [ts.service])[0] != ts.service:
                ts._record(TokenRequest("GET", parsed.path, scopes, None, None, 400))
                self._send_json(400, {"errors": [{"code": "INVALID_SERVICE"}]})
                return
            ok, user = self._basic_user()
            if not ok or (user is None and not ts.allow_anonymous):
                self._unauthorized(parsed.path, scopes, None)
                return
            offline = q.get("offline_token", ["false"])[0].lower() == "true"
            self._reply_token(parsed.path, scopes, user, None, offline)

        def do_POST(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            scopes = tuple(s for raw in form.get("scope", []) for s in parse_scope(raw))
            grant = form.get("grant_type", [""])[0]
            if parsed.path != "/token":
                self._send_json(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            user: str | None = None
            if grant == "password":
                name = form.get("username", [""])[0]
                if name not in ts.users or ts.users[name] != form.get("password", [""])[0]:
                    self._unauthorized(parsed.path, scopes, grant)
                    return
                user = name
            elif grant == "refresh_token":
                user = ts._user_for_refresh(form.get("refresh_token", [""])[0])
                if user is None:
                    self._unauthorized(parsed.path, scopes, grant)
                    return
            else:
                ts._record(TokenRequest("POST", parsed.path, scopes, None, grant, 400))
                self._send_json(400, {"error": "unsupported_grant_type"})
                return
            offline = form.get("access_type", [""])[0] == "offline"
            self._reply_token(parsed.path, scopes, user, grant, offline)

    return Handler
