"""`RegistryClient` against real docker-registry processes over real HTTP.

A few behaviours no honest registry produces (a manifest whose bytes contradict its digest,
tag pagination, which docker-registry 2.8 does not implement) use an httpx.MockTransport.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trio

from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.auth.provider import StandardAuth
from ocync_core.client import MountResult, RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import (
    AuthenticationError,
    CredentialPolicyError,
    DigestMismatch,
    RegistryError,
    TransferError,
)
from ocync_core.hookspecs import hookimpl
from ocync_core.manifest import Descriptor, Manifest, parse_manifest
from ocync_core.plugins import Plugins
from ocync_core.policies import MountMode, MountPolicy, UploadMode, UploadStrategy
from ocync_core.registry import RegistrySettings

KIB = 1024
ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


@pytest.fixture(autouse=True)
def _no_inherited_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's shell must not change which plugins answer.
    monkeypatch.delenv("OCYNC_PLUGINS", raising=False)
    monkeypatch.delenv("TINY_HOSTS", raising=False)


@pytest.fixture
def http(registry) -> Iterator[httpx.Client]:
    """A sync client for seeding `registry` (plain HTTP: no CA bundle to load per call)."""
    with registry.client() as client:
        yield client


# -- helpers --------------------------------------------------------------------------------


class UploadPlugin:
    """Answers ocync_upload_strategy with a fixed strategy, for every registry."""

    def __init__(self, strategy: UploadStrategy) -> None:
        self.strategy = strategy

    @hookimpl
    def ocync_upload_strategy(self, registry: RegistrySettings, kind: str) -> UploadStrategy:
        return self.strategy


class MountPlugin:
    def __init__(self, policy: MountPolicy) -> None:
        self.policy = policy

    @hookimpl
    def ocync_mount_policy(self, registry: RegistrySettings, kind: str) -> MountPolicy:
        return self.policy


def make_client(settings: RegistrySettings, *extra: object) -> RegistryClient:
    return RegistryClient(settings, Plugins.load(extra=list(extra)))


def record_requests(client: RegistryClient) -> list[httpx.Request]:
    """Every request the client sends from now on (an httpx event hook on `client.http`)."""
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    client.http.event_hooks["request"].append(hook)
    return seen


async def stream(data: bytes, piece: int = 7000) -> AsyncIterator[bytes]:
    """An async chunk iterator with uneven pieces (7000 does not divide 64 KiB)."""
    for start in range(0, len(data), piece):
        await trio.lowlevel.checkpoint()
        yield data[start : start + piece]


def blob_bytes(size: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def stored_blob(registry_storage: Path, digest: str) -> Path:
    hex_part = digest.split(":", 1)[1]
    pattern = f"blobs/sha256/{hex_part[:2]}/{hex_part}/data"
    return next(Path(registry_storage).rglob(pattern))


def json_bytes(doc: object, indent: int | None = None) -> bytes:
    return json.dumps(doc, indent=indent).encode()


def image_manifest(
    http: httpx.Client, repository: str, *, docker: bool = False, seed: int = 0, **extra: object
) -> bytes:
    """Push a config and a layer blob; return the bytes of an image manifest naming them."""
    config = json_bytes({"architecture": "amd64", "os": "linux", "seed": seed})
    layer = blob_bytes(3000, seed)
    config_digest = push_blob(http, repository, config)
    layer_digest = push_blob(http, repository, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER,
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
        **extra,
    }
    # Odd indentation: the registry must hand back exactly these bytes, not a re-encoding.
    return json_bytes(doc, indent=3)


def index_of(children: list[tuple[bytes, str]], media_type: str) -> bytes:
    return json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": str(Digest.of(raw)),
                    "size": len(raw),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for (raw, child_type), arch in zip(children, ["amd64", "arm64"], strict=False)
            ],
        },
        indent=1,
    )


class Streamed(httpx.AsyncByteStream):
    """A response body that arrives as a stream, as from a real connection.

    (`httpx.Response(content=...)` is read up front, which `aiter_raw` refuses.)
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> RegistryClient:
    """A client whose HTTP goes to `handler`: only for what a real registry cannot produce."""
    client = make_client(RegistrySettings(host="mock.example.test"))
    client.http = httpx.AsyncClient(
        transport=httpx.MockTransport(handler), headers=client.http.headers
    )
    client._base = "http://mock"
    return client


# -- uploads --------------------------------------------------------------------------------


