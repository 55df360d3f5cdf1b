"""Configuration: models, YAML + ${VAR} loading, error messages, resolution, JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from ocync_core.config import (
    Config,
    ConfigProblems,
    TagFilter,
    config_json_schema,
    format_duration,
    interpolate_text,
    load_config,
    parse_config,
    parse_duration,
)
from ocync_core.errors import EXIT_BAD_INPUT, ConfigError
from ocync_core.hookspecs import hookimpl
from ocync_core.manifest import Platform
from ocync_core.plugins import PluginError, Plugins
from ocync_core.registry import RegistrySettings

SHORTEST = """\
registries:
  src: { url: cgr.dev }
  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com }
defaults: { source: src, targets: ecr }
mappings:
  - from: chainguard/static
    to: static
"""


class AcmePlugin:
    """A plugin with a registry kind and two registry keys, one of them secret."""

    OCYNC_KINDS = ("acme",)

    class Keys(BaseModel):
        acme_region: str | None = None
        acme_api_key: SecretStr | None = None
        acme_batch: int = 10

    @hookimpl
    def ocync_registry_config_model(self) -> type[BaseModel]:
        return self.Keys


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=[])


@pytest.fixture(scope="module")
def acme() -> Plugins:
    return Plugins.load(allow=[], extra=[AcmePlugin()])


def write(tmp_path: Path, text: str, name: str = "mirror.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, plugins: Plugins, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), plugins, env=env or {})


def problems(tmp_path: Path, text: str, plugins: Plugins, **env: str) -> list[str]:
    """The lines of the ConfigError a bad config gives, with the file name shortened."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, plugins, env=env)
    assert caught.value.exit_code == EXIT_BAD_INPUT == 3
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    return [line.replace(str(path), "mirror.yaml") for line in lines]


def base(extra: str = "", mappings: str = "  - from: chainguard/static\n") -> str:
    return SHORTEST.split("mappings:")[0] + extra + "mappings:\n" + mappings


# -- valid configs ----------------------------------------------------------------------------


def test_shortest_config(tmp_path, plugins):
    config = load(tmp_path, SHORTEST, plugins)
    assert list(config.registries) == ["src", "ecr"]
    src = config.registries["src"]
    assert src == RegistrySettings(host="cgr.dev", name="src", options={"auth_type": "auto"})
    (mapping,) = config.mappings
    assert mapping.index == 0
    assert mapping.source_alias == "src" and mapping.source is src
    assert mapping.source_repository == "chainguard/static"
    (target,) = mapping.targets
    assert target.alias == "ecr" and target.repository == "static"
    assert target.registry.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert mapping.tags == TagFilter() and not mapping.tags.literal_only  # every tag
    assert mapping.platforms == ()
    assert mapping.artifacts.enabled and not mapping.artifacts.require_artifacts
    assert mapping.key == "src/chainguard/static -> ecr/static"
    settings = config.settings
    assert settings.max_concurrent_images == 16
    assert settings.cache == Path("~/.cache/ocync/transfer-state.json").expanduser()
    assert settings.cache_ttl == 24 * 3600 and settings.drain_deadline == 25
    assert settings.staging_dir is None


def test_registry_timeouts_default_and_can_be_set(tmp_path, plugins):
    config = load(
        tmp_path,
        SHORTEST.replace(
            "src: { url: cgr.dev }", "src: { url: cgr.dev, timeout: 45s, connect_timeout: 500ms }"
        ),
        plugins,
    )
    assert (config.registries["src"].timeout, config.registries["src"].connect_timeout) == (45, 0.5)
    assert (config.registries["ecr"].timeout, config.registries["ecr"].connect_timeout) == (300, 30)


def test_to_defaults_to_from(tmp_path, plugins):
    config = load(tmp_path, base(), plugins)
    assert config.mappings[0].targets[0].repository == "chainguard/static"


