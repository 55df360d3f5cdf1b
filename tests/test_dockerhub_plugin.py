"""The Docker Hub plugin: detection, the API endpoint, `library/` names, its policies, and the
core hooks that carry the endpoint and the names (`ocync_registry_endpoint`,
`ocync_normalize_repository`)."""

from __future__ import annotations

from typing import Any

import pytest

import ocync_dockerhub
from ocync_core.auth.realm import check_realm
from ocync_core.config import parse_config
from ocync_core.errors import ConfigError, CredentialPolicyError
from ocync_core.hookspecs import hookimpl
from ocync_core.plugins import PluginError, Plugins
from ocync_core.policies import Action, MountMode
from ocync_core.reference import Reference
from ocync_core.registry import RegistrySettings
from ocync_core.throttle import RegistryThrottle, parse_budget
from ocync_dockerhub import API_ENDPOINT, KIND, MOUNT_POLICY, READ_POLICY, THROTTLE_POLICY
from ocync_dockerhub.detect import official_repository
from ocync_dockerhub.throttle import LOW_BUDGET

HUB_FORMS = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "DOCKER.IO",
    "Index.Docker.IO",
    "docker.io.",
    "docker.io:443",
    "registry-1.docker.io:443",
]
NOT_HUB = [
    "docker.com",
    "hub.docker.com",
    "mydocker.io",
    "docker.io.example.com",
    "evil-docker.io",
    "docker.io:5000",
    "registry-2.docker.io",
    "ghcr.io",
    "quay.io",
    "127.0.0.1:5000",
]


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_dockerhub"])


def _hub(host: str = "docker.io", **kw: Any) -> RegistrySettings:
    return RegistrySettings(host=host, **kw)


# -- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HUB_FORMS)
def test_claims_every_docker_hub_host(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(_hub(host)) == KIND


@pytest.mark.parametrize("host", NOT_HUB)
def test_leaves_other_hosts_alone(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(_hub(host)) == "oci"


def test_listed_with_the_hosts_it_claims() -> None:
    infos = {info.name: info for info in Plugins.load().describe()}
    hub = infos["ocync_dockerhub"]
    assert hub.builtin and hub.kinds == ("dockerhub",)
    assert hub.hosts == ("docker.io", "index.docker.io", "registry-1.docker.io")


# -- where requests go ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "DOCKER.IO"])
def test_reference_hosts_are_served_by_registry_1(plugins: Plugins, host: str) -> None:
    resolved = plugins.resolve(_hub(host))
    assert resolved.endpoint == API_ENDPOINT == "https://registry-1.docker.io"
    assert resolved.base_urls() == ["https://registry-1.docker.io"]
    assert resolved.host == host, "the identity (for credentials and caches) must not change"


def test_a_reference_without_a_registry_reaches_registry_1(plugins: Plugins) -> None:
    # `ocync copy nginx ...`: the reference parser names docker.io, the plugin its API.
    reference = Reference.parse("nginx:1.27")
    resolved = plugins.resolve(_hub(reference.domain))
    assert (reference.repository, resolved.base_urls()) == (
        "library/nginx",
        ["https://registry-1.docker.io"],
    )


def test_explicit_endpoints_and_the_api_host_are_kept(plugins: Plugins) -> None:
    assert plugins.resolve(_hub("registry-1.docker.io")).endpoint is None
    emulator = plugins.resolve(_hub(endpoint="http://127.0.0.1:5000"))
    assert emulator.endpoint == "http://127.0.0.1:5000"
    assert emulator.base_urls() == ["http://127.0.0.1:5000"]
    # A Docker Hub mirror declared with `kind: dockerhub` keeps its own host.
    mirror = plugins.resolve(_hub("hub-mirror.example.com", kind=KIND))
    assert mirror.endpoint is None and mirror.base_urls() == ["https://hub-mirror.example.com"]


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("nginx", "library/nginx"),
        ("library/nginx", "library/nginx"),
        ("bitnami/redis", "bitnami/redis"),
        ("org/team/app", "org/team/app"),
        ("Not-Valid", "Not-Valid"),  # left for the configuration's own validation
    ],
)
def test_official_images_live_under_library(written: str, canonical: str) -> None:
    assert official_repository(written) == canonical


def test_names_change_only_on_docker_hub(plugins: Plugins) -> None:
    assert plugins.normalize_repository(_hub(), "nginx") == "library/nginx"
    assert plugins.normalize_repository(_hub("ghcr.io"), "nginx") == "nginx"
    assert plugins.normalize_repository(_hub("127.0.0.1:5000", kind="oci"), "nginx") == "nginx"


def _config(plugins: Plugins, *mappings: dict[str, Any]) -> Any:
    document = {
        "registries": {
            "hub": {"url": "docker.io"},
            "hub2": {"url": "registry-1.docker.io"},
            "local": {"url": "http://127.0.0.1:5000"},
        },
        "defaults": {"source": "hub"},
        "mappings": list(mappings),
    }
    return parse_config(document, plugins=plugins, env={})


