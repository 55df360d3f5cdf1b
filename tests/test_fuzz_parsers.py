"""Hypothesis against every parser of outside input, where the other test files do not already.

Already fuzzed elsewhere: references (test_reference), digests (test_digest), manifests from
arbitrary bytes (test_manifest), WWW-Authenticate (test_auth_challenge), configuration data
and short YAML text (test_config), tag filters (test_filters). Here:

- what each parser may raise: only the project's own error for that input (a crash with a
  KeyError or an httpx exception is a bug), and round trips where a canonical form exists;
- safety properties: a parsed reference makes exactly the URL path it names (nothing for
  httpx to normalise away), a token realm at a metadata address is refused however the
  address is spelled, a configuration never yields a mapping with an invalid repository;
- Link headers answered by a real registry behind a FaultProxy.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import string
from collections.abc import Iterator
from email.utils import formatdate

import httpx
import pytest
import trio
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.auth.dockerconfig import DockerConfig
from ocync_core.auth.realm import check_realm
from ocync_core.client import RegistryClient
from ocync_core.config import format_duration, interpolate_text, load_config, parse_duration
from ocync_core.config._interpolate import InterpolationError
from ocync_core.digest import Digest
from ocync_core.errors import (
    AuthenticationError,
    BadInput,
    ConfigError,
    CredentialPolicyError,
    OcyncError,
    RegistryError,
)
from ocync_core.manifest import ImageIndex, ImageManifest, Platform, build_index, parse_manifest
from ocync_core.plugins import Plugins
from ocync_core.reference import Reference, validate_repository, validate_tag
from ocync_core.registry import RegistrySettings, split_registry_url
from ocync_core.retry import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after

FAST = settings(max_examples=100, deadline=None)


@functools.cache
def plugins() -> Plugins:
    """The built-in plugins only, loaded once: the developer's installed ones take no part."""
    return Plugins.load(allow=[])


NOW = 1_700_000_000.0

# -- Retry-After ------------------------------------------------------------------------------

http_dates = st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))