FULL = """\
global:
  max_concurrent_images: 32
  cache: state/cache.json
  cache_ttl: 1h30m
  drain_deadline: 90s
  staging_dir: /var/tmp/ocync
registries:
  hub:
    url: docker.io
    auth_type: basic
    credentials: { username: me, password: "${HUB_PASSWORD}" }
  local:
    url: http://127.0.0.1:5000
    tls_verify: false
    max_concurrent: 4
  ecr:
    url: 123456789012.dkr.ecr.us-east-1.amazonaws.com
    kind: acme
    acme_region: us-east-1
    acme_api_key: "${ACME_KEY:-fallback-key}"
    endpoint: http://127.0.0.1:9999
  gar:
    url: europe-docker.pkg.dev
    token: s3cr3t
    ca_file: ca.pem
  anon:
    url: quay.io
    auth_type: anonymous
target_groups:
  prod: [ecr, gar]
defaults:
  source: hub
  targets: prod
  platforms: [linux/amd64, linux/arm64/v8]
  tags: { semver: ">=1.20 <2", sort: semver, latest: 3 }
mappings:
  - from: library/nginx
  - from: library/golang
    to: mirror/golang
    targets: [local, prod, ecr]
    tags:
      glob: ["1.*-alpine", "1.*-bookworm"]
      exclude: "*-rc*"
      include: [1.10, latest]
      immutable_tags: "1.*"
      min_tags: 2
    artifacts: { include: [application/vnd.dev.sigstore.bundle.v0.3+json], require_artifacts: true }
  - from: chainguard/static
    source: anon
    tags: { include: [latest, "20240101"] }
    platforms: linux/amd64
    artifacts: { enabled: false }
"""


