"""The built-in GHCR plugin: detection, policies, and the emulation's quirks against a real
docker-registry behind the kit's proxy."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import ocync_ghcr
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core import mediatypes
from ocync_core.auth.provider import StandardAuth
from ocync_core.auth.realm import check_realm
from ocync_core.client import RegistryClient, fallback_tag
from ocync_core.digest import Digest
from ocync_core.plugins import Plugins
from ocync_core.policies import Action, UploadMode
from ocync_core.registry import RegistrySettings
from ocync_ghcr.emulation import MAX_PATCH, install_quirks

_OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_ghcr"])


@pytest.fixture
def ghcr_proxy(registry: RegistryProcess) -> Iterator[FaultProxy]:
    """A docker-registry answering as GHCR does (the emulation's quirks on its proxy)."""
    with FaultProxy(registry, name="ghcr") as proxy:
        install_quirks(proxy)
        yield proxy


# -- detection and declarations ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["ghcr.io", "GHCR.IO", "ghcr.io.", "ghcr.io:443", "https://ghcr.io", "ghcr.io/"]
)
def test_claims_ghcr_io(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == "ghcr"


@pytest.mark.parametrize(
    "host",
    [
        "docker.pkg.github.com",
        "ghcr.io.example.com",
        "notghcr.io",
        "pkg.ghcr.io",
        "github.com",
        "ghcr.iox",
        "127.0.0.1:5000",
    ],
)
def test_leaves_other_hosts_to_other_plugins(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == "oci"


def test_listed_with_its_host_and_only_the_hooks_where_ghcr_differs(plugins: Plugins) -> None:
    info = next(i for i in plugins.describe() if i.name == "ocync_ghcr")
    assert info.builtin and info.kinds == ("ghcr",) and info.hosts == ("ghcr.io",)
    assert set(info.hooks) == {
        "ocync_registry_kind",
        "ocync_throttle_policy",
        "ocync_upload_strategy",
        "ocync_read_policy",
        "ocync_conformance_environments",
    }


def test_answers_nothing_for_other_kinds() -> None:
    registry = RegistrySettings(host="registry.example.test")
    for kind in ("oci", "ecr", "chainguard"):
        assert ocync_ghcr.ocync_throttle_policy(registry=registry, kind=kind) is None
        assert ocync_ghcr.ocync_upload_strategy(registry=registry, kind=kind) is None
        assert ocync_ghcr.ocync_read_policy(registry=registry, kind=kind) is None


def test_every_action_shares_one_window_paced_under_the_documented_cap(plugins: Plugins) -> None:
    policy = plugins.throttle_policy(RegistrySettings(host="ghcr.io"))
    windows = {policy.window_for(action) for action in Action}
    assert len(windows) == 1, f"GHCR's one aggregate limit is split over windows {windows}"
    spec = policy.windows[windows.pop()]
    assert spec.rate is not None
    # A token bucket lets `burst` requests ahead of its rate: even then, no second may hold
    # more than the documented 2000/min allows.
    assert spec.rate * 60 < 2000 and spec.rate + spec.burst <= 2000 / 60
    assert "x-ratelimit-remaining" in policy.budget_headers


def test_uploads_never_chunk_and_referrers_skip_the_api(plugins: Plugins) -> None:
    registry = RegistrySettings(host="ghcr.io")
    assert plugins.upload_strategy(registry).mode is UploadMode.POST_PUT
    read = plugins.read_policy(registry)
    assert not read.referrers_api and not read.head_first


def test_the_token_realm_of_ghcr_may_receive_credentials() -> None:
    ghcr = RegistrySettings(host="ghcr.io")
    url = check_realm(ghcr, "https://ghcr.io/token", with_credentials=True)
    assert url.host == "ghcr.io"


# -- the plugin against real registries -------------------------------------------------------


@pytest.fixture
async def ghcr_client(
    plugins: Plugins, registry: RegistryProcess, ghcr_proxy: FaultProxy
) -> AsyncIterator[RegistryClient]:
    settings = RegistrySettings(host="ghcr.io", endpoint=ghcr_proxy.url)
    async with RegistryClient(settings, plugins) as client:
        yield client


def _subject_with_fallback_index(registry: RegistryProcess, repo: str) -> Digest:
    """An image whose referrers index sits at its fallback tag, as GHCR stores it."""
    with httpx.Client(base_url=registry.url) as http:
        config = push_blob(http, repo, b"{}")
        subject = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": config, "size": 2},
                "layers": [],
            }
        ).encode()
        push_manifest(http, repo, "v1", subject, mediatypes.OCI_MANIFEST)
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}
        ).encode()
        push_manifest(http, repo, fallback_tag(Digest.of(subject)), index, mediatypes.OCI_INDEX)
    return Digest.of(subject)


