"""Blob redirects (to a CDN or object storage) never carry the registry's credentials.

docker-registry's `redirect` storage middleware answers blob GETs and HEADs with a 307 to
`<baseurl>/docker/registry/v2/blobs/...`, as registries on S3 or behind a CDN do. Here the
"CDN" is a small file server over the registry's storage on another host (127.0.0.2, or
`localhost` for a registry known as 127.0.0.1), recording every request with its headers.

Decision: ocync follows a blob redirect with no credentials at all, whatever host it points
to, the registry's own included. A redirect target authorizes the request through its URL (a
signature in the query), and the bytes are verified against their digest anyway; a redirect
to a host that wants the registry's credentials fails with that host's 401, so no credential
ever travels on a redirect. At most 5 redirects are followed.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_conformance.images import head_manifest_digest, push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy, RequestView
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import RegistryError
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

OCYNC = [sys.executable, "-m", "ocync_core"]
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lowercase names


class _RecordingFiles(SimpleHTTPRequestHandler):
    seen: list[SeenRequest]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.seen.append(SeenRequest(self.command, self.path, headers))
        return super().send_head()


@dataclass
class Cdn:
    """A file server over a registry's storage directory, recording what it was sent."""

    base_url: str
    requests: list[SeenRequest] = field(default_factory=list)

    def blobs_served(self, method: str) -> set[str]:
        """The hex digests of the blobs requested with `method`."""
        return {
            r.path.rsplit("/", 2)[-2]
            for r in self.requests
            if r.method == method and r.path.endswith("/data")
        }