def test_full_config(tmp_path, acme):
    (tmp_path / "ca.pem").write_text("pem")
    config = load(tmp_path, FULL, acme, env={"HUB_PASSWORD": "hunter2"})
    g = config.settings
    assert g.max_concurrent_images == 32
    assert g.cache == tmp_path / "state" / "cache.json"  # relative to the config file
    assert g.cache_ttl == 5400 and g.drain_deadline == 90
    assert g.staging_dir == Path("/var/tmp/ocync")

    hub, local, ecr, gar, anon = (config.registries[a] for a in config.registries)
    assert (hub.username, hub.password, hub.options["auth_type"]) == ("me", "hunter2", "basic")
    assert local.host == "127.0.0.1:5000" and local.url == "http://127.0.0.1:5000"
    assert local.tls_verify is False and local.max_concurrent == 4
    assert local.base_urls() == ["http://127.0.0.1:5000"]
    assert ecr.kind == "acme" and ecr.endpoint == "http://127.0.0.1:9999"
    assert ecr.options["acme_region"] == "us-east-1" and ecr.options["acme_batch"] == 10
    assert ecr.options["acme_api_key"].get_secret_value() == "fallback-key"
    assert gar.token == "s3cr3t" and gar.ca_file == str(tmp_path / "ca.pem")
    assert anon.username is None and anon.token is None
    assert anon.options["auth_type"] == "anonymous" and anon.options["acme_region"] is None

    nginx, golang, static = config.mappings
    assert [t.alias for t in nginx.targets] == ["ecr", "gar"]
    assert nginx.platforms == (Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8"))
    assert nginx.tags.semver == ">=1.20 <2" and nginx.tags.latest == 3
    assert nginx.key == "hub/library/nginx -> ecr/library/nginx, gar/library/nginx"

    assert [t.alias for t in golang.targets] == ["local", "ecr", "gar"]  # deduplicated
    assert {t.repository for t in golang.targets} == {"mirror/golang"}
    tags = golang.tags
    assert tags.glob == ["1.*-alpine", "1.*-bookworm"] and tags.exclude == ["*-rc*"]
    assert tags.include == ["1.10", "latest"]  # YAML's 1.10 keeps its text
    assert tags.immutable_tags == "1.*" and tags.min_tags == 2 and tags.sort is None
    assert not tags.literal_only
    assert golang.artifacts.require_artifacts and golang.artifacts.include == [
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    ]

    assert static.source_alias == "anon" and static.tags.literal_only
    assert static.tags.include == ["latest", "20240101"]
    assert static.platforms == (Platform("linux", "amd64"),)
    assert static.artifacts.enabled is False


def test_expand_redacts_secrets(tmp_path, acme):
    (tmp_path / "ca.pem").write_text("pem")
    config = load(tmp_path, FULL, acme, env={"HUB_PASSWORD": "hunter2"})
    shown = config.expand()
    text = json.dumps(shown)
    assert "hunter2" not in text and "s3cr3t" not in text and "fallback-key" not in text
    hub = shown["registries"]["hub"]
    assert hub["credentials"] == {"username": "me", "password": "***"}
    assert shown["registries"]["ecr"]["acme_api_key"] == "***"
    assert shown["global"]["cache_ttl"] == "1h30m"
    assert shown["global"]["drain_deadline"] == "1m30s"
    assert shown["mappings"][0]["from"] == "library/nginx"
    revealed = config.expand(redact=False)
    assert revealed["registries"]["hub"]["credentials"]["password"] == "hunter2"
    assert revealed["registries"]["gar"]["token"] == "s3cr3t"
    # The expanded form is itself a valid configuration that means the same.
    again = parse_config(revealed, plugins=acme, env={})
    assert again.registries == config.registries
    assert [m.key for m in again.mappings] == [m.key for m in config.mappings]


def test_cache_can_be_disabled(tmp_path, plugins):
    config = load(tmp_path, "global: { cache: false }\n" + SHORTEST, plugins)
    assert config.settings.cache is None
    assert config.expand()["global"]["cache"] is False


def test_yaml_12_scalars_stay_strings(tmp_path, plugins):
    text = base(mappings='  - from: a/b\n    tags: { include: [no, 2024-01-01, 1.20, "010"] }\n')
    config = load(tmp_path, text, plugins)
    assert config.mappings[0].tags.include == ["no", "2024-01-01", "1.20", "010"]


def test_yaml_merge_keys(tmp_path, plugins):
    text = """\
    registries:
      src: &common { url: a.example, max_concurrent: 3 }
      dst: { <<: *common, url: b.example }
    mappings: [{ from: x, source: src, targets: dst }]
    """
    config = load(tmp_path, text, plugins)
    assert config.registries["dst"].host == "b.example"
    assert config.registries["dst"].max_concurrent == 3


def test_parse_config_from_data(plugins):
    data = {
        "registries": {"a": {"url": "a.example"}, "b": {"url": "b.example:5000"}},
        "mappings": [{"from": "x/y", "source": "a", "targets": ["b"]}],
    }
    config = parse_config(data, plugins=plugins, env={})
    assert config.mappings[0].key == "a/x/y -> b/x/y"
    assert config.registries["b"].host == "b.example:5000"


def test_plugin_keys_and_kinds(tmp_path, acme):
    text = base(mappings="  - from: a\n").replace(
        "src: { url: cgr.dev }", "src: { url: cgr.dev, kind: acme, acme_batch: '20' }"
    )
    config = load(tmp_path, text, acme)
    assert config.registries["src"].kind == "acme"
    assert config.registries["src"].options["acme_batch"] == 20


def test_plugin_key_clash_is_a_plugin_error():
    class Clash:
        class Keys(BaseModel):
            url: str | None = None

        @hookimpl
        def ocync_registry_config_model(self) -> type[BaseModel]:
            return self.Keys

    with pytest.raises(PluginError, match="'url'"):
        parse_config({}, plugins=Plugins.load(allow=[], extra=[Clash()]), env={})


def test_relative_paths_without_a_file(tmp_path, plugins):
    (tmp_path / "ca.pem").write_text("pem")
    data = {
        "registries": {"a": {"url": "a.example", "ca_file": "ca.pem"}},
        "mappings": [],
    }
    config = parse_config(data, plugins=plugins, env={}, base_dir=tmp_path)
    assert config.registries["a"].ca_file == str(tmp_path / "ca.pem")


# -- bad configs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mapping: []\n" + SHORTEST,
            "mirror.yaml: mapping: unknown key (expected one of: global, registries, "
            "target_groups, defaults, mappings); did you mean 'mappings'?",
        ),
        (
            SHORTEST.replace("{ url: cgr.dev }", "{ urll: cgr.dev }"),
            "mirror.yaml: registries.src.urll: unknown key (expected one of: url, kind, "
            "auth_type, credentials, token, docker_config, endpoint, tls_verify, ca_file, "
            "insecure_http, max_concurrent, timeout, connect_timeout); did you mean 'url'?",
        ),
        (
            "global: { max_images: 3 }\n" + SHORTEST,
            "mirror.yaml: global.max_images: unknown key (expected one of: "
            "max_concurrent_images, cache, cache_ttl, drain_deadline, staging_dir); "
            "did you mean 'max_concurrent_images'?",
        ),
        (
            base(mappings="  - from: a\n    tags: { globs: ['*'] }\n"),
            "mirror.yaml: mappings[0].tags.globs: unknown key (expected one of: glob, semver, "
            "include, exclude, sort, latest, min_tags, immutable_tags); did you mean 'glob'?",
        ),
        (
            base(mappings="  - from: a\n  - from: b\n    artifacts: { enable: false }\n"),
            "mirror.yaml: mappings[1].artifacts.enable: unknown key (expected one of: enabled, "
            "include, exclude, require_artifacts); did you mean 'enabled'?",
        ),
        (
            SHORTEST.replace("{ url: cgr.dev }", "{ url: cgr.dev, credentials: {user: a} }"),
            "mirror.yaml: registries.src.credentials.username: required key is missing",
        ),
    ],
)
def test_unknown_keys_at_every_depth(tmp_path, plugins, text, expected):
    assert expected in problems(tmp_path, text, plugins)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "global: { max_concurrent_images: ten }\n" + SHORTEST,
            "mirror.yaml: global.max_concurrent_images: expected an integer, got 'ten'",
        ),
        (
            "global: { max_concurrent_images: 0 }\n" + SHORTEST,
            "mirror.yaml: global.max_concurrent_images: must be at least 1, got 0",
        ),
        (
            SHORTEST.replace("{ url: cgr.dev }", "{ url: cgr.dev, max_concurrent: 5000 }"),
            "mirror.yaml: registries.src.max_concurrent: must be at most 1024, got 5000",
        ),
        (
            SHORTEST.replace("{ url: cgr.dev }", "{ url: cgr.dev, tls_verify: maybe }"),
            "mirror.yaml: registries.src.tls_verify: expected true or false, got 'maybe'",
        ),
        (
            SHORTEST.replace("mappings:\n  - from", "mappings:\n  - from: [a]\n    x"),
            "mirror.yaml: mappings[0].from: expected a string, got a list",
        ),
        (
            "registries: [a]\nmappings: []\n",
            "mirror.yaml: registries: expected a mapping (key: value), got a list",
        ),
        (
            base(mappings="  - from: a\n    tags: { sort: newest }\n"),
            "mirror.yaml: mappings[0].tags.sort: expected 'semver' or 'alpha', got 'newest'",
        ),
        (
            "global: { cache_ttl: 24 hours }\n" + SHORTEST,
            "mirror.yaml: global.cache_ttl: expected a duration like 24h, 30m, 90s or 1h30m "
            "(units: ms, s, m, h, d), got '24 hours'",
        ),
        (
            SHORTEST.replace("url: cgr.dev }", "url: cgr.dev, timeout: 0 }"),
            "mirror.yaml: registries.src.timeout: must be greater than 0.0, got 0.0",
        ),
        (
            "global: { drain_deadline: -5 }\n" + SHORTEST,
            "mirror.yaml: global.drain_deadline: expected a duration like 24h, 30m or 90s, got -5",
        ),
        (
            "registries: {}\nmappings: []\nglobal: { cache: 3 }\n",
            "mirror.yaml: global.cache: expected a path or false, got 3",
        ),
    ],
)
def test_wrong_types_and_values(tmp_path, plugins, text, expected):
    assert expected in problems(tmp_path, text, plugins)


