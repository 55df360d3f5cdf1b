"""The plugin manager facade, the generic OCI plugin, and a real pip-installed third party."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx
import pluggy
import pytest
import trio
from pydantic import BaseModel
from tinyplugin import build_and_install_tiny, run_python, tiny_env

import ocync_core
import ocync_oci
from ocync_core.digest import Digest
from ocync_core.errors import BadInput, RegistryError, RegistryErrorDetail
from ocync_core.hookspecs import HOOK_NAMES, hookimpl
from ocync_core.plugins import (
    BUILTIN_PLUGINS,
    PluginError,
    PluginInfo,
    Plugins,
    make_plugin_manager,
)
from ocync_core.policies import (
    AuthProvider,
    ExistenceChecker,
    MountMode,
    MountPolicy,
    PushOutcome,
    ReadPolicy,
    UploadMode,
    UploadStrategy,
)
from ocync_core.registry import RegistrySettings
from ocync_oci import HeadExistenceChecker

GENERIC = RegistrySettings(host="registry.example.com")


@pytest.fixture(autouse=True)
def _no_inherited_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's shell must not change what these tests load.
    monkeypatch.delenv("OCYNC_PLUGINS", raising=False)
    monkeypatch.delenv("TINY_HOSTS", raising=False)


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ocync-tiny, built into a wheel and pip-installed into its own directory (once)."""
    return build_and_install_tiny(tmp_path_factory.mktemp("tiny"))


# -- in-process sample plugins -------------------------------------------------------------


class BogusPlugin:
    """Implements a hook that does not exist (a typo, or a plugin for a newer ocync)."""

    @hookimpl
    def ocync_nonexistent(self) -> None:
        pass


class WrongArgumentsPlugin:
    @hookimpl
    def ocync_mount_policy(self, registry: RegistrySettings, flavour: str) -> None:
        pass


class FakeAuth:
    async def authorize(self, request: object, scopes: frozenset[str]) -> None:
        pass

    async def challenged(self, response: object, scopes: frozenset[str]) -> bool:
        return False


class AcmePlugin:
    """A specific plugin: claims *.acme.test as kind "acme" and answers only for that kind."""

    OCYNC_KINDS = ("acme",)
    OCYNC_HOSTS = ("*.acme.test",)

    class Config(BaseModel):
        acme_region: str | None = None

    @hookimpl
    def ocync_registry_kind(self, registry: RegistrySettings) -> str | None:
        return "acme" if registry.host.endswith(".acme.test") else None

    @hookimpl
    def ocync_auth_provider(self, registry: RegistrySettings, kind: str, http: object) -> object:
        return FakeAuth() if kind == "acme" else None

    @hookimpl
    def ocync_mount_policy(self, registry: RegistrySettings, kind: str) -> MountPolicy | None:
        return MountPolicy(mode=MountMode.NEVER) if kind == "acme" else None

    @hookimpl
    def ocync_manifest_push_outcome(
        self, registry: RegistrySettings, kind: str, error: RegistryError, wanted_digest: str
    ) -> PushOutcome | None:
        if kind == "acme" and error.code == "IMAGE_TAG_ALREADY_EXISTS":
            return PushOutcome(skipped=True, reason=f"tag already holds {wanted_digest}")
        return None

    @hookimpl
    def ocync_registry_config_model(self) -> type[BaseModel]:
        return self.Config

    @hookimpl
    def ocync_register_commands(self, cli: click.Group) -> None:
        @cli.command("acme-login")
        def acme_login() -> None:
            pass


class WrongTypePlugin:
    OCYNC_KINDS = ("odd",)

    @hookimpl
    def ocync_upload_strategy(self, registry: RegistrySettings, kind: str) -> object:
        return "chunked please" if kind == "odd" else None


# -- loading --------------------------------------------------------------------------------


def test_load_registers_builtins_with_ocync_version() -> None:
    infos = Plugins.load().describe()
    by_name = {info.name: info for info in infos}
    assert set(BUILTIN_PLUGINS) <= set(by_name)
    oci = by_name["ocync_oci"]
    assert oci == PluginInfo(
        name="ocync_oci",
        version=ocync_core.__version__,
        kinds=("oci",),
        hooks=tuple(HOOK_NAMES),  # the generic plugin answers every hook
        builtin=True,
        hosts=ocync_oci.OCYNC_HOSTS,
    )


def test_unknown_hookimpl_fails_naming_plugin_and_hook() -> None:
    with pytest.raises(PluginError, match=r"'bogus'.*'ocync_nonexistent'"):
        Plugins(_manager_with(BogusPlugin(), "bogus")).check()
    with pytest.raises(PluginError, match="ocync_nonexistent"):
        Plugins.load(extra=[BogusPlugin()])


