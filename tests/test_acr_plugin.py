"""The ACR plugin: detection, policies, config keys, and every way it authenticates, against
the emulated ACR (a real docker-registry behind ACR's token service and the fault proxy)."""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio

import ocync_acr
from ocync_acr.aad import (
    AZURE_TOKEN_ENV,
    AadUnavailable,
    AzureIdentityToken,
    StaticAadToken,
    aad_token_source,
)
from ocync_acr.auth import NULL_USER, AcrAuth, aad_scope
from ocync_acr.emulation import (
    AAD_PRINCIPAL,
    ADMIN_PASSWORD,
    ADMIN_USER,
    REGISTRY_HOST,
    AcrEmulation,
    emulate_acr,
)
from ocync_acr.throttle import READ_ACTIONS, SKU_LIMITS, WRITE_ACTIONS, throttle_policy
from ocync_conformance.environments import contributed_environments
from ocync_core.auth.jwt import jwt_expiry
from ocync_core.auth.provider import StandardAuth
from ocync_core.client import RegistryClient
from ocync_core.config import parse_config
from ocync_core.digest import Digest
from ocync_core.errors import AuthenticationError, BadInput, CredentialPolicyError
from ocync_core.plugins import Plugins
from ocync_core.policies import Action
from ocync_core.registry import RegistrySettings

# -- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "name", "cloud"),
    [
        ("myregistry.azurecr.io", "myregistry", "AzureCloud"),
        ("MyRegistry.AzureCR.io", "myregistry", "AzureCloud"),
        ("myregistry.azurecr.io:443", "myregistry", "AzureCloud"),
        ("https://myregistry.azurecr.io", "myregistry", "AzureCloud"),
        ("myregistry.azurecr.io.", "myregistry", "AzureCloud"),
        ("myregistry-b5gwhfdtdkcqaxbs.azurecr.io", "myregistry-b5gwhfdtdkcqaxbs", "AzureCloud"),
        ("contoso.azurecr.cn", "contoso", "AzureChinaCloud"),
        ("contoso.azurecr.us", "contoso", "AzureUSGovernment"),
    ],
)
def test_acr_login_servers_are_detected(host: str, name: str, cloud: str) -> None:
    parsed = ocync_acr.parse_acr_host(host)
    assert parsed is not None and parsed.name == name and parsed.cloud.name == cloud
    assert Plugins.load(allow=["ocync_acr"]).kind_for(RegistrySettings(host=host)) == "acr"


@pytest.mark.parametrize(
    "host",
    [
        "azurecr.io",
        "myregistry.westeurope.data.azurecr.io",  # a data endpoint: blobs, not a registry
        "myregistry.azurecr.io.example.com",
        "myregistry.azurecr.com",
        "-myregistry.azurecr.io",
        "myregistry-.azurecr.io",
        "mcr.microsoft.com",
        "ghcr.io",
    ],
)
def test_other_hosts_are_not_acr(host: str) -> None:
    assert ocync_acr.parse_acr_host(host) is None
    assert Plugins.load(allow=["ocync_acr"]).kind_for(RegistrySettings(host=host)) == "oci"


def test_plugin_declares_its_kind_hosts_and_environments() -> None:
    plugins = Plugins.load(allow=["ocync_acr"])
    info = {p.name: p for p in plugins.describe()}["ocync_acr"]
    assert info.kinds == ("acr",)
    assert any("azurecr.io" in h for h in info.hosts)
    assert any("azurecr.cn" in h for h in info.hosts)
    assert any("azurecr.us" in h for h in info.hosts)
    assert {"acr", "acr-basic"} <= set(contributed_environments(plugins))
    # Other kinds keep the generic answers.
    other = RegistrySettings(host="registry.example.test")
    assert plugins.mount_policy(other) is not ocync_acr.MOUNT_POLICY
    assert plugins.throttle_policy(other) is not throttle_policy("standard")


# -- policies ---------------------------------------------------------------------------------