STRATEGIES = {
    "post_put": UploadStrategy(UploadMode.POST_PUT),
    "single_patch": UploadStrategy(UploadMode.SINGLE_PATCH),
    "chunked": UploadStrategy(UploadMode.CHUNKED, max_chunk=64 * KIB),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
async def test_upload_strategies(registry, name: str) -> None:
    strategy = STRATEGIES[name]
    data = blob_bytes(300 * KIB)
    digest = Digest.of(data)
    async with make_client(RegistrySettings(host=registry.host), UploadPlugin(strategy)) as client:
        assert client.upload_strategy == strategy
        await client.ping()
        seen = record_requests(client)
        await client.upload_blob("up/app", digest, len(data), stream(data))
        assert await client.blob_exists("up/app", digest) == len(data)

        methods = [r.method for r in seen]
        patches = [r for r in seen if r.method == "PATCH"]
        if strategy.mode is UploadMode.POST_PUT:
            assert methods == ["POST", "PUT", "HEAD"]
        elif strategy.mode is UploadMode.SINGLE_PATCH:
            assert methods == ["POST", "PATCH", "PUT", "HEAD"]
            assert "Content-Range" not in patches[0].headers
        else:
            assert len(patches) == math.ceil(300 / 64) == 5
            sizes = [len(r.content) for r in patches]
            assert max(sizes) <= 64 * KIB
            assert sum(sizes) == len(data)
            ranges = [r.headers["Content-Range"] for r in patches]
            assert ranges[0] == f"0-{64 * KIB - 1}"
            assert ranges[-1] == f"{4 * 64 * KIB}-{len(data) - 1}"
        # The finishing PUT carries the digest; the blob is readable back, byte for byte.
        (put,) = [r for r in seen if r.method == "PUT"]
        assert put.url.params["digest"] == str(digest)
        async with client.open_blob("up/app", digest) as reader:
            assert reader.size == len(data)
            got = b"".join([chunk async for chunk in reader.chunks()])
        assert got == data


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("pieces", [[], [b""]], ids=["no-chunks", "one-empty-chunk"])
async def test_upload_empty_blob(registry, name: str, pieces: list[bytes]) -> None:
    empty = Digest.of(b"")

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    settings = RegistrySettings(host=registry.host)
    async with make_client(settings, UploadPlugin(STRATEGIES[name])) as client:
        await client.upload_blob("empty/app", empty, 0, chunks())
        assert await client.blob_exists("empty/app", empty) == 0
        assert await client.blobs_exist("empty/app", [empty]) == {empty: True}


async def test_upload_with_wrong_digest_is_refused(registry) -> None:
    data = blob_bytes(10 * KIB)
    wrong = Digest.of(b"something else")
    async with make_client(RegistrySettings(host=registry.host)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.upload_blob("bad/app", wrong, len(data), stream(data))
        assert (caught.value.status, caught.value.code) == (400, "DIGEST_INVALID")
        assert await client.blob_exists("bad/app", wrong) is None


async def test_blobs_exist_reports_each_digest(registry, http) -> None:
    present = [push_blob(http, "ex/app", blob_bytes(100, seed)) for seed in range(3)]
    absent = Digest.of(b"absent")
    async with make_client(RegistrySettings(host=registry.host)) as client:
        digests = [Digest.parse(d) for d in present]
        found = await client.blobs_exist("ex/app", [absent, *digests, digests[0]])
        assert found == {absent: False, **dict.fromkeys(digests, True)}
        assert await client.blobs_exist("ex/app", []) == {}


# -- mounts ---------------------------------------------------------------------------------


async def test_mount_from_repository_that_has_the_blob(registry, http) -> None:
    data = blob_bytes(20 * KIB)
    digest = Digest.parse(push_blob(http, "src/app", data))
    async with make_client(RegistrySettings(host=registry.host)) as client:
        await client.ping()
        seen = record_requests(client)
        result = await client.mount_blob("dst/app", digest, "src/app")
        assert result == MountResult(mounted=True)
        (post,) = seen
        assert post.url.params["mount"] == str(digest)
        assert post.url.params["from"] == "src/app"
        assert await client.blob_exists("dst/app", digest) == len(data)


async def test_mount_from_repository_without_the_blob_opens_a_session(registry, http) -> None:
    data = blob_bytes(20 * KIB, seed=5)
    digest = Digest.of(data)
    push_blob(http, "src/app", b"unrelated")  # the repository exists, the blob not
    async with make_client(RegistrySettings(host=registry.host)) as client:
        result = await client.mount_blob("dst/app", digest, "src/app")
        assert result.mounted is False
        assert result.session is not None
        assert result.session.startswith(registry.url + "/v2/dst/app/blobs/uploads/")
        seen = record_requests(client)
        await client.upload_blob("dst/app", digest, len(data), stream(data), session=result.session)
        assert "POST" not in [r.method for r in seen]  # the mount's session was used
        assert await client.blob_exists("dst/app", digest) == len(data)


async def test_mount_without_from(registry, http) -> None:
    digest = Digest.parse(push_blob(http, "src/app", blob_bytes(100)))
    policy = MountPolicy(mode=MountMode.WITHOUT_FROM)
    async with make_client(RegistrySettings(host=registry.host), MountPlugin(policy)) as client:
        await client.ping()
        seen = record_requests(client)
        result = await client.mount_blob("dst/app", digest, "src/app")
        (post,) = seen
        assert "from" not in post.url.params
        assert post.url.params["mount"] == str(digest)
        # docker-registry 2.8 cannot find a blob without `from`: it opens an upload session.
        assert result.mounted is False
        assert result.session is not None
        await client.upload_blob(
            "dst/app", digest, 100, stream(blob_bytes(100)), session=result.session
        )
        assert await client.blob_exists("dst/app", digest) == 100


async def test_mount_policy_never_sends_no_mount_request(registry, http) -> None:
    digest = Digest.parse(push_blob(http, "src/app", blob_bytes(100)))
    policy = MountPolicy(mode=MountMode.NEVER)
    async with make_client(RegistrySettings(host=registry.host), MountPlugin(policy)) as client:
        assert client.mount_policy == policy
        seen = record_requests(client)
        result = await client.mount_blob("dst/app", digest, "src/app")
        assert result == MountResult(mounted=False, session=None)
        assert [r for r in seen if "mount" in r.url.params] == []
        assert seen == []
        assert await client.blob_exists("dst/app", digest) is None


# -- reading blobs --------------------------------------------------------------------------


async def test_blob_reader_streams_and_verifies(registry, http) -> None:
    data = os.urandom(200 * KIB)
    digest = Digest.parse(push_blob(http, "read/app", data))
    async with make_client(RegistrySettings(host=registry.host)) as client:
        async with client.open_blob("read/app", digest) as reader:
            assert reader.digest == digest
            assert reader.size == len(data)  # from Content-Length
            got = b"".join([chunk async for chunk in reader.chunks()])
        assert got == data


async def test_blob_reader_refuses_corrupt_blob_before_last_chunk(registry, http) -> None:
    good = os.urandom(256 * KIB)
    digest_text = push_blob(http, "bad/app", good)
    digest = Digest.parse(digest_text)
    stored = stored_blob(registry.storage_dir, digest_text)
    stored.write_bytes(bytes(b ^ 0xFF for b in good))  # same length, other content

    async with make_client(RegistrySettings(host=registry.host)) as client:
        yielded = 0
        with pytest.raises(DigestMismatch) as caught:
            async with client.open_blob("bad/app", digest, len(good)) as reader:
                async for chunk in reader.chunks():
                    yielded += len(chunk)
        assert digest_text in str(caught.value)
        assert caught.value.expected == digest
        assert yielded < len(good)  # the final chunk was held back


async def test_blob_reader_refuses_truncated_and_oversized_blobs(registry, http) -> None:
    data = os.urandom(100 * KIB)
    digest_text = push_blob(http, "short/app", data)
    digest = Digest.parse(digest_text)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        # The descriptor says fewer bytes than the registry sends: stop at the excess.
        with pytest.raises(DigestMismatch, match="more than"):
            async with client.open_blob("short/app", digest, len(data) - 1) as reader:
                async for _ in reader.chunks():
                    pass
        stored_blob(registry.storage_dir, digest_text).write_bytes(data[: 50 * KIB])
        yielded = 0
        with pytest.raises(TransferError, match=f"expected {len(data)}"):
            async with client.open_blob("short/app", digest, len(data)) as reader:
                async for chunk in reader.chunks():
                    yielded += len(chunk)
        assert yielded < 50 * KIB


# -- manifests ------------------------------------------------------------------------------


async def _round_trip(client: RegistryClient, repository: str, tag: str, raw: bytes) -> Manifest:
    manifest = parse_manifest(raw)
    digest = await client.put_manifest(repository, tag, manifest)
    assert digest == Digest.of(raw) == manifest.digest
    for reference in (tag, str(digest)):
        got = await client.get_manifest(repository, reference)
        assert got.raw == raw
        assert got.digest == digest
        assert got.media_type == manifest.media_type
    head = await client.head_manifest(repository, tag)
    assert head is not None
    assert (head.digest, head.media_type, head.size) == (digest, manifest.media_type, len(raw))
    return got


async def test_manifest_round_trips_keep_exact_bytes(registry, http) -> None:
    repo = "man/app"
    oci_a = image_manifest(http, repo, seed=1)
    oci_b = image_manifest(http, repo, seed=2)
    docker_a = image_manifest(http, repo, docker=True, seed=3)
    docker_b = image_manifest(http, repo, docker=True, seed=4)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        got = await _round_trip(client, repo, "oci-a", oci_a)
        assert not got.is_index
        assert [b.digest for b in got.blobs] == [
            Digest.parse(d["digest"])
            for d in [json.loads(oci_a)["config"], *json.loads(oci_a)["layers"]]
        ]
        await _round_trip(client, repo, "oci-b", oci_b)
        await _round_trip(client, repo, "docker-a", docker_a)
        await _round_trip(client, repo, "docker-b", docker_b)

        oci_index = index_of(
            [(oci_a, mediatypes.OCI_MANIFEST), (oci_b, mediatypes.OCI_MANIFEST)],
            mediatypes.OCI_INDEX,
        )
        got = await _round_trip(client, repo, "oci-index", oci_index)
        assert got.is_index
        assert [d.digest for d in got.manifests] == [Digest.of(oci_a), Digest.of(oci_b)]
        assert [str(d.platform) for d in got.manifests] == ["linux/amd64", "linux/arm64"]

        docker_list = index_of(
            [(docker_a, mediatypes.DOCKER_MANIFEST), (docker_b, mediatypes.DOCKER_MANIFEST)],
            mediatypes.DOCKER_MANIFEST_LIST,
        )
        got = await _round_trip(client, repo, "docker-list", docker_list)
        assert got.media_type == mediatypes.DOCKER_MANIFEST_LIST


async def test_head_and_get_missing_manifest(registry) -> None:
    async with make_client(RegistrySettings(host=registry.host)) as client:
        assert await client.head_manifest("none/app", "v1") is None
        assert await client.head_manifest("none/app", str(Digest.of(b"x"))) is None
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest("none/app", "v1")
        assert caught.value.status == 404
        assert caught.value.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


async def test_put_manifest_with_missing_blobs_is_refused(registry) -> None:
    raw = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": str(Digest.of(b"{}")),
                "size": 2,
            },
            "layers": [],
        }
    )
    async with make_client(RegistrySettings(host=registry.host)) as client:
        with pytest.raises(RegistryError) as caught:
            await client.put_manifest("gap/app", "v1", parse_manifest(raw))
        assert caught.value.status == 400
        assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
        assert await client.head_manifest("gap/app", "v1") is None