@FAST
@given(st.text(max_size=40) | http_dates | st.integers().map(str) | st.floats().map(str))
def test_retry_after_is_none_or_a_bounded_wait(value: str):
    seconds = parse_retry_after(value, now_wall=NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


@FAST
@given(st.integers(0, int(MAX_RETRY_AFTER)))
def test_retry_after_seconds_and_dates_agree(seconds: int):
    assert parse_retry_after(str(seconds), now_wall=NOW) == seconds
    assert parse_retry_after(formatdate(NOW + seconds, usegmt=True), now_wall=NOW) == seconds


# -- token realms -----------------------------------------------------------------------------

REGISTRY = RegistrySettings(host="registry.example.com")


@FAST
@given(st.text(max_size=60), st.booleans())
@example("http://[::1", False)
@example("http://0251.0376.0251.0376/", False)
def test_realm_is_a_url_or_refused(realm: str, with_credentials: bool):
    try:
        url = check_realm(REGISTRY, realm, with_credentials=with_credentials)
    except CredentialPolicyError:
        return
    assert url.scheme in ("http", "https") and url.host and not url.userinfo


def _dotted(value: int, parts: int, bases: list[str]) -> str:
    """`value` as the C resolver reads it: the last part takes the remaining bytes."""
    sizes = [1] * (parts - 1) + [4 - (parts - 1)]
    numbers, shift = [], 32
    for size in sizes:
        shift -= 8 * size
        numbers.append((value >> shift) & ((1 << (8 * size)) - 1))
    spelled = []
    for number, base in zip(numbers, bases, strict=False):
        if base == "hex":
            spelled.append(hex(number))
        elif base == "octal" and number:
            spelled.append("0" + oct(number)[2:])
        else:
            spelled.append(str(number))
    return ".".join(spelled)


@st.composite
def metadata_hosts(draw: st.DrawFn) -> str:
    """An address in 169.254.0.0/16 or the Alibaba one, spelled any way a resolver accepts."""
    address = draw(
        st.sampled_from(["169.254.169.254", "100.100.100.200"])
        | st.integers(0, 0xFFFF).map(lambda n: str(ipaddress.IPv4Address(0xA9FE0000 + n)))
    )
    value = int(ipaddress.IPv4Address(address))
    form = draw(st.sampled_from(["dotted", "number", "mapped", "nat64"]))
    if form == "number":
        return draw(st.sampled_from([str(value), hex(value)]))
    if form == "mapped":
        return f"[::ffff:{ipaddress.IPv4Address(value)}]"
    if form == "nat64":
        return f"[64:ff9b::{value >> 16:x}:{value & 0xFFFF:x}]"
    parts = draw(st.integers(1, 4))
    bases = draw(st.lists(st.sampled_from(["dec", "hex", "octal"]), min_size=4, max_size=4))
    return _dotted(value, parts, bases)


@FAST
@given(metadata_hosts(), st.booleans(), st.sampled_from(["http", "https"]))
def test_metadata_realm_is_refused_however_spelled(host: str, credentials: bool, scheme: str):
    realm = f"{scheme}://{host}/latest/api/token"
    try:
        httpx.URL(realm)
    except httpx.InvalidURL:
        assume(False)  # not even a URL to httpx: it could not be requested either
    with pytest.raises(CredentialPolicyError):
        check_realm(REGISTRY, realm, with_credentials=credentials)


# -- references as URLs -----------------------------------------------------------------------


@FAST
@given(st.text(max_size=80))
@example("127.0.0.1:5000/a/../b:v1")
@example("h.example/a/%2e%2e/b")
def test_a_parsed_reference_makes_exactly_the_url_it_names(text: str):
    try:
        ref = Reference.parse(text)
    except BadInput:
        return
    for tail in (f"manifests/{ref.identifier}", "tags/list", f"blobs/{Digest.of(b'')}"):
        path = f"/v2/{ref.repository}/{tail}"
        url = httpx.URL(f"https://{ref.domain}{path}")
        assert url.raw_path.decode() == path, f"{text!r} becomes {url.raw_path!r}"


@FAST
@given(st.text(max_size=140))
def test_tag_and_repository_validators_raise_only_bad_input(text: str):
    for validate in (validate_tag, validate_repository):
        try:
            assert validate(text) == text
        except BadInput as exc:
            assert str(exc)


# -- platforms, durations, registry URLs, interpolation ---------------------------------------

platform_parts = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)


@FAST
@given(st.lists(platform_parts, min_size=2, max_size=3).map("/".join) | st.text(max_size=30))
def test_platform_parses_or_is_bad_input_and_round_trips(text: str):
    try:
        platform = Platform.parse(text)
    except BadInput:
        return
    assert str(platform) == text and Platform.parse(str(platform)) == platform


@FAST
@given(st.text(max_size=20) | st.integers() | st.floats() | st.none() | st.booleans())
def test_duration_parses_or_is_a_config_problem(value: object):
    try:
        seconds = parse_duration(value)
    except PydanticCustomError:
        return
    assert 0 <= seconds < 100 * 365 * 86400


@FAST
@given(st.integers(0, 10**12))
def test_duration_round_trips_at_millisecond_precision(millis: int):
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


@FAST
@given(st.text(max_size=60))
def test_registry_url_splits_or_is_bad_input(text: str):
    try:
        scheme, _ = split_registry_url(text)
    except BadInput:
        return
    assert scheme in (None, "http", "https")


@FAST
@given(
    st.text(max_size=40),
    st.dictionaries(st.from_regex(r"[A-Z_]{1,3}", fullmatch=True), st.text(max_size=10)),
)
def test_interpolation_gives_text_or_names_the_problem(text: str, env: dict[str, str]):
    try:
        assert isinstance(interpolate_text(text, env), str)
    except InterpolationError as exc:
        assert str(exc)