def test_missing_top_level_keys(tmp_path, plugins):
    assert problems(tmp_path, "global: {}\n", plugins) == [
        "mirror.yaml: registries: required key is missing",
        "mirror.yaml: mappings: required key is missing",
    ]


def test_unknown_registry_alias(tmp_path, plugins):
    text = base(mappings="  - from: a\n  - from: b\n    targets: ecr2\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[1].targets: unknown registry or group 'ecr2' (known: src, ecr)"
    ]


def test_unknown_alias_in_a_list_names_its_index(tmp_path, plugins):
    text = base(mappings="  - from: a\n    targets: [ecr, nope]\n    source: srcc\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].source: unknown registry 'srcc' (known: src, ecr)",
        "mirror.yaml: mappings[0].targets[1]: unknown registry or group 'nope' (known: src, ecr)",
    ]


def test_unknown_group_and_group_problems(tmp_path, plugins):
    text = base(
        "target_groups:\n  prod: [ecr, gar]\n  ecr: [src]\n",
        mappings="  - from: a\n    targets: [prod, staging]\n",
    )
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: target_groups.prod[1]: 'gar' is not a registry (registries: src, ecr)",
        "mirror.yaml: target_groups.ecr: 'ecr' is already a registry alias; "
        "a group needs a name of its own",
        "mirror.yaml: mappings[0].targets[1]: unknown registry or group 'staging' "
        "(known: src, ecr, prod, ecr)",
    ]