_MOCK_MANIFEST = json_bytes(
    {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [],
    }
)


async def test_get_manifest_by_digest_with_other_bytes_is_refused() -> None:
    claimed = Digest.of(b"what the caller asked for")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v2/lib/app/manifests/{claimed}"
        # No Docker-Content-Digest: only the requested digest can catch the substitution.
        return httpx.Response(
            200, stream=Streamed(_MOCK_MANIFEST), headers={"Content-Type": mediatypes.OCI_MANIFEST}
        )

    async with mock_client(handler) as client:
        with pytest.raises(DigestMismatch) as caught:
            await client.get_manifest("lib/app", str(claimed))
        assert str(claimed) in str(caught.value)
        assert caught.value.expected == claimed


async def test_get_manifest_with_lying_digest_header_is_refused() -> None:
    lie = Digest.of(b"another manifest")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=Streamed(_MOCK_MANIFEST),
            headers={"Content-Type": mediatypes.OCI_MANIFEST, "Docker-Content-Digest": str(lie)},
        )

    async with mock_client(handler) as client:
        with pytest.raises(DigestMismatch, match=str(lie)):
            await client.get_manifest("lib/app", "v1")


async def test_put_manifest_answered_with_other_digest_is_refused() -> None:
    lie = Digest.of(b"another manifest")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.content == _MOCK_MANIFEST
        return httpx.Response(201, headers={"Docker-Content-Digest": str(lie)})

    async with mock_client(handler) as client:
        with pytest.raises(DigestMismatch):
            await client.put_manifest("lib/app", "v1", parse_manifest(_MOCK_MANIFEST))