@FAST
@given(st.text(max_size=40))
@example("$${")
@example("$${A}")
def test_escaped_text_interpolates_to_itself(text: str):
    assert interpolate_text(text.replace("${", "$${"), {}) == text


@FAST
@given(st.text(max_size=20))
def test_a_variable_value_is_taken_literally(value: str):
    assert interpolate_text("a${V}b", {"V": value}) == f"a{value}b"


# -- valid manifests round trip ---------------------------------------------------------------

media_types = st.sampled_from(
    [mediatypes.OCI_LAYER_GZIP, mediatypes.DOCKER_LAYER_GZIP, "application/x-unknown+json"]
) | st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,20}", fullmatch=True)
descriptors = st.fixed_dictionaries(
    {
        "mediaType": media_types,
        "digest": st.binary(max_size=8).map(lambda b: str(Digest.of(b))),
        "size": st.integers(0, 2**53),
    },
    optional={
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        "urls": st.lists(st.text(max_size=10), max_size=2),
        "artifactType": media_types,
        "x-unknown": st.integers() | st.text(max_size=5),
    },
)
platforms = st.fixed_dictionaries(
    {"os": st.sampled_from(["linux", "windows"]), "architecture": platform_parts},
    optional={"variant": platform_parts},
)
manifest_types = st.sampled_from([mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST, None])
index_types = st.sampled_from([mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST, None])


def _with_type(doc: dict, media_type: str | None) -> dict:
    return {"schemaVersion": 2, **({"mediaType": media_type} if media_type else {}), **doc}


images = st.builds(
    lambda t, config, layers: _with_type({"config": config, "layers": layers}, t),
    manifest_types,
    descriptors,
    st.lists(descriptors, max_size=4),
)
indexes = st.builds(
    lambda t, children: _with_type({"manifests": children}, t),
    index_types,
    st.lists(
        st.builds(lambda d, p: {**d, "platform": p}, descriptors, platforms) | descriptors,
        max_size=4,
    ),
)


@settings(max_examples=50, deadline=None)
@given(images | indexes, st.sampled_from([None, 0, 2]))
def test_valid_manifests_parse_to_what_they_say(doc: dict, indent: int | None):
    raw = json.dumps(doc, indent=indent).encode()
    manifest = parse_manifest(raw)
    assert manifest.raw == raw and manifest.digest == Digest.of(raw)
    if "manifests" in doc:
        assert isinstance(manifest, ImageIndex)
        assert [str(d.digest) for d in manifest.manifests] == [
            c["digest"] for c in doc["manifests"]
        ]
        kept = manifest.manifests[::2]
        rebuilt = parse_manifest(build_index(manifest, kept))
        assert isinstance(rebuilt, ImageIndex)
        assert rebuilt.manifests == tuple(d for d in manifest.manifests if d in kept)
        assert rebuilt.media_type == manifest.media_type
    else:
        assert isinstance(manifest, ImageManifest)
        assert [(d.media_type, str(d.digest), d.size) for d in manifest.blobs] == [
            (d["mediaType"], d["digest"], d["size"]) for d in [doc["config"], *doc["layers"]]
        ]
    assert manifest.media_type == doc.get("mediaType", manifest.media_type)


# -- error bodies and Docker configs ----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@FAST
@given(
    st.integers(400, 599),
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(json_values, max_size=3).map(lambda e: json.dumps({"errors": e}).encode()),
)
def test_any_error_body_becomes_a_registry_error(status: int, body: bytes):
    response = httpx.Response(
        status, content=body, request=httpx.Request("GET", "http://r.example/v2/x/tags/list")
    )
    error = RegistryError.from_response(response, what="list tags of x")
    assert error.status == status
    assert str(error).startswith(f"list tags of x: GET http://r.example/v2/x/tags/list -> {status}")


