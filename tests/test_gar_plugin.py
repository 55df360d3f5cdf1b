"""The built-in Google Artifact Registry plugin (plugins/ocync_gar).

Auth flows run against the plugin's emulation: a real docker-registry behind a token realm that
accepts only ``oauth2accesstoken`` with a valid access token from an emulated Google OAuth2
endpoint, which the real google-auth library reaches through a service-account key file named
by ``GOOGLE_APPLICATION_CREDENTIALS``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

import ocync_gar
from ocync_core.auth.provider import StandardAuth
from ocync_core.client import RegistryClient
from ocync_core.config import parse_config
from ocync_core.digest import Digest
from ocync_core.errors import AuthenticationError
from ocync_core.plugins import Plugins
from ocync_core.policies import Action, UploadMode
from ocync_core.registry import RegistrySettings
from ocync_gar import GarAuth, GarHost, MissingExtra, parse_gar_host
from ocync_gar.emulation import GAR_HOST, GarEmulation, start_gar
from ocync_gar.throttle import PROJECT_WINDOW, REQUESTS_PER_MINUTE

USER = "oauth2accesstoken"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_gar"])


@pytest.fixture(scope="module")
def gar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GarEmulation]:
    with start_gar(tmp_path_factory.mktemp("gar")) as emulation:
        yield emulation


@pytest.fixture
def no_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No application-default credentials anywhere: no key file, no gcloud login, not on GCE."""
    from google.auth.compute_engine import _metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    # What NO_GCE_CHECK=true does when set before google-auth is imported: no metadata probe.
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)


@pytest.fixture
def adc(gar: GarEmulation, monkeypatch: pytest.MonkeyPatch) -> GarEmulation:
    """The emulation's service-account key as application-default credentials."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gar.key_file))
    return gar


@pytest.fixture
def without_google_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-auth is not installed (the gcp extra is missing)."""
    for name in list(sys.modules):
        if name == "google.auth" or name.startswith("google.auth."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.auth", None)


def _new_repo(name: str) -> str:
    return f"team/{name}-{os.urandom(3).hex()}"


def _absent() -> Digest:
    return Digest.parse(f"sha256:{os.urandom(32).hex()}")


async def _push_and_pull(client: RegistryClient, repo: str) -> bytes:
    data = os.urandom(2048)
    digest = Digest.of(data)

    async def body() -> AsyncIterator[bytes]:
        yield data

    await client.upload_blob(repo, digest, len(data), body())
    async with client.open_blob(repo, digest, len(data)) as reader:
        return b"".join([chunk async for chunk in reader.chunks()])


# -- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "location", "gcr"),
    [
        ("europe-west1-docker.pkg.dev", "europe-west1", False),
        ("us-docker.pkg.dev", "us", False),
        ("asia-docker.pkg.dev", "asia", False),
        ("northamerica-northeast2-docker.pkg.dev", "northamerica-northeast2", False),
        ("me-central2-docker.pkg.dev", "me-central2", False),
        ("US-Central1-Docker.PKG.dev.", "us-central1", False),
        ("europe-west1-docker.pkg.dev:443", "europe-west1", False),
        ("https://europe-west1-docker.pkg.dev", "europe-west1", False),
        ("gcr.io", "us", True),
        ("us.gcr.io", "us", True),
        ("eu.gcr.io", "europe", True),
        ("asia.gcr.io", "asia", True),
        ("marketplace.gcr.io", "marketplace", True),
    ],
)
def test_google_hosts_are_detected(plugins: Plugins, host: str, location: str, gcr: bool):
    assert parse_gar_host(host) == GarHost(location, container_registry=gcr)
    assert plugins.kind_for(RegistrySettings(host=host)) == "gar"


@pytest.mark.parametrize(
    "host",
    [
        "docker.pkg.dev",  # no location
        "-docker.pkg.dev",
        "europe-west1-python.pkg.dev",  # another format's repositories
        "europe-west1-docker.pkg.dev.example.com",  # lookalikes on other domains
        "europe-west1-docker.pkg.devx",
        "europe-west1-docker-pkg.dev",
        "evil.europe-west1-docker.pkg.dev",
        "gcr.io.example.com",
        "notgcr.io",
        "a.b.gcr.io",
        "ghcr.io",
        "registry.example.test:5000",
    ],
)
def test_other_hosts_are_not_claimed(plugins: Plugins, host: str):
    assert parse_gar_host(host) is None
    assert plugins.kind_for(RegistrySettings(host=host)) == "oci"


def test_plugin_declares_its_kind_and_hosts(plugins: Plugins):
    assert ocync_gar.OCYNC_KINDS == ("gar",)
    assert "gar" in plugins.known_kinds()
    hosts = " ".join(ocync_gar.OCYNC_HOSTS)
    for form in ("-docker.pkg.dev", "gcr.io", "eu.gcr.io"):
        assert form in hosts


# -- policies ---------------------------------------------------------------------------------


