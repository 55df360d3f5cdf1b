"""Bearer token exchange (distribution token spec) with a per-scope-set, single-flight cache.

Registries issue tokens per scope set and some refuse a token outside it, so the cache key is
(realm, service, scopes). Many transfers start at once against the same repository; they must
cause one token request, not fifty, so the first caller fetches and the others wait for it.
Time comes from `trio.current_time()` only, so expiry is testable under MockClock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx
import trio

from ocync_core.auth.credentials import Credentials
from ocync_core.auth.jwt import jwt_expiry
from ocync_core.errors import (
    EXIT_AUTH,
    EXIT_FAILURE,
    AuthenticationError,
    OcyncError,
    credential_forms,
    redact_credentials,
)
from ocync_core.policies import Scopes

__all__ = ["DEFAULT_EXPIRES_IN", "Dropped", "TokenCache", "TokenError", "TokenKey"]

# The distribution token spec: "When omitted, this defaults to 60 seconds."
DEFAULT_EXPIRES_IN = 60.0
# Renew when less than this much of the lifetime remains (the larger of the two) ...
_RENEW_FRACTION = 0.1
_RENEW_SECONDS = 30.0
# ... but never before half the lifetime, or very short-lived tokens would never be reused.
_RENEW_AT_MOST = 0.5
_CLIENT_ID = "ocync"
# A JWT claiming to live longer than this is not believed (a clock far off, or a bad claim).
_LONGEST_JWT_LIFETIME = 24 * 3600.0


class TokenKey(NamedTuple):
    """What a token is valid for: one realm, one service, one exact scope set."""

    realm: str
    service: str | None
    scopes: Scopes


class Dropped(NamedTuple):
    """What `drop_token` found: whether the token was cached, and whether it was fresh."""

    found: bool
    fresh: bool


class TokenError(AuthenticationError):
    """The token endpoint did not issue a token. 401/403 exit 4; anything else exits 2."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        if status is not None and status not in (401, 403):
            self.exit_code = EXIT_FAILURE
        else:
            self.exit_code = EXIT_AUTH
        super().__init__(message)


@dataclass
class _Entry:
    token: str = field(repr=False)
    renew_at: float
    expires_at: float
    # False once the token has been handed out from the cache (rather than straight after
    # its fetch): a 401 on a reused token may just mean it was revoked, worth one re-fetch.
    fresh: bool = True


@dataclass
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    entry: _Entry | None = None
    error: OcyncError | None = None


