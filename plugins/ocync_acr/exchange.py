"""ACR refresh tokens: a Microsoft Entra access token exchanged at the registry's
``/oauth2/exchange``.

``POST /oauth2/exchange`` (form ``grant_type=access_token``, ``service``, ``access_token``)
answers ``{"refresh_token": ...}``, a JWT valid for about three hours. The core's `TokenCache`
then trades it at ``/oauth2/token`` (the ``refresh_token`` grant) for an access token per scope
set. One exchange per registry however many requests wait for it; renewed ten minutes before
its ``exp``.

The Entra token is good for every registry of its tenant, so it goes to the registry's own
host only (the host of the challenge's realm must be one of the registry's names), over HTTPS
unless that host is loopback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import trio

from ocync_acr.aad import AadTokenSource
from ocync_core.auth.jwt import jwt_expiry
from ocync_core.auth.realm import check_realm, registry_hostnames
from ocync_core.errors import AuthenticationError, CredentialPolicyError

if TYPE_CHECKING:
    from ocync_core.auth.challenge import Challenge
    from ocync_core.registry import RegistrySettings

__all__ = ["DEFAULT_LIFETIME", "REFRESH_MARGIN", "RefreshTokens", "exchange_url"]

log = logging.getLogger("ocync.acr")

REFRESH_MARGIN = 600.0
# A refresh token whose `exp` cannot be read (or is absurd) is renewed after this long.
DEFAULT_LIFETIME = 3600.0
_MAX_LIFETIME = 24 * 3600.0


def exchange_url(registry: RegistrySettings, realm: str) -> httpx.URL:
    """The ``/oauth2/exchange`` beside the challenge's realm, if an Entra token may go there."""
    url = check_realm(registry, realm, with_credentials=True)
    host = url.host.lower().rstrip(".")
    if host not in registry_hostnames(registry):
        raise CredentialPolicyError(
            f"registry {registry.label}: token realm {url.copy_with(query=None)} is not on the "
            "registry's own host; refusing to send it a Microsoft Entra token"
        )
    return url.copy_with(query=None).join("exchange")


class RefreshTokens:
    """The ACR refresh token of one registry, exchanged on first need and renewed before expiry.

    :param source: where Entra access tokens come from.
    :param scope: the Entra scope to ask `source` for.
    :param clock: the wall clock (epoch seconds) against which `exp` is read; tests replace it.
    """

    def __init__(
        self,
        registry: RegistrySettings,
        http: httpx.AsyncClient,
        source: AadTokenSource,
        scope: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.source = source
        self.scope = scope
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0  # trio clock
        self._lock = trio.Lock()
        self._attempts = 0
        self._failure: AuthenticationError | None = None
        self._refused: tuple[str, AuthenticationError] | None = None  # Entra token, refusal
        self.exchanges = 0  # exchange requests sent (tests count them)

    def __repr__(self) -> str:
        return f"RefreshTokens({self.registry.label!r}, {self.exchanges} exchanges)"

    @property
    def current(self) -> str | None:
        """The refresh token held now, if any (renewed or not)."""
        return self._token

    def forget(self, token: str) -> bool:
        """Drop `token` if it is still the current one (the registry refused it)."""
        if token != self._token:
            return False
        self._token = None
        return True

    def _valid(self) -> bool:
        return self._token is not None and trio.current_time() < self._renew_at

    async def get(self, challenge: Challenge) -> str:
        """The refresh token, exchanging an Entra token for one when none is valid."""
        if not self._valid():
            seen = self._attempts
            async with self._lock:
                if not self._valid():  # another waiter may have exchanged meanwhile
                    if self._attempts != seen and self._failure is not None:
                        # The exchange this call waited for failed: one refusal for all the
                        # waiters, not one exchange each.
                        raise self._failure
                    self._attempts += 1
                    try:
                        await self._exchange(challenge)
                    except AuthenticationError as exc:
                        self._failure = exc
                        raise
                    self._failure = None
        assert self._token is not None
        return self._token

    async def _exchange(self, challenge: Challenge) -> None:
        url = exchange_url(self.registry, challenge.realm or "")
        aad = await self.source.token(self.scope)
        if self._refused is not None and self._refused[0] == aad.value:
            raise self._refused[1]  # the registry would refuse the same token again
        started = trio.current_time()
        self.exchanges += 1
        form = {
            "grant_type": "access_token",
            "service": challenge.service or self.registry.host,
            "access_token": aad.value,
        }
        where = f"registry {self.registry.label}: {url}"
        try:
            response = await self._http.post(url, data=form)
        except httpx.HTTPError as exc:
            raise AuthenticationError(
                f"{where} could not be reached ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            said = _error_text(response).replace(aad.value, "***")
            detail = f" ({said})" if said else ""
            refusal = AuthenticationError(
                f"{where} refused the Microsoft Entra token with {response.status_code}{detail}; "
                "the identity needs a role on the registry (AcrPull to read, AcrPush to write; "
                "Container Registry Repository Reader/Writer on an ABAC-mode registry)"
            )
            if response.status_code in (401, 403):
                self._refused = (aad.value, refusal)
            raise refusal
        try:
            doc = response.json()
        except (ValueError, UnicodeDecodeError):
            doc = None
        token = doc.get("refresh_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{where} answered without a refresh_token")
        lifetime = self._lifetime(token)
        self._token = token
        self._renew_at = started + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        log.debug("registry %s: ACR refresh token valid for %.0f s", self.registry.label, lifetime)

    def _lifetime(self, token: str) -> float:
        expires_at = jwt_expiry(token)
        lifetime = expires_at - self._clock() if expires_at is not None else None
        if lifetime is None or lifetime <= 0 or lifetime > _MAX_LIFETIME:
            return DEFAULT_LIFETIME
        return lifetime


def _error_text(response: httpx.Response) -> str:
    """A short message from an error body: ACR's ``{"errors": [...]}`` or an OAuth error."""
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", ""))[:200]
    for name in ("error_description", "details", "message", "error"):
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value[:200]
    return ""