# -- tags -----------------------------------------------------------------------------------


async def test_list_tags_follows_relative_link_pagination() -> None:
    pages = {
        None: (["a", "b"], '</v2/x/tags/list?n=2&last=b>; rel="next"'),
        "b": (["c", "d"], '</v2/x/tags/list?n=2&last=d>; rel="next"'),
        "d": (["e"], None),
    }
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        assert request.url.path == "/v2/x/tags/list"
        assert request.url.params["n"] == "2"
        tags, link = pages[request.url.params.get("last")]
        headers = {"Link": link} if link else {}
        return httpx.Response(200, json={"name": "x", "tags": tags}, headers=headers)

    async with mock_client(handler) as client:
        assert await client.list_tags("x", page_size=2) == ["a", "b", "c", "d", "e"]
    assert len(requests) == 3
    assert [r.url.params.get("last") for r in requests] == [None, "b", "d"]
    assert {r.url.host for r in requests} == {"mock"}  # relative links resolved on the base


async def test_list_tags_of_repository_without_tags_is_empty() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"name": "x", "tags": None})

    async with mock_client(handler) as client:
        assert await client.list_tags("x") == []


async def test_list_tags_on_real_registry(registry, http) -> None:
    raw = image_manifest(http, "tags/app")
    tags = ["v1", "v2", "latest", "alpha", "1.0.0"]
    for tag in tags:
        push_manifest(http, "tags/app", tag, raw)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        assert sorted(await client.list_tags("tags/app")) == sorted(tags)
        # Whether or not the registry honours n=, every tag comes back exactly once.
        assert sorted(await client.list_tags("tags/app", page_size=2)) == sorted(tags)
        with pytest.raises(RegistryError) as caught:
            await client.list_tags("no/such/repo")
        assert (caught.value.status, caught.value.code) == (404, "NAME_UNKNOWN")