def test_reads_share_one_window_and_writes_another() -> None:
    policy = throttle_policy("standard")
    assert {policy.window_for(action) for action in READ_ACTIONS} == {"read"}
    assert {policy.window_for(action) for action in WRITE_ACTIONS} == {"write"}
    assert policy.window_for(Action.PING) == policy.window_for(Action.TOKEN) == "other"
    assert set(policy.windows) == {"read", "write", "other"}
    assert policy.windows["other"].rate is None


@pytest.mark.parametrize("sku", ["basic", "standard", "premium"])
def test_pacing_stays_under_the_tier_quotas(sku: str) -> None:
    limits = SKU_LIMITS[sku]
    windows = throttle_policy(sku).windows
    for name, per_minute in (
        ("read", limits.reads_per_minute),
        ("write", limits.writes_per_minute),
    ):
        spec = windows[name]
        assert spec.rate is not None
        # Within any minute: the burst and a minute of pacing, under the quota.
        assert spec.burst + 60 * spec.rate < per_minute, (name, spec)
        # Within any second (the emulation's grain, which admits up to the per-second share
        # rounded up): the burst, then one request per 1/rate.
        most_in_a_second = spec.burst - 1 + math.ceil(spec.rate)
        assert most_in_a_second <= math.ceil(per_minute / 60), (name, spec)


def test_documented_tier_limits() -> None:
    assert SKU_LIMITS["basic"].describe("basic") == "1000 reads/min, 100 writes/min (Basic)"
    assert SKU_LIMITS["standard"].describe("standard") == (
        "3000 reads/min, 500 writes/min (Standard)"
    )
    assert (SKU_LIMITS["premium"].reads_per_minute, SKU_LIMITS["premium"].writes_per_minute) == (
        10000,
        2000,
    )


def test_policies_answered_for_acr_registries() -> None:
    plugins = Plugins.load(allow=["ocync_acr"])
    standard = RegistrySettings(host="myregistry.azurecr.io")
    premium = RegistrySettings(host="myregistry.azurecr.io", options={"acr_sku": "premium"})
    assert plugins.throttle_policy(standard) is throttle_policy("standard")
    assert plugins.throttle_policy(premium) is throttle_policy("premium")
    mount = plugins.mount_policy(standard)
    # Writes are the scarce quota: existence is a HEAD (a read), never a self-mount (a write).
    assert mount.probe_existence is False and mount is ocync_acr.MOUNT_POLICY


def test_config_keys_reach_the_registry_options() -> None:
    plugins = Plugins.load(allow=["ocync_acr"])

    def registry(entry: dict[str, Any]) -> RegistrySettings:
        entry = {"url": "myregistry.azurecr.io", **entry}
        config = parse_config({"registries": {"acr": entry}, "mappings": []}, plugins=plugins)
        return config.registries["acr"]

    configured = registry({"acr_sku": "basic", "acr_aad_scope": "https://example.test/.default"})
    assert configured.options["acr_sku"] == "basic"
    assert plugins.throttle_policy(configured) is throttle_policy("basic")
    assert aad_scope(configured) == "https://example.test/.default"
    assert registry({}).options["acr_sku"] == "standard"
    assert registry({"auth_type": "acr", "token": "t"}).options["auth_type"] == "acr"
    with pytest.raises(BadInput, match="acr_sku"):
        registry({"acr_sku": "gold"})
    with pytest.raises(BadInput, match="auth_type: acr authenticates with Microsoft Entra ID"):
        registry({"auth_type": "acr", "credentials": {"username": "u", "password": "p"}})


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("r.azurecr.io", "https://containerregistry.azure.net/.default"),
        ("r.azurecr.cn", "https://management.chinacloudapi.cn/.default"),
        ("r.azurecr.us", "https://management.usgovcloudapi.net/.default"),
    ],
)
def test_entra_scope_follows_the_cloud(host: str, scope: str) -> None:
    assert aad_scope(RegistrySettings(host=host)) == scope


