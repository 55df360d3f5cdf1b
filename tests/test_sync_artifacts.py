"""Referrers and platform subsets through `ocync sync`, between real registries."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ocync_conformance.corpus import build_corpus
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
SIGNATURE_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


def ocync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocync_core", *args], capture_output=True, text=True, timeout=300
    )


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_referrer(url: str, repo: str, subject: str, subject_size: int, payload: bytes) -> dict:
    """An OCI artifact manifest whose subject is `subject`; returns its descriptor."""
    empty = b"{}"
    push_blob(url, repo, empty)
    push_blob(url, repo, payload)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SIGNATURE_TYPE,
            "config": {"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": digest(empty), "size": 2},
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": digest(payload),
                    "size": len(payload),
                }
            ],
            "subject": {"mediaType": mediatypes.OCI_INDEX, "digest": subject, "size": subject_size},
        },
        indent=1,
    ).encode()
    push_manifest(url, repo, digest(manifest), manifest, mediatypes.OCI_MANIFEST)
    return {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": digest(manifest),
        "size": len(manifest),
        "artifactType": SIGNATURE_TYPE,
    }


def push_fallback_index(url: str, repo: str, subject: str, descriptors: list[dict]) -> bytes:
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": descriptors}, indent=2
    ).encode()
    push_manifest(url, repo, subject.replace(":", "-"), index, mediatypes.OCI_INDEX)
    return index


def config_for(path: Path, source: RegistryProcess, target: RegistryProcess, **mapping) -> Path:
    doc = {
        "global": {"cache": False},
        "registries": {"src": {"url": source.host}, "dst": {"url": target.host}},
        "defaults": {"source": "src", "targets": "dst"},
        "mappings": [{"from": "corpus/app00", "to": "mirror/app", **mapping}],
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def source_with_image(registry):
    corpus = build_corpus(repositories=1, tags=1)
    corpus.push(registry.url)
    image = corpus.images[0]
    index_size = len(image.manifests[-1][1])
    return registry, image, index_size


def get(url: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers=ACCEPT)


def test_signature_is_copied_with_its_fallback_index_byte_for_byte(
    source_with_image, target_registry, tmp_path
):
    source, image, size = source_with_image
    referrer = push_referrer(source.url, image.repository, image.digest, size, b"signed!")
    source_index = push_fallback_index(source.url, image.repository, image.digest, [referrer])

    result = ocync("sync", "-c", str(config_for(tmp_path / "m.yaml", source, target_registry)))
    assert result.returncode == 0, result.stderr

    copied = get(target_registry.url, f"/v2/mirror/app/manifests/{referrer['digest']}")
    assert copied.status_code == 200 and digest(copied.content) == referrer["digest"]
    fallback = get(
        target_registry.url, f"/v2/mirror/app/manifests/{image.digest.replace(':', '-')}"
    )
    assert fallback.status_code == 200
    assert fallback.content == source_index  # the source's own bytes, so the same digest


def test_fallback_tag_that_lies_about_its_subject_is_not_followed(
    source_with_image, target_registry, tmp_path
):
    source, image, _ = source_with_image
    other = "sha256:" + "ab" * 32
    stranger = push_referrer(source.url, image.repository, other, 10, b"not yours")
    push_fallback_index(source.url, image.repository, image.digest, [stranger])

    result = ocync("sync", "-c", str(config_for(tmp_path / "m.yaml", source, target_registry)))
    assert result.returncode == 0, result.stderr
    assert "does not name" in result.stderr
    assert (
        get(target_registry.url, f"/v2/mirror/app/manifests/{stranger['digest']}").status_code
        == 404
    )


def test_require_artifacts_fails_an_image_without_referrers(
    source_with_image, target_registry, tmp_path
):
    source, _, _ = source_with_image
    config = config_for(
        tmp_path / "m.yaml", source, target_registry, artifacts={"require_artifacts": True}
    )
    result = ocync("sync", "-c", str(config), "--json")
    assert result.returncode == 2, result.stderr
    [image] = json.loads(result.stdout)["images"]
    assert image["status"] == "failed" and "require_artifacts" in image["reason"]


def test_platform_subset_pushes_a_new_index_and_says_so(
    source_with_image, target_registry, tmp_path
):
    source, image, _ = source_with_image
    config = config_for(tmp_path / "m.yaml", source, target_registry, platforms=["linux/amd64"])
    result = ocync("sync", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "new index digest" in result.stdout

    pushed = get(target_registry.url, f"/v2/mirror/app/manifests/{image.tag}")
    assert pushed.status_code == 200
    index = json.loads(pushed.content)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64"]
    assert digest(pushed.content) != image.digest
    # The kept child is the source's own manifest, byte for byte.
    assert index["manifests"][0]["digest"] in image.children

    # A second run compares against the filtered digest: nothing to do.
    again = ocync("sync", "-c", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["totals"]["skipped"] == 1


def test_platform_that_matches_nothing_lists_what_the_source_has(
    source_with_image, target_registry, tmp_path
):
    source, _, _ = source_with_image
    config = config_for(tmp_path / "m.yaml", source, target_registry, platforms=["linux/s390x"])
    result = ocync("sync", "-c", str(config), "--json")
    assert result.returncode == 2
    [image] = json.loads(result.stdout)["images"]
    assert "linux/s390x" in image["reason"]
    assert "linux/amd64" in image["reason"] and "linux/arm64" in image["reason"]