# -- referrers ------------------------------------------------------------------------------


ARTIFACT_TYPE = "application/vnd.example.signature.v1+json"


def _push_subject_and_artifact(http: httpx.Client, repo: str) -> tuple[Digest, bytes, bytes]:
    subject = image_manifest(http, repo, seed=7)
    push_manifest(http, repo, "v1", subject)
    empty = push_blob(http, repo, b"{}")
    artifact = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": empty, "size": 2},
            "layers": [{"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": empty, "size": 2}],
            "subject": {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": str(Digest.of(subject)),
                "size": len(subject),
            },
        }
    )
    push_manifest(http, repo, str(Digest.of(artifact)), artifact)
    return Digest.of(subject), subject, artifact


async def test_referrers_from_fallback_tag(registry, http) -> None:
    subject, _, artifact = _push_subject_and_artifact(http, "ref/app")
    index = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": str(Digest.of(artifact)),
                    "size": len(artifact),
                    "artifactType": ARTIFACT_TYPE,
                }
            ],
        }
    )
    push_manifest(http, "ref/app", f"sha256-{subject.hex}", index)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        await client.ping()
        seen = record_requests(client)
        found = await client.referrers("ref/app", subject)
        assert found == [
            Descriptor(
                media_type=mediatypes.OCI_MANIFEST,
                digest=Digest.of(artifact),
                size=len(artifact),
                artifact_type=ARTIFACT_TYPE,
            )
        ]
        # docker-registry 2.8 has no referrers API: it was asked first, then the tag.
        assert seen[0].url.path == f"/v2/ref/app/referrers/{subject}"
        assert any(r.url.path.endswith(f"/manifests/sha256-{subject.hex}") for r in seen)


async def test_referrers_fallback_tag_resolving_to_subject_is_no_referrer(registry, http) -> None:
    subject, subject_raw, _ = _push_subject_and_artifact(http, "quirk/app")
    # GitLab-like: the fallback tag resolves to the subject itself.
    push_manifest(http, "quirk/app", f"sha256-{subject.hex}", subject_raw)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        assert await client.referrers("quirk/app", subject) == []


async def test_referrers_fallback_tag_holding_an_image_is_no_referrer(registry, http) -> None:
    subject, _, _ = _push_subject_and_artifact(http, "img/app")
    other = image_manifest(http, "img/app", seed=9)
    push_manifest(http, "img/app", f"sha256-{subject.hex}", other)
    async with make_client(RegistrySettings(host=registry.host)) as client:
        assert await client.referrers("img/app", subject) == []