@contextmanager
def serving(directory: Path, bind: str, name: str) -> Iterator[Cdn]:
    cdn = Cdn("")
    handler = functools.partial(
        type("Files", (_RecordingFiles,), {"seen": cdn.requests}), directory=str(directory)
    )
    server = ThreadingHTTPServer((bind, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cdn.base_url = f"http://{name}:{server.server_address[1]}"
    try:
        yield cdn
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Redirecting:
    """A Bearer-token registry whose blob GETs and HEADs redirect to `cdn`."""

    registry: RegistryProcess
    cdn: Cdn
    token_server: TokenServer

    def settings(self) -> RegistrySettings:
        return RegistrySettings(
            host=self.registry.host, username=TEST_USERNAME, password=TEST_PASSWORD
        )


@pytest.fixture(params=["127.0.0.2", "localhost"], ids=["cdn at 127.0.0.2", "cdn at localhost"])
def redirecting(
    request: pytest.FixtureRequest, registry_binary: str, token_server: TokenServer, tmp_path
) -> Iterator[Redirecting]:
    name = request.param
    bind = "127.0.0.2" if name == "127.0.0.2" else "127.0.0.1"
    workdir = tmp_path / "registry"
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    with serving(storage, bind, name) as cdn:
        middleware = [{"name": "redirect", "options": {"baseurl": cdn.base_url}}]
        with RegistryProcess(
            workdir=workdir,
            token_server=token_server,
            username=TEST_USERNAME,
            password=TEST_PASSWORD,
            config_overrides={"middleware": {"storage": middleware}},
        ) as registry:
            yield Redirecting(registry, cdn, token_server)


def seed(registry: RegistryProcess) -> Corpus:
    corpus = build_corpus(repositories=1, tags=1, base_size=48 * 1024, app_size=4 * 1024)
    with registry.client() as http:
        for image in corpus.images:
            for digest, data in image.blobs.items():
                push_blob(http, image.repository, data, digest=digest)
            for reference, body, media_type in image.manifests:
                push_manifest(http, image.repository, reference, body, media_type)
    return corpus


def assert_carried_no_credentials(requests: list[SeenRequest]) -> None:
    for seen in requests:
        assert "authorization" not in seen.headers, f"credentials sent on a redirect: {seen}"
        assert "cookie" not in seen.headers, f"a cookie sent on a redirect: {seen}"
        assert not any(TEST_PASSWORD in value for value in seen.headers.values()), seen


# -- to another host ----------------------------------------------------------------------


def test_a_blob_download_redirected_to_another_host_carries_no_credentials(
    redirecting: Redirecting, target_registry
) -> None:
    corpus = seed(redirecting.registry)
    image = corpus.images[0]
    redirecting.cdn.requests.clear()
    redirecting.token_server.reset_requests()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCYNC_")}
    env["OCYNC_SRC_CREDS"] = f"{TEST_USERNAME}:{TEST_PASSWORD}"
    run = subprocess.run(
        [
            *OCYNC, "copy", "--json",
            f"{redirecting.registry.host}/{image.repository}:{image.tag}",
            f"{target_registry.host}/cdn/app:{image.tag}",
        ],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    assert result["digest"] == image.digest
    assert result["blobs_transferred"] == len(image.blobs)
    assert head_manifest_digest(target_registry.url, "cdn/app", image.tag) == image.digest
    # The registry's own requests were authorized: there were credentials to leak.
    assert {r.user for r in redirecting.token_server.requests} == {TEST_USERNAME}
    # Every blob came from the CDN (the redirects were followed), and none with credentials.
    assert redirecting.cdn.blobs_served("GET") == {d.split(":")[1] for d in image.blobs}
    assert_carried_no_credentials(redirecting.cdn.requests)


async def test_a_blob_existence_check_redirected_to_another_host_carries_no_credentials(
    redirecting: Redirecting,
) -> None:
    data = os.urandom(20 * 1024)
    with redirecting.registry.client() as http:
        digest = Digest.parse(push_blob(http, "cdn/app", data))
    redirecting.cdn.requests.clear()
    async with RegistryClient(redirecting.settings(), Plugins.load()) as client:
        assert await client.blob_exists("cdn/app", Digest.of(b"absent")) is None
        assert await client.blob_exists("cdn/app", digest) == len(data)
    assert redirecting.cdn.blobs_served("HEAD") == {digest.hex}
    assert_carried_no_credentials(redirecting.cdn.requests)


# -- to the registry itself, and in circles -----------------------------------------------


@pytest.fixture
def basic_front(basic_registry) -> Iterator[FaultProxy]:
    with FaultProxy(basic_registry, name="redirecting-front") as proxy:
        yield proxy


def _record_blob_gets(proxy: FaultProxy) -> list[RequestView]:
    """Every blob GET the proxy receives (a rule that records and never fires)."""
    seen: list[RequestView] = []

    def record(request: RequestView) -> bool:
        seen.append(request)
        return False

    proxy.fail("blob_get", 599, when=record, name="recorder")
    return seen


async def test_a_redirect_to_the_registry_itself_gets_no_credentials_either(
    basic_registry, basic_front: FaultProxy
) -> None:
    with basic_registry.client() as http:
        digest = Digest.parse(push_blob(http, "self/app", os.urandom(4096)))
    seen = _record_blob_gets(basic_front)
    path = f"/v2/self/app/blobs/{digest}"
    basic_front.fail(
        "blob_get",
        307,
        headers={"Location": f"{path}?redirected=1"},
        when=lambda request: "redirected" not in request.target,
    )
    settings = RegistrySettings(
        host=basic_front.host, username=TEST_USERNAME, password=TEST_PASSWORD
    )
    async with RegistryClient(settings, Plugins.load()) as client:
        with pytest.raises(RegistryError) as caught:
            async with client.open_blob("self/app", digest) as reader:
                [chunk async for chunk in reader.chunks()]
    asked = [r for r in seen if "redirected" not in r.target]
    followed = [r for r in seen if "redirected" in r.target]
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in asked)
    assert len(followed) == 1 and "authorization" not in followed[0].headers
    # The registry wants credentials there too: a clear 401, naming the blob.
    assert caught.value.status == 401
    assert f"GET blob self/app@{digest}" in str(caught.value)


async def test_redirects_in_circles_end_after_five(basic_registry, basic_front) -> None:
    with basic_registry.client() as http:
        digest = Digest.parse(push_blob(http, "loop/app", os.urandom(4096)))
    basic_front.fail("blob_get", 307, headers={"Location": f"/v2/loop/app/blobs/{digest}?hop=1"})
    settings = RegistrySettings(
        host=basic_front.host, username=TEST_USERNAME, password=TEST_PASSWORD
    )
    async with RegistryClient(settings, Plugins.load()) as client:
        with pytest.raises(RegistryError) as caught:
            async with client.open_blob("loop/app", digest):
                pass
    assert caught.value.status == 307
    basic_front.wait_idle()
    assert basic_front.count("blob_get") == 1 + MAX_REDIRECTS