def test_mappings_name_official_images_in_full(plugins: Plugins) -> None:
    config = _config(
        plugins,
        {"from": "nginx", "targets": ["local"]},
        {"from": "bitnami/redis", "to": "mirror", "targets": ["local", "hub2"]},
    )
    nginx, redis = config.mappings
    assert nginx.source_repository == "library/nginx"
    assert [t.repository for t in nginx.targets] == ["nginx"], "a local target keeps the name"
    assert redis.source_repository == "bitnami/redis"
    assert {t.alias: t.repository for t in redis.targets} == {
        "local": "mirror",
        "hub2": "library/mirror",  # `to` on Docker Hub is normalised too
    }


def test_a_mapping_onto_itself_is_found_after_normalisation(plugins: Plugins) -> None:
    with pytest.raises(ConfigError, match="copy a repository onto itself"):
        _config(plugins, {"from": "nginx", "to": "library/nginx", "targets": ["hub"]})


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["docker.io", "registry-1.docker.io"])
def test_credentials_go_to_auth_docker_io(plugins: Plugins, host: str) -> None:
    hub = plugins.resolve(_hub(host, username="me", password="dckr_pat_x"))
    url = check_realm(hub, "https://auth.docker.io/token", with_credentials=True)
    assert url.host == "auth.docker.io"
    for elsewhere in ("https://auth.docker.io.example.com/token", "http://auth.docker.io/token"):
        with pytest.raises(CredentialPolicyError):
            check_realm(hub, elsewhere, with_credentials=True)


# -- policies ---------------------------------------------------------------------------------


def test_a_refused_mount_is_not_an_error(plugins: Plugins) -> None:
    policy = plugins.mount_policy(plugins.resolve(_hub()))
    assert policy is MOUNT_POLICY and policy.mode is MountMode.WITH_FROM
    assert 400 in policy.not_mounted_statuses
    assert 202 not in policy.not_mounted_statuses, "a 202 session must be used, not dropped"


def test_tags_are_compared_by_head_before_any_pull(plugins: Plugins) -> None:
    policy = plugins.read_policy(plugins.resolve(_hub()))
    assert policy is READ_POLICY and policy.head_first


def test_pulls_have_a_window_of_their_own(plugins: Plugins) -> None:
    policy = plugins.throttle_policy(plugins.resolve(_hub()))
    assert policy is THROTTLE_POLICY
    get = policy.window_for(Action.MANIFEST_GET)
    others = {policy.window_for(a) for a in Action if a is not Action.MANIFEST_GET}
    assert get not in others, f"manifest GETs share window {get!r} with other requests"


def test_the_remaining_pulls_slow_discovery_down() -> None:
    assert parse_budget("76;w=21600") == 76
    throttle = RegistryThrottle(THROTTLE_POLICY, max_concurrent=8)
    assert throttle.observe_budget({"RateLimit-Remaining": f"{LOW_BUDGET + 1};w=21600"})
    assert not throttle.budget_low and throttle.discovery_pause_seconds() == 0
    throttle.observe_budget({"RateLimit-Remaining": "3;w=21600"})
    assert throttle.budget_low and throttle.discovery_pause_seconds() > 0


def test_other_kinds_get_no_answer() -> None:
    other = _hub("docker.io", kind="oci")
    assert ocync_dockerhub.ocync_registry_endpoint(registry=other, kind="oci") is None
    assert ocync_dockerhub.ocync_normalize_repository(other, "oci", "nginx") is None
    assert ocync_dockerhub.ocync_mount_policy(registry=other, kind="oci") is None
    assert ocync_dockerhub.ocync_read_policy(registry=other, kind="oci") is None
    assert ocync_dockerhub.ocync_throttle_policy(registry=other, kind="oci") is None


# -- the core hooks ---------------------------------------------------------------------------


class _Odd:
    """Answers the two hooks wrongly for kind "odd"."""

    OCYNC_KINDS = ("odd",)

    @hookimpl
    def ocync_registry_endpoint(self, registry: RegistrySettings, kind: str) -> Any:
        return "registry.odd.test" if kind == "odd" else None  # no scheme

    @hookimpl
    def ocync_normalize_repository(
        self, registry: RegistrySettings, kind: str, repository: str
    ) -> Any:
        return ["odd"] if kind == "odd" else None


def test_the_generic_plugin_keeps_host_and_names() -> None:
    generic = Plugins.load(allow=[])
    registry = _hub("registry.example.test")
    assert generic.resolve(registry).endpoint is None
    assert generic.normalize_repository(registry, "nginx") == "nginx"


def test_a_wrong_answer_names_the_hook() -> None:
    odd = Plugins.load(allow=[], extra=[_Odd()])
    registry = _hub("registry.odd.test", kind="odd")
    with pytest.raises(PluginError, match=r"ocync_registry_endpoint returned 'registry\.odd"):
        odd.resolve(registry)
    with pytest.raises(PluginError, match="ocync_normalize_repository returned"):
        odd.normalize_repository(registry, "app")
