"""`StandardAuth`: the AuthProvider for registries that follow the distribution token spec.

Flow: requests go out anonymous until the registry's first 401 tells us how to authenticate
(its `WWW-Authenticate` challenge). From then on every request gets a Bearer token for the
scopes it needs (fetched from the challenge's realm, cached per scope set) or, for a Basic
challenge, the Basic credentials. A 401 on a request that carried a token drops that token;
the client retries once.
"""

from __future__ import annotations

import httpx
import trio

from ocync_core.auth.bearer import TokenCache, TokenKey
from ocync_core.auth.challenge import Challenge, parse_www_authenticate
from ocync_core.auth.credentials import Credentials
from ocync_core.auth.dockerconfig import DockerConfig
from ocync_core.auth.realm import check_realm, is_registry_url, registry_origins
from ocync_core.auth.scopes import merge_scopes, scopes_cover
from ocync_core.errors import AuthenticationError, CredentialPolicyError, OcyncError
from ocync_core.policies import Scopes
from ocync_core.registry import RegistrySettings, is_loopback_host

__all__ = ["StandardAuth"]


class StandardAuth:
    """Authorizes requests to one registry (implements `ocync_core.policies.AuthProvider`).

    Credentials: `registry.username`/`password`; else `registry.token`, sent as a
    pre-issued Bearer token on every request; else the Docker config's entry for
    `registry.host` (looked up once, on first need, in a worker thread). `docker_config`
    defaults to `DockerConfig(registry.docker_config)`.
    """

    def __init__(
        self,
        registry: RegistrySettings,
        http: httpx.AsyncClient,
        docker_config: DockerConfig | None = None,
    ) -> None:
        self.registry = registry
        self._http = http
        self._docker_config = docker_config
        self._tokens = TokenCache(http, label=registry.label)
        self._origins = registry_origins(registry)
        self._challenge: Challenge | None = None
        # Scopes the registry asked for (challenge `scope`) beyond what a caller requested,
        # keyed by what the caller requested: the next token for that request includes them.
        self._extra_scopes: dict[Scopes, Scopes] = {}
        self._credentials: Credentials | None = None
        self._credentials_known = False
        self._credentials_failure: OcyncError | None = None
        self._credentials_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"StandardAuth({self.registry.label!r})"

    @property
    def tokens(self) -> TokenCache:
        """The token cache (exposed for inspection: tests count its fetches)."""
        return self._tokens

    @property
    def challenge(self) -> Challenge | None:
        """The challenge learnt from the registry's last 401, if any."""
        return self._challenge

    # -- AuthProvider ---------------------------------------------------------------------

    async def authorize(self, request: httpx.Request, scopes: Scopes) -> None:
        """Set `Authorization` for these scopes, or leave the request anonymous."""
        if not is_registry_url(self._origins, request.url):
            return  # a redirect to a CDN, another host or port never gets our credentials
        if self.registry.token:
            self._require_secure(request)
            request.headers["Authorization"] = f"Bearer {self.registry.token}"
            return
        challenge = self._challenge
        if challenge is None:
            return  # no 401 seen yet: anonymous may well be enough (public images)
        credentials = await self.credentials()
        if challenge.scheme == "bearer":
            if credentials is not None:
                self._require_secure(request)
            token = await self._token(challenge, scopes, credentials)
            request.headers["Authorization"] = f"Bearer {token}"
        elif challenge.scheme == "basic" and credentials is not None and credentials.has_password:
            self._require_secure(request)
            request.headers["Authorization"] = credentials.basic_header()

    async def challenged(self, response: httpx.Response, scopes: Scopes) -> bool:
        """Learn the 401's challenge, drop the token it refused; True if a retry may help."""
        try:
            sent = response.request.headers.get("Authorization")
        except RuntimeError:  # a response built without its request
            sent = None
        learnt = False
        values = response.headers.get_list("WWW-Authenticate")
        if values:
            chosen = _choose(parse_www_authenticate(", ".join(values)), self.registry)
            if chosen is not None:
                learnt = self._challenge is None or _identity(chosen) != _identity(self._challenge)
                self._challenge = chosen
                learnt = self._learn_scopes(chosen, scopes) or learnt
        if self.registry.token or self._challenge is None:
            # A pre-issued token is all we have; without a challenge we know nothing more.
            return learnt and not self.registry.token
        sent_scheme, _, sent_value = (sent or "").partition(" ")
        sent_scheme = sent_scheme.lower()
        if self._challenge.scheme == "bearer":
            if sent_scheme != "bearer":
                return True  # went anonymous or Basic; a token is the next thing to try
            dropped = self._tokens.drop_token(sent_value.strip())
            if learnt:
                return True
            if dropped.found:
                # A reused token may have been revoked early; a just-fetched one was refused.
                return not dropped.fresh
            return True  # already dropped or replaced by a concurrent request: a new one helps
        if self._challenge.scheme == "basic":
            if sent_scheme == "basic":
                return False
            credentials = await self.credentials()
            return credentials is not None and credentials.has_password
        return False

    def invalidate(self) -> None:
        """Forget every token and any credentials looked up in the Docker config.

        For long runs whose credentials rotate (a credential helper handing out short-lived
        passwords): the next request looks them up again.
        """
        self._tokens.invalidate()
        if not self._explicit_credentials():
            self._credentials = None
            self._credentials_known = False

    # -- helpers --------------------------------------------------------------------------

    async def credentials(self) -> Credentials | None:
        """The credentials for this registry, resolved once (a failure too: a credential helper
        that failed or hung is not asked again for every image of the run)."""
        if self._credentials_failure is not None:
            raise self._credentials_failure
        if self._credentials_known:
            return self._credentials
        async with self._credentials_lock:
            if self._credentials_failure is not None:
                raise self._credentials_failure
            if not self._credentials_known:
                try:
                    self._credentials = await self._resolve_credentials()
                except OcyncError as failure:
                    self._credentials_failure = failure
                    raise
                self._credentials_known = True
        return self._credentials

    def _explicit_credentials(self) -> bool:
        return self.registry.username is not None or self.registry.password is not None

    async def _resolve_credentials(self) -> Credentials | None:
        if self._explicit_credentials():
            return Credentials(self.registry.username or "", self.registry.password or "")
        if self.registry.token:
            return None
        config = self._docker_config or DockerConfig(self.registry.docker_config)
        # Reading files and running credential helpers blocks: keep it off the trio thread.
        return await trio.to_thread.run_sync(
            config.credentials_for, self.registry.host, abandon_on_cancel=True
        )

    def _learn_scopes(self, challenge: Challenge, scopes: Scopes) -> bool:
        if challenge.scheme != "bearer" or not challenge.scope:
            return False
        # A challenge's scope may list several, space-separated (distribution token spec).
        wanted = frozenset(challenge.scope.split())
        if scopes_cover(self._effective_scopes(scopes), wanted):
            return False
        self._extra_scopes[scopes] = merge_scopes(self._extra_scopes.get(scopes, ()), wanted)
        return True

    def _effective_scopes(self, scopes: Scopes) -> Scopes:
        extra = self._extra_scopes.get(scopes)
        return merge_scopes(scopes, extra) if extra else scopes

    async def _token(
        self, challenge: Challenge, scopes: Scopes, credentials: Credentials | None
    ) -> str:
        realm = challenge.realm or ""
        # Vetted before every fetch: the realm came off the network.
        url = check_realm(self.registry, realm, with_credentials=credentials is not None)
        key = TokenKey(realm, challenge.service, self._effective_scopes(scopes))
        return await self._tokens.get(key, url=url, credentials=credentials)

    def _require_secure(self, request: httpx.Request) -> None:
        if request.url.scheme == "http" and not is_loopback_host(request.url.host):
            raise CredentialPolicyError(
                f"registry {self.registry.label}: refusing to send credentials over plain "
                f"HTTP to {request.url.host}; use https"
            )


def _identity(challenge: Challenge) -> tuple[str, str | None, str | None]:
    """What makes two challenges the same authority (the scope differs per request)."""
    return challenge.scheme, challenge.realm, challenge.service


def _choose(challenges: list[Challenge], registry: RegistrySettings) -> Challenge | None:
    """Bearer (with a realm) over Basic; schemes we do not speak are ignored."""
    bearer = [c for c in challenges if c.scheme == "bearer"]
    for challenge in bearer:
        if challenge.realm:
            return challenge
    basic = [c for c in challenges if c.scheme == "basic"]
    if basic:
        return basic[0]
    if bearer:
        raise AuthenticationError(
            f"registry {registry.label} sent a Bearer challenge without a realm; "
            "cannot request a token"
        )
    return None
