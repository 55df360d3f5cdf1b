"""The built-in Chainguard plugin: detection, the standard auth's tokens per scope set against
the emulated cgr.dev, and the emulation's scope check itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ocync_chainguard.emulation import install_quirks
from ocync_chainguard.scope_check import granted_access, needed_access, token_misfits
from ocync_conformance.proxy import FaultProxy, RequestView
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import Scope, TokenServer
from ocync_core.auth.provider import StandardAuth
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

PULL = frozenset({"pull"})
PUSH = frozenset({"pull", "push"})
DIGEST = f"sha256:{'a' * 64}"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_chainguard"])


@pytest.fixture
def cgr_proxy(token_registry: RegistryProcess) -> Iterator[FaultProxy]:
    """A token-auth docker-registry answering as cgr.dev does."""
    with FaultProxy(token_registry, name="cgr.dev") as proxy:
        install_quirks(proxy)
        yield proxy


# -- detection and declarations ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["cgr.dev", "CGR.dev", "cgr.dev.", "cgr.dev:443", "https://cgr.dev"]
)
def test_claims_cgr_dev(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == "chainguard"


@pytest.mark.parametrize(
    "host", ["cgr.dev.example.com", "notcgr.dev", "apk.cgr.dev", "chainguard.dev", "ghcr.io"]
)
def test_leaves_other_hosts_to_other_plugins(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == "oci"


def test_listed_with_its_host_and_no_hook_beyond_detection(plugins: Plugins) -> None:
    info = next(i for i in plugins.describe() if i.name == "ocync_chainguard")
    assert info.builtin and info.kinds == ("chainguard",) and info.hosts == ("cgr.dev",)
    assert set(info.hooks) == {"ocync_registry_kind", "ocync_conformance_environments"}


# -- the standard auth against the emulated cgr.dev -------------------------------------------


@pytest.fixture
async def cgr_client(
    plugins: Plugins, token_registry: RegistryProcess, cgr_proxy: FaultProxy
) -> AsyncIterator[RegistryClient]:
    settings = RegistrySettings(
        host="cgr.dev",
        endpoint=cgr_proxy.url,
        username=token_registry.username,
        password=token_registry.password,
    )
    async with RegistryClient(settings, plugins) as client:
        yield client


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_every_scope_set_gets_its_own_token_and_none_is_refused(
    cgr_client: RegistryClient, cgr_proxy: FaultProxy, token_server: TokenServer
) -> None:
    assert isinstance(cgr_client.auth, StandardAuth)
    data = os.urandom(700)
    digest = Digest.of(data)
    await cgr_client.upload_blob("org/app", digest, len(data), _once(data))
    assert await cgr_client.blob_exists("org/app", digest) == len(data)
    assert (await cgr_client.mount_blob("org/copy", digest, "org/app")).mounted
    async with cgr_client.open_blob("org/copy", digest, len(data)) as reader:
        assert b"".join([chunk async for chunk in reader.chunks()]) == data
    assert await cgr_client.head_manifest("org/app", "absent") is None
    cgr_proxy.wait_idle()

    assert cgr_proxy.count(status=403) == 0, [f"{r.method} {r.path}" for r in cgr_proxy.log]
    issued = [{str(scope) for scope in r.scopes} for r in token_server.requests if r.status == 200]
    expected = [
        {"repository:org/app:pull,push"},
        {"repository:org/app:pull"},
        {"repository:org/copy:pull,push", "repository:org/app:pull"},
        {"repository:org/copy:pull"},
    ]
    assert len(issued) == len(expected) and all(s in issued for s in expected), (
        f"expected one token per scope set, each fetched once; fetched {issued}"
    )


def test_emulation_refuses_a_token_of_another_repository_with_403(
    token_registry: RegistryProcess, token_server: TokenServer, cgr_proxy: FaultProxy
) -> None:
    token, _, _ = token_server.issue("ocync", [Scope("repository", "org/a", ("pull",))])
    bearer = {"Authorization": f"Bearer {token}"}
    path = "/v2/org/b/manifests/latest"
    with httpx.Client(timeout=30) as http:
        plain = http.head(f"{token_registry.url}{path}", headers=bearer)
        emulated = http.get(f"{cgr_proxy.url}{path}", headers=bearer)
    # docker-registry alone challenges again (401); cgr.dev refuses outright.
    assert plain.status_code == 401
    assert emulated.status_code == 403 and "per scope set" in emulated.text


# -- the emulation's scope check --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "needed"),
    [
        ("HEAD", "/v2/org/app/manifests/v1", {"org/app": PULL}),
        ("GET", f"/v2/org/app/manifests/{DIGEST}", {"org/app": PULL}),
        ("PUT", "/v2/org/app/manifests/v1", {"org/app": PUSH}),
        ("HEAD", f"/v2/a/b/c/blobs/{DIGEST}", {"a/b/c": PULL}),
        ("GET", f"/v2/org/app/blobs/{DIGEST}", {"org/app": PULL}),
        ("POST", "/v2/org/app/blobs/uploads/", {"org/app": PUSH}),
        ("PATCH", "/v2/org/app/blobs/uploads/1234?_state=x", {"org/app": PUSH}),
        ("PUT", f"/v2/org/app/blobs/uploads/1234?digest={DIGEST}", {"org/app": PUSH}),
        (
            "POST",
            f"/v2/org/app/blobs/uploads/?mount={DIGEST}&from=base/img",
            {"org/app": PUSH, "base/img": PULL},
        ),
        ("GET", "/v2/org/app/tags/list?n=10", {"org/app": PULL}),
        ("GET", f"/v2/org/app/referrers/{DIGEST}", {"org/app": PULL}),
        ("GET", "/v2/x/blobs/y/manifests/v1", {"x/blobs/y": PULL}),
        ("GET", "/v2/", None),
        ("GET", "/v2/_catalog", None),
    ],
)
def test_needed_access(method: str, target: str, needed: dict[str, frozenset[str]] | None) -> None:
    assert needed_access(method, target) == needed


def _bearer(token_server: TokenServer, *scopes: Scope, user: str | None = "ocync") -> str:
    return f"Bearer {token_server.issue(user, scopes)[0]}"


def _view(method: str, target: str, authorization: str | None) -> RequestView:
    headers = {"authorization": authorization} if authorization else {}
    return RequestView(method, target, headers)


def test_granted_access_reads_the_jwt_access_claim(token_server: TokenServer) -> None:
    header = _bearer(
        token_server,
        Scope("repository", "org/app", ("pull", "push")),
        Scope("repository", "base/img", ("pull",)),
        Scope("registry", "catalog", ("*",)),
    )
    assert granted_access(header) == {"org/app": PUSH, "base/img": PULL}
    assert granted_access("Basic b2N5bmM6c2VjcmV0") is None
    assert granted_access("Bearer not-a-jwt") is None
    assert granted_access("Bearer a.!!!.c") is None


def test_a_token_fits_only_its_own_scope_set(token_server: TokenServer) -> None:
    pull = _bearer(token_server, Scope("repository", "org/app", ("pull",)))
    push = _bearer(token_server, Scope("repository", "org/app", ("pull", "push")))
    other = _bearer(token_server, Scope("repository", "org/other", ("pull",)))
    # An anonymous caller asking for push is granted pull only: its token fits a read.
    anonymous = _bearer(token_server, Scope("repository", "org/app", ("pull", "push")), user=None)
    read = "/v2/org/app/manifests/v1"
    assert not token_misfits(_view("GET", read, pull))
    assert not token_misfits(_view("GET", read, anonymous))
    assert token_misfits(_view("GET", read, push)), "a pull,push token fitted a read"
    assert token_misfits(_view("GET", read, other)), "another repository's token fitted"
    assert token_misfits(_view("PUT", read, pull)), "a pull token fitted a write"
    assert not token_misfits(_view("PUT", read, push))
    assert not token_misfits(_view("GET", read, None)), "anonymous requests are the registry's"
    assert not token_misfits(_view("GET", "/v2/", push)), "the ping needs no repository"
