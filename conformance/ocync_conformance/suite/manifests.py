"""Manifests and indexes, OCI and Docker v2, stored byte for byte.

A manifest's identity is the digest of its bytes: the registry must keep exactly what ocync
sent, report that digest, and hand the same bytes back, whatever the plugin does on the way.
"""

from __future__ import annotations

import json
import os

import httpx

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.suite.base import SuiteBase, requires
from ocync_core import mediatypes
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.manifest import parse_manifest

__all__ = ["ManifestChecks", "image_manifest", "index_of"]


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def image_manifest(
    http: httpx.Client, repo: str, media_type: str = mediatypes.OCI_MANIFEST
) -> bytes:
    """A small image manifest (OCI or Docker v2) whose config and layer are pushed first."""
    docker = media_type == mediatypes.DOCKER_MANIFEST
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()})
    layer = os.urandom(256)
    push_blob(http, repo, config.encode())
    push_blob(http, repo, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": _descriptor(
            mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG, config.encode()
        ),
        "layers": [
            _descriptor(mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER, layer)
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def index_of(children: list[bytes], media_type: str = mediatypes.OCI_INDEX) -> bytes:
    """An index (or Docker manifest list) of `children`, one platform each."""
    entries = [
        {
            **_descriptor(json.loads(child)["mediaType"], child),
            "platform": {"os": "linux", "architecture": arch},
        }
        for child, arch in zip(children, ("amd64", "arm64", "s390x", "ppc64le"), strict=False)
    ]
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return json.dumps(doc, separators=(",", ":")).encode()


def _unusual_bytes(http: httpx.Client, repo: str) -> bytes:
    """An OCI manifest a re-serialiser would change: key order, indentation, escapes, newline."""
    compact = json.loads(image_manifest(http, repo))
    config, layer = compact["config"], compact["layers"][0]
    return (
        "{\n"
        f'    "layers" : [ {{"size":{layer["size"]}, "digest":"{layer["digest"]}",'
        f'\t"mediaType":"{layer["mediaType"]}"}} ],\n'
        f'  "config":{{"size": {config["size"]},"mediaType": "{config["mediaType"]}", '
        f'"digest": "{config["digest"]}"}},\n'
        '  "annotations": {"org.example.note": "caf\\u00e9 \\/ \\"quoted\\""},\n'
        f'\t"mediaType": "{mediatypes.OCI_MANIFEST}",  "schemaVersion": 2\n'
        "}\n"
    ).encode()


async def _push_and_read_back(
    client: RegistryClient,
    target: Target,
    proxy: FaultProxy,
    repo: str,
    raw: bytes,
    reference: str,
    what: str,
) -> Digest:
    """Push `raw` through the client, then check every way the registry reports it."""
    expected = Digest.of(raw)
    manifest = parse_manifest(raw, what=what)
    sent_before = [r for r in proxy.log if r.action == "manifest_put"]
    pushed = await client.put_manifest(repo, reference, manifest)
    assert pushed == expected, f"{what}: pushing it reported digest {pushed}, not {expected}"
    proxy.wait_idle()
    puts = [r for r in proxy.log if r.action == "manifest_put"][len(sent_before) :]
    assert [r.bytes_in for r in puts] == [len(raw)], (
        f"{what}: the manifest PUT carried {[r.bytes_in for r in puts]} bytes on the wire, "
        f"not exactly the {len(raw)} bytes of the manifest"
    )

    fetched = await client.get_manifest(repo, str(expected))
    assert fetched.raw == raw, f"{what}: GET by digest through the plugin returned other bytes"
    assert fetched.media_type == manifest.media_type, (
        f"{what}: read back as {fetched.media_type}, pushed as {manifest.media_type}"
    )
    with target.direct() as http:
        accept = {"Accept": manifest.media_type}
        stored = http.get(f"/v2/{repo}/manifests/{expected}", headers=accept)
        assert stored.status_code == 200 and stored.content == raw, (
            f"{what}: the registry does not hold the exact bytes pushed under {expected} "
            f"(status {stored.status_code}, {len(stored.content)} bytes, pushed {len(raw)})"
        )
        reported = stored.headers.get("Docker-Content-Digest")
        assert reported == str(expected), (
            f"{what}: the registry reports Docker-Content-Digest {reported}, "
            f"but the bytes sent hash to {expected}"
        )
        by_reference = http.head(f"/v2/{repo}/manifests/{reference}", headers=accept)
        assert by_reference.headers.get("Docker-Content-Digest") == str(expected), (
            f"{what}: HEAD {reference} on the registry reports "
            f"{by_reference.headers.get('Docker-Content-Digest')}, pushed {expected}"
        )
    head = await client.head_manifest(repo, reference)
    assert head is not None and head.digest == expected, (
        f"{what}: HEAD {reference} through the plugin gave {head}, pushed {expected}"
    )
    return expected


class ManifestChecks(SuiteBase):
    async def test_oci_image_manifest_round_trips(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            raw = image_manifest(http, repo)
        await _push_and_read_back(client, target, proxy, repo, raw, "v1", "OCI image manifest")

    async def test_oci_index_round_trips(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            children = [image_manifest(http, repo) for _ in range(2)]
        # The registry checks an index's children exist: they go first, by digest.
        for child in children:
            await _push_and_read_back(
                client, target, proxy, repo, child, str(Digest.of(child)), "OCI index child"
            )
        await _push_and_read_back(
            client, target, proxy, repo, index_of(children), "multi", "OCI image index"
        )

    @requires("docker_v2_manifests", "Docker v2 schema 2 manifests are not stored as sent")
    async def test_docker_v2_manifest_round_trips(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            raw = image_manifest(http, repo, mediatypes.DOCKER_MANIFEST)
        await _push_and_read_back(
            client, target, proxy, repo, raw, "v1", "Docker v2 schema 2 manifest"
        )

    @requires("docker_v2_manifests", "Docker manifest lists are not stored as sent")
    async def test_docker_manifest_list_round_trips(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            children = [image_manifest(http, repo, mediatypes.DOCKER_MANIFEST) for _ in range(2)]
        for child in children:
            await _push_and_read_back(
                client, target, proxy, repo, child, str(Digest.of(child)), "manifest list child"
            )
        raw = index_of(children, mediatypes.DOCKER_MANIFEST_LIST)
        await _push_and_read_back(client, target, proxy, repo, raw, "multi", "Docker manifest list")

    async def test_unusual_serialisation_keeps_its_bytes(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            raw = _unusual_bytes(http, repo)
        assert json.dumps(json.loads(raw)).encode() != raw  # re-serialising would change it
        await _push_and_read_back(
            client, target, proxy, repo, raw, "odd", "manifest with unusual whitespace/key order"
        )

    async def test_unknown_manifest_is_none(
        self, client: RegistryClient, target: Target, repo: str
    ) -> None:
        with target.direct() as http:
            raw = image_manifest(http, repo)
        await client.put_manifest(repo, "present", parse_manifest(raw))
        unknown_digest = f"sha256:{os.urandom(32).hex()}"
        for reference in ("absent-tag", unknown_digest):
            found = await client.head_manifest(repo, reference)
            assert found is None, (
                f"HEAD of unknown manifest {repo}:{reference} answered {found}, not None"
            )
