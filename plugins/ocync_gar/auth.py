"""`GarAuth`: the standard token exchange, with a Google access token as the password.

Artifact Registry (and ``gcr.io``) runs the ordinary distribution token flow; what is special
is the credential: the user name ``oauth2accesstoken`` and an OAuth2 access token as the
password. Where the access token comes from, in order:

1. the registry's configured ``credentials`` (any user, e.g. ``_json_key``) or ``token`` (an
   access token, e.g. from ``gcloud auth print-access-token``);
2. Google application-default credentials (with the ``gcp`` extra), refreshed before the
   token's hour runs out, so a long sync keeps working;
3. the Docker config (``gcloud auth configure-docker`` installs the ``gcloud`` credential
   helper, which the core runs);
4. none: anonymous, which is enough for public repositories (``gcr.io/distroless``).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx
import trio

from ocync_core.auth.bearer import TokenError
from ocync_core.auth.challenge import Challenge
from ocync_core.auth.credentials import Credentials
from ocync_core.auth.provider import StandardAuth
from ocync_core.errors import AuthenticationError
from ocync_core.policies import Scopes
from ocync_core.registry import RegistrySettings
from ocync_gar.adc import EXTRA_HINT, AccessTokens, application_default_credentials

__all__ = ["ACCESS_TOKEN_USER", "GarAuth", "settings_with_access_token"]

log = logging.getLogger("ocync.gar")

ACCESS_TOKEN_USER = "oauth2accesstoken"


def settings_with_access_token(registry: RegistrySettings) -> RegistrySettings:
    """A configured ``token`` is an access token: the password of ``oauth2accesstoken``."""
    if registry.token and registry.username is None and registry.password is None:
        return replace(registry, username=ACCESS_TOKEN_USER, password=registry.token, token=None)
    return registry


class GarAuth(StandardAuth):
    """Authorizes requests to one Artifact Registry host (an `AuthProvider`).

    :param registry: the registry's settings.
    :param http: the client for token exchanges.
    :param require_adc: ``auth_type: gar``: application-default credentials or an error.
    """

    def __init__(
        self,
        registry: RegistrySettings,
        http: httpx.AsyncClient,
        *,
        require_adc: bool = False,
    ) -> None:
        super().__init__(settings_with_access_token(registry), http)
        self._require_adc = require_adc
        self._adc: AccessTokens | None = None
        # True once every source was tried and none had credentials: we go anonymous.
        self._anonymous = False

    def __repr__(self) -> str:
        return f"GarAuth({self.registry.label!r})"

    @property
    def access_tokens(self) -> AccessTokens | None:
        """The application-default credentials in use, if any (tests, diagnostics)."""
        return self._adc

    async def credentials(self) -> Credentials | None:
        found = await super().credentials()
        if self._adc is not None:
            # Asked on every request: the access token is replaced before it expires.
            return Credentials(ACCESS_TOKEN_USER, await self._adc.token())
        return found

    async def _resolve_credentials(self) -> Credentials | None:
        if self._explicit_credentials():
            return await super()._resolve_credentials()
        self._adc = await trio.to_thread.run_sync(
            lambda: application_default_credentials(
                self.registry.label, required=self._require_adc
            ),
            abandon_on_cancel=True,
        )
        if self._adc is not None:
            return None  # `credentials` asks the ADC for a current token each time
        found = await super()._resolve_credentials()
        self._anonymous = found is None
        return found

    async def _token(
        self, challenge: Challenge, scopes: Scopes, credentials: Credentials | None
    ) -> str:
        try:
            return await super()._token(challenge, scopes, credentials)
        except TokenError as error:
            if credentials is None and self._anonymous and error.status in (401, 403):
                raise AuthenticationError(
                    self._no_credentials(f"its token endpoint answered {error.status}")
                ) from None
            if self._adc is None or error.status != 401 or credentials is None:
                raise
            # An access token can be revoked (or expire early, clocks differ): one new one.
            log.debug("registry %s: access token refused; refreshing it", self.registry.label)
            fresh = await self._adc.token(force=True)
            if fresh == credentials.password:
                raise
            return await super()._token(challenge, scopes, Credentials(ACCESS_TOKEN_USER, fresh))

    async def challenged(self, response: httpx.Response, scopes: Scopes) -> bool:
        retry = await super().challenged(response, scopes)
        if not retry and self._anonymous and _sent_bearer(response):
            # The token we hold was issued to nobody: the repository is not public.
            request = response.request
            raise AuthenticationError(
                self._no_credentials(
                    f"{request.method} {request.url.path} answered {response.status_code}"
                )
            )
        return retry

    def _no_credentials(self, what: str) -> str:
        hint = (
            "set credentials or token in its configuration, run `gcloud auth "
            "configure-docker`, or provide Google application-default credentials"
        )
        try:
            import google.auth  # noqa: F401
        except ImportError:
            hint += f" (they need the gcp extra: {EXTRA_HINT})"
        return (
            f"registry {self.registry.label} refused anonymous access ({what}) and ocync found "
            f"no credentials for it: {hint}"
        )


def _sent_bearer(response: httpx.Response) -> bool:
    try:
        sent = response.request.headers.get("Authorization") or ""
    except RuntimeError:  # a response built without its request
        return False
    return sent.lower().startswith("bearer ")
