"""Manifest models: exact bytes kept, digests over those bytes, kinds told apart safely."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocync_core import mediatypes as mt
from ocync_core.digest import Digest
from ocync_core.errors import BadInput, ManifestError
from ocync_core.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    build_index,
    parse_manifest,
)

CONFIG = Digest.of(b"config")
LAYER1 = Digest.of(b"layer1")
LAYER2 = Digest.of(b"layer2")
AMD64 = Digest.of(b"amd64 manifest")
ARM64 = Digest.of(b"arm64 manifest")
ATTEST = Digest.of(b"attestation manifest")

OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": str(CONFIG), "size": 1469},
    "layers": [
        {"mediaType": mt.OCI_LAYER_GZIP, "digest": str(LAYER1), "size": 3623807},
        {
            "mediaType": mt.OCI_LAYER_ZSTD,
            "digest": str(LAYER2),
            "size": 12,
            "annotations": {"org.opencontainers.image.title": "x"},
            "urls": ["https://example.com/layer"],
        },
    ],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}

OCI_INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(AMD64),
            "size": 1000,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(ARM64),
            "size": 1001,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            "x-unknown": [1, 2],
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(ATTEST),
            "size": 839,
            "annotations": {
                "vnd.docker.reference.digest": str(AMD64),
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        },
    ],
    "annotations": {"org.opencontainers.image.ref.name": "1.0"},
}

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG, "size": 7023, "digest": str(CONFIG)},
    "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "size": 32654, "digest": str(LAYER1)}],
}

DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "size": 7143,
            "digest": str(AMD64),
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": mt.DOCKER_MANIFEST,
            "size": 7682,
            "digest": str(ARM64),
            "platform": {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.1",
                "os.features": ["win32k"],
            },
        },
    ],
}


def dump(doc: object, **kwargs: object) -> bytes:
    return json.dumps(doc, **kwargs).encode()


def test_oci_manifest():
    raw = dump(OCI_MANIFEST, indent=3)
    m = parse_manifest(raw)
    assert isinstance(m, ImageManifest) and not m.is_index
    assert m.raw == raw and m.media_type == mt.OCI_MANIFEST
    assert m.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert [b.digest for b in m.blobs] == [CONFIG, LAYER1, LAYER2]
    assert m.layers[1].urls == ("https://example.com/layer",)
    assert m.layers[1].annotations == {"org.opencontainers.image.title": "x"}
    assert m.annotations["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"
    assert m.config.size == 1469 and m.subject is None


def test_oci_index():
    m = parse_manifest(dump(OCI_INDEX), mt.OCI_INDEX)
    assert isinstance(m, ImageIndex) and m.is_index
    assert [str(d.platform) for d in m.manifests] == [
        "linux/amd64",
        "linux/arm64/v8",
        "unknown/unknown",
    ]
    assert m.annotations == {"org.opencontainers.image.ref.name": "1.0"}


def test_docker_manifest_and_list():
    m = parse_manifest(dump(DOCKER_MANIFEST), mt.DOCKER_MANIFEST)
    assert isinstance(m, ImageManifest) and m.media_type == mt.DOCKER_MANIFEST
    lst = parse_manifest(dump(DOCKER_LIST))
    assert isinstance(lst, ImageIndex) and lst.media_type == mt.DOCKER_MANIFEST_LIST
    windows = lst.manifests[1].platform
    assert windows == Platform("windows", "amd64", None, "10.0.17763.1", ("win32k",))


@pytest.mark.parametrize(
    "raw",
    [
        dump(OCI_MANIFEST),
        dump(OCI_MANIFEST, indent=2),
        dump(OCI_MANIFEST, sort_keys=True),
        dump(OCI_MANIFEST, separators=(",", ":")),
        b"\n\t " + dump(OCI_MANIFEST, indent="\t") + b"\r\n  ",
        dump(dict(reversed(list(OCI_MANIFEST.items())))),
        json.dumps(OCI_MANIFEST | {"annotations": {"k": "\u00e9"}}, ensure_ascii=False).encode(),
    ],
)
def test_digest_is_over_exact_bytes(raw):
    m = parse_manifest(raw)
    assert m.raw == raw
    assert str(m.digest) == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_media_type_comes_from_document_then_content_type():
    doc = {k: v for k, v in OCI_MANIFEST.items() if k != "mediaType"}
    assert parse_manifest(dump(doc), f"{mt.DOCKER_MANIFEST}; charset=utf-8").media_type == (
        mt.DOCKER_MANIFEST
    )
    assert parse_manifest(dump(doc)).media_type == mt.OCI_MANIFEST  # nothing given: OCI assumed
    # Both image kinds: not a contradiction; the document's field wins.
    assert parse_manifest(dump(OCI_MANIFEST), mt.DOCKER_MANIFEST).media_type == mt.OCI_MANIFEST
    # A generic Content-Type says nothing about the kind.
    assert parse_manifest(dump(OCI_INDEX), "application/json").media_type == mt.OCI_INDEX


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [(OCI_MANIFEST, mt.OCI_INDEX), (OCI_INDEX, mt.DOCKER_MANIFEST), (DOCKER_LIST, mt.OCI_MANIFEST)],
)
def test_contradiction_rejected(doc, content_type):
    with pytest.raises(ManifestError, match="contradicts"):
        parse_manifest(dump(doc), content_type, what="manifest ghcr.io/a/b:1")


def test_unknown_media_type_kept_and_classified_by_shape():
    artifact = OCI_MANIFEST | {"mediaType": "application/vnd.example.thing.v1+json"}
    m = parse_manifest(dump(artifact))
    assert isinstance(m, ImageManifest) and m.media_type == artifact["mediaType"]
    index = {k: v for k, v in OCI_INDEX.items() if k != "mediaType"}
    i = parse_manifest(dump(index), "application/vnd.example.list+json")
    assert isinstance(i, ImageIndex) and i.media_type == "application/vnd.example.list+json"
    with pytest.raises(ManifestError, match="neither"):
        parse_manifest(b'{"schemaVersion": 2, "mediaType": "application/x-odd"}')


def test_artifact_with_subject():
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": mt.OCI_EMPTY_JSON, "digest": str(Digest.of(b"{}")), "size": 2},
        "layers": [],
        "subject": {"mediaType": mt.OCI_INDEX, "digest": str(AMD64), "size": 1000},
    }
    m = parse_manifest(dump(doc))
    assert isinstance(m, ImageManifest)
    assert m.subject is not None and m.subject.digest == AMD64
    assert m.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert m.layers == ()


def test_oversize_rejected():
    raw = dump(OCI_MANIFEST).replace(b"{", b"{" + b" " * MAX_MANIFEST_SIZE, 1)
    with pytest.raises(ManifestError, match="larger than"):
        parse_manifest(raw, what="manifest x")


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, None),
        (
            {"schemaVersion": 2, "config": {}},
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ],
)
def test_schema1_rejected(doc, content_type):
    with pytest.raises(ManifestError, match="schema 1 manifests are not supported"):
        parse_manifest(dump(doc), content_type)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "my thing is not valid"),
        (b"{", "my thing is not valid"),
        (b"\xff\xfe", "my thing is not valid"),
        (b"[]", "my thing is not a JSON object"),
        (b'"x"', "my thing is not a JSON object"),
        (b'{"schemaVersion": 3, "layers": []}', "schemaVersion must be 2"),
        (b'{"schemaVersion": true, "layers": []}', "schemaVersion must be 2"),
        (b'{"mediaType": 5, "layers": []}', "mediaType must be a string"),
        (dump({"mediaType": mt.OCI_INDEX}), "manifests must be an array"),
        (dump({"mediaType": mt.OCI_MANIFEST, "layers": []}), "has no config"),
        (dump(OCI_MANIFEST | {"layers": {}}), "layers must be an array"),
        (dump(OCI_MANIFEST | {"config": []}), "my thing config: must be an object"),
        (
            dump(OCI_MANIFEST | {"layers": [{"mediaType": "x", "digest": "sha256:1", "size": 1}]}),
            "my thing layers[0]",
        ),
        (
            dump(
                OCI_MANIFEST | {"layers": [{"mediaType": "x", "digest": str(CONFIG), "size": -1}]}
            ),
            "size must be a non-negative integer",
        ),
        (
            dump(
                OCI_MANIFEST | {"layers": [{"mediaType": "x", "digest": str(CONFIG), "size": 1.0}]}
            ),
            "size",
        ),
        (
            dump(OCI_MANIFEST | {"layers": [{"digest": str(CONFIG), "size": 1}]}),
            "mediaType must be",
        ),
        (
            dump(OCI_MANIFEST | {"annotations": {"a": 1}}),
            "annotations must be an object of strings",
        ),
        (
            dump(
                OCI_INDEX
                | {
                    "manifests": [
                        {
                            "mediaType": "x",
                            "digest": str(CONFIG),
                            "size": 1,
                            "platform": {"os": "linux"},
                        }
                    ]
                }
            ),
            "my thing manifests[0] platform",
        ),
        (b"[" * 100000 + b"]" * 100000, "my thing"),
    ],
)
def test_malformed_rejected_naming_what(raw, fragment):
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, what="my thing")
    assert fragment in str(info.value)


def test_build_index_keeps_only_chosen_children_and_everything_else():
    raw = dump(OCI_INDEX, indent=2)
    source = parse_manifest(raw)
    assert isinstance(source, ImageIndex)
    arm, attest = source.manifests[1], source.manifests[2]
    built = build_index(source, [attest, arm])
    doc = json.loads(built)
    assert list(doc) == list(OCI_INDEX)  # key order of the source document
    assert doc["manifests"] == [OCI_INDEX["manifests"][1], OCI_INDEX["manifests"][2]]
    assert doc["manifests"][0]["x-unknown"] == [1, 2]  # unknown child fields survive
    assert doc["annotations"] == OCI_INDEX["annotations"]
    again = parse_manifest(built)
    assert isinstance(again, ImageIndex) and again.manifests == (arm, attest)
    assert again.media_type == mt.OCI_INDEX and again.digest == Digest.of(built)
    assert build_index(source, source.manifests) == dump(OCI_INDEX, separators=(",", ":"))


def test_build_index_docker_list_and_foreign_child():
    source = parse_manifest(dump(DOCKER_LIST))
    assert isinstance(source, ImageIndex)
    doc = json.loads(build_index(source, source.manifests[:1]))
    assert doc["mediaType"] == mt.DOCKER_MANIFEST_LIST and doc["schemaVersion"] == 2
    assert len(doc["manifests"]) == 1
    stranger = Descriptor(mt.OCI_MANIFEST, Digest.of(b"stranger"), 1)
    with pytest.raises(ManifestError, match="does not list"):
        build_index(source, [stranger])


def test_descriptor_is_frozen_and_hashable():
    d = Descriptor.from_json(OCI_MANIFEST["layers"][1], "layer")
    assert hash(d) == hash(Descriptor.from_json(OCI_MANIFEST["layers"][1], "layer"))
    assert d == Descriptor(
        mt.OCI_LAYER_ZSTD,
        LAYER2,
        12,
        annotations={"org.opencontainers.image.title": "x"},
        urls=("https://example.com/layer",),
    )
    with pytest.raises(TypeError):
        d.annotations["x"] = "y"  # type: ignore[index]
    assert len({d, d}) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"])
def test_platform_parse_invalid(text):
    with pytest.raises(BadInput, match="platform"):
        Platform.parse(text)


def test_platform_matches():
    arm64 = Platform("linux", "arm64")
    assert arm64.matches(Platform("linux", "arm64", "v8"))
    assert Platform("linux", "arm64", "v8").matches(arm64)
    assert not Platform("linux", "arm", "v7").matches(Platform("linux", "arm", "v6"))
    assert not arm64.matches(Platform("linux", "amd64"))
    assert not arm64.matches(Platform("windows", "arm64"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
manifest_keys = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "annotations",
        "artifactType",
        "digest",
        "size",
        "platform",
        "os",
        "architecture",
        "urls",
    ]
)
descriptor_like = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.sampled_from([mt.OCI_MANIFEST, "x", ""]) | json_values,
        "digest": st.just(str(CONFIG)) | json_values,
        "size": st.integers(-2, 9) | json_values,
        "platform": st.fixed_dictionaries({}, optional={"os": st.text(), "architecture": st.text()})
        | json_values,
    },
)
manifest_like = st.dictionaries(
    manifest_keys,
    st.sampled_from([2, 1, mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST])
    | descriptor_like
    | st.lists(descriptor_like, max_size=3)
    | json_values,
    max_size=8,
)
content_types = (
    st.none()
    | st.sampled_from([*mt.MANIFEST_ACCEPT, "application/json", "", ";"])
    | st.text(max_size=20)
)


@given(
    st.binary(max_size=2048) | manifest_like.map(lambda d: json.dumps(d).encode()), content_types
)
def test_fuzz_parse_raises_only_manifest_error(raw, content_type):
    try:
        m = parse_manifest(raw, content_type)
    except ManifestError:
        return
    assert m.raw == raw and m.digest == Digest.of(raw)
    if isinstance(m, ImageIndex):
        parse_manifest(build_index(m, m.manifests[::2]))