def test_hookimpl_with_unknown_argument_fails_naming_plugin() -> None:
    with pytest.raises(PluginError, match=r"(?s)'WrongArgumentsPlugin'.*'flavour'"):
        Plugins.load(extra=[WrongArgumentsPlugin()])


def test_malformed_kind_declaration_fails() -> None:
    class Sloppy:
        OCYNC_KINDS = "ecr"  # a string, not a tuple: would claim kinds "e", "c", "r"

    with pytest.raises(PluginError, match="OCYNC_KINDS must be a tuple of strings"):
        Plugins.load(extra=[Sloppy()])


def _manager_with(plugin: object, name: str) -> pluggy.PluginManager:
    pm = make_plugin_manager()
    pm.register(ocync_oci, name="ocync_oci")
    pm.register(plugin, name=name)
    return pm


# -- kinds ------------------------------------------------------------------------------------


def test_kind_defaults_to_oci_and_detection_claims() -> None:
    plugins = Plugins.load(allow=["ocync_oci"], extra=[AcmePlugin()])
    assert plugins.kind_for(GENERIC) == "oci"
    assert plugins.kind_for(RegistrySettings(host="eu.acme.test")) == "acme"
    assert plugins.known_kinds() == ["acme", "oci"]


def test_explicit_kind_wins_over_detection() -> None:
    plugins = Plugins.load(extra=[AcmePlugin()])
    assert plugins.kind_for(RegistrySettings(host="eu.acme.test", kind="oci")) == "oci"
    assert plugins.kind_for(RegistrySettings(host="mirror.local", kind="acme")) == "acme"
    # ...and the explicit kind decides which plugin answers.
    explicit = RegistrySettings(host="eu.acme.test", kind="oci")
    assert plugins.mount_policy(explicit) == ocync_oci.MOUNT_POLICY


def test_unknown_explicit_kind_is_bad_input_naming_kinds() -> None:
    plugins = Plugins.load(allow=["ocync_oci"], extra=[AcmePlugin()])
    with pytest.raises(BadInput) as caught:
        plugins.kind_for(RegistrySettings(host="r.example", name="mirror", kind="acm"))
    message = str(caught.value)
    assert "'acm'" in message and "acme, oci" in message and "mirror" in message
    assert "did you mean 'acme'" in message
    with pytest.raises(BadInput, match="'ecr'"):
        Plugins.load(allow=["ocync_oci"]).upload_strategy(
            RegistrySettings(host="r.example", kind="ecr")
        )


def test_resolve_returns_copy_with_kind() -> None:
    plugins = Plugins.load(extra=[AcmePlugin()])
    original = RegistrySettings(host="eu.acme.test", username="u")
    resolved = plugins.resolve(original)
    assert resolved.kind == "acme" and resolved.username == "u"
    assert original.kind is None
    assert plugins.resolve(GENERIC).kind == "oci"


# -- answers ----------------------------------------------------------------------------------


def test_generic_plugin_answers_every_hook() -> None:
    plugins = Plugins.load(allow=["ocync_oci"])  # the generic plugin alone
    assert plugins.mount_policy(GENERIC) == MountPolicy(
        mode=MountMode.WITH_FROM,
        not_mounted_statuses=frozenset({401, 403, 404}),
        probe_existence=True,
    )
    assert plugins.read_policy(GENERIC) == ReadPolicy()
    assert plugins.upload_strategy(GENERIC) == UploadStrategy(mode=UploadMode.POST_PUT)
    error = RegistryError(400, "PUT", "https://registry.example.com/v2/a/manifests/t")
    assert plugins.manifest_push_outcome(GENERIC, error, "sha256:" + "0" * 64) is None
    assert plugins.registry_config_models() == []
    checker = plugins.existence_checker(GENERIC, _FakeClient({}))
    assert isinstance(checker, HeadExistenceChecker)
    assert isinstance(checker, ExistenceChecker)
    group = click.Group("ocync")
    plugins.register_commands(group)
    assert group.commands == {}
    assert ocync_oci.ocync_registry_kind(registry=GENERIC) is None  # never claims by detection


