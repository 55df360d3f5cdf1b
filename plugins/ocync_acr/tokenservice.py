"""ACR's token service, emulated: ``/oauth2/exchange`` and ``/oauth2/token`` over real HTTP.

What a real ACR login server answers (https://azure.github.io/acr/AAD-OAuth.html):

- ``POST /oauth2/exchange`` (form ``grant_type=access_token``, ``service``, ``access_token``):
  a known Microsoft Entra token earns ``{"refresh_token": <JWT, about 3 h>}``; any other 401;
- ``POST /oauth2/token`` (form ``grant_type=refresh_token``, ``service``, ``scope``,
  ``refresh_token``; or ``grant_type=password``): ``{"access_token": <JWT>}``, nothing else;
- ``GET /oauth2/token?service=&scope=`` with Basic credentials (the admin user, or the null
  user ``00000000-0000-0000-0000-000000000000`` with a refresh token as password, which is
  what ``az acr login`` leaves in the docker config): ``{"access_token": <JWT>}``;
- no credentials: 401 (anonymous pull is off, as on a new registry).

Access tokens are the kit's `TokenServer` JWTs, which docker-registry verifies; this subclass
only serves ACR's paths and grants. Every request is recorded (`requests`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

from ocync_conformance.tokenserver import Scope, TokenRequest, TokenServer, parse_scope

__all__ = ["NULL_USER", "AcrTokenService"]

NULL_USER = "00000000-0000-0000-0000-000000000000"
_AUTH_REQUIRED = (
    "authentication required, visit https://aka.ms/acr/authorization for more information."
)


class AcrTokenService(TokenServer):
    """The token endpoints of the ACR registry `registry_host`.

    Args:
        registry_host: the login server (``<name>.azurecr.io``): the ``service`` of tokens.
        aad_tokens: Entra access tokens the exchange accepts, each mapped to its principal.
        refresh_lifetime: seconds a refresh token stays valid (mutable; tests shorten it).
        Everything else as `TokenServer` (admin users come through `users` / `add_user`).
    """

    def __init__(
        self,
        *,
        registry_host: str,
        aad_tokens: Mapping[str, str] | None = None,
        refresh_lifetime: int = 3 * 3600,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("issuer", "Azure Container Registry")
        super().__init__(service=registry_host, allow_anonymous=False, **kwargs)
        self.aad_tokens: dict[str, str] = dict(aad_tokens or {})
        self.refresh_lifetime = refresh_lifetime
        self._refresh_tokens: dict[str, tuple[str, float]] = {}  # token -> (principal, exp)
        self._refresh_lock = threading.Lock()
        self._refresh_key = secrets.token_bytes(32)

    @property
    def realm(self) -> str:
        return f"{self.url}/oauth2/token"

    def start(self) -> AcrTokenService:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ocync-acr-tokens-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    # -- refresh tokens ------------------------------------------------------------------------

    def issue_refresh_token(self, principal: str) -> str:
        now = int(time.time())
        expires = now + self.refresh_lifetime
        claims = {
            "jti": secrets.token_hex(16),
            "sub": principal,
            "aud": self.service,
            "iss": self.issuer,
            "iat": now,
            "exp": expires,
            "grant_type": "refresh_token",
        }
        # Only this service reads it back (by lookup): a cheap HMAC signature is enough.
        token = jwt.encode(claims, self._refresh_key, algorithm="HS256")
        with self._refresh_lock:
            self._refresh_tokens[token] = (principal, float(expires))
        return token

    def principal_for_refresh_token(self, token: str) -> str | None:
        with self._refresh_lock:
            found = self._refresh_tokens.get(token)
        if found is None or found[1] <= time.time():
            return None
        return found[0]

    def revoke_refresh_tokens(self) -> None:
        with self._refresh_lock:
            self._refresh_tokens.clear()

    def exchanges(self) -> list[TokenRequest]:
        """The ``/oauth2/exchange`` requests served so far."""
        return [r for r in self.requests if r.path == "/oauth2/exchange"]


def _handler(service: AcrTokenService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ocync-acr-tokens/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # recorded in `requests` instead

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(
            self,
            status: int,
            code: str,
            message: str,
            scopes: tuple[Scope, ...] = (),
            grant: str | None = None,
        ) -> None:
            path = urllib.parse.urlsplit(self.path).path
            service._record(TokenRequest(self.command, path, scopes, None, grant, status))
            self._json(status, {"errors": [{"code": code, "message": message}]})

        def _access_token(self, principal: str, scopes: tuple[Scope, ...], grant: str) -> None:
            path = urllib.parse.urlsplit(self.path).path
            service._record(TokenRequest(self.command, path, scopes, principal, grant, 200))
            token, _, _ = service.issue(principal, scopes)
            self._json(200, {"access_token": token})  # ACR sends no expires_in

        def _basic(self) -> tuple[str, str] | None:
            scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return None
            return user, password

        def _form(self) -> dict[str, list[str]]:
            length = int(self.headers.get("Content-Length") or 0)
            return urllib.parse.parse_qs(self.rfile.read(length).decode())

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parsed.query)
            scopes = tuple(s for raw in query.get("scope", []) for s in parse_scope(raw))
            if parsed.path != "/oauth2/token":
                self._refuse(404, "NOT_FOUND", "no such endpoint")
                return
            if query.get("service", [""])[0] != service.service:
                self._refuse(400, "INVALID_SERVICE", "unknown service", scopes)
                return
            credentials = self._basic()
            if credentials is None:
                self._refuse(401, "UNAUTHORIZED", _AUTH_REQUIRED, scopes)
                return
            user, password = credentials
            if user == NULL_USER:
                principal = service.principal_for_refresh_token(password)
            elif service.users.get(user) == password and user in service.users:
                principal = user
            else:
                principal = None
            if principal is None:
                self._refuse(401, "UNAUTHORIZED", _AUTH_REQUIRED, scopes)
                return
            self._access_token(principal, scopes, "basic")

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            form = self._form()
            grant = form.get("grant_type", [""])[0]
            scopes = tuple(s for raw in form.get("scope", []) for s in parse_scope(raw))
            if path not in ("/oauth2/exchange", "/oauth2/token"):
                self._refuse(404, "NOT_FOUND", "no such endpoint")
                return
            if form.get("service", [""])[0] != service.service:
                self._refuse(400, "INVALID_SERVICE", "unknown service", scopes, grant)
                return
            if path == "/oauth2/exchange":
                self._exchange(form, grant)
                return
            if grant == "refresh_token":
                principal = service.principal_for_refresh_token(form.get("refresh_token", [""])[0])
            elif grant == "password":
                user = form.get("username", [""])[0]
                ok = user in service.users and service.users[user] == form.get("password", [""])[0]
                principal = user if ok else None
            else:
                self._refuse(400, "UNSUPPORTED", f"unsupported grant_type {grant!r}", scopes, grant)
                return
            if principal is None:
                self._refuse(401, "UNAUTHORIZED", _AUTH_REQUIRED, scopes, grant)
                return
            self._access_token(principal, scopes, grant)

        def _exchange(self, form: dict[str, list[str]], grant: str) -> None:
            if grant != "access_token":
                self._refuse(400, "UNSUPPORTED", f"unsupported grant_type {grant!r}", (), grant)
                return
            principal = service.aad_tokens.get(form.get("access_token", [""])[0])
            if principal is None:
                self._refuse(401, "UNAUTHORIZED", "invalid Microsoft Entra access token", (), grant)
                return
            service._record(TokenRequest("POST", "/oauth2/exchange", (), principal, grant, 200))
            self._json(200, {"refresh_token": service.issue_refresh_token(principal)})

    return Handler