def test_auth_provider_for_each_way_of_authenticating() -> None:
    plugins = Plugins.load(allow=["ocync_acr"])
    http = httpx.AsyncClient()
    host = "myregistry.azurecr.io"

    def provider(**kw: Any) -> object:
        return plugins.auth_provider(RegistrySettings(host=host, **kw), http)

    auto = provider()
    assert isinstance(auto, AcrAuth) and not auto.entra_only
    entra = provider(token="entra", options={"auth_type": "acr"})
    assert isinstance(entra, AcrAuth) and entra.entra_only
    assert isinstance(entra.refresh.source, StaticAadToken)
    # The admin user, a repository-scoped token, a registry token, or an explicit auth_type:
    # the standard provider, exactly as for any registry.
    for kw in (
        {"username": "myregistry", "password": "p"},
        {"token": "bearer"},
        {"options": {"auth_type": "docker_config"}},
        {"options": {"auth_type": "anonymous"}},
    ):
        chosen = provider(**kw)
        assert type(chosen) is StandardAuth, kw


# -- Entra tokens -----------------------------------------------------------------------------


@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Azure identity from this machine's environment (service principal, MSI, ...)."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def no_sdk(no_azure_env: pytest.MonkeyPatch) -> None:
    """As if the `azure` extra were not installed."""
    no_azure_env.setitem(sys.modules, "azure.identity", None)


def _jwt(exp: float) -> str:
    return jwt.encode({"exp": int(exp)}, "a-key-of-at-least-thirty-two-bytes", algorithm="HS256")


def test_jwt_expiry_is_read_without_verification() -> None:
    assert jwt_expiry(_jwt(1_900_000_000)) == 1_900_000_000.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.b.c") is None
    assert jwt_expiry("x." + base64.urlsafe_b64encode(b'{"exp": "soon"}').decode() + ".y") is None


async def test_an_expired_static_token_says_how_to_renew(no_azure_env: pytest.MonkeyPatch):
    source = StaticAadToken(_jwt(time.time() - 60), AZURE_TOKEN_ENV)
    with pytest.raises(AuthenticationError, match=r"AZURE_ACCESS_TOKEN expired.*ocync\[azure\]"):
        await source.token("scope")
    fresh = await StaticAadToken(_jwt(time.time() + 600), AZURE_TOKEN_ENV).token("scope")
    assert fresh.expires_at is not None and fresh.expires_at > time.time()


async def test_a_missing_sdk_names_the_extra(no_sdk: None) -> None:
    with pytest.raises(AadUnavailable, match=r"pip install 'ocync\[azure\]'"):
        await AzureIdentityToken().token("https://containerregistry.azure.net/.default")


def test_token_source_order(no_azure_env: pytest.MonkeyPatch) -> None:
    registry = RegistrySettings(host="r.azurecr.io", token="from-config")
    assert isinstance(aad_token_source(registry, entra_only=False), AzureIdentityToken)
    configured = aad_token_source(registry, entra_only=True)
    assert isinstance(configured, StaticAadToken) and "r.azurecr.io" in configured.origin
    no_azure_env.setenv(AZURE_TOKEN_ENV, "from-env")
    from_env = aad_token_source(replace(registry, token=None), entra_only=True)
    assert isinstance(from_env, StaticAadToken) and from_env.origin == AZURE_TOKEN_ENV


def test_entra_tokens_go_to_the_registry_itself_only() -> None:
    from ocync_acr.exchange import exchange_url

    registry = RegistrySettings(host="myregistry.azurecr.io")
    url = exchange_url(registry, "https://myregistry.azurecr.io/oauth2/token?scope=x")
    assert str(url) == "https://myregistry.azurecr.io/oauth2/exchange"
    # Another registry in the same domain is someone else's: the generic realm rule would
    # allow it (a sibling host), the Entra token must not go there.
    for realm in (
        "https://attacker.azurecr.io/oauth2/token",
        "https://evil.example/oauth2/token",
        "http://myregistry.azurecr.io/oauth2/token",
    ):
        with pytest.raises(CredentialPolicyError):
            exchange_url(registry, realm)


# -- against the emulated ACR -----------------------------------------------------------------


@pytest.fixture(scope="module")
def running_acr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcrEmulation]:
    with emulate_acr(tmp_path_factory.mktemp("acr")) as emulation:
        yield emulation