def test_defaults_are_checked(tmp_path, plugins):
    text = SHORTEST.replace("defaults: { source: src, targets: ecr }", "defaults: { source: x }")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: defaults.source: unknown registry 'x' (known: src, ecr)",
        "mirror.yaml: mappings[0].targets: no targets (set them on the mapping or in defaults)",
    ]


def test_missing_source(tmp_path, plugins):
    text = SHORTEST.replace("defaults: { source: src, targets: ecr }", "defaults: {targets: ecr}")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].source: no source (set it on the mapping or in defaults)"
    ]


def test_latest_needs_sort(tmp_path, plugins):
    text = base(mappings="  - from: a\n    tags: { glob: 'v*', latest: 5 }\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].tags.latest: 'latest' needs 'sort' (semver or alpha)"
    ]
    text = base(mappings="  - from: a\n    tags: { latest: 0, sort: alpha }\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].tags.latest: must be at least 1, got 0"
    ]


@pytest.mark.parametrize("bad", [">=1.0 <", "banana", "1.2.3.4.5", " "])
def test_bad_semver_range(tmp_path, plugins, bad):
    text = base(mappings=f"  - from: a\n    tags: {{ semver: '{bad}' }}\n")
    (line,) = problems(tmp_path, text, plugins)
    assert line.startswith("mirror.yaml: mappings[0].tags.semver: ")
    assert "semver range" in line


@pytest.mark.parametrize("good", [">=1.2 <2", "^1.4", "~3.1", "1.x", "*"])
def test_good_semver_ranges(tmp_path, plugins, good):
    text = base(mappings=f"  - from: a\n    tags: {{ semver: '{good}', sort: semver }}\n")
    assert load(tmp_path, text, plugins).mappings[0].tags.semver == good


def test_bad_platform(tmp_path, plugins):
    text = base(mappings="  - from: a\n    platforms: [linux/amd64, linux]\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].platforms: platform 'linux' must be os/architecture[/variant], "
        "e.g. linux/amd64 or linux/arm64/v8"
    ]
    text = base(mappings="  - from: a\n    platforms: []\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].platforms: empty list: leave 'platforms' out to copy every "
        "platform"
    ]


def test_bad_repository_names(tmp_path, plugins):
    text = base(mappings="  - from: Chainguard/static\n  - from: a\n    to: b//c\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].from: repository 'Chainguard/static': repository path "
        "component 'Chainguard' must be lowercase",
        "mirror.yaml: mappings[1].to: repository 'b//c': repository path has an empty "
        "component (leading, trailing or doubled '/')",
    ]


def test_from_with_registry_host(tmp_path, plugins):
    text = base(mappings="  - from: cgr.dev/chainguard/static\n")
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].from: 'cgr.dev/chainguard/static' starts with the registry "
        "host; 'from' is the repository path on the source ('chainguard/static')"
    ]


def test_copy_onto_itself(tmp_path, plugins):
    text = base(
        mappings="  - from: a\n    targets: src\n  - from: a\n    to: b\n    targets: src\n"
    )
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: mappings[0].targets: target 'src' is the source registry and 'to' is "
        "'from': the mapping would copy a repository onto itself"
    ]


def test_ca_file_missing(tmp_path, plugins):
    text = SHORTEST.replace("{ url: cgr.dev }", "{ url: cgr.dev, ca_file: certs/ca.pem }")
    assert problems(tmp_path, text, plugins) == [
        f"mirror.yaml: registries.src.ca_file: file '{tmp_path / 'certs' / 'ca.pem'}' "
        "does not exist"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("cgr.dev/chainguard", "has a path; a registry URL is host[:port]"),
        ("ftp://cgr.dev", "expected http(s)://host[:port]"),
        ("https://cgr.dev/v2", "a registry URL has no path"),
        ("bad host", "is not host[:port] or http(s)://host[:port]"),
    ],
)
def test_bad_registry_urls(tmp_path, plugins, url, expected):
    text = SHORTEST.replace("{ url: cgr.dev }", f"{{ url: '{url}' }}")
    (line,) = problems(tmp_path, text, plugins)
    assert line.startswith("mirror.yaml: registries.src.url: ") and expected in line


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (
            "{ url: a.example, auth_type: basic }",
            "registries.src.credentials: auth_type 'basic' needs credentials",
        ),
        ("{ url: a.example, auth_type: token }", "registries.src.token: auth_type 'token' needs"),
        (
            "{ url: a.example, auth_type: anonymous, token: t }",
            "registries.src.auth_type: auth_type 'anonymous' sends no credentials",
        ),
        (
            "{ url: a.example, auth_type: oauth }",
            "registries.src.auth_type: unknown auth_type 'oauth' (expected one of: auto, "
            "anonymous, basic, token, docker_config, oci)",
        ),
        (
            "{ url: 'https://a.example', insecure_http: true }",
            "registries.src.insecure_http: insecure_http contradicts the https:// url",
        ),
        (
            "{ url: a.example, kind: ecr }",
            "registries.src.kind: unknown kind 'ecr' (kinds of the loaded plugins: oci)",
        ),
    ],
)
def test_registry_consistency(tmp_path, plugins, registry, expected):
    (line,) = problems(tmp_path, SHORTEST.replace("{ url: cgr.dev }", registry), plugins)
    assert expected in line