def test_specific_plugin_wins_for_its_kind_only() -> None:
    plugins = Plugins.load(allow=["ocync_oci"], extra=[AcmePlugin()])
    acme = RegistrySettings(host="eu.acme.test")
    assert plugins.mount_policy(acme) == MountPolicy(mode=MountMode.NEVER)
    assert plugins.mount_policy(GENERIC) == ocync_oci.MOUNT_POLICY
    # Hooks Acme does not implement fall through to the generic plugin.
    assert plugins.upload_strategy(acme) == ocync_oci.UPLOAD_STRATEGY
    assert isinstance(plugins.auth_provider(acme, http=object()), FakeAuth)

    detail = RegistryErrorDetail(code="IMAGE_TAG_ALREADY_EXISTS", message="immutable")
    error = RegistryError(400, "PUT", "https://eu.acme.test/v2/a/manifests/t", errors=(detail,))
    outcome = plugins.manifest_push_outcome(acme, error, "sha256:" + "1" * 64)
    assert outcome is not None and outcome.skipped
    assert plugins.manifest_push_outcome(GENERIC, error, "sha256:" + "1" * 64) is None

    assert plugins.registry_config_models() == [AcmePlugin.Config]
    group = click.Group("ocync")
    plugins.register_commands(group)
    assert "acme-login" in group.commands
    (info,) = [i for i in plugins.describe() if "acme" in i.kinds]
    assert info.name == "AcmePlugin"
    assert info.hosts == ("*.acme.test",) and not info.builtin
    assert info.version == "unknown"  # neither built-in nor from a distribution


def test_wrong_answer_type_is_a_plugin_error() -> None:
    plugins = Plugins.load(extra=[WrongTypePlugin()])
    with pytest.raises(PluginError, match=r"ocync_upload_strategy returned str.*UploadStrategy"):
        plugins.upload_strategy(RegistrySettings(host="r.example", kind="odd"))


def test_no_answer_is_a_clear_error() -> None:
    plugins = Plugins(make_plugin_manager())  # not even the generic plugin
    with pytest.raises(PluginError, match="no plugin answered ocync_mount_policy"):
        plugins.mount_policy(GENERIC)


def test_tracing_reports_hook_calls() -> None:
    plugins = Plugins.load()
    lines: list[str] = []
    undo = plugins.enable_tracing(lines.append)
    plugins.upload_strategy(GENERIC)
    undo()
    assert any("ocync_upload_strategy" in line for line in lines)


async def test_generic_auth_provider_is_standard_auth() -> None:
    # The generic plugin imports ocync_core.auth.provider lazily, inside the hook.
    async with httpx.AsyncClient() as http:
        provider = Plugins.load().auth_provider(GENERIC, http)
    assert isinstance(provider, AuthProvider)
    assert type(provider).__name__ == "StandardAuth"


# -- the HEAD existence checker ---------------------------------------------------------------


class _FakeClient:
    """The one method HeadExistenceChecker needs, answering from a dict of sizes."""

    def __init__(self, sizes: dict[Digest, int], fail: Digest | None = None) -> None:
        self.sizes = sizes
        self.fail = fail
        self.calls: list[tuple[str, Digest]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def blob_exists(self, repository: str, digest: Digest) -> int | None:
        self.calls.append((repository, digest))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(0.01)
            if digest == self.fail:
                raise RegistryError(500, "HEAD", f"https://r/v2/{repository}/blobs/{digest}")
            return self.sizes.get(digest)
        finally:
            self.in_flight -= 1


def _digests(n: int) -> list[Digest]:
    return [Digest.of(str(i).encode()) for i in range(n)]


async def test_existence_checker_heads_each_digest_once() -> None:
    present, empty, absent = _digests(3)
    client = _FakeClient({present: 1234, empty: 0})  # an empty blob still exists
    checker = HeadExistenceChecker(client)
    result = await checker.exists("team/app", [absent, present, empty, present])
    assert result == {absent: False, present: True, empty: True}
    assert list(result) == [absent, present, empty]
    assert sorted(d for _, d in client.calls) == sorted([absent, present, empty])
    assert {repo for repo, _ in client.calls} == {"team/app"}
    assert await checker.exists("team/app", []) == {}


async def test_existence_checker_bounds_concurrency() -> None:
    digests = _digests(20)
    client = _FakeClient(dict.fromkeys(digests[::2], 10))
    result = await HeadExistenceChecker(client, concurrency=3).exists("r", digests)
    assert client.max_in_flight == 3
    assert [result[d] for d in digests] == [i % 2 == 0 for i in range(20)]


async def test_existence_checker_raises_the_registry_error_itself() -> None:
    digests = _digests(5)
    client = _FakeClient({}, fail=digests[2])
    with pytest.raises(RegistryError, match="500"):
        await HeadExistenceChecker(client).exists("r", digests)


# -- a third-party plugin, really pip-installed ----------------------------------------------


def test_allow_list_in_process(tiny_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tiny_site))
    assert "tiny" in _names(Plugins.load())
    assert _names(Plugins.load(allow=["ocync_oci"])) == ["ocync_oci"]
    assert _names(Plugins.load(allow=[])) == ["ocync_oci"]  # the fallback always loads
    assert "tiny" in _names(Plugins.load(allow=["ocync-tiny"]))  # distribution name works too
    monkeypatch.setenv("OCYNC_PLUGINS", "ocync_oci")
    assert _names(Plugins.load()) == ["ocync_oci"]
    monkeypatch.setenv("OCYNC_PLUGINS", " tiny , ocync_oci ")
    assert "tiny" in _names(Plugins.load())
    monkeypatch.setenv("OCYNC_PLUGINS", "tiny,ocync_ecrr")
    with pytest.raises(BadInput, match=r"ocync_ecrr.*available: .*tiny"):
        Plugins.load()


