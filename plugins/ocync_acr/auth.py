"""`AcrAuth`: the standard token exchange, with a Microsoft Entra identity when nothing else.

Credentials, first match wins: the registry's `credentials` (the admin user or a repository-
scoped token; the hook leaves those to the standard provider), the docker config entry
(``az acr login`` writes one), then Microsoft Entra ID: an Entra token exchanged for an ACR
refresh token (`RefreshTokens`), which the standard `TokenCache` trades at ``/oauth2/token``
for access tokens per scope set. With ``auth_type: acr`` Entra ID is the only way.

Without any of them the registry is read anonymously (ACR's anonymous pull); if it refuses,
the error says which ways were tried.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ocync_acr.aad import AadTokenSource, AadUnavailable, aad_token_source
from ocync_acr.detect import AZURE_CLOUDS, parse_acr_host
from ocync_acr.exchange import RefreshTokens
from ocync_acr.options import acr_options
from ocync_core.auth.bearer import TokenError
from ocync_core.auth.credentials import Credentials
from ocync_core.auth.provider import StandardAuth
from ocync_core.errors import AuthenticationError

if TYPE_CHECKING:
    import httpx

    from ocync_core.auth.dockerconfig import DockerConfig
    from ocync_core.policies import Scopes
    from ocync_core.registry import RegistrySettings

__all__ = ["NULL_USER", "AcrAuth", "aad_scope"]

log = logging.getLogger("ocync.acr")

# The user name ACR expects beside a refresh token (what `az acr login` hands to docker).
NULL_USER = "00000000-0000-0000-0000-000000000000"


def aad_scope(registry: RegistrySettings) -> str:
    """The Entra scope to ask for: the `acr_aad_scope` key, else the registry cloud's."""
    configured = acr_options(registry.options).acr_aad_scope
    if configured:
        return configured
    host = parse_acr_host(registry.host)
    return (host.cloud if host is not None else AZURE_CLOUDS["azurecr.io"]).aad_scope


class AcrAuth(StandardAuth):
    """Authorizes requests to one ACR registry (an `AuthProvider`).

    :param entra_only: skip the docker config (``auth_type: acr``); a missing Entra identity
        is then an error rather than anonymous access.
    :param aad: where Entra tokens come from (default: see `ocync_acr.aad`).
    """

    def __init__(
        self,
        registry: RegistrySettings,
        http: httpx.AsyncClient,
        *,
        entra_only: bool = False,
        aad: AadTokenSource | None = None,
        docker_config: DockerConfig | None = None,
    ) -> None:
        # With `auth_type: acr` the registry's token is an Entra token, never a bearer token
        # for the registry: the standard provider must not send it as one.
        super().__init__(replace(registry, token=None), http, docker_config)
        self.entra_only = entra_only
        source = aad if aad is not None else aad_token_source(registry, entra_only)
        self.refresh = RefreshTokens(self.registry, http, source, aad_scope(registry))
        self._entra_in_use = False
        self._no_entra: str | None = None  # why Entra ID was unavailable, for the hint

    def __repr__(self) -> str:
        return f"AcrAuth({self.registry.label!r})"

    async def credentials(self) -> Credentials | None:
        """Explicit or docker-config credentials, else those of an Entra identity."""
        if not self.entra_only:
            found = await super().credentials()
            if found is not None:
                return found
        challenge = self.challenge
        if challenge is None or challenge.scheme != "bearer" or self._no_entra is not None:
            return None
        try:
            refresh = await self.refresh.get(challenge)
        except AadUnavailable as exc:
            if self.entra_only:
                raise AuthenticationError(
                    f"registry {self.registry.label} (auth_type: acr): {exc}"
                ) from None
            # Asked once: looking for an identity that is not there can take seconds.
            log.debug("registry %s: no Entra identity (%s)", self.registry.label, exc)
            self._no_entra = str(exc)
            return None  # anonymous: the registry may allow anonymous pull
        self._entra_in_use = True
        return Credentials(NULL_USER, "", identity_token=refresh)

    async def authorize(self, request: httpx.Request, scopes: Scopes) -> None:
        for attempt in (1, 2):
            used = self.refresh.current
            try:
                await super().authorize(request, scopes)
                return
            except TokenError as error:
                if error.status != 401:
                    raise
                if not self._entra_in_use:
                    if self._no_entra is None:
                        raise
                    raise AuthenticationError(
                        f"{error}; no credentials for ACR registry {self.registry.label}: none "
                        "in the config or the docker config, and no Microsoft Entra token: "
                        f"{self._no_entra}"
                    ) from error
                if attempt == 2:
                    raise
                # The refresh token was refused (revoked, or it expired before its `exp`
                # said): drop it, so the retry exchanges a fresh Entra token for a new one.
                if used is not None:
                    self.refresh.forget(used)