@pytest.fixture
def acr(running_acr: AcrEmulation, no_azure_env: pytest.MonkeyPatch) -> AcrEmulation:
    """The emulated ACR with nothing logged yet; the Entra token is not in the environment."""
    running_acr.target.proxy.clear_faults()
    running_acr.target.proxy.wait_idle()
    running_acr.target.proxy.reset()
    running_acr.tokens.reset_requests()
    running_acr.tokens.refresh_lifetime = 3 * 3600
    return running_acr


@pytest.fixture
def entra(acr: AcrEmulation, no_azure_env: pytest.MonkeyPatch) -> AcrEmulation:
    """The emulated ACR, with its Entra token in `AZURE_ACCESS_TOKEN`."""
    no_azure_env.setenv(AZURE_TOKEN_ENV, acr.aad_token)
    return acr


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _push_and_head(client: RegistryClient, repo: str) -> None:
    data = os.urandom(300)
    digest = Digest.of(data)
    await client.upload_blob(repo, digest, len(data), _chunks(data))
    assert await client.blob_exists(repo, digest) == len(data)


def _client(settings: RegistrySettings) -> RegistryClient:
    return RegistryClient(settings, Plugins.load(allow=["ocync_acr"]))


async def test_an_entra_identity_pushes_and_pulls_with_one_exchange(entra: AcrEmulation):
    async with _client(entra.target.settings) as client:
        assert isinstance(client.auth, AcrAuth)
        async with trio.open_nursery() as nursery:
            for index in range(6):
                nursery.start_soon(_push_and_head, client, f"team/app{index % 3}")
        assert client.auth.refresh.exchanges == 1
    exchanges = entra.tokens.exchanges()
    assert [(r.status, r.user, r.grant_type) for r in exchanges] == [
        (200, AAD_PRINCIPAL, "access_token")
    ]
    grants = [r for r in entra.tokens.requests if r.path == "/oauth2/token"]
    # One refresh-token grant per scope set (push and pull for each of three repositories).
    assert grants and all(r.grant_type == "refresh_token" and r.status == 200 for r in grants)
    assert {r.user for r in grants} == {AAD_PRINCIPAL}
    assert len(grants) <= 6, [str(s) for r in grants for s in r.scopes]


async def test_the_refresh_token_is_renewed_before_it_expires(entra: AcrEmulation):
    entra.tokens.refresh_lifetime = 4  # a short life is renewed half-way: within 2 s
    async with _client(entra.target.settings) as client:
        digest = Digest.of(b"absent")
        assert await client.blob_exists("team/renewal-a", digest) is None
        assert client.auth.refresh.exchanges == 1
        await trio.sleep(2.1)
        # New scopes need a new access token, which needs a valid refresh token.
        assert await client.blob_exists("team/renewal-b", digest) is None
        assert client.auth.refresh.exchanges == 2
    assert [r.status for r in entra.tokens.exchanges()] == [200, 200]
    refused = [r for r in entra.tokens.requests if r.status != 200]
    assert not refused, "an expired refresh token was used"


async def test_a_refused_refresh_token_is_exchanged_again_once(entra: AcrEmulation):
    async with _client(entra.target.settings) as client:
        await _push_and_head(client, "team/revoked-a")
        entra.tokens.revoke_refresh_tokens()
        await _push_and_head(client, "team/revoked-b")
        assert client.auth.refresh.exchanges == 2
    statuses = [(r.path, r.status) for r in entra.tokens.requests if r.status != 200]
    assert statuses == [("/oauth2/token", 401)]


async def test_a_wrong_entra_token_is_refused_once_naming_registry_and_roles(acr: AcrEmulation):
    wrong = acr.target.wrong_credentials
    assert wrong is not None and wrong.token
    refusals: list[str] = []

    async def head(index: int) -> None:
        try:
            await client.blob_exists("team/app", Digest.of(b"%d" % index))
        except AuthenticationError as error:
            refusals.append(str(error))

    async with _client(wrong) as client, trio.open_nursery() as nursery:
        for index in range(8):
            nursery.start_soon(head, index)
    assert len(refusals) == 8
    for message in refusals:
        assert REGISTRY_HOST in message and "AcrPull" in message and "AcrPush" in message
        assert wrong.token not in message
    # Eight requests waited for the same exchange: the registry was asked once.
    assert len(acr.tokens.exchanges()) == 1