def test_plugin_kinds_are_accepted_as_auth_types(tmp_path, acme):
    text = SHORTEST.replace("{ url: cgr.dev }", "{ url: cgr.dev, auth_type: acme }")
    assert load(tmp_path, text, acme).registries["src"].options["auth_type"] == "acme"


def test_bad_alias_name(tmp_path, plugins):
    text = SHORTEST.replace("  src: { url: cgr.dev }", "  'my src': { url: cgr.dev }")
    lines = problems(tmp_path, text, plugins)
    assert lines[0].startswith("mirror.yaml: registries['my src']: invalid name 'my src'")


def test_every_problem_is_reported_at_once(tmp_path, plugins):
    text = """\
    global: { max_concurrent_images: ten, cache_ttl: soon }
    registries:
      src: { urll: cgr.dev }
    mappings:
      - from: A
        tags: { sort: random }
    """
    with pytest.raises(ConfigProblems) as caught:
        load(tmp_path, text, plugins)
    paths = [p.path for p in caught.value.problems]
    assert paths == [
        "global.max_concurrent_images",
        "global.cache_ttl",
        "registries.src.url",
        "registries.src.urll",
        "mappings[0].from",
        "mappings[0].tags.sort",
    ]
    assert caught.value.exit_code == 3


def test_top_level_must_be_a_mapping(tmp_path, plugins):
    assert problems(tmp_path, "- a\n- b\n", plugins) == [
        "mirror.yaml: expected a mapping at the top level (registries:, mappings:, ...), got a list"
    ]
    assert problems(tmp_path, "", plugins) == [
        "mirror.yaml: the configuration is empty (expected registries and mappings)"
    ]


def test_invalid_yaml_names_line_and_column(tmp_path, plugins):
    path = write(tmp_path, "registries:\n  src: { url: cgr.dev\nmappings: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, plugins, env={})
    assert str(caught.value).startswith(f"{path}:3:")
    assert "invalid YAML" in str(caught.value)
    assert caught.value.exit_code == 3


def test_yaml_error_never_quotes_the_line(tmp_path, plugins):
    path = write(tmp_path, "registries:\n  src: { password: 'hunter2 }\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, plugins, env={})
    assert "hunter2" not in str(caught.value)


def test_duplicate_keys_are_errors(tmp_path, plugins):
    path = write(tmp_path, "registries: {}\nmappings: []\nregistries: {}\n")
    with pytest.raises(
        ConfigError,
        match=r":3:1: invalid YAML: duplicate key 'registries' "
        r"\(first defined on line 1\)",
    ):
        load_config(path, plugins, env={})


def test_unsafe_yaml_tags_are_refused(tmp_path, plugins):
    path = write(tmp_path, "registries: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, plugins, env={})


def test_missing_file(tmp_path, plugins):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file") as caught:
        load_config(tmp_path / "nope.yaml", plugins)
    assert caught.value.exit_code == 3
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, plugins)


# -- interpolation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("${A:?needed}", {"A": "ok"}, "ok"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("cost: $5, $HOME", {}, "cost: $5, $HOME"),
        ("${A}", {"A": "${B}"}, "${B}"),  # a value is never interpolated again
        ("a$${b}${A}", {"A": "c"}, "a${b}c"),
    ],
)
def test_interpolate_text(text, env, expected):
    assert interpolate_text(text, env) == expected