def _fake_install(site: Path, dist: str, entry: str, module: str, source: str) -> None:
    """Lay out an installed distribution by hand (what pip writes, minus RECORD)."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ocync]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(source)


def test_broken_plugin_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_install(tmp_path, "ocync_broken", "broken", "ocync_broken_mod", "import no_such_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'broken' from distribution 'ocync_broken'.*no_such"):
        Plugins.load()
    assert _names(Plugins.load(allow=["ocync_oci"])) == ["ocync_oci"]  # the way around it


def test_plugin_named_like_a_builtin_clashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_install(tmp_path, "ocync_impostor", "ocync_oci", "ocync_impostor_mod", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'ocync_oci' from distribution 'ocync_impostor'"):
        Plugins.load()


def _names(plugins: Plugins) -> list[str]:
    return [info.name for info in plugins.describe()]


_DESCRIBE = """
import json
from ocync_core.plugins import Plugins
print(json.dumps([i.__dict__ for i in Plugins.load().describe()]))
"""

_ANSWERS = """
import json, trio
from ocync_core.digest import Digest
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

class Client:
    async def blob_exists(self, repository, digest):
        return 5 if digest == Digest.of(b"yes") else None

plugins = Plugins.load()
out = {}
for host in ("x.tiny.test", "127.0.0.1:5999", "registry.example.com"):
    reg = RegistrySettings(host=host)
    checker = plugins.existence_checker(reg, Client())
    found = trio.run(checker.exists, "lib/app", [Digest.of(b"yes"), Digest.of(b"no")])
    out[host] = {
        "kind": plugins.kind_for(reg),
        "upload": plugins.upload_strategy(reg).mode.value,
        "mount": plugins.mount_policy(reg).mode.value,
        "checker": type(checker).__name__,
        "found": sorted(v for v in found.values()),
    }
print(json.dumps(out))
"""


def test_tiny_is_described_with_version_and_kind(tiny_site: Path) -> None:
    infos = json.loads(run_python(_DESCRIBE, tiny_env(tiny_site)))
    tiny = {i["name"]: i for i in infos}["tiny"]
    assert tiny["version"] == "0.3.1"
    assert tiny["kinds"] == ["tiny"]
    assert tiny["builtin"] is False
    assert sorted(tiny["hooks"]) == [
        "ocync_existence_checker",
        "ocync_registry_kind",
        "ocync_upload_strategy",
    ]
    assert {i["name"]: i for i in infos}["ocync_oci"]["builtin"] is True


def test_tiny_wins_for_its_hosts_only(tiny_site: Path, tmp_path: Path) -> None:
    log = tmp_path / "tiny.log"
    env = tiny_env(tiny_site, OCYNC_TINY_LOG=str(log), TINY_HOSTS="127.0.0.1:5999")
    out = json.loads(run_python(_ANSWERS, env))
    for host in ("x.tiny.test", "127.0.0.1:5999"):
        assert out[host] == {
            "kind": "tiny",
            "upload": "single_patch",
            "mount": "with_from",  # not answered by tiny: the generic plugin's
            "checker": "LoggingExistenceChecker",
            "found": [False, True],
        }
    assert out["registry.example.com"] == {
        "kind": "oci",
        "upload": "post_put",
        "mount": "with_from",
        "checker": "HeadExistenceChecker",
        "found": [False, True],
    }
    lines = log.read_text().splitlines()
    yes, no = Digest.of(b"yes"), Digest.of(b"no")
    assert lines == [f"exists lib/app {yes} {no}"] * 2  # tiny's two registries, not the third


def test_allow_list_excludes_tiny(tiny_site: Path) -> None:
    infos = json.loads(run_python(_DESCRIBE, tiny_env(tiny_site, OCYNC_PLUGINS="ocync_oci")))
    assert [i["name"] for i in infos] == ["ocync_oci"]
    out = json.loads(run_python(_ANSWERS, tiny_env(tiny_site, OCYNC_PLUGINS="ocync_oci")))
    assert out["x.tiny.test"]["kind"] == "oci"
    assert out["x.tiny.test"]["upload"] == "post_put"