async def test_referrers_come_from_the_fallback_tag_without_asking_the_api(
    ghcr_client: RegistryClient, registry: RegistryProcess, ghcr_proxy: FaultProxy
) -> None:
    subject = _subject_with_fallback_index(registry, "ghcr/referrers")
    listing = await ghcr_client.referrers_listing("ghcr/referrers", subject)
    ghcr_proxy.wait_idle()
    assert not listing.via_api and listing.fallback_index is not None
    assert ghcr_proxy.count(ProxyAction.REFERRERS) == 0, "asked GHCR for its missing referrers API"


async def test_token_exchange_is_the_standard_one_with_the_pat_as_password(
    plugins: Plugins, token_registry: RegistryProcess, token_server: TokenServer
) -> None:
    assert token_registry.username is not None
    settings = RegistrySettings(
        host="ghcr.io",
        endpoint=token_registry.url,
        username=token_registry.username,
        password=token_registry.password,
    )
    data = os.urandom(300)
    async with RegistryClient(settings, plugins) as client:
        assert isinstance(client.auth, StandardAuth)
        await client.upload_blob("owner/app", Digest.of(data), len(data), _once(data))
    exchanges = [r for r in token_server.requests if r.status == 200]
    assert exchanges and all(r.user == token_registry.username for r in exchanges)
    scopes = {str(scope) for r in exchanges for scope in r.scopes}
    assert scopes == {"repository:owner/app:pull,push"}


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- the emulation's quirks -------------------------------------------------------------------


def _session(http: httpx.Client, repo: str) -> str:
    response = http.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def test_emulation_refuses_a_patch_above_4_mib(ghcr_proxy: FaultProxy) -> None:
    with httpx.Client(base_url=ghcr_proxy.url, timeout=30) as http:
        body = os.urandom(MAX_PATCH + 1)
        refused = http.patch(
            _session(http, "ghcr/big"),
            content=body,
            headers={**_OCTET, "Content-Range": f"0-{MAX_PATCH}"},
        )
        assert refused.status_code == 416 and "4194304 bytes" in refused.text
        accepted = http.patch(
            _session(http, "ghcr/big"),
            content=body[:MAX_PATCH],
            headers={**_OCTET, "Content-Range": f"0-{MAX_PATCH - 1}"},
        )
        assert accepted.status_code == 202, accepted.text


def test_emulation_refuses_the_second_chunk_of_an_upload(ghcr_proxy: FaultProxy) -> None:
    with httpx.Client(base_url=ghcr_proxy.url, timeout=30) as http:
        first = http.patch(
            _session(http, "ghcr/chunks"),
            content=b"a" * 10,
            headers={**_OCTET, "Content-Range": "0-9"},
        )
        assert first.status_code == 202, first.text
        second = http.patch(
            first.headers["Location"],
            content=b"b" * 10,
            headers={**_OCTET, "Content-Range": "10-19"},
        )
        assert second.status_code == 416 and "keeps only the last chunk" in second.text


def test_emulation_takes_one_streamed_patch_above_4_mib(ghcr_proxy: FaultProxy) -> None:
    """GHCR's other accepted upload: a single PATCH with no Content-Range, then the PUT."""
    data = os.urandom(MAX_PATCH + 4096)

    def stream() -> Iterator[bytes]:
        yield data[:MAX_PATCH]
        yield data[MAX_PATCH:]

    with httpx.Client(base_url=ghcr_proxy.url, timeout=30) as http:
        patched = http.patch(_session(http, "ghcr/stream"), content=stream(), headers=_OCTET)
        assert patched.status_code == 202, patched.text
        # httpx's `params=` would replace the session's own `_state` query: merge instead.
        finish = httpx.URL(patched.headers["Location"]).copy_merge_params(
            {"digest": str(Digest.of(data))}
        )
        done = http.put(finish, headers=_OCTET)
        assert done.status_code == 201, done.text


def test_emulation_refuses_more_than_2000_requests_a_minute_in_any_second(
    ghcr_proxy: FaultProxy,
) -> None:
    with (
        httpx.Client(base_url=ghcr_proxy.url, timeout=30) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        responses = list(pool.map(lambda _: http.get("/v2/"), range(80)))
    ghcr_proxy.wait_idle()
    refused = [r for r in responses if r.status_code == 429]
    assert refused, "80 requests at once all passed the aggregate limit"
    assert "2000 requests/min" in refused[0].text
    admitted = sorted(r.started for r in ghcr_proxy.log if r.status != 429)
    busiest = max(sum(1 for t in admitted if start <= t < start + 1.0) for start in admitted)
    # The limit admits 34 (33.3 rounded up) in any second by arrival; a little more by the
    # log's start times, taken a moment earlier.
    assert busiest < 40, f"{busiest} requests were admitted within one second"


def test_emulation_has_no_referrers_api(ghcr_proxy: FaultProxy) -> None:
    with httpx.Client(base_url=ghcr_proxy.url, timeout=30) as http:
        response = http.get(f"/v2/ghcr/any/referrers/sha256:{'0' * 64}")
    assert response.status_code == 404