async def test_referrers_without_fallback_tag(registry, http) -> None:
    subject, _, _ = _push_subject_and_artifact(http, "none/app")
    async with make_client(RegistrySettings(host=registry.host)) as client:
        assert await client.referrers("none/app", subject) == []


async def test_referrers_api_answer_is_used() -> None:
    subject = Digest.of(b"subject")
    child = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": str(Digest.of(b"sig")),
        "size": 3,
        "artifactType": ARTIFACT_TYPE,
    }
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        body = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [child]}
        return httpx.Response(200, json=body, headers={"Content-Type": mediatypes.OCI_INDEX})

    async with mock_client(handler) as client:
        (found,) = await client.referrers("lib/app", subject)
    assert found.digest == Digest.of(b"sig")
    assert found.artifact_type == ARTIFACT_TYPE
    assert paths == [f"/v2/lib/app/referrers/{subject}"]  # no fallback tag lookup


# -- blob redirects (docker-registry's `redirect` storage middleware, as with S3) ----------


class _QuietFiles(SimpleHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        return super().send_head()


@dataclass
class RedirectingRegistry:
    """A Basic-auth docker-registry whose blob GETs and HEADs redirect to a file server."""

    registry: RegistryProcess
    cdn_requests: list[tuple[str, str, str | None]] = field(default_factory=list)


@pytest.fixture
def redirecting_registry(registry_binary, tmp_path: Path) -> Iterator[RedirectingRegistry]:
    storage = tmp_path / "redirecting" / "storage"
    storage.mkdir(parents=True)
    seen: list[tuple[str, str, str | None]] = []
    handler = functools.partial(
        type("Files", (_QuietFiles,), {"seen": seen}), directory=str(storage)
    )
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=cdn.serve_forever, daemon=True)
    thread.start()
    overrides = {
        "middleware": {
            "storage": [
                {
                    "name": "redirect",
                    "options": {"baseurl": f"http://127.0.0.1:{cdn.server_address[1]}"},
                }
            ]
        }
    }
    try:
        with RegistryProcess(
            workdir=tmp_path / "redirecting",
            username=TEST_USERNAME,
            password=TEST_PASSWORD,
            config_overrides=overrides,
        ) as reg:
            yield RedirectingRegistry(reg, seen)
    finally:
        cdn.shutdown()
        cdn.server_close()
        thread.join()


def _redirecting_settings(redirecting: RedirectingRegistry) -> RegistrySettings:
    return RegistrySettings(
        host=redirecting.registry.host, username=TEST_USERNAME, password=TEST_PASSWORD
    )


async def test_blob_redirect_is_followed_without_credentials(redirecting_registry) -> None:
    data = os.urandom(70 * KIB)
    with redirecting_registry.registry.client() as http:
        digest = Digest.parse(push_blob(http, "cdn/app", data))
    async with (
        make_client(_redirecting_settings(redirecting_registry)) as client,
        client.open_blob("cdn/app", digest, len(data)) as reader,
    ):
        got = b"".join([chunk async for chunk in reader.chunks()])
    assert got == data
    ((method, path, authorization),) = redirecting_registry.cdn_requests
    assert (method, path.endswith(f"/{digest.hex}/data")) == ("GET", True)
    assert authorization is None  # the registry's credentials stay with the registry


async def test_blob_exists_on_registry_that_redirects_blob_heads(redirecting_registry) -> None:
    data = os.urandom(10 * KIB)
    with redirecting_registry.registry.client() as http:
        digest = Digest.parse(push_blob(http, "cdn/app", data))
    async with make_client(_redirecting_settings(redirecting_registry)) as client:
        assert await client.blob_exists("cdn/app", Digest.of(b"absent")) is None
        # docker-registry answers 307 (to the storage URL) for a blob that exists.
        assert await client.blob_exists("cdn/app", digest) == len(data)
        assert await client.blobs_exist("cdn/app", [digest]) == {digest: True}


# -- content encoding -----------------------------------------------------------------------


