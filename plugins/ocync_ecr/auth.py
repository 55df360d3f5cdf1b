"""`EcrAuth`: `Authorization: Basic <token>` from `ecr:GetAuthorizationToken`.

No `/v2/token` round trip: ECR's token is the Basic credential itself. It is fetched once (one
fetch however many requests wait for it), cached until shortly before its `expiresAt`, and
dropped when the registry answers 401 so the client's single retry gets a fresh one.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import trio

from ocync_core.auth.realm import is_registry_url, registry_origins
from ocync_core.errors import AuthenticationError, CredentialPolicyError
from ocync_core.policies import Scopes
from ocync_core.registry import is_loopback_host
from ocync_ecr.aws import EcrApi

if TYPE_CHECKING:
    from ocync_core.registry import RegistrySettings

__all__ = ["DEFAULT_LIFETIME", "MAX_LIFETIME", "REFRESH_MARGIN", "EcrAuth"]

log = logging.getLogger("ocync.ecr")

# ECR tokens live 12 h. Refresh this long before expiry (at most half the lifetime).
REFRESH_MARGIN = 600.0
# An expiresAt in the past or absurdly far away (clock skew, emulators: moto answers 2015)
# is replaced by this lifetime, counted from the fetch.
DEFAULT_LIFETIME = 3600.0
MAX_LIFETIME = 24 * 3600.0


class EcrAuth:
    """Authorizes requests to one private ECR registry (an `AuthProvider`).

    :param registry: the registry; its host gives region and account, `options.aws_profile`
        the credentials profile (else the AWS default chain).
    :param api: the registry's `EcrApi` (built from `registry` when omitted).
    :param clock: the wall clock (UTC) used to read `expiresAt`; tests may replace it.
    """

    def __init__(
        self,
        registry: RegistrySettings,
        api: EcrApi | None = None,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.registry = registry
        self.api = api or EcrApi(registry)
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._origins = registry_origins(registry)
        self._token: str | None = None
        self._refresh_at = 0.0  # trio clock
        self._lock = trio.Lock()
        self._warned_expiry = False
        self.fetches = 0  # GetAuthorizationToken calls made (for tests and diagnostics)

    def __repr__(self) -> str:
        return f"EcrAuth({self.registry.label!r})"

    # -- AuthProvider ---------------------------------------------------------------------

    async def authorize(self, request: httpx.Request, scopes: Scopes) -> None:
        host = request.url.host.lower().rstrip(".")
        if not is_registry_url(self._origins, request.url):
            return  # blob redirects to S3 carry their own signature, never our token
        if request.url.scheme == "http" and not is_loopback_host(host):
            raise CredentialPolicyError(
                f"registry {self.registry.label}: refusing to send ECR credentials over plain "
                f"HTTP to {host}; use https"
            )
        token = await self.token()
        request.headers["Authorization"] = f"Basic {token}"

    async def challenged(self, response: httpx.Response, scopes: Scopes) -> bool:
        sent = response.request.headers.get("Authorization") if response.request else None
        if self._token is not None and sent == f"Basic {self._token}":
            # The current token was refused (expired early, rotated): drop it once. Requests
            # that carried an older token just retry with the current one.
            log.debug("registry %s: ECR token refused; fetching a new one", self.registry.label)
            self._token = None
        return True

    # -- the token ------------------------------------------------------------------------

    def _valid(self) -> bool:
        return self._token is not None and trio.current_time() < self._refresh_at

    async def token(self) -> str:
        """The current token, fetching it when absent or due for refresh (one fetch at a time)."""
        if self._valid():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._valid():  # another waiter may have refreshed it meanwhile
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        fetched_at = trio.current_time()
        self.fetches += 1
        try:
            answer = await self.api.call("GetAuthorizationToken")
        except Exception as exc:
            raise self.api.failure("GetAuthorizationToken", exc) from exc
        data = answer.get("authorizationData") or []
        if not data or not data[0].get("authorizationToken"):
            raise AuthenticationError(
                f"registry {self.registry.label}: ECR GetAuthorizationToken returned no token"
            )
        self._token = str(data[0]["authorizationToken"])
        lifetime = self._lifetime(data[0].get("expiresAt"))
        margin = min(REFRESH_MARGIN, lifetime / 2)
        self._refresh_at = fetched_at + lifetime - margin

    def _lifetime(self, expires_at: Any) -> float:
        lifetime: float | None = None
        if isinstance(expires_at, datetime.datetime):
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=datetime.UTC)
            lifetime = (expires_at - self._clock()).total_seconds()
        if lifetime is None or lifetime <= 0 or lifetime > MAX_LIFETIME:
            if not self._warned_expiry:
                self._warned_expiry = True
                log.warning(
                    "registry %s: ECR token expiresAt %s is not in the next %d h; "
                    "treating it as valid for %d min from now",
                    self.registry.label,
                    expires_at,
                    int(MAX_LIFETIME // 3600),
                    int(DEFAULT_LIFETIME // 60),
                )
            lifetime = DEFAULT_LIFETIME
        return lifetime