def test_interpolation_in_a_file(tmp_path, plugins):
    text = """\
    global: { max_concurrent_images: "${WORKERS:-8}", drain_deadline: "${DRAIN}" }
    registries:
      src: { url: "${SRC_HOST}", tls_verify: "${VERIFY}" }
      ecr: { url: "ecr.example", credentials: { username: u, password: "${PW}" } }
    defaults: { source: src, targets: ecr }
    mappings:
      - from: "${REPO:-chainguard/static}"
        tags: { include: ["$${literal}"] }
    """
    with pytest.raises(ConfigError) as caught:  # $${literal} is not a valid tag: shown as such
        load(
            tmp_path,
            text,
            plugins,
            env={"SRC_HOST": "cgr.dev", "DRAIN": "5s", "VERIFY": "false", "PW": "pw"},
        )
    assert "tag '${literal}' is invalid" in str(caught.value)
    text = text.replace('"$${literal}"', "latest")
    config = load(
        tmp_path,
        text,
        plugins,
        env={"SRC_HOST": "cgr.dev", "DRAIN": "5s", "VERIFY": "false", "PW": "pw"},
    )
    assert config.settings.max_concurrent_images == 8 and config.settings.drain_deadline == 5
    assert config.registries["src"].host == "cgr.dev"
    assert config.registries["src"].tls_verify is False
    assert config.registries["ecr"].password == "pw"
    assert config.mappings[0].source_repository == "chainguard/static"


def test_missing_variable_names_path_and_variable(tmp_path, plugins):
    text = SHORTEST.replace("{ url: cgr.dev }", '{ url: "${SRC_HOST}" }')
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: registries.src.url: environment variable SRC_HOST is not set "
        "(set it, or give a default: ${SRC_HOST:-default})"
    ]


def test_required_variable_message(tmp_path, plugins):
    text = SHORTEST.replace("{ url: cgr.dev }", '{ url: "${SRC:?set SRC to the source host}" }')
    assert problems(tmp_path, text, plugins) == [
        "mirror.yaml: registries.src.url: set SRC to the source host"
    ]
    assert problems(tmp_path, text, plugins, SRC="") == [
        "mirror.yaml: registries.src.url: set SRC to the source host"
    ]


def test_invalid_reference_syntax(tmp_path, plugins):
    text = SHORTEST.replace("{ url: cgr.dev }", '{ url: "${SRC HOST}", token: "${T" }')
    lines = problems(tmp_path, text, plugins)
    assert lines[0].startswith("mirror.yaml: registries.src.url: invalid variable reference")
    assert lines[1].startswith("mirror.yaml: registries.src.token: unclosed '${'")


def test_variables_cannot_inject_structure(tmp_path, plugins):
    evil = "x\nmappings: []\nregistries: {a: {url: evil.example}}\n{b: [c]}: !!python/none"
    text = SHORTEST.replace("{ url: cgr.dev }", '{ url: cgr.dev, token: "${T}" }')
    config = load(tmp_path, text, plugins, env={"T": evil})
    assert config.registries["src"].token == evil
    assert list(config.registries) == ["src", "ecr"]
    text = base(mappings='  - from: a\n    tags: { include: ["${TAG}"] }\n')
    config = load(tmp_path, text, plugins, env={"TAG": "1.10"})
    assert config.mappings[0].tags.include == ["1.10"]  # a string, not the float 1.1


def test_keys_are_not_interpolated(tmp_path, plugins):
    text = SHORTEST.replace("  src: {", "  ${NAME}: {")
    lines = problems(tmp_path, text, plugins, NAME="src")
    assert any("invalid name '${NAME}'" in line for line in lines)


def test_interpolated_value_shows_its_template(tmp_path, plugins):
    text = "global: { max_concurrent_images: '${N}' }\n" + SHORTEST
    assert problems(tmp_path, text, plugins, N="ten") == [
        "mirror.yaml: global.max_concurrent_images: expected an integer, got 'ten' (from '${N}')"
    ]


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "registry",
    [
        "{ url: a.example, credentials: { username: u, password: [hunter2] } }",
        "{ url: a.example, credentials: { username: u, password: { x: hunter2 } } }",
        "{ url: a.example, credentials: hunter2 }",
        "{ url: a.example, token: [hunter2] }",
        "{ url: a.example, acme_api_key: [hunter2] }",
        "{ url: a.example, token: hunter2, credentials: { username: u, password: hunter2 } }",
    ],
)
def test_secrets_never_in_errors(tmp_path, acme, registry):
    lines = problems(tmp_path, SHORTEST.replace("{ url: cgr.dev }", registry), acme)
    assert lines and not any("hunter2" in line for line in lines)


