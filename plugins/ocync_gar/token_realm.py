"""The emulated registry's token realm (GAR's ``/v2/token``), for the kit.

Artifact Registry takes Basic credentials at its token endpoint: the user ``oauth2accesstoken``
and a Google access token. This realm accepts exactly that pair while the access token is valid
at the emulated Google endpoint (a stale or made-up token is refused with 401), issues
anonymous callers a token that grants nothing (the repositories are private), and signs
registry tokens with the kit's `TokenServer` so docker-registry accepts them.
"""

from __future__ import annotations

import base64
import binascii
import threading
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocync_conformance.tokenserver import Scope, parse_scope
from ocync_gar.auth import ACCESS_TOKEN_USER
from ocync_gar.local_server import JsonHandler, LocalServer

if TYPE_CHECKING:
    from ocync_conformance.tokenserver import TokenServer
    from ocync_gar.google_oauth import GoogleTokenEndpoint

__all__ = ["GarTokenRealm", "RealmRequest"]


@dataclass(frozen=True)
class RealmRequest:
    """One token request: the user it authenticated (None: anonymous), scopes, status."""

    user: str | None
    scopes: tuple[Scope, ...]
    status: int


class GarTokenRealm(LocalServer):
    """Registry tokens for ``oauth2accesstoken`` + a valid Google access token.

    :param google: the endpoint whose access tokens are accepted.
    :param signer: signs the registry tokens (its `service`/`issuer` configure the registry);
        it need not be running.
    """

    def __init__(self, google: GoogleTokenEndpoint, signer: TokenServer) -> None:
        self.google = google
        self.signer = signer
        self._lock = threading.Lock()
        self._requests: list[RealmRequest] = []
        super().__init__(_Handler)

    @property
    def realm(self) -> str:
        return f"{self.url}/v2/token"

    @property
    def requests(self) -> list[RealmRequest]:
        with self._lock:
            return list(self._requests)

    def answer(
        self, authorization: str | None, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, object]]:
        """Status and JSON body for a token request."""
        scopes = tuple(s for raw in query.get("scope", []) for s in parse_scope(raw))
        user, ok = self._user(authorization)
        if not ok:
            self._record(RealmRequest(user, scopes, 401))
            return 401, {
                "errors": [
                    {
                        "code": "UNAUTHORIZED",
                        "message": "Not Authorized: the access token is invalid or expired",
                    }
                ]
            }
        # Anonymous callers are granted nothing: `signer` has no anonymous actions.
        token, expires_in, issued_at = self.signer.issue(user, scopes)
        self._record(RealmRequest(user, scopes, 200))
        return 200, {"token": token, "expires_in": expires_in, "issued_at": issued_at}

    def _user(self, authorization: str | None) -> tuple[str | None, bool]:
        """(user, accepted): no header is anonymous; anything but a valid access token fails."""
        if not authorization:
            return None, True
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        if user != ACCESS_TOKEN_USER:
            return user, False
        return user, self.google.is_valid(password)

    def _record(self, request: RealmRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Handler(JsonHandler):
    def do_GET(self) -> None:
        realm: GarTokenRealm = self.server.owner  # type: ignore[attr-defined]
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/v2/token":
            self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
            return
        status, body = realm.answer(
            self.headers.get("Authorization"), urllib.parse.parse_qs(parts.query)
        )
        headers = {"WWW-Authenticate": 'Basic realm="Artifact Registry"'} if status == 401 else {}
        self.send_json(status, body, headers)
