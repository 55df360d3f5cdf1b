"""Token exchange and StandardAuth, over httpx.MockTransport with a small honest token server."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
import trio

from ocync_core.auth import (
    Challenge,
    Credentials,
    DockerConfig,
    StandardAuth,
    TokenCache,
    TokenError,
    TokenKey,
    pull_scopes,
    push_scopes,
)
from ocync_core.errors import AuthenticationError, CredentialPolicyError
from ocync_core.policies import AuthProvider, Scopes
from ocync_core.registry import RegistrySettings

REALM = "https://auth.example.com/token"
SERVICE = "registry.example.com"
PASSWORD = "hunter2-password"
REFRESH = "refresh-token-secret"


@dataclass
class Issued:
    scopes: frozenset[str]
    expires_at: float
    account: str | None


@dataclass
class Server:
    """A registry at registry.example.com whose tokens come from auth.example.com.

    Manifests need `repository:<name>:pull`; uploads need `push`; `/v2/_catalog` needs
    `registry:catalog:*`. The token server checks Basic credentials (bob / PASSWORD) or a
    refresh token, issues one opaque token per request and remembers what it grants.
    """

    expires_in: int | None = 300
    token_delay: float = 0.0
    token_status: int | None = None  # force the token endpoint to fail with this status
    realm: str = REALM
    refuse_tokens: bool = False  # the registry rejects every token (e.g. wrong signing key)
    scheme: str = "bearer"
    tokens: dict[str, Issued] = field(default_factory=dict)
    token_requests: list[httpx.Request] = field(default_factory=list)
    registry_requests: list[httpx.Request] = field(default_factory=list)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example.com":
            return await self.token_endpoint(request)
        return self.registry(request)

    async def token_endpoint(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        if self.token_delay:
            await trio.sleep(self.token_delay)
        if self.token_status is not None:
            return httpx.Response(self.token_status, json={"details": f"no ({PASSWORD})"})
        account = None
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                REFRESH
            ]:
                return httpx.Response(401, json={"error": "invalid_grant"})
            scopes = form.get("scope", [""])[0].split()
            service = form.get("service", [None])[0]
            key = "access_token"
        else:
            auth = request.headers.get("Authorization")
            if auth is not None:
                user, _, password = base64.b64decode(auth.split()[1]).decode().partition(":")
                if (user, password) != ("bob", PASSWORD):
                    return httpx.Response(401, json={"details": "incorrect username or password"})
                account = user
            scopes = request.url.params.get_list("scope")
            service = request.url.params.get("service")
            key = "token"
        if service != SERVICE:
            return httpx.Response(400, json={"details": "wrong service"})
        token = f"tok-{next(self.counter)}"
        lifetime = self.expires_in if self.expires_in is not None else 60
        self.tokens[token] = Issued(frozenset(scopes), trio.current_time() + lifetime, account)
        body: dict[str, object] = {key: token}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)

    def registry(self, request: httpx.Request) -> httpx.Response:
        self.registry_requests.append(request)
        path = request.url.path
        if path == "/v2/_catalog":
            need = "registry:catalog:*"
        else:
            rest = path.removeprefix("/v2/")
            repo = rest.split("/manifests/")[0].split("/blobs/")[0]
            action = "pull" if request.method in ("GET", "HEAD") else "push"
            need = f"repository:{repo}:{action}"
        if self.authorized(request.headers.get("Authorization"), need):
            return httpx.Response(200, json={"ok": True})
        if self.scheme == "basic":
            challenge = 'Basic realm="registry"'
        else:
            challenge = f'Bearer realm="{self.realm}",service="{SERVICE}",scope="{need}"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    def authorized(self, header: str | None, need: str) -> bool:
        if header is None:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Basic":
            return (
                self.scheme == "basic"
                and value == base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
            )
        issued = self.tokens.get(value)
        if issued is None or self.refuse_tokens or trio.current_time() >= issued.expires_at:
            return False
        kind, _, rest = need.partition(":")
        name, _, action = rest.rpartition(":")
        for scope in issued.scopes:
            s_kind, _, s_rest = scope.partition(":")
            s_name, _, s_actions = s_rest.rpartition(":")
            if (s_kind, s_name) == (kind, name) and action in s_actions.split(","):
                return True
        return False

    def revoke_all(self) -> None:
        self.tokens.clear()


def make(
    server: Server,
    registry: RegistrySettings | None = None,
    docker_config: DockerConfig | None = None,
) -> tuple[StandardAuth, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    registry = registry or RegistrySettings(host=SERVICE, username="bob", password=PASSWORD)
    empty = docker_config or DockerConfig.from_mapping({})
    return StandardAuth(registry, http, empty), http


async def send(
    auth: StandardAuth,
    http: httpx.AsyncClient,
    path: str,
    scopes: Scopes,
    method: str = "GET",
    base: str = "https://registry.example.com",
) -> httpx.Response:
    """What the registry client does: authorize, send, and on 401 learn and retry once."""
    request = http.build_request(method, base + path)
    await auth.authorize(request, scopes)
    response = await http.send(request)
    if response.status_code == 401 and await auth.challenged(response, scopes):
        request = http.build_request(method, base + path)
        await auth.authorize(request, scopes)
        response = await http.send(request)
    return response


def test_standard_auth_is_an_auth_provider() -> None:
    auth, _ = make(Server())
    assert isinstance(auth, AuthProvider)


# -- the token cache --------------------------------------------------------------------------


async def test_token_cached_per_scope_set() -> None:
    server = Server()
    auth, http = make(server)
    a, b = pull_scopes("team/a"), pull_scopes("team/b")
    assert (await send(auth, http, "/v2/team/a/manifests/1", a)).status_code == 200
    assert len(server.token_requests) == 1
    # anonymous first, 401, then with a token
    assert len(server.registry_requests) == 2
    assert "Authorization" not in server.registry_requests[0].headers
    assert (await send(auth, http, "/v2/team/a/manifests/2", a)).status_code == 200
    assert len(server.token_requests) == 1  # cached: no fetch, no 401
    assert len(server.registry_requests) == 3
    assert (await send(auth, http, "/v2/team/b/manifests/1", b)).status_code == 200
    assert len(server.token_requests) == 2  # another scope set, another token
    assert (await send(auth, http, "/v2/team/a/manifests/3", a)).status_code == 200
    assert len(server.token_requests) == 2
    request = server.token_requests[0]
    assert request.url.params.get_list("scope") == ["repository:team/a:pull"]
    assert request.url.params["service"] == SERVICE
    assert request.headers["Authorization"].startswith("Basic ")


async def test_token_request_scopes_are_sorted_and_repeated() -> None:
    server = Server()
    auth, http = make(server)
    scopes = push_scopes("t/app", "s/base")
    assert (await send(auth, http, "/v2/t/app/blobs/uploads/", scopes, "POST")).status_code == 200
    assert server.token_requests[-1].url.params.get_list("scope") == sorted(scopes)


async def test_concurrent_waiters_cause_one_fetch(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(token_delay=1.0)
    auth, http = make(server)
    scopes = pull_scopes("team/app")
    assert (await send(auth, http, "/v2/team/app/manifests/x", scopes)).status_code == 200
    auth.invalidate()
    server.token_requests.clear()
    statuses: list[int] = []

    async def one(i: int) -> None:
        response = await send(auth, http, f"/v2/team/app/manifests/{i}", scopes)
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert statuses == [200] * 20
    assert len(server.token_requests) == 1


async def test_token_cache_single_flight_direct(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(token_delay=2.0)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    cache = TokenCache(http)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    tokens: list[str] = []

    async def one() -> None:
        tokens.append(await cache.get(key))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert len(server.token_requests) == 1
    assert cache.fetches == 1
    assert len(set(tokens)) == 1 and len(tokens) == 20


async def test_token_endpoint_failure_is_shared_by_waiters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(token_delay=1.0, token_status=401)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    cache = TokenCache(http)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await cache.get(key, credentials=Credentials("bob", PASSWORD))
        except TokenError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert len(errors) == 20
    assert len(server.token_requests) == 1


async def test_renewed_before_expiry(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(expires_in=300)
    auth, http = make(server)
    scopes = pull_scopes("team/app")
    await send(auth, http, "/v2/team/app/manifests/x", scopes)
    assert len(server.token_requests) == 1
    await trio.sleep(260)
    await send(auth, http, "/v2/team/app/manifests/x", scopes)
    assert len(server.token_requests) == 1  # 40 s left: still good
    await trio.sleep(15)
    before = len(server.registry_requests)
    await send(auth, http, "/v2/team/app/manifests/x", scopes)
    # 25 s left (< 30 s): renewed before use, so the request went through without a 401.
    assert len(server.token_requests) == 2
    assert len(server.registry_requests) == before + 1


async def test_default_lifetime_is_60_seconds(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(expires_in=None)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    cache = TokenCache(http)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    first = await cache.get(key)
    await trio.sleep(29)
    assert await cache.get(key) == first
    await trio.sleep(2)
    assert await cache.get(key) != first
    assert cache.fetches == 2


def _unsigned_jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.signature"


@pytest.mark.parametrize(
    ("claims", "lifetime"),
    [
        ({"exp": 1_700_000_000 + 4500}, 4500),  # ACR: 75 minutes, no expires_in
        ({"exp": 1_700_000_000 + 90 * 86400}, 60),  # past a day: not believed
        ({"exp": 1_700_000_000 - 10}, 60),  # already past (a clock far off)
        ({"sub": "no expiry"}, 60),
    ],
)
async def test_a_jwt_without_expires_in_lives_as_long_as_it_says(
    autojump_clock: trio.testing.MockClock, claims: dict[str, object], lifetime: float
) -> None:
    issued: list[str] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        issued.append(_unsigned_jwt({**claims, "n": len(issued)}))
        return httpx.Response(200, json={"access_token": issued[-1]})

    http = httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint))
    cache = TokenCache(http, wall_clock=lambda: 1_700_000_000.0)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    first = await cache.get(key)
    await trio.sleep(lifetime * 0.45)  # renewal comes no sooner than half the lifetime
    assert await cache.get(key) == first
    await trio.sleep(lifetime * 0.6)
    assert await cache.get(key) != first
    assert cache.fetches == 2


async def test_old_token_served_while_renewal_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(expires_in=300, token_delay=5.0)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    cache = TokenCache(http)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    old = await cache.get(key)
    await trio.sleep(280)  # in the renewal window, 20 s before expiry
    got: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(got, cache.get(key)))
        await trio.sleep(1)  # the renewal is now in flight
        got.append(await cache.get(key))
    assert got[0] == old  # did not wait for the renewal
    assert got[1] != old
    assert cache.fetches == 2


async def _append(into: list[str], awaitable: object) -> None:
    into.append(await awaitable)  # type: ignore[misc]


async def test_401_on_cached_token_refetches_and_retries_once() -> None:
    server = Server()
    auth, http = make(server)
    scopes = pull_scopes("team/app")
    await send(auth, http, "/v2/team/app/manifests/x", scopes)
    server.revoke_all()  # e.g. the registry restarted with a new signing key
    before = len(server.registry_requests)
    response = await send(auth, http, "/v2/team/app/manifests/x", scopes)
    assert response.status_code == 200
    assert len(server.token_requests) == 2
    assert len(server.registry_requests) == before + 2  # the 401, then the retry


async def test_fresh_token_refused_means_no_retry() -> None:
    server = Server(refuse_tokens=True)
    auth, http = make(server)
    scopes = pull_scopes("team/app")
    # anonymous → 401 (challenge learnt: retry) → fresh token → 401 again
    response = await send(auth, http, "/v2/team/app/manifests/x", scopes)
    assert response.status_code == 401
    assert len(server.registry_requests) == 2
    assert len(server.token_requests) == 1
    # A token fetched just for this request was refused: retrying cannot help.
    assert await auth.challenged(response, scopes) is False


async def test_identity_token_flow() -> None:
    server = Server()
    registry = RegistrySettings(host=SERVICE)
    config = DockerConfig.from_mapping({"auths": {SERVICE: {"identitytoken": REFRESH}}})
    auth, http = make(server, registry, config)
    scopes = push_scopes("team/app", "base/img")
    response = await send(auth, http, "/v2/team/app/blobs/uploads/", scopes, "POST")
    assert response.status_code == 200
    (request,) = server.token_requests
    assert request.method == "POST"
    form = parse_qs(request.content.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["service"] == [SERVICE]
    assert form["scope"] == [" ".join(sorted(scopes))]
    assert "Authorization" not in request.headers


async def test_token_endpoint_401_is_exit_4_without_secrets() -> None:
    server = Server(token_status=401)
    auth, http = make(server)
    with pytest.raises(AuthenticationError) as info:
        await send(auth, http, "/v2/team/app/manifests/x", pull_scopes("team/app"))
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "auth.example.com/token" in message and "401" in message
    assert PASSWORD not in message
    assert base64.b64encode(f"bob:{PASSWORD}".encode()).decode() not in message


async def test_token_endpoint_500_is_a_failure_not_an_auth_refusal() -> None:
    server = Server(token_status=503)
    auth, http = make(server)
    with pytest.raises(TokenError) as info:
        await send(auth, http, "/v2/team/app/manifests/x", pull_scopes("team/app"))
    assert info.value.exit_code == 2
    assert "503" in str(info.value)


async def test_wrong_password_message() -> None:
    server = Server()
    registry = RegistrySettings(host=SERVICE, username="bob", password="wrong-pw")
    auth, http = make(server, registry)
    with pytest.raises(TokenError, match="incorrect username or password") as info:
        await send(auth, http, "/v2/team/app/manifests/x", pull_scopes("team/app"))
    assert "wrong-pw" not in str(info.value)


async def test_token_never_in_messages() -> None:
    server = Server()
    auth, http = make(server)
    await send(auth, http, "/v2/team/app/manifests/x", pull_scopes("team/app"))
    token = next(iter(server.tokens))
    assert token not in repr(auth) and token not in repr(auth.tokens)


# -- StandardAuth behaviour -------------------------------------------------------------------


async def test_anonymous_pull() -> None:
    server = Server()
    auth, http = make(server, RegistrySettings(host=SERVICE))
    response = await send(auth, http, "/v2/library/nginx/manifests/1", pull_scopes("library/nginx"))
    assert response.status_code == 200
    assert "Authorization" not in server.token_requests[0].headers


async def test_docker_config_looked_up_once_lazily() -> None:
    lookups: list[str] = []

    class Counting(DockerConfig):
        def credentials_for(self, host: str) -> Credentials | None:
            lookups.append(host)
            return Credentials("bob", PASSWORD)

    server = Server()
    auth, http = make(server, RegistrySettings(host=SERVICE), Counting("/nonexistent"))
    assert lookups == []
    for repo in ("a", "b", "c"):
        response = await send(auth, http, f"/v2/{repo}/manifests/1", pull_scopes(repo))
        assert response.status_code == 200
    assert lookups == [SERVICE]
    assert server.tokens[next(iter(server.tokens))].account == "bob"


async def test_basic_challenge() -> None:
    server = Server(scheme="basic")
    auth, http = make(server)
    response = await send(auth, http, "/v2/a/manifests/1", pull_scopes("a"))
    assert response.status_code == 200
    assert auth.challenge == Challenge("basic", {"realm": "registry"})
    assert server.registry_requests[-1].headers["Authorization"].startswith("Basic ")
    assert server.token_requests == []


async def test_basic_challenge_without_credentials_does_not_retry() -> None:
    server = Server(scheme="basic")
    auth, http = make(server, RegistrySettings(host=SERVICE))
    response = await send(auth, http, "/v2/a/manifests/1", pull_scopes("a"))
    assert response.status_code == 401
    assert len(server.registry_requests) == 1


async def test_challenge_scope_is_added_for_catalog() -> None:
    server = Server()
    auth, http = make(server)
    response = await send(auth, http, "/v2/_catalog", frozenset())
    assert response.status_code == 200
    assert server.token_requests[0].url.params.get_list("scope") == ["registry:catalog:*"]


async def test_foreign_realm_refused_with_credentials() -> None:
    server = Server(realm="https://evil.com/token")
    auth, http = make(server)
    with pytest.raises(CredentialPolicyError, match=r"evil\.com"):
        await send(auth, http, "/v2/a/manifests/1", pull_scopes("a"))
    assert server.token_requests == []


async def test_plain_http_registry_refused_with_credentials() -> None:
    server = Server()
    auth, http = make(server)
    with pytest.raises(CredentialPolicyError, match="plain HTTP"):
        await send(
            auth, http, "/v2/a/manifests/1", pull_scopes("a"), base="http://registry.example.com"
        )


async def test_pre_issued_token_and_foreign_hosts() -> None:
    server = Server()
    registry = RegistrySettings(host=SERVICE, token="pre-issued")
    auth, http = make(server, registry)
    request = http.build_request("GET", "https://registry.example.com/v2/a/manifests/1")
    await auth.authorize(request, pull_scopes("a"))
    assert request.headers["Authorization"] == "Bearer pre-issued"
    response = await http.send(request)
    assert response.status_code == 401
    assert await auth.challenged(response, pull_scopes("a")) is False
    # A blob redirect to a CDN never gets credentials.
    cdn = http.build_request("GET", "https://cdn.example.net/blob")
    await auth.authorize(cdn, pull_scopes("a"))
    assert "Authorization" not in cdn.headers


async def test_malformed_challenge_raises() -> None:
    auth, _ = make(Server())
    request = httpx.Request("GET", "https://registry.example.com/v2/")
    response = httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="x'}, request=request)
    with pytest.raises(AuthenticationError, match="malformed WWW-Authenticate"):
        await auth.challenged(response, frozenset())


async def test_401_without_challenge_is_not_retried() -> None:
    auth, _ = make(Server())
    request = httpx.Request("GET", "https://registry.example.com/v2/")
    response = httpx.Response(401, request=request)
    assert await auth.challenged(response, frozenset()) is False


async def test_cancelled_leader_hands_over_to_a_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(token_delay=10.0)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    cache = TokenCache(http)
    key = TokenKey(REALM, SERVICE, pull_scopes("a"))
    got: list[str] = []
    async with trio.open_nursery() as nursery:
        leader = trio.CancelScope()

        async def lead() -> None:
            with leader:
                await cache.get(key)

        nursery.start_soon(lead)
        await trio.sleep(1)
        nursery.start_soon(lambda: _append(got, cache.get(key)))
        await trio.sleep(1)
        leader.cancel()
    assert len(got) == 1
    assert len(server.token_requests) == 2  # the cancelled one, then the waiter's own