def test_secrets_never_in_repr(tmp_path, acme):
    (tmp_path / "ca.pem").write_text("pem")
    config = load(tmp_path, FULL, acme, env={"HUB_PASSWORD": "hunter2"})
    for text in (
        repr(config),
        repr(config.model),
        repr(config.registries),
        repr(config.mappings),
        str(config.model.registries),
    ):
        assert "hunter2" not in text and "s3cr3t" not in text and "fallback-key" not in text


def test_numeric_password_is_text(tmp_path, plugins):
    text = SHORTEST.replace(
        "{ url: cgr.dev }", "{ url: cgr.dev, credentials: { username: 42, password: 0123 } }"
    )
    src = load(tmp_path, text, plugins).registries["src"]
    assert (src.username, src.password) == ("42", "0123")


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400),
        ("30m", 1800),
        ("90s", 90),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        (15, 15),
        ("0s", 0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(parse_duration(text))) == seconds


# -- JSON schema ------------------------------------------------------------------------------


def test_json_schema_has_registry_and_plugin_keys(acme, plugins):
    schema = config_json_schema(acme)
    json.dumps(schema)
    registry = schema["$defs"]["Registry"]
    assert registry["additionalProperties"] is False
    for key in (
        "url",
        "kind",
        "auth_type",
        "credentials",
        "token",
        "docker_config",
        "endpoint",
        "tls_verify",
        "ca_file",
        "insecure_http",
        "max_concurrent",
        "acme_region",
        "acme_api_key",
    ):
        assert key in registry["properties"], key
    assert registry["required"] == ["url"]
    assert "acme" in json.dumps(registry["properties"]["kind"])
    assert set(schema["properties"]) == {
        "global",
        "registries",
        "target_groups",
        "defaults",
        "mappings",
    }
    assert schema["$defs"]["MappingModel"]["required"] == ["from"]
    assert "acme_region" not in json.dumps(config_json_schema(plugins))


def test_json_schema_validates_configs(tmp_path, acme):
    import jsonschema
    import yaml

    schema = config_json_schema(acme)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(yaml.safe_load(SHORTEST)))
    full = yaml.safe_load(FULL.replace("include: [1.10, latest]", "include: ['1.10', latest]"))
    assert not list(validator.iter_errors(full))
    bad = yaml.safe_load(SHORTEST.replace("{ url: cgr.dev }", "{ urll: cgr.dev }"))
    assert list(validator.iter_errors(bad))


# -- robustness -------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["cgr.dev", "a/b", "src", "ecr", "${X}", "${X:-1}", "24h", "linux/amd64", ">=1 <2", "*"]
    ),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "global",
            "registries",
            "target_groups",
            "defaults",
            "mappings",
            "url",
            "src",
            "ecr",
            "from",
            "to",
            "source",
            "targets",
            "tags",
            "platforms",
            "artifacts",
            "glob",
            "semver",
            "latest",
            "sort",
            "include",
            "credentials",
            "password",
            "cache",
            "cache_ttl",
            "kind",
            "auth_type",
            "ca_file",
        ]
    ),
    st.text(max_size=6),
    st.integers(),
    st.none(),
    st.booleans(),
)
_trees = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(_trees, st.dictionaries(_keys, _trees, max_size=6)))
def test_arbitrary_data_gives_config_or_config_error(data: Any):
    plugins = Plugins.load(allow=[], extra=[AcmePlugin()])
    try:
        config = parse_config(data, plugins=plugins, env={"X": "2"})
    except ConfigError as exc:
        assert exc.exit_code == 3 and str(exc)
    else:
        assert isinstance(config, Config)
        json.dumps(config.expand())


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_arbitrary_yaml_text_gives_config_or_config_error(tmp_path_factory, text: str):
    path = tmp_path_factory.mktemp("y") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, Plugins.load(allow=[]), env={})
    except ConfigError as exc:
        assert exc.exit_code == 3


def test_unquoted_variable_in_flow_collection_gets_a_hint(tmp_path, plugins):
    path = write(tmp_path, "registries:\n  src: { url: ${HOST} }\nmappings: []\n")
    with pytest.raises(ConfigError, match=r"mirror\.yaml:2:.*quote a value that holds \$\{"):
        load_config(path, plugins, env={"HOST": "a.example"})