def _gzip_anyway(request: httpx.Request, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """A compressing proxy or CDN that gzips whatever the client asked for."""
    assert request.headers["Accept-Encoding"] == "identity"  # we never invite re-encoding
    packed = gzip.compress(body)
    headers = {**headers, "Content-Encoding": "gzip", "Content-Length": str(len(packed))}
    return httpx.Response(200, stream=Streamed(packed), headers=headers)


async def test_manifest_through_compressing_proxy() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _gzip_anyway(request, _MOCK_MANIFEST, {"Content-Type": mediatypes.OCI_MANIFEST})

    async with mock_client(handler) as client:
        manifest = await client.get_manifest("lib/app", str(Digest.of(_MOCK_MANIFEST)))
        assert manifest.raw == _MOCK_MANIFEST


async def test_blob_through_compressing_proxy() -> None:
    data = json_bytes({"architecture": "amd64", "os": "linux", "pad": "x" * 4000})
    digest = Digest.of(data)

    def handler(request: httpx.Request) -> httpx.Response:
        return _gzip_anyway(request, data, {"Content-Type": "application/octet-stream"})

    async with mock_client(handler) as client:
        async with client.open_blob("lib/app", digest, len(data)) as reader:
            got = b"".join([chunk async for chunk in reader.chunks()])
        assert got == data
        async with client.open_blob("lib/app", digest) as reader:  # size from the response
            assert b"".join([chunk async for chunk in reader.chunks()]) == data


# -- where requests go ----------------------------------------------------------------------


async def test_loopback_without_scheme_falls_back_to_http(registry) -> None:
    async with make_client(RegistrySettings(host=registry.host)) as client:
        seen = record_requests(client)
        assert await client.base_url() == f"http://{registry.host}"
        assert await client.base_url() == f"http://{registry.host}"  # probed once
        assert [str(r.url) for r in seen] == [
            f"https://{registry.host}/v2/",
            f"http://{registry.host}/v2/",
        ]
        assert await client.head_manifest("x/app", "v1") is None


async def test_endpoint_overrides_where_requests_go(registry) -> None:
    settings = RegistrySettings(host="mirror.example.test", endpoint=f"http://{registry.host}")
    data = blob_bytes(5 * KIB)
    digest = Digest.of(data)
    async with make_client(settings) as client:
        assert client.registry.host == "mirror.example.test"
        assert await client.base_url() == f"http://{registry.host}"
        await client.upload_blob("ep/app", digest, len(data), stream(data))
        assert await client.blob_exists("ep/app", digest) == len(data)
    with registry.client() as http:
        assert http.head(f"/v2/ep/app/blobs/{digest}").status_code == 200


async def test_insecure_http_goes_straight_to_http(registry) -> None:
    async with make_client(RegistrySettings(host=registry.host, insecure_http=True)) as client:
        seen = record_requests(client)
        assert await client.base_url() == f"http://{registry.host}"
        assert [str(r.url) for r in seen] == [f"http://{registry.host}/v2/"]


async def test_tls_registry_needs_its_ca(tls_registry) -> None:
    async with make_client(RegistrySettings(host=tls_registry.host)) as client:
        # A certificate error is not a reason to fall back to plain HTTP.
        with pytest.raises(TransferError, match="certificate") as caught:
            await client.base_url()
        assert "ca_file" in str(caught.value)
    trusted = RegistrySettings(host=tls_registry.host, ca_file=str(tls_registry.ca_file))
    async with make_client(trusted) as client:
        assert await client.base_url() == f"https://{tls_registry.host}"
        assert await client.head_manifest("tls/app", "v1") is None
    unverified = RegistrySettings(host=tls_registry.host, tls_verify=False)
    async with make_client(unverified) as client:
        assert await client.base_url() == f"https://{tls_registry.host}"


async def test_unreachable_registry_is_a_transfer_error(registry) -> None:
    host = registry.host
    registry.stop()
    async with make_client(RegistrySettings(host=host)) as client:
        with pytest.raises(TransferError, match="cannot connect"):
            await client.base_url()


# -- authentication -------------------------------------------------------------------------


async def test_basic_auth_registry(basic_registry) -> None:
    settings = RegistrySettings(
        host=basic_registry.host,
        username=basic_registry.username,
        password=basic_registry.password,
    )
    data = blob_bytes(40 * KIB)
    digest = Digest.of(data)
    async with make_client(settings) as client:
        await client.upload_blob("team/app", digest, len(data), stream(data))
        assert await client.blob_exists("team/app", digest) == len(data)
        config = push_blob(basic_registry.client(), "team/app", b"{}")
        raw = json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": config, "size": 2},
                "layers": [
                    {"mediaType": mediatypes.OCI_LAYER, "digest": str(digest), "size": len(data)}
                ],
            }
        )
        await client.put_manifest("team/app", "v1", parse_manifest(raw))
        assert (await client.get_manifest("team/app", "v1")).raw == raw
        assert await client.list_tags("team/app") == ["v1"]

    async with make_client(RegistrySettings(host=basic_registry.host)) as anonymous:
        with pytest.raises(AuthenticationError) as caught:
            await anonymous.head_manifest("team/app", "v1")
        assert caught.value.status == 401

    wrong = RegistrySettings(host=basic_registry.host, username="ocync", password="wrong-pass")
    async with make_client(wrong) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.head_manifest("team/app", "v1")
        assert "wrong-pass" not in str(caught.value)


