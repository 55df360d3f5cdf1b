"""`ocync copy` end to end, between real docker-registry processes over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ocync_conformance.images import push_blob, push_manifest
from ocync_core import mediatypes

OCYNC = [sys.executable, "-m", "ocync_core"]
ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def ocync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OCYNC, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def skopeo_raw(reference: str, *extra: str) -> bytes:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", *extra, f"docker://{reference}"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def assert_same_image(source: str, target: str, *target_flags: str) -> list[str]:
    """Index and every child: the target's bytes (hence digests) equal the source's."""
    src_raw = skopeo_raw(source, "--tls-verify=false")
    dst_raw = skopeo_raw(target, *(target_flags or ("--tls-verify=false",)))
    assert digest_of(dst_raw) == digest_of(src_raw)
    index = json.loads(src_raw)
    children = [child["digest"] for child in index.get("manifests", [])]
    src_name, dst_name = source.rsplit(":", 1)[0], target.rsplit(":", 1)[0]
    for child in children:
        child_src = skopeo_raw(f"{src_name}@{child}", "--tls-verify=false")
        child_dst = skopeo_raw(f"{dst_name}@{child}", *(target_flags or ("--tls-verify=false",)))
        assert digest_of(child_src) == digest_of(child_dst) == child
    return children


def test_copy_multiarch_between_open_registries(seeded_registry, target_registry):
    source = f"{seeded_registry.host}/demo/app:v1"
    target = f"{target_registry.host}/mirror/app:v1"
    result = ocync("copy", source, target)
    assert result.returncode == 0, result.stderr
    assert "copied" in result.stdout and "linux/amd64" in result.stdout
    children = assert_same_image(source, target)
    assert len(children) == 2

    again = ocync("copy", "--json", source, target)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["status"] == "skipped"
    assert report["blobs_transferred"] == 0


def test_copy_json_report_counts_blobs(seeded_registry, target_registry):
    result = ocync(
        "copy", "--json", f"{seeded_registry.host}/demo/app:v1", f"{target_registry.host}/j/app"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "copied"
    assert report["target"].endswith("/j/app:v1")  # the tag comes from the source
    assert report["manifests_pushed"] == 3  # two children, then the index
    assert report["blobs_transferred"] >= 4 and report["bytes"] > 0
    assert sorted(report["platforms"]) == ["linux/amd64", "linux/arm64"]


def test_copy_within_one_registry_mounts(seeded_registry):
    source = f"{seeded_registry.host}/demo/app:v1"
    result = ocync("copy", "--json", source, f"{seeded_registry.host}/other/app:v1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["blobs_transferred"] == 0
    assert report["blobs_mounted"] >= 4
    assert_same_image(source, f"{seeded_registry.host}/other/app:v1")


def test_copy_from_basic_auth_to_bearer_token_registry(
    seeded_registry, basic_registry, token_registry, token_server
):
    # Seed the Basic registry from the open one, with credentials from the command line.
    staged = f"{basic_registry.host}/team/app:v1"
    creds = f"{basic_registry.username}:{basic_registry.password}"
    first = ocync("copy", f"{seeded_registry.host}/demo/app:v1", staged, "--dest-creds", creds)
    assert first.returncode == 0, first.stderr

    token_creds = f"{token_registry.username}:{token_registry.password}"
    second = ocync(
        "copy",
        staged,
        f"{token_registry.host}/mirror/app:v1",
        env={"OCYNC_SRC_CREDS": creds, "OCYNC_DEST_CREDS": token_creds},
    )
    assert second.returncode == 0, second.stderr
    assert creds not in second.stdout + second.stderr
    assert token_creds not in second.stdout + second.stderr
    # Tokens were fetched from the token server, not for every request.
    assert 1 <= len(token_server.requests) <= 6


def test_copy_to_tls_registry_with_private_ca(seeded_registry, tls_registry):
    target = f"{tls_registry.host}/secure/app:v1"
    refused = ocync("copy", f"{seeded_registry.host}/demo/app:v1", target)
    assert refused.returncode == 2
    assert "certificate" in refused.stderr.lower() or "ssl" in refused.stderr.lower()

    result = ocync(
        "copy",
        f"{seeded_registry.host}/demo/app:v1",
        target,
        "--dest-ca-file",
        str(tls_registry.ca_file),
    )
    assert result.returncode == 0, result.stderr
    assert_same_image(
        f"{seeded_registry.host}/demo/app:v1", target, f"--cert-dir={tls_registry.cert_dir}"
    )


def test_wrong_credentials_exit_4(seeded_registry, basic_registry):
    result = ocync(
        "copy",
        f"{seeded_registry.host}/demo/app:v1",
        f"{basic_registry.host}/x/app:v1",
        "--dest-creds",
        f"{basic_registry.username}:not-the-password",
    )
    assert result.returncode == 4, result.stderr
    assert "not-the-password" not in result.stderr


@pytest.mark.parametrize(
    "source",
    ["UPPER/case:v1", "127.0.0.1:5000/a//b:v1", "127.0.0.1:5000/app:" + "t" * 129, "a/b:c:d"],
)
def test_bad_reference_exit_3(source):
    result = ocync("copy", source, "127.0.0.1:1/x:v1")
    assert result.returncode == 3
    assert "error" in result.stderr


def test_missing_image_exit_2(registry):
    result = ocync("copy", f"{registry.host}/nothing/here:v1", f"{registry.host}/x:v1")
    assert result.returncode == 2
    assert "MANIFEST_UNKNOWN" in result.stderr or "does not exist" in result.stderr


def test_corrupt_source_blob_is_not_pushed(registry, tmp_path: Path):
    """A blob whose bytes do not match its digest never reaches the target."""
    from ocync_conformance.registry_process import RegistryProcess

    good = os.urandom(256 * 1024)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer_digest = push_blob(registry.url, "bad/app", good)
    config_digest = push_blob(registry.url, "bad/app", config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": layer_digest, "size": len(good)}
            ],
        }
    ).encode()
    push_manifest(registry.url, "bad/app", "v1", manifest, mediatypes.OCI_MANIFEST)
    # Corrupt the stored bytes behind the registry's back (same length, other content).
    hex_part = layer_digest.split(":", 1)[1]
    data = next(Path(registry.storage_dir).rglob(f"blobs/sha256/{hex_part[:2]}/{hex_part}/data"))
    data.write_bytes(bytes(b ^ 0xFF for b in good))

    with RegistryProcess() as target:
        result = ocync("copy", f"{registry.host}/bad/app:v1", f"{target.host}/bad/app:v1")
        assert result.returncode == 2
        assert layer_digest in result.stderr
        with httpx.Client(base_url=target.url) as http:
            assert http.head(f"/v2/bad/app/blobs/{layer_digest}").status_code == 404
            assert http.head("/v2/bad/app/manifests/v1", headers=ACCEPT).status_code == 404