async def test_admin_user_uses_the_standard_exchange(acr: AcrEmulation):
    settings = replace(acr.target.settings, username=ADMIN_USER, password=ADMIN_PASSWORD)
    async with _client(settings) as client:
        assert type(client.auth) is StandardAuth
        await _push_and_head(client, "team/admin")
    assert not acr.tokens.exchanges()
    assert {(r.method, r.user) for r in acr.tokens.requests} == {("GET", ADMIN_USER)}


async def test_the_docker_config_of_az_acr_login_comes_before_entra(
    entra: AcrEmulation, tmp_path: Path
):
    refresh = entra.tokens.issue_refresh_token(AAD_PRINCIPAL)
    auth = base64.b64encode(f"{NULL_USER}:{refresh}".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {REGISTRY_HOST: {"auth": auth}}}))
    settings = replace(entra.target.settings, docker_config=str(config))
    async with _client(settings) as client:
        await _push_and_head(client, "team/docker-config")
        assert client.auth.refresh.exchanges == 0
    assert not entra.tokens.exchanges()
    assert {(r.method, r.user, r.status) for r in entra.tokens.requests} == {
        ("GET", AAD_PRINCIPAL, 200)
    }


async def test_without_any_identity_the_refusal_says_what_was_tried(
    acr: AcrEmulation, no_sdk: None
):
    async with _client(acr.target.settings) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.blob_exists("team/app", Digest.of(b"x"))
    message = str(caught.value)
    assert REGISTRY_HOST in message
    assert "answered 401" in message  # the registry refused anonymous access
    assert "pip install 'ocync[azure]'" in message and AZURE_TOKEN_ENV in message
    assert not acr.tokens.exchanges()


async def test_auth_type_acr_without_identity_fails_before_asking(acr: AcrEmulation, no_sdk: None):
    settings = replace(acr.target.settings, options={"auth_type": "acr"})
    async with _client(settings) as client:
        with pytest.raises(AuthenticationError, match=r"auth_type: acr.*ocync\[azure\]"):
            await client.blob_exists("team/app", Digest.of(b"x"))
    assert not acr.tokens.requests, "a token was asked for without an identity"


async def test_no_entra_token_to_a_realm_elsewhere(entra: AcrEmulation):
    realm = 'Bearer realm="https://attacker.azurecr.io/oauth2/token",service="attacker"'
    entra.target.proxy.fail(None, 401, count=2, headers={"WWW-Authenticate": realm})
    async with _client(entra.target.settings) as client:
        with pytest.raises(CredentialPolicyError, match="registry's own host"):
            await client.blob_exists("team/app", Digest.of(b"x"))
    assert not entra.tokens.requests


class _IdentityEndpoint:
    """An App Service managed-identity endpoint: what azure-identity asks on such a host."""

    def __init__(self, token: str) -> None:
        asked: list[str] = []
        self.asked = asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                ok = self.headers.get("X-IDENTITY-HEADER") == "identity-secret"
                body = json.dumps(
                    {
                        "access_token": token,
                        "expires_on": str(int(time.time()) + 3600),
                        "resource": "https://containerregistry.azure.net",
                        "token_type": "Bearer",
                    }
                ).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def test_azure_identity_managed_identity_end_to_end(
    acr: AcrEmulation, no_azure_env: pytest.MonkeyPatch
):
    endpoint = _IdentityEndpoint(acr.aad_token)
    try:
        no_azure_env.setenv("IDENTITY_ENDPOINT", endpoint.url)
        no_azure_env.setenv("IDENTITY_HEADER", "identity-secret")
        async with _client(acr.target.settings) as client:
            assert isinstance(client.auth.refresh.source, AzureIdentityToken)
            await _push_and_head(client, "team/managed-identity")
    finally:
        endpoint.close()
    assert len(endpoint.asked) == 1
    assert "resource=https://containerregistry.azure.net" in endpoint.asked[0]
    assert [(r.status, r.user) for r in acr.tokens.exchanges()] == [(200, AAD_PRINCIPAL)]
