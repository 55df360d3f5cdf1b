"""Bad input is refused with an error that names it, and sends no request where none should go.

Two sources of bad input:

- what a registry serves: manifests that are malformed, oversized or contradict their own
  digest, served by a real docker-registry (for what it stores) or by the FaultProxy in front
  of it (for what no honest registry stores), then synced with the real engine. Each bad image
  fails alone, naming the problem; the good images next to it are copied byte for byte; the
  target receives nothing for a bad image but the HEAD that compares its tag.
- what a user types: repository names and references in a configuration's mappings or on the
  `ocync copy` command line that try path traversal, control characters or over-long names.
  They are refused before any request (a FaultProxy standing in for the registry stays silent).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from click.testing import CliRunner

from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy, ProxyAction, RequestRecord
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.cli import cli
from ocync_core.config import load_config, parse_config
from ocync_core.engine import SyncOptions, run_sync
from ocync_core.errors import EXIT_BAD_INPUT, ConfigError
from ocync_core.manifest import MAX_MANIFEST_SIZE
from ocync_core.plugins import Plugins
from ocync_core.report import FAILED, SYNCED, ImageResult, SyncReport

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
SOURCE_REPO = "bad/app"
TARGET_REPO = "mirror/app"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def json_bytes(doc: object) -> bytes:
    return json.dumps(doc, indent=1).encode()


@dataclass(frozen=True)
class Pushed:
    """A manifest stored at the source, and the blobs it names."""

    raw: bytes
    digest: str
    blobs: tuple[str, ...]


def push_image(
    http: httpx.Client,
    tag: str,
    *,
    config_type: str = mediatypes.OCI_CONFIG,
    layer_type: str = mediatypes.OCI_LAYER,
    **extra: object,
) -> Pushed:
    """A small image whose blobs belong to it alone (their content names the tag)."""
    config = json_bytes({"architecture": "amd64", "os": "linux", "tag": tag})
    layer = f"layer of {tag}".encode() * 40
    config_digest = push_blob(http, SOURCE_REPO, config)
    layer_digest = push_blob(http, SOURCE_REPO, layer)
    raw = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(layer)}],
            **extra,
        }
    )
    digest = push_manifest(http, SOURCE_REPO, tag, raw, mediatypes.OCI_MANIFEST)
    return Pushed(raw, digest, (config_digest, layer_digest))


def child_descriptor(image: Pushed, media_type: str = mediatypes.OCI_MANIFEST) -> dict:
    return {
        "mediaType": media_type,
        "digest": image.digest,
        "size": len(image.raw),
        "platform": {"os": "linux", "architecture": "amd64"},
    }


# -- what a registry serves -------------------------------------------------------------------


@dataclass(frozen=True)
class Lie:
    """A manifest the source serves for `tag` in place of the one it stores.

    The HEAD of the tag answers `head_digest` (default: the body's digest); the GET of that
    digest answers `body` with `get_digest` as Docker-Content-Digest (default: `head_digest`).
    Without a body, the GET reaches the stored manifest.
    """

    tag: str
    body: bytes | None
    reason: str  # what the image's failure must say
    head_digest: str | None = None
    get_digest: str | None = None


def _index_listing(digest: str) -> bytes:
    return json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {"mediaType": mediatypes.OCI_INDEX, "digest": digest, "size": 2},
            ],
        }
    )


_IMAGE_SHAPE = {
    "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha256(b"{}"), "size": 2},
    "layers": [],
}
_CLAIMED = sha256(b"the digest the registry claims")

LIES = [
    Lie(
        "malformed-json",
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", ',
        "is not valid UTF-8 JSON",
    ),
    Lie("not-utf8", b'{"schemaVersion": 2, "mediaType": "\xff\xfe"}', "is not valid UTF-8 JSON"),
    Lie("not-an-object", b'["schemaVersion", 2]', "is not a JSON object"),
    Lie(
        "oversized",
        json_bytes({**_IMAGE_SHAPE, "annotations": {"padding": "x" * MAX_MANIFEST_SIZE}}),
        f"is larger than {MAX_MANIFEST_SIZE} bytes",
    ),
    Lie(
        "index-type-image-body",
        json_bytes({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, **_IMAGE_SHAPE}),
        "manifests must be an array",
    ),
    Lie(
        "image-type-index-body",
        json_bytes({"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "manifests": []}),
        "image manifest has no config",
    ),
    Lie(
        "unknown-type-no-shape",
        json_bytes({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}),
        "is unknown and the document has neither 'manifests' nor 'config'/'layers'",
    ),
    Lie(
        "schema-1",
        json_bytes({"schemaVersion": 1, "name": "bad/app", "tag": "x", "fsLayers": []}),
        "Docker schema 1 manifests are not supported",
    ),
    Lie(
        "schema-version-3",
        json_bytes({"schemaVersion": 3, "mediaType": mediatypes.OCI_MANIFEST, **_IMAGE_SHAPE}),
        "schemaVersion must be 2, got 3",
    ),
    Lie(
        "child-digest-traversal",
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_INDEX,
                "manifests": [
                    {"mediaType": mediatypes.OCI_MANIFEST, "digest": "sha256:../../x", "size": 2}
                ],
            }
        ),
        "manifests[0]: digest sha256:'../../x' must have 64 lowercase hex characters",
    ),
    Lie(
        "negative-layer-size",
        json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": _IMAGE_SHAPE["config"],
                "layers": [{"mediaType": mediatypes.OCI_LAYER, "digest": _CLAIMED, "size": -1}],
            }
        ),
        "layers[0]: size must be a non-negative integer, got -1",
    ),
    # No honest registry can serve an index that lists itself (its digest would have to be
    # part of its own bytes); one that claims to must be caught before ocync follows the loop.
    Lie(
        "index-listing-itself",
        _index_listing(_CLAIMED),
        "does not match its digest",
        head_digest=_CLAIMED,
    ),
    Lie("get-contradicts-header", None, "does not match its digest", get_digest=_CLAIMED),
    Lie("garbage-digest-header", None, "must have 64 lowercase hex", head_digest="sha256:zz"),
]


def serve_lie(proxy: FaultProxy, lie: Lie, stored: Pushed) -> None:
    tag_path = f"^/v2/{re.escape(SOURCE_REPO)}/manifests/{re.escape(lie.tag)}$"
    head_digest = lie.head_digest or (sha256(lie.body) if lie.body is not None else None)
    if head_digest is not None:
        proxy.fail(
            ProxyAction.MANIFEST_HEAD,
            200,
            body=lie.body or stored.raw,
            headers={"Docker-Content-Digest": head_digest},
            path=tag_path,
            name=f"lie:{lie.tag}",
        )
    digest = head_digest or stored.digest
    proxy.fail(
        ProxyAction.MANIFEST_GET,
        200,
        body=lie.body if lie.body is not None else stored.raw,
        headers={"Docker-Content-Digest": lie.get_digest or digest},
        path=f"^/v2/{re.escape(SOURCE_REPO)}/manifests/({re.escape(lie.tag)}|{digest})$",
        name=f"lie:{lie.tag}",
    )


@dataclass
class Mirrored:
    """One sync of a source serving every lie and a few odd but valid images."""

    report: SyncReport
    source_log: list[RequestRecord]
    target_log: list[RequestRecord]
    target: RegistryProcess
    stored: dict[str, Pushed]
    valid: dict[str, Pushed]

    def result(self, tag: str) -> ImageResult:
        [found] = [r for r in self.report.images if r.source.endswith(f"/{SOURCE_REPO}:{tag}")]
        return found

    def target_manifest(self, reference: str) -> httpx.Response:
        with httpx.Client(base_url=self.target.url) as http:
            return http.get(f"/v2/{TARGET_REPO}/manifests/{reference}", headers=ACCEPT)


def sync(source: FaultProxy, target: FaultProxy, **mapping: object) -> SyncReport:
    doc = {
        "global": {"cache": False},
        "registries": {"src": {"url": source.url}, "dst": {"url": target.url}},
        "mappings": [
            {"from": SOURCE_REPO, "to": TARGET_REPO, "source": "src", "targets": "dst", **mapping}
        ],
    }
    plugins = Plugins.load()
    config = parse_config(doc, plugins=plugins, env={})

    async def main() -> SyncReport:
        return await run_sync(config, plugins=plugins, options=SyncOptions(handle_signals=False))

    return trio.run(main)


@pytest.fixture(scope="module")
def mirrored(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    with (
        RegistryProcess(workdir=tmp_path_factory.mktemp("bad-src")) as source,
        RegistryProcess(workdir=tmp_path_factory.mktemp("bad-dst")) as target,
        FaultProxy(source, name="bad-source") as source_proxy,
        FaultProxy(target, name="bad-target") as target_proxy,
        httpx.Client(base_url=source.url, timeout=30) as http,
    ):
        stored = {lie.tag: push_image(http, lie.tag) for lie in LIES}
        for lie in LIES:
            serve_lie(source_proxy, lie, stored[lie.tag])
        valid = {
            "good": push_image(http, "good"),
            # Types ocync has never heard of are copied, not judged.
            "unknown-types": push_image(
                http,
                "unknown-types",
                config_type="application/vnd.example.unknown.config.v1+json",
                layer_type="application/x-example-unknown-layer",
                artifactType="application/vnd.example.unknown.artifact",
                annotations={"org.example.note": "kept verbatim"},
            ),
        }
        first, second = push_image(http, "twin-a"), push_image(http, "twin-b")
        # Two children for the same platform, one with a media type nobody registered: odd,
        # but nothing the OCI spec forbids; the index travels as it is.
        odd_index = json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_INDEX,
                "manifests": [
                    child_descriptor(first),
                    child_descriptor(second, "application/vnd.example.unknown.manifest+json"),
                ],
            }
        )
        valid["odd-index"] = Pushed(
            odd_index,
            push_manifest(http, SOURCE_REPO, "odd-index", odd_index, mediatypes.OCI_INDEX),
            first.blobs + second.blobs,
        )
        report = sync(source_proxy, target_proxy, tags={"exclude": ["twin-*"]})
        source_proxy.wait_idle()
        target_proxy.wait_idle()
        yield Mirrored(report, source_proxy.log, target_proxy.log, target, stored, valid)


@pytest.mark.parametrize("lie", LIES, ids=[lie.tag for lie in LIES])
def test_bad_manifest_fails_its_image_alone_and_writes_nothing(mirrored: Mirrored, lie: Lie):
    result = mirrored.result(lie.tag)
    assert result.status == FAILED, f"{lie.tag}: a bad manifest was not refused: {result}"
    assert lie.reason in result.reason, f"{lie.tag}: the failure does not name the problem"
    assert len(result.reason) < 600, "the failure quotes too much of what the registry sent"

    # On the wire: the target heard only the HEAD comparing the tag, the source was never
    # asked for the blobs of what it stores under that tag, nor asked twice for the manifest.
    about_tag = [r for r in mirrored.target_log if r.path.split("?")[0].endswith(f"/{lie.tag}")]
    assert [r.action for r in about_tag] == [ProxyAction.MANIFEST_HEAD], (
        f"{lie.tag}: the target received more than a HEAD for a refused image: {about_tag}"
    )
    stored = mirrored.stored[lie.tag]
    touched = [
        r
        for r in mirrored.source_log + mirrored.target_log
        if any(d in r.path for d in stored.blobs)
    ]
    assert not touched, f"{lie.tag}: blobs of a refused image were moved: {touched}"
    gets = [
        r
        for r in mirrored.source_log
        if r.action == ProxyAction.MANIFEST_GET and any(f"lie:{lie.tag}" == f for f in r.faults)
    ]
    assert len(gets) <= 1, f"{lie.tag}: a refused manifest was fetched {len(gets)} times"
    assert mirrored.target_manifest(lie.tag).status_code == 404


def test_no_bad_manifest_leaves_a_manifest_at_the_target(mirrored: Mirrored):
    puts = [r.path for r in mirrored.target_log if r.action == ProxyAction.MANIFEST_PUT]
    bad = {lie.tag for lie in LIES}
    assert not [p for p in puts if p.rsplit("/", 1)[1] in bad], puts
    # good, unknown-types, odd-index, and the two children of odd-index by digest
    assert len(puts) == 5, puts


@pytest.mark.parametrize("tag", ["good", "unknown-types", "odd-index"])
def test_valid_images_next_to_bad_ones_are_copied_byte_for_byte(mirrored: Mirrored, tag: str):
    result = mirrored.result(tag)
    assert result.status == SYNCED, f"{tag}: {result.reason}"
    pushed = mirrored.valid[tag]
    got = mirrored.target_manifest(tag)
    assert got.status_code == 200
    assert got.content == pushed.raw, f"{tag}: the target's manifest is not the source's bytes"
    assert got.headers["Docker-Content-Digest"] == pushed.digest
    with httpx.Client(base_url=mirrored.target.url) as http:
        missing = [
            d for d in pushed.blobs if http.head(f"/v2/{TARGET_REPO}/blobs/{d}").status_code != 200
        ]
    assert not missing, f"{tag}: blobs missing at the target: {missing}"


def test_unknown_media_types_reach_the_target_as_they_were(mirrored: Mirrored):
    got = mirrored.target_manifest("unknown-types")
    doc = got.json()
    assert doc["config"]["mediaType"] == "application/vnd.example.unknown.config.v1+json"
    assert doc["layers"][0]["mediaType"] == "application/x-example-unknown-layer"
    assert doc["artifactType"] == "application/vnd.example.unknown.artifact"
    index = mirrored.target_manifest("odd-index").json()
    children = [c["digest"] for c in index["manifests"]]
    assert all(mirrored.target_manifest(d).status_code == 200 for d in children)


# -- what a user types ------------------------------------------------------------------------

BAD_REPOSITORIES = {
    "dot-dot": ("../etc/passwd", "component '..' is not allowed (path traversal)"),
    "dot-dot-inside": ("a/../../b", "component '..' is not allowed (path traversal)"),
    "dot": ("a/./b", "component '.' is not allowed (path traversal)"),
    "percent-encoded-dot-dot": ("a/%2e%2e/b", "component '%2e%2e' is invalid"),
    "percent-encoded-slash": ("a%2f..%2fb", "component 'a%2f..%2fb' is invalid"),
    "backslash": ("a\\..\\b", "is invalid"),
    "nul": ("a/b\x00c", "component 'b\\x00c' is invalid"),
    "escape-sequence": ("a/b\x1b[2Jc", "component 'b\\x1b[2Jc' is invalid"),
    "newline": ("a/b\nc", "component 'b\\nc' is invalid"),
    "absolute": ("/abs/path", "empty component"),
    "over-long": ("a/" + "b" * 254, "longer than 255 characters"),
    "uppercase": ("Team/App", "component 'Team' must be lowercase"),
    "tag-in-name": ("a/b:latest", "contains ':'"),
}


def config_doc(registry: str, **mapping: object) -> dict:
    return {
        "global": {"cache": False},
        "registries": {"src": {"url": registry}, "dst": {"url": registry}},
        "mappings": [
            {"from": "ok/app", "to": "ok/mirror", "source": "src", "targets": "dst", **mapping}
        ],
    }


def has_control_characters(text: str) -> bool:
    return any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in text)


@pytest.fixture(scope="module")
def _silent(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    with (
        RegistryProcess(workdir=tmp_path_factory.mktemp("silent")) as registry,
        FaultProxy(registry, name="must-stay-silent") as proxy,
    ):
        yield proxy


@pytest.fixture
def silent_registry(_silent: FaultProxy) -> Iterator[FaultProxy]:
    """A registry behind a proxy that must see no request at all during the check."""
    _silent.wait_idle()
    _silent.reset()
    yield _silent
    _silent.wait_idle()
    assert _silent.log == [], f"a request went out for refused input: {_silent.log}"


def test_the_silent_registry_does_hear_valid_input(_silent: FaultProxy, tmp_path: Path):
    """The counterpart: valid input reaches the registry, so its silence above means refusal."""
    _silent.reset()
    path = tmp_path / "mirror.yaml"
    path.write_text(json.dumps(config_doc(_silent.url)))
    assert CliRunner().invoke(cli, ["sync", "-c", str(path)]).exit_code != EXIT_BAD_INPUT
    done = CliRunner().invoke(cli, ["copy", f"{_silent.host}/ok/app:v1", f"{_silent.host}/x:v1"])
    assert done.exit_code != EXIT_BAD_INPUT, done.output
    _silent.wait_idle()
    assert {r.action for r in _silent.log} >= {ProxyAction.TAG_LIST, ProxyAction.MANIFEST_HEAD}


@pytest.mark.parametrize("key", ["from", "to"])
@pytest.mark.parametrize("case", BAD_REPOSITORIES.values(), ids=list(BAD_REPOSITORIES))
def test_bad_repository_in_a_mapping_is_refused_before_any_request(
    silent_registry: FaultProxy, tmp_path: Path, key: str, case: tuple[str, str]
):
    name, problem = case
    path = tmp_path / "mirror.yaml"
    path.write_text(json.dumps(config_doc(silent_registry.url, **{key: name})))  # JSON is YAML
    done = CliRunner().invoke(cli, ["sync", "-c", str(path)])
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert f"{path}: mappings[0].{key}: repository " in done.stderr, done.stderr
    assert problem in done.stderr, done.stderr
    assert not has_control_characters(done.stderr), "the error echoes raw control characters"


BAD_TAGS = {
    "dot-dot": ("../x", "tag '../x' is invalid"),
    "slash": ("v1/../../x", "tag 'v1/../../x' is invalid"),
    "query": ("v1?digest=sha256:0", "tag 'v1?digest=sha256:0' is invalid"),
    "nul": ("v1\x00", "tag 'v1\\x00' is invalid"),
    "over-long": ("v" * 129, "' is longer than 128 characters"),
}


@pytest.mark.parametrize("case", BAD_TAGS.values(), ids=list(BAD_TAGS))
def test_bad_tag_in_a_mapping_is_refused_before_any_request(
    silent_registry: FaultProxy, tmp_path: Path, case: tuple[str, str]
):
    tag, problem = case
    path = tmp_path / "mirror.yaml"
    path.write_text(json.dumps(config_doc(silent_registry.url, tags={"include": [tag]})))
    with pytest.raises(ConfigError) as caught:
        load_config(path, Plugins.load(), env={})
    assert "mappings[0].tags.include: tag " in str(caught.value)
    assert problem in str(caught.value)
    done = CliRunner().invoke(cli, ["sync", "-c", str(path)])
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert not has_control_characters(done.stderr)


BAD_REFERENCES = {
    "dot-dot": ("{host}/../etc:v1", "'..' path components are not allowed (path traversal)"),
    "dot-dot-inside": ("{host}/a/../../b:v1", "(path traversal)"),
    "percent-encoded": ("{host}/a/%2e%2e/b:v1", "component '%2e%2e' is invalid"),
    "traversal-after-tag": ("{host}/app:v1/../../x", "(path traversal)"),
    "traversal-in-digest": ("{host}/app@sha256:../../x", "must have 64 lowercase hex"),
    "nul": ("{host}/a/b\x00:v1", "contains whitespace or a control character"),
    "escape-sequence": ("{host}/a/b\x1b[2J:v1", "contains whitespace or a control character"),
    "over-long-name": ("{host}/" + "a" * 256 + ":v1", "longer than 255 characters"),
    "over-long-tag": ("{host}/app:" + "t" * 129, "longer than 128 characters"),
    "uppercase": ("{host}/Team/app:v1", "component 'Team' must be lowercase"),
}


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("case", BAD_REFERENCES.values(), ids=list(BAD_REFERENCES))
def test_bad_reference_to_copy_is_refused_before_any_request(
    silent_registry: FaultProxy, side: str, case: tuple[str, str]
):
    template, problem = case
    bad = template.format(host=silent_registry.host)
    good = f"{silent_registry.host}/ok/app:v1"
    args = [bad, good] if side == "source" else [good, bad]
    done = CliRunner().invoke(cli, ["copy", *args])
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert done.stderr.startswith("ocync: error: reference "), done.stderr
    assert problem in done.stderr, done.stderr
    assert not has_control_characters(done.stderr), "the error echoes raw control characters"


def test_tag_from_a_registry_that_climbs_out_of_the_repository_is_refused(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
):
    source, target = registry_pair
    escape = "../../../victim/manifests/pwned"
    with (
        FaultProxy(source, name="hostile-source") as source_proxy,
        FaultProxy(target, name="target") as target_proxy,
        httpx.Client(base_url=source.url) as http,
    ):
        push_image(http, "v1")
        config = json_bytes({"architecture": "amd64", "os": "linux"})
        # The blob is everywhere, as a shared base layer would be: nothing stops the write.
        push_blob(http, SOURCE_REPO, config)
        push_blob(target.url, "victim", config)
        victim = json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {
                    "mediaType": mediatypes.OCI_CONFIG,
                    "digest": push_blob(http, "victim", config),
                    "size": len(config),
                },
                "layers": [],
            }
        )
        push_manifest(http, "victim", "pwned", victim, mediatypes.OCI_MANIFEST)
        listing = json.dumps({"name": SOURCE_REPO, "tags": ["v1", escape]}).encode()
        source_proxy.fail(ProxyAction.TAG_LIST, 200, body=listing)
        report = sync(source_proxy, target_proxy)
        source_proxy.wait_idle()
        target_proxy.wait_idle()
        strays = [
            f"{r.method} {r.path}"
            for r in source_proxy.log + target_proxy.log
            if r.action != ProxyAction.PING
            and not r.path.startswith((f"/v2/{SOURCE_REPO}/", f"/v2/{TARGET_REPO}/"))
        ]
    assert not strays, f"requests outside the mapped repositories: {strays}"
    with httpx.Client(base_url=target.url) as http:
        assert http.head("/v2/victim/manifests/pwned", headers=ACCEPT).status_code == 404
    refused = [r for r in report.images if r.status == FAILED and escape in r.source]
    assert refused and "invalid" in refused[0].reason, report.images
    assert [r.status for r in report.images if r.source.endswith(":v1")] == [SYNCED]


def test_a_registry_error_message_is_shown_short_and_without_control_characters(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
):
    source, target = registry_pair
    with (
        FaultProxy(source, name="source") as source_proxy,
        FaultProxy(target, name="refusing-target") as target_proxy,
        httpx.Client(base_url=source.url) as http,
    ):
        push_image(http, "v1")
        message = "\x1b]0;owned\x07\x1b[2J" + "refused " * 100_000
        body = json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": message}]})
        target_proxy.fail(ProxyAction.MANIFEST_PUT, 400, body=body.encode())
        report = sync(source_proxy, target_proxy)
    [result] = report.images
    assert result.status == FAILED and "MANIFEST_INVALID" in result.reason
    assert len(result.reason) < 2000, f"the failure is {len(result.reason)} characters long"
    assert not has_control_characters(result.reason), "the registry's escape sequences got through"
