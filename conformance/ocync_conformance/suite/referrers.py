"""Referrers: the OCI 1.1 API and the fallback tag.

Where the registry has the referrers API, ocync lists a subject's referrers with one request
and never reads the fallback tag. Where it has not, the fallback tag `sha256-<hex>` (an index
of the referrers) is read instead, and it is not taken on trust: a tag that resolves to the
subject itself is no index, and a referrer whose `subject` names another manifest is not
copied.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.suite.base import SuiteBase, new_repository, requires
from ocync_conformance.suite.manifests import image_manifest
from ocync_core import mediatypes
from ocync_core.artifacts import ArtifactRules, copy_referrers
from ocync_core.client import RegistryClient, fallback_tag
from ocync_core.digest import Digest
from ocync_core.manifest import parse_manifest
from ocync_core.transfer import BlobMover, BlobStats

__all__ = ["ReferrerChecks"]

SIGNATURE = "application/vnd.example.signature.v1+json"
SBOM = "application/vnd.example.sbom.v1+json"
_EMPTY_CONFIG = b"{}"


def _descriptor(raw: bytes, **extra: object) -> dict[str, object]:
    media_type = json.loads(raw)["mediaType"]
    return {"mediaType": media_type, "digest": str(Digest.of(raw)), "size": len(raw), **extra}


def _subject(http: httpx.Client, repo: str, tag: str = "subject") -> bytes:
    raw = image_manifest(http, repo)
    push_manifest(http, repo, tag, raw, mediatypes.OCI_MANIFEST)
    return raw


def _artifact(http: httpx.Client, repo: str, subject: bytes, artifact_type: str) -> bytes:
    """An artifact manifest (empty config, one small layer) naming `subject`; blobs pushed."""
    layer = os.urandom(48)
    push_blob(http, repo, _EMPTY_CONFIG)
    push_blob(http, repo, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": mediatypes.OCI_EMPTY_JSON,
            "digest": str(Digest.of(_EMPTY_CONFIG)),
            "size": len(_EMPTY_CONFIG),
        },
        "layers": [
            {"mediaType": artifact_type, "digest": str(Digest.of(layer)), "size": len(layer)}
        ],
        "subject": _descriptor(subject),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _push_by_digest(http: httpx.Client, repo: str, raw: bytes) -> Digest:
    push_manifest(http, repo, str(Digest.of(raw)), raw, mediatypes.OCI_MANIFEST)
    return Digest.of(raw)


def _push_fallback_index(
    http: httpx.Client, repo: str, subject: bytes, listed: list[bytes]
) -> Digest:
    """What a client without the API writes: an index of the referrers at `sha256-<hex>`."""
    entries = [_descriptor(raw, artifactType=json.loads(raw)["artifactType"]) for raw in listed]
    doc = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    push_manifest(http, repo, fallback_tag(Digest.of(subject)), raw, mediatypes.OCI_INDEX)
    return Digest.of(raw)


def _fallback_reads(proxy: FaultProxy, subject: Digest) -> list[str]:
    proxy.wait_idle()
    tag = fallback_tag(subject)
    return [
        f"{r.method} {r.path}"
        for r in proxy.log
        if r.action in ("manifest_head", "manifest_get") and r.path.endswith(f"/manifests/{tag}")
    ]


class ReferrerChecks(SuiteBase):
    @pytest.fixture
    def without_referrers_api(self, caps: Capabilities) -> None:
        """The fallback tag is only read where the registry has no referrers API."""
        if caps.referrers_api:
            pytest.skip("the registry has the referrers API, so ocync never reads a fallback tag")

    @requires("referrers_api", "the registry has no OCI 1.1 referrers API")
    async def test_referrers_api_lists_artifacts(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        with target.direct() as http:
            subject = _subject(http, repo)
            artifacts = {kind: _artifact(http, repo, subject, kind) for kind in (SIGNATURE, SBOM)}
        for raw in artifacts.values():
            await client.put_manifest(repo, str(Digest.of(raw)), parse_manifest(raw))
        subject_digest = Digest.of(subject)
        proxy.reset()

        listing = await client.referrers_listing(repo, subject_digest)

        expected = {(Digest.of(raw), kind) for kind, raw in artifacts.items()}
        found = {(d.digest, d.artifact_type) for d in listing.descriptors}
        assert listing.via_api and found == expected, (
            f"referrers of {repo}@{subject_digest} through the referrers API: expected "
            f"{sorted(map(str, expected))}, got {sorted(map(str, found))} "
            f"(via the API: {listing.via_api})"
        )
        proxy.wait_idle()  # the proxy logs a request after its answer reached the client
        api_calls = proxy.count(["referrers"], status=200)
        assert api_calls == 1, f"listing referrers sent {api_calls} successful referrers requests"
        reads = _fallback_reads(proxy, subject_digest)
        assert not reads, f"the referrers API answered, yet the fallback tag was read: {reads}"

    async def test_fallback_tag_lists_referrers(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        without_referrers_api: None,
    ) -> None:
        with target.direct() as http:
            subject = _subject(http, repo)
            artifact = _artifact(http, repo, subject, SIGNATURE)
            _push_by_digest(http, repo, artifact)
            index = _push_fallback_index(http, repo, subject, [artifact])
        subject_digest = Digest.of(subject)

        listing = await client.referrers_listing(repo, subject_digest)

        found = [(d.digest, d.artifact_type) for d in listing.descriptors]
        assert found == [(Digest.of(artifact), SIGNATURE)] and not listing.via_api, (
            f"referrers of {repo}@{subject_digest} from the fallback tag: expected the "
            f"signature {Digest.of(artifact)}, got {found} (via the API: {listing.via_api})"
        )
        assert listing.fallback_index is not None and listing.fallback_index.digest == index, (
            f"the fallback index read is not the one at {fallback_tag(subject_digest)}"
        )
        probes = proxy.count(["referrers"])
        assert probes <= 1, f"the registry lacks the referrers API, yet it was asked {probes} times"
        assert _fallback_reads(proxy, subject_digest), "the fallback tag was never read"

    async def test_fallback_tag_resolving_to_the_subject_is_not_trusted(
        self, client: RegistryClient, target: Target, repo: str, without_referrers_api: None
    ) -> None:
        with target.direct() as http:
            subject = _subject(http, repo)
            # Some registries resolve `sha256-<hex>` to the manifest of that digest itself.
            push_manifest(
                http, repo, fallback_tag(Digest.of(subject)), subject, mediatypes.OCI_MANIFEST
            )

        listing = await client.referrers_listing(repo, Digest.of(subject))

        assert not listing.descriptors and listing.fallback_index is None, (
            f"the fallback tag of {repo}@{Digest.of(subject)} is the subject itself, yet it "
            f"was taken for a referrers index listing {listing.descriptors}"
        )

    async def test_referrer_of_another_subject_not_copied(
        self, client: RegistryClient, target: Target, repo: str, without_referrers_api: None
    ) -> None:
        with target.direct() as http:
            subject = _subject(http, repo)
            other = _subject(http, repo, tag="other")
            honest = _artifact(http, repo, subject, SIGNATURE)
            liar = _artifact(http, repo, other, SBOM)
            for raw in (honest, liar):
                _push_by_digest(http, repo, raw)
            # The fallback tag lies: it lists a manifest whose subject is another image.
            _push_fallback_index(http, repo, subject, [honest, liar])
        copy_to = new_repository(target, "referrers-copy")

        await copy_referrers(
            client,
            repo,
            client,
            copy_to,
            Digest.of(subject),
            BlobMover(),
            ArtifactRules(),
            BlobStats(),
        )

        copied_liar = await client.head_manifest(copy_to, str(Digest.of(liar)))
        assert copied_liar is None, (
            f"referrer {Digest.of(liar)} names {Digest.of(other)} as its subject, not "
            f"{Digest.of(subject)}, yet copying the referrers listed in the lying fallback tag "
            f"copied it to {copy_to}"
        )
        copied_honest = await client.head_manifest(copy_to, str(Digest.of(honest)))
        assert copied_honest is not None, (
            f"the honest referrer {Digest.of(honest)} of {Digest.of(subject)} was not copied"
        )
        written = await client.referrers_listing(copy_to, Digest.of(subject))
        listed = [d.digest for d in written.descriptors]
        assert listed == [Digest.of(honest)], (
            f"the fallback tag written to {copy_to} lists {listed}, "
            f"not only the honest referrer {Digest.of(honest)}"
        )