async def test_token_registry_fetches_one_token_per_scope_set(token_registry, token_server):
    settings = RegistrySettings(
        host=token_registry.host,
        username=token_registry.username,
        password=token_registry.password,
    )
    blobs = [blob_bytes(8 * KIB + i, seed=i) for i in range(12)]
    digests = [Digest.of(b) for b in blobs]
    async with make_client(settings) as client:
        await client.ping()
        token_server.reset_requests()

        async with trio.open_nursery() as nursery:
            for data, digest in zip(blobs, digests, strict=True):
                nursery.start_soon(client.upload_blob, "team/app", digest, len(data), stream(data))
        push_scope_requests = len(token_server.requests)
        assert push_scope_requests == 1

        assert await client.blobs_exist("team/app", digests) == dict.fromkeys(digests, True)

        results: list[MountResult] = []

        async def mount(digest: Digest) -> None:
            results.append(await client.mount_blob("other/app", digest, "team/app"))

        async with trio.open_nursery() as nursery:
            for digest in digests:
                nursery.start_soon(mount, digest)
        assert results == [MountResult(mounted=True)] * len(digests)
        assert await client.blobs_exist("other/app", digests) == dict.fromkeys(digests, True)

    requests = token_server.requests
    scope_sets = [frozenset(str(s) for s in r.scopes) for r in requests]
    # One token per distinct scope set, however many requests ran concurrently.
    assert len(scope_sets) == len(set(scope_sets)) == 4, scope_sets
    assert {r.user for r in requests} == {"ocync"}
    assert all(r.status == 200 for r in requests)
    assert frozenset({"repository:team/app:pull,push"}) in scope_sets
    assert frozenset({"repository:team/app:pull"}) in scope_sets


def _challenge(url: str, value: str) -> httpx.Response:
    return httpx.Response(
        401, headers={"WWW-Authenticate": value}, request=httpx.Request("GET", url)
    )


@pytest.mark.parametrize(
    "challenge",
    ['Basic realm="registry"', 'Bearer realm="https://registry.example.test/token"'],
)
async def test_credentials_refused_over_plain_http_to_non_loopback(challenge: str) -> None:
    settings = RegistrySettings(
        host="registry.example.test", username="user", password="s3cret-pass"
    )
    async with httpx.AsyncClient() as http:
        auth = StandardAuth(settings, http)
        await auth.challenged(
            _challenge("http://registry.example.test/v2/", challenge), frozenset()
        )
        request = httpx.Request("GET", "http://registry.example.test/v2/lib/app/manifests/v1")
        with pytest.raises(CredentialPolicyError) as caught:
            await auth.authorize(request, frozenset({"repository:lib/app:pull"}))
        assert "s3cret-pass" not in str(caught.value)
        assert "Authorization" not in request.headers


async def test_basic_credentials_allowed_over_https_and_loopback_http() -> None:
    for host, url in [
        ("registry.example.test", "https://registry.example.test/v2/"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/"),
    ]:
        settings = RegistrySettings(host=host, username="user", password="s3cret-pass")
        async with httpx.AsyncClient() as http:
            auth = StandardAuth(settings, http)
            await auth.challenged(_challenge(url, 'Basic realm="r"'), frozenset())
            request = httpx.Request("GET", url)
            await auth.authorize(request, frozenset())
            assert request.headers["Authorization"].startswith("Basic ")


async def test_preissued_token_refused_over_plain_http_to_non_loopback() -> None:
    settings = RegistrySettings(host="registry.example.test", token="pre-issued-token")
    async with httpx.AsyncClient() as http:
        auth = StandardAuth(settings, http)
        request = httpx.Request("GET", "http://registry.example.test/v2/")
        with pytest.raises(CredentialPolicyError):
            await auth.authorize(request, frozenset())
        # A request to another host (a CDN redirect) gets nothing and raises nothing.
        elsewhere = httpx.Request("GET", "http://cdn.example.test/blob")
        await auth.authorize(elsewhere, frozenset())
        assert "Authorization" not in elsewhere.headers