class TokenCache:
    """Tokens for one registry's credentials, cached per TokenKey.

    The caller has already vetted the realm URL (see `check_realm`); the cache only fetches,
    remembers, renews and forgets.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        label: str = "registry",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._label = label
        self._wall_clock = wall_clock  # to read a JWT's `exp`, which is wall-clock time
        self._entries: dict[TokenKey, _Entry] = {}
        self._flights: dict[TokenKey, _Flight] = {}
        self.fetches = 0  # how many token requests were sent (tests count them)

    def __repr__(self) -> str:
        return f"TokenCache({self._label!r}, {len(self._entries)} tokens)"

    async def get(
        self,
        key: TokenKey,
        *,
        url: httpx.URL | None = None,
        credentials: Credentials | None = None,
    ) -> str:
        """A token for `key`: cached and still fresh, or fetched once for all waiters."""
        target = url if url is not None else httpx.URL(key.realm)
        while True:
            now = trio.current_time()
            entry = self._entries.get(key)
            if entry is not None and now < entry.renew_at:
                entry.fresh = False
                return entry.token
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, target, credentials)
            if entry is not None and now < entry.expires_at:
                # Someone is renewing; the old token is still good meanwhile.
                entry.fresh = False
                return entry.token
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.entry is not None:
                flight.entry.fresh = False
                return flight.entry.token
            # The leader was cancelled or hit a transport error: try again, maybe as leader.

    async def _lead(self, key: TokenKey, url: httpx.URL, credentials: Credentials | None) -> str:
        flight = _Flight()
        self._flights[key] = flight
        try:
            entry = await self._fetch(key, url, credentials)
            self._entries[key] = flight.entry = entry
        except OcyncError as exc:
            flight.error = exc  # shared: twenty waiters get one answer, not twenty requests
            raise
        finally:
            # Also on cancellation or a transport error: waiters then retry for themselves.
            del self._flights[key]
            flight.done.set()
        return entry.token

    def invalidate(self, key: TokenKey | None = None, token: str | None = None) -> bool:
        """Forget the token for `key` (only if it is `token`, when given); None forgets all.

        Returns whether a token was dropped.
        """
        if key is None:
            dropped = bool(self._entries)
            self._entries.clear()
            return dropped
        entry = self._entries.get(key)
        if entry is None or (token is not None and entry.token != token):
            return False
        del self._entries[key]
        return True

    def cached(self, key: TokenKey) -> str | None:
        """The cached token for `key`, if any (expired or not)."""
        entry = self._entries.get(key)
        return entry.token if entry is not None else None

    def drop_token(self, token: str) -> Dropped:
        """Forget every cache entry holding `token` (the one a refused request carried)."""
        dropped = Dropped(found=False, fresh=False)
        for key, entry in list(self._entries.items()):
            if entry.token == token:
                del self._entries[key]
                dropped = Dropped(found=True, fresh=dropped.fresh or entry.fresh)
        return dropped

    # -- the exchange ---------------------------------------------------------------------

    async def _fetch(
        self, key: TokenKey, url: httpx.URL, credentials: Credentials | None
    ) -> _Entry:
        started = trio.current_time()
        self.fetches += 1
        where = f"token endpoint {url.copy_with(query=None)} for {self._label}"
        try:
            response = await self._request(key, url, credentials)
        except httpx.TransportError as exc:
            # The same retryable error, naming the token endpoint: "cannot connect to
            # 10.0.0.7:443" alone leaves the reader guessing whose address that is.
            exc.args = (f"{where}: {exc}",)
            raise
        secrets = (
            *(credentials.secrets() if credentials is not None else ()),
            *credential_forms(response.request),
        )
        if response.status_code != 200:
            # Redacted before it is cut short: a cut could leave part of a secret behind.
            said = redact_credentials(_error_text(response), secrets)[:200]
            detail = f" ({said})" if said else ""
            hint = (
                "; check the credentials for this registry"
                if response.status_code in (401, 403)
                else ""
            )
            raise TokenError(
                f"{where} answered {response.status_code}{detail}{hint}", response.status_code
            )
        try:
            doc = response.json()
        except (ValueError, UnicodeDecodeError):
            raise TokenError(f"{where} did not answer with JSON") from None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(f"{where} answered without a token")
        lifetime = self._lifetime(doc.get("expires_in"), token)
        # Measured from when we asked, not when the answer came: errs towards renewing early.
        margin = min(max(lifetime * _RENEW_FRACTION, _RENEW_SECONDS), lifetime * _RENEW_AT_MOST)
        return _Entry(token, renew_at=started + lifetime - margin, expires_at=started + lifetime)

    def _lifetime(self, expires_in: object, token: str) -> float:
        """Seconds the token lives: as announced; else as its JWT says; else the spec's 60 s.

        Registries that leave `expires_in` out often issue JWTs that carry their expiry (ACR's
        live 75 minutes): taking 60 s for them would fetch a token again every 30 s.
        """
        if isinstance(expires_in, bool):
            expires_in = None  # JSON true is no number of seconds
        if isinstance(expires_in, int | float) and expires_in > 0:
            return float(expires_in)
        expires_at = jwt_expiry(token)
        if expires_at is not None:
            remaining = expires_at - self._wall_clock()
            if 0 < remaining <= _LONGEST_JWT_LIFETIME:
                return remaining
        return DEFAULT_EXPIRES_IN

    async def _request(
        self, key: TokenKey, url: httpx.URL, credentials: Credentials | None
    ) -> httpx.Response:
        """The token request: a refresh-token grant, or a GET (with Basic credentials if any)."""
        scopes = sorted(key.scopes)  # sorted: the same set always makes the same request
        if credentials is not None and credentials.identity_token:
            # OAuth2 refresh-token grant (what `docker login` leaves behind for some registries).
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "client_id": _CLIENT_ID,
            }
            if key.service:
                form["service"] = key.service
            if scopes:
                form["scope"] = " ".join(scopes)
            return await self._http.post(url, data=form)
        params: list[tuple[str, str]] = []
        if key.service:
            params.append(("service", key.service))
        params.extend(("scope", scope) for scope in scopes)
        headers = {}
        if credentials is not None and credentials.has_password:
            headers["Authorization"] = credentials.basic_header()
        # copy_merge_params keeps any query the realm already has.
        return await self._http.get(url.copy_merge_params(params), headers=headers)


def _error_text(response: httpx.Response) -> str:
    """A short human message from a token endpoint's error body, if it has one."""
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(doc, dict):
        return ""
    for name in ("details", "error_description", "message", "error"):
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value[:4096]
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", ""))[:4096]
    return ""
