"""The referrers front: docker-registry with the OCI 1.1 referrers API added, over real HTTP."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import httpx
import pytest

from ocync_conformance.images import push_blob, push_manifest, sha256_digest
from ocync_conformance.referrers_registry import OCI_INDEX, ReferrersRegistry
from ocync_conformance.registry_process import RegistryProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_JSON = "application/vnd.oci.empty.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"
SBOM_CONFIG = "application/vnd.example.sbom.config.v1+json"


@pytest.fixture(scope="module")
def front(shared_registry: RegistryProcess) -> Iterator[ReferrersRegistry]:
    with ReferrersRegistry(shared_registry) as running:
        yield running


@pytest.fixture
def http(front: ReferrersRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=front.url, timeout=30) as client:
        yield client


@pytest.fixture
def repo() -> str:
    return f"referrers/{secrets.token_hex(4)}"


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def _manifest(
    http: httpx.Client,
    repo: str,
    *,
    config_type: str = EMPTY_JSON,
    config: bytes = b"{}",
    subject: dict[str, object] | None = None,
    **fields: object,
) -> bytes:
    """An OCI image manifest over real blobs (pushed first), as bytes."""
    layer = os.urandom(32)
    push_blob(http, repo, config)
    push_blob(http, repo, layer)
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config_type, config),
        "layers": [_descriptor("application/octet-stream", layer)],
        **fields,
    }
    if subject is not None:
        doc["subject"] = subject
    return json.dumps(doc).encode()


def _put(http: httpx.Client, repo: str, ref: str, body: bytes) -> httpx.Response:
    response = http.put(
        f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201, response.text
    return response


def _referrers(http: httpx.Client, repo: str, subject: str, **params: str) -> httpx.Response:
    response = http.get(f"/v2/{repo}/referrers/{subject}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    return response


def _subject(http: httpx.Client, repo: str) -> tuple[str, dict[str, object]]:
    body = _manifest(http, repo, config_type="application/vnd.oci.image.config.v1+json")
    digest = push_manifest(http, repo, "latest", body)
    return digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}


def test_artifact_with_subject_is_listed_and_announced(http: httpx.Client, repo: str) -> None:
    subject_digest, subject = _subject(http, repo)
    signature = _manifest(
        http, repo, subject=subject, artifactType=SIGNATURE, annotations={"signed-by": "ci"}
    )
    sbom = _manifest(http, repo, subject=subject, config_type=SBOM_CONFIG, config=b'{"n":1}')

    put = _put(http, repo, sha256_digest(signature), signature)
    assert put.headers["OCI-Subject"] == subject_digest
    _put(http, repo, sha256_digest(sbom), sbom)

    index = _referrers(http, repo, subject_digest).json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(signature),
            "size": len(signature),
            "artifactType": SIGNATURE,
            "annotations": {"signed-by": "ci"},
        },
        # Without an artifactType, an image manifest is listed under its config's media type.
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(sbom),
            "size": len(sbom),
            "artifactType": SBOM_CONFIG,
        },
    ]
    # The registry behind still stores the artifact byte for byte.
    stored = http.get(
        f"/v2/{repo}/manifests/{sha256_digest(signature)}", headers={"Accept": OCI_MANIFEST}
    )
    assert stored.content == signature


def test_artifact_type_filter(http: httpx.Client, repo: str) -> None:
    subject_digest, subject = _subject(http, repo)
    signature = _manifest(http, repo, subject=subject, artifactType=SIGNATURE)
    sbom = _manifest(http, repo, subject=subject, artifactType=SBOM_CONFIG)
    for body in (signature, sbom):
        _put(http, repo, sha256_digest(body), body)

    unfiltered = _referrers(http, repo, subject_digest)
    assert "OCI-Filters-Applied" not in unfiltered.headers
    assert len(unfiltered.json()["manifests"]) == 2

    filtered = _referrers(http, repo, subject_digest, artifactType=SIGNATURE)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sha256_digest(signature)]


def test_unknown_subject_is_an_empty_index_and_bad_digest_is_refused(
    http: httpx.Client, repo: str
) -> None:
    unknown = f"sha256:{os.urandom(32).hex()}"
    assert _referrers(http, repo, unknown).json()["manifests"] == []
    assert http.get(f"/v2/{repo}/referrers/sha256:nothex").status_code == 400
    head = http.head(f"/v2/{repo}/referrers/{unknown}")
    assert head.status_code == 200 and head.headers["Content-Type"] == OCI_INDEX


def test_plain_manifest_is_not_indexed(http: httpx.Client, repo: str) -> None:
    body = _manifest(http, repo)
    put = _put(http, repo, "plain", body)
    assert "OCI-Subject" not in put.headers


def test_referrers_are_per_repository(http: httpx.Client, repo: str) -> None:
    subject_digest, subject = _subject(http, repo)
    artifact = _manifest(http, repo, subject=subject, artifactType=SIGNATURE)
    _put(http, repo, sha256_digest(artifact), artifact)
    assert _referrers(http, repo + "-other", subject_digest).json()["manifests"] == []


def test_deleted_referrer_is_no_longer_listed(http: httpx.Client, repo: str) -> None:
    subject_digest, subject = _subject(http, repo)
    artifact = _manifest(http, repo, subject=subject, artifactType=SIGNATURE)
    _put(http, repo, sha256_digest(artifact), artifact)
    deleted = http.delete(f"/v2/{repo}/manifests/{sha256_digest(artifact)}")
    assert deleted.status_code == 202, deleted.text
    assert _referrers(http, repo, subject_digest).json()["manifests"] == []


def test_everything_else_passes_through(
    http: httpx.Client, repo: str, front: ReferrersRegistry
) -> None:
    """A chunked-encoded upload streams through, and the session URL points at the front."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]
    assert location.startswith(front.url), location

    def pieces() -> Iterator[bytes]:
        for offset in range(0, len(data), 1024 * 1024):
            yield data[offset : offset + 1024 * 1024]

    patched = http.patch(
        location, content=pieces(), headers={"Content-Type": "application/octet-stream"}
    )
    assert patched.status_code == 202, patched.text
    done = http.put(
        # The session URL carries its state in the query: the digest is appended to it.
        f"{patched.headers['Location']}&digest={sha256_digest(data)}",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    assert http.get(f"/v2/{repo}/blobs/{sha256_digest(data)}").content == data


def test_tag_list_is_paged_when_asked(http: httpx.Client, repo: str) -> None:
    body = _manifest(http, repo)
    tags = [f"v{n}" for n in range(5)]
    for tag in tags:
        _put(http, repo, tag, body)
    pages: list[list[str]] = []
    url = f"/v2/{repo}/tags/list?n=2"
    while url:
        response = http.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json()["tags"])
        url = response.links.get("next", {}).get("url", "")
    assert pages == [["v0", "v1"], ["v2", "v3"], ["v4"]]
    whole = http.get(f"/v2/{repo}/tags/list")
    assert sorted(whole.json()["tags"]) == tags and "Link" not in whole.headers
    assert http.get(f"/v2/{repo}-absent/tags/list?n=2").status_code == 404