@FAST
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=4), st.text(max_size=20))
def test_any_auths_entry_gives_credentials_none_or_an_error(auths: dict, host: str):
    config = DockerConfig.from_mapping({"auths": auths})
    try:
        config.credentials_for(host)
    except (AuthenticationError, ConfigError) as exc:
        assert str(exc)


# -- configuration: hostile names never reach a mapping ---------------------------------------

hostile = st.sampled_from(
    ["..", ".", "%2e%2e", "/", "//", "\\", "\x00", "\x1b", "\n", " ", ":", "@", "?", "#", "A"]
)
names = st.lists(
    st.sampled_from(["a", "b1", "c-d", "e_f", "g.h"]) | hostile, min_size=1, max_size=6
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, st.none() | names, st.lists(names, max_size=2))
def test_a_config_never_yields_an_invalid_repository_or_tag(
    tmp_path_factory: pytest.TempPathFactory, source: str, target: str | None, tags: list[str]
):
    mapping: dict = {"from": source}
    if target is not None:
        mapping["to"] = target
    if tags:
        mapping["tags"] = {"include": tags}
    doc = {
        "global": {"cache": False},
        "registries": {"src": {"url": "src.example"}, "dst": {"url": "dst.example"}},
        "defaults": {"source": "src", "targets": "dst"},
        "mappings": [mapping],
    }
    path = tmp_path_factory.mktemp("c") / "mirror.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        config = load_config(path, plugins(), env={})
    except ConfigError as exc:
        assert "mappings[0]" in str(exc)
        return
    [resolved] = config.mappings
    validate_repository(resolved.source_repository)
    for target_ in resolved.targets:
        validate_repository(target_.repository)
    for tag in resolved.tags.include:
        validate_tag(tag)


# -- Link headers from a real registry --------------------------------------------------------


@pytest.fixture(scope="module")
def basic_registry_proxy(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultProxy]:
    with (
        RegistryProcess(
            workdir=tmp_path_factory.mktemp("links"), username=TEST_USERNAME, password=TEST_PASSWORD
        ) as registry,
        FaultProxy(registry, name="links") as proxy,
    ):
        yield proxy


header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
link_targets = (
    st.sampled_from(
        [
            "/v2/app/tags/list?last=v1",
            "?n=1",
            "//localhost:1/v2/app/tags/list",
            "http://localhost:1/x",
            "http://127.0.0.1:1/x",
            "http://[::1",
            "https://",
            "mailto:x",
            "",
        ]
    )
    | header_text
)
links = header_text | st.builds(
    lambda target, rel: f"<{target}>; rel={rel}",
    link_targets,
    st.sampled_from(['"next"', "next", '"prev"', '"next prev"']),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(links)
@example('<http://[::1>; rel="next"')
def test_any_link_header_lists_tags_or_fails_with_an_ocync_error(
    basic_registry_proxy: FaultProxy, link: str
):
    proxy = basic_registry_proxy
    proxy.clear_faults()
    body = json.dumps({"name": "app", "tags": ["v1"]}).encode()
    proxy.fail(ProxyAction.TAG_LIST, 200, body=body, headers={"Link": link}, count=1)
    settings_ = RegistrySettings(
        host=proxy.host, url=proxy.url, username=TEST_USERNAME, password=TEST_PASSWORD
    )
    leaked: list[httpx.URL] = []

    async def main() -> None:
        async with RegistryClient(settings_, plugins()) as client:
            client.retry_policy = RetryPolicy(attempts=1)

            async def watch(request: httpx.Request) -> None:
                if "authorization" in request.headers and request.url.netloc.decode() != (
                    proxy.host
                ):
                    leaked.append(request.url)

            client.http.event_hooks["request"].append(watch)
            try:
                tags = await client.list_tags("app")
            except OcyncError:
                return
            assert tags[0] == "v1"

    trio.run(main)
    assert not leaked, f"credentials sent to {leaked}"
