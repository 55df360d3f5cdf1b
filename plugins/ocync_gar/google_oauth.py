"""An emulated Google OAuth2 token endpoint (``oauth2.googleapis.com/token``), for the kit.

It serves the service-account flow that google-auth runs for a key file named by
``GOOGLE_APPLICATION_CREDENTIALS``: a JWT assertion signed with the account's private key
(``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``) is exchanged for an access token
that expires after `lifetime` seconds. The key file's ``token_uri`` points here, so the real
google-auth library talks to it unchanged. Access tokens are remembered with their expiry,
so the emulated registry can accept exactly the tokens that are currently valid.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ocync_gar.local_server import JsonHandler, LocalServer

__all__ = ["GOOGLE_TOKEN_AUDIENCE", "JWT_BEARER_GRANT", "GoogleTokenEndpoint", "TokenGrant"]

# google-auth signs its assertion for Google's endpoint, whatever the key file's token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_LIFETIME = 3600  # what Google issues: one hour
EMULATED_PROJECT = "ocync-emulated-project"


@dataclass(frozen=True)
class TokenGrant:
    """One request to the endpoint: who asked, and whether a token was issued."""

    client_email: str | None
    status: int
    access_token: str | None = None


class GoogleTokenEndpoint(LocalServer):
    """Issues access tokens to the service accounts whose keys it wrote.

    :param lifetime: seconds an access token lives (mutable: tests shorten it).
    """

    def __init__(self, *, lifetime: int = DEFAULT_LIFETIME) -> None:
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._public_keys: dict[str, rsa.RSAPublicKey] = {}  # client_email -> key
        self._valid_until: dict[str, float] = {}  # access token -> time.monotonic() deadline
        self._grants: list[TokenGrant] = []
        super().__init__(_Handler)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def grants(self) -> list[TokenGrant]:
        """Every token request served so far, refused ones included."""
        with self._lock:
            return list(self._grants)

    def write_service_account_key(
        self, path: Path, *, account: str = "ocync-mirror", project: str = EMULATED_PROJECT
    ) -> Path:
        """Write a service-account key file (as the Cloud console downloads it) to `path`."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"{account}@{project}.iam.gserviceaccount.com"
        info = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": secrets.token_hex(20),
            "private_key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "token_uri": self.token_uri,
        }
        with self._lock:
            self._public_keys[email] = key.public_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)
        return path

    def mint(self, lifetime: float | None = None) -> str:
        """An access token issued without a request (for the kit's own seeding client)."""
        token = "ya29." + secrets.token_urlsafe(32)
        seconds = self.lifetime if lifetime is None else lifetime
        with self._lock:
            self._valid_until[token] = time.monotonic() + seconds
        return token

    def is_valid(self, token: str) -> bool:
        with self._lock:
            deadline = self._valid_until.get(token)
        return deadline is not None and time.monotonic() < deadline

    def revoke(self, token: str) -> None:
        """`token` stops working before its time (a session or key revoked)."""
        with self._lock:
            self._valid_until.pop(token, None)

    def answer(self, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        """Status and JSON body for a token request's form."""
        if form.get("grant_type", [""])[0] != JWT_BEARER_GRANT:
            return self._refuse(None, 400, "unsupported_grant_type", "only the JWT bearer grant")
        assertion = form.get("assertion", [""])[0]
        try:
            email = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return self._refuse(None, 400, "invalid_grant", "the assertion is not a JWT")
        with self._lock:
            public_key = self._public_keys.get(str(email))
        if public_key is None:
            return self._refuse(email, 400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return self._refuse(email, 400, "invalid_grant", f"Invalid JWT: {exc}")
        if not str(claims.get("scope", "")).split():
            return self._refuse(email, 400, "invalid_scope", "no scope requested")
        token = self.mint()
        with self._lock:
            self._grants.append(TokenGrant(email, 200, token))
        return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    def _refuse(
        self, email: object, status: int, error: str, description: str
    ) -> tuple[int, dict[str, object]]:
        with self._lock:
            self._grants.append(TokenGrant(str(email) if email else None, status))
        return status, {"error": error, "error_description": description}


class _Handler(JsonHandler):
    def do_POST(self) -> None:
        endpoint: GoogleTokenEndpoint = self.server.owner  # type: ignore[attr-defined]
        if urllib.parse.urlsplit(self.path).path != "/token":
            self.send_json(404, {"error": "not_found"})
            return
        form = urllib.parse.parse_qs(self.read_body().decode())
        status, body = endpoint.answer(form)
        self.send_json(status, body)