def test_uploads_are_monolithic_for_gar_only(plugins: Plugins):
    strategy = plugins.upload_strategy(RegistrySettings(host=GAR_HOST, kind="gar"))
    assert strategy.mode is UploadMode.POST_PUT
    other = RegistrySettings(host="registry.example.test", kind="oci")
    assert ocync_gar.ocync_upload_strategy(other, "oci") is None


def test_one_window_paced_at_the_project_quota(plugins: Plugins):
    policy = plugins.throttle_policy(RegistrySettings(host="gcr.io", kind="gar"))
    assert {policy.window_for(action) for action in Action} == {PROJECT_WINDOW}
    window = policy.windows[PROJECT_WINDOW]
    assert window.rate == REQUESTS_PER_MINUTE / 60 == 1000
    assert 1 <= window.burst <= window.rate / 10
    other = RegistrySettings(host="registry.example.test", kind="oci")
    assert ocync_gar.ocync_throttle_policy(other, "oci") is None


# -- which auth provider ----------------------------------------------------------------------


async def test_auth_type_chooses_the_provider(plugins: Plugins):
    async with httpx.AsyncClient() as http:

        def provider(**options: str) -> object:
            settings = RegistrySettings(host=GAR_HOST, kind="gar", options=options)
            return plugins.auth_provider(settings, http)

        assert isinstance(provider(), GarAuth)
        assert isinstance(provider(auth_type="auto"), GarAuth)
        assert isinstance(provider(auth_type="token"), GarAuth)
        assert isinstance(provider(auth_type="gar"), GarAuth)
        for asked in ("basic", "docker_config", "anonymous"):
            chosen = provider(auth_type=asked)
            assert type(chosen) is StandardAuth, f"auth_type {asked} got {chosen!r}"
        other = RegistrySettings(host="registry.example.test", kind="oci")
        assert ocync_gar.ocync_auth_provider(other, "oci", http) is None


def test_auth_type_gar_is_accepted_in_a_config(plugins: Plugins):
    config = parse_config(
        {
            "registries": {
                "src": {"url": "registry.example.test"},
                "gar": {"url": GAR_HOST, "auth_type": "gar"},
            },
            "defaults": {"source": "src", "targets": "gar"},
            "mappings": [{"from": "app"}],
        },
        source="test",
        plugins=plugins,
        env={},
    )
    settings = config.registries["gar"]
    assert settings.options["auth_type"] == "gar"
    assert plugins.kind_for(settings) == "gar"


# -- credentials against the emulation ---------------------------------------------------------


async def test_adc_credentials_push_and_pull(adc: GarEmulation, plugins: Plugins):
    grants = len(adc.google.grants)
    repo = _new_repo("adc")
    async with RegistryClient(adc.target.settings, plugins) as client:
        assert isinstance(client.auth, GarAuth)
        data = await _push_and_pull(client, repo)
        assert len(data) == 2048
        assert client.auth.access_tokens is not None
        assert client.auth.access_tokens.refreshes == 1
    new = adc.google.grants[grants:]
    assert [g.status for g in new] == [200], f"access token requests: {new}"
    assert new[0].client_email.startswith("ocync-mirror@")
    used = [r for r in adc.realm.requests if any(s.name == repo for s in r.scopes)]
    assert used and all(r.user == USER and r.status == 200 for r in used), used


async def test_many_requests_at_once_refresh_the_access_token_once(
    adc: GarEmulation, plugins: Plugins
):
    grants = len(adc.google.grants)
    async with RegistryClient(adc.target.settings, plugins) as client:
        async with trio.open_nursery() as nursery:
            for index in range(8):
                nursery.start_soon(client.blob_exists, _new_repo(f"many{index}"), _absent())
        assert client.auth.access_tokens.refreshes == 1
    assert len(adc.google.grants) - grants == 1


async def test_access_token_is_refreshed_before_it_expires(
    adc: GarEmulation, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
):
    # Two-second tokens stand for the real hour: a long sync must go on past the first.
    monkeypatch.setattr(adc.google, "lifetime", 2)
    async with RegistryClient(adc.target.settings, plugins) as client:
        assert await client.blob_exists(_new_repo("early"), _absent()) is None
        first = adc.google.grants[-1].access_token
        assert first is not None
        await trio.sleep(2.05)
        assert not adc.google.is_valid(first), "the emulated endpoint should expire its tokens"
        # A new repository needs a new registry token: the exchange must present a live one.
        repo = _new_repo("late")
        assert await client.blob_exists(repo, _absent()) is None
        assert client.auth.access_tokens.refreshes == 2
    second = adc.google.grants[-1].access_token
    assert second != first
    late = [r for r in adc.realm.requests if any(s.name == repo for s in r.scopes)]
    assert [r.status for r in late] == [200], late


async def test_a_revoked_access_token_is_replaced_once(adc: GarEmulation, plugins: Plugins):
    async with RegistryClient(adc.target.settings, plugins) as client:
        await client.blob_exists(_new_repo("before"), _absent())
        first = adc.google.grants[-1].access_token
        assert first is not None
        adc.google.revoke(first)
        repo = _new_repo("after")
        assert await client.blob_exists(repo, _absent()) is None
        assert client.auth.access_tokens.refreshes == 2
    after = [r.status for r in adc.realm.requests if any(s.name == repo for s in r.scopes)]
    assert after == [401, 200], f"token exchanges for {repo}: {after}"


async def test_configured_token_is_an_access_token(
    gar: GarEmulation, plugins: Plugins, no_adc: None
):
    settings = replace(gar.target.settings, token=gar.google.mint())
    grants = len(gar.google.grants)
    async with RegistryClient(settings, plugins) as client:
        await _push_and_pull(client, _new_repo("token"))
    assert len(gar.google.grants) == grants, "a configured token needs no ADC"
    assert gar.realm.requests[-1].user == USER


async def test_configured_credentials_are_used_as_given(
    gar: GarEmulation, plugins: Plugins, no_adc: None
):
    settings = replace(gar.target.settings, username=USER, password=gar.google.mint())
    async with RegistryClient(settings, plugins) as client:
        await _push_and_pull(client, _new_repo("basic"))


async def test_docker_config_when_there_is_no_adc(
    gar: GarEmulation, plugins: Plugins, no_adc: None, tmp_path: Path
):
    config = tmp_path / "config.json"
    entry = {"username": USER, "password": gar.google.mint()}
    config.write_text(json.dumps({"auths": {GAR_HOST: entry}}))
    settings = replace(gar.target.settings, docker_config=str(config))
    async with RegistryClient(settings, plugins) as client:
        await _push_and_pull(client, _new_repo("docker-config"))
        assert client.auth.access_tokens is None


async def test_gcloud_credential_helper(
    gar: GarEmulation,
    plugins: Plugins,
    no_adc: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # What `gcloud auth configure-docker europe-west1-docker.pkg.dev` sets up.
    helper = tmp_path / "bin" / "docker-credential-gcloud"
    helper.parent.mkdir()
    answer = json.dumps({"Username": USER, "Secret": gar.google.mint()})
    helper.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {GAR_HOST: "gcloud"}}))
    settings = replace(gar.target.settings, docker_config=str(config))
    async with RegistryClient(settings, plugins) as client:
        await _push_and_pull(client, _new_repo("helper"))


async def test_no_credentials_anywhere_says_where_to_get_them(
    gar: GarEmulation, plugins: Plugins, no_adc: None
):
    async with RegistryClient(gar.target.settings, plugins) as client:
        with pytest.raises(AuthenticationError) as caught:
            await _push_and_pull(client, _new_repo("nobody"))
    message = str(caught.value)
    assert "refused anonymous access" in message and GAR_HOST in message, message
    assert "gcloud auth configure-docker" in message, message


async def test_without_google_auth_the_error_names_the_extra(
    gar: GarEmulation, plugins: Plugins, without_google_auth: None
):
    async with RegistryClient(gar.target.settings, plugins) as client:
        with pytest.raises(AuthenticationError) as caught:
            await _push_and_pull(client, _new_repo("no-extra"))
    assert "pip install 'ocync[gcp]'" in str(caught.value), caught.value


async def test_auth_type_gar_without_google_auth_names_the_extra(
    gar: GarEmulation, plugins: Plugins, without_google_auth: None
):
    settings = replace(gar.target.settings, options={"auth_type": "gar"})
    async with RegistryClient(settings, plugins) as client:
        with pytest.raises(MissingExtra, match=r"pip install 'ocync\[gcp\]'"):
            await client.blob_exists(_new_repo("gar-no-extra"), _absent())


async def test_auth_type_gar_without_adc_says_how_to_log_in(
    gar: GarEmulation, plugins: Plugins, no_adc: None
):
    settings = replace(gar.target.settings, options={"auth_type": "gar"})
    async with RegistryClient(settings, plugins) as client:
        with pytest.raises(AuthenticationError, match="gcloud auth application-default login"):
            await client.blob_exists(_new_repo("gar-no-adc"), _absent())


async def test_a_made_up_access_token_is_refused(gar: GarEmulation, plugins: Plugins):
    settings = gar.target.wrong_credentials
    assert settings is not None
    async with RegistryClient(settings, plugins) as client:
        with pytest.raises(AuthenticationError, match="401"):
            await client.blob_exists(_new_repo("wrong"), _absent())


def test_the_emulation_refuses_every_patch(gar: GarEmulation):
    repo = _new_repo("patch")
    # Through the proxy, where the quirk lives, with the kit's own credentials.
    with httpx.Client(base_url=gar.target.proxy.url, auth=gar.target.direct_auth) as http:
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        refused = http.patch(
            started.headers["Location"],
            content=b"chunk",
            headers={"Content-Type": "application/octet-stream"},
        )
    assert refused.status_code == 405
    error = refused.json()["errors"][0]
    assert error["code"] == "UNSUPPORTED" and "chunked uploads" in error["message"]
