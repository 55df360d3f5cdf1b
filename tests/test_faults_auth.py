"""Authentication failing mid-run: tokens that expire early or are revoked, credentials that are
withdrawn, credential helpers that fail or hang. Real `ocync sync`, real token server."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fault_mirror import Mirror, small_corpus
from mirror_audit import audit
from sync_harness import corpus_mappings, run_sync, write_config

from ocync_conformance.corpus import Corpus
from ocync_conformance.fixtures import TEST_PASSWORD, TEST_USERNAME
from ocync_conformance.proxy import FaultProxy, ProxyAction, RequestView
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import Scope, TokenServer
from ocync_core.auth import DockerConfig
from ocync_core.auth.dockerconfig import HELPER_TIMEOUT_VARIABLE
from ocync_core.errors import AuthenticationError, ConfigError

CREDENTIALS = {"credentials": {"username": TEST_USERNAME, "password": TEST_PASSWORD}}


class EarlyExpiringTokens(TokenServer):
    """Tokens the registry stops accepting after `lifetime` seconds though announced for an
    hour: an expiry the client cannot see coming (a shortened policy, a skewed clock)."""

    # docker-registry still accepts a token this long after its `exp` claim.
    REGISTRY_LEEWAY = 60

    def __init__(self, *, lifetime: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lifetime = lifetime

    def issue(self, user: str | None, scopes: Iterable[Scope]) -> tuple[str, int, str]:
        self.expires_in = self.lifetime - self.REGISTRY_LEEWAY
        token, _, issued = super().issue(user, scopes)
        return token, 3600, issued


class Revocation:
    """A `when` predicate for the target's proxy: once `after` requests bearing a token have
    passed, every token seen so far is refused, as after a registry rotated its signing key."""

    def __init__(self, after: int, then: Callable[[], None] = lambda: None) -> None:
        self.after = after
        self.then = then
        self.revoked: frozenset[str] = frozenset()
        self._seen: set[str] = set()
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, request: RequestView) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            if token in self.revoked:
                return True
            if self.revoked:
                return False  # tokens issued after the revocation are good
            self._seen.add(token)
            self._count += 1
            if self._count < self.after:
                return False
            self.revoked = frozenset(self._seen)
        self.then()
        return True


@pytest.fixture(scope="module")
def seeded(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, Corpus]]:
    corpus = small_corpus()
    with RegistryProcess(workdir=tmp_path_factory.mktemp("faults-auth")) as source:
        corpus.push(source.url)
        yield source, corpus


@contextmanager
def _token_mirror(
    seeded: tuple[RegistryProcess, Corpus], tokens: TokenServer, tmp_path: Path
) -> Iterator[Mirror]:
    source, corpus = seeded
    with (
        RegistryProcess(
            workdir=tmp_path / "target",
            token_server=tokens,
            username=TEST_USERNAME,
            password=TEST_PASSWORD,
        ) as target,
        FaultProxy(source, name="source") as src,
        FaultProxy(target, name="target") as dst,
    ):
        yield Mirror(source, corpus, target, src, dst, tmp_path)


@pytest.fixture
def token_mirror(seeded, token_server, tmp_path) -> Iterator[Mirror]:
    with _token_mirror(seeded, token_server, tmp_path) as mirror:
        yield mirror


def _refused_tokens(mirror: Mirror) -> int:
    """401s to requests that carried a token: every request after the first challenge does."""
    return len([r for r in mirror.dst.log if r.status == 401 and r.action != ProxyAction.PING])


def test_token_expiring_before_its_announced_lifetime_is_renewed_mid_run(
    seeded, token_signing_cert, tmp_path
):
    with (
        EarlyExpiringTokens(
            lifetime=2, users={TEST_USERNAME: TEST_PASSWORD}, signing=token_signing_cert
        ) as tokens,
        _token_mirror(seeded, tokens, tmp_path) as mirror,
    ):
        # Slow reads keep the run going well past the tokens' real lifetime.
        mirror.src.slow_body(ProxyAction.BLOB_GET, bytes_per_second=192 * 1024)
        run = mirror.sync(registries={"dst": CREDENTIALS})
        assert run.returncode == 0, run.explain()
        mirror.assert_complete()
        assert _refused_tokens(mirror) >= 1, "the run never outlived a token: nothing tested"
        assert len([r for r in tokens.requests if r.status == 200]) > 1


def test_tokens_revoked_mid_run_are_replaced_and_the_mirror_completes(token_mirror, token_server):
    mirror = token_mirror
    revocation = Revocation(after=12)
    challenge = f'Bearer realm="{token_server.realm}",service="{token_server.service}"'
    rule = mirror.dst.fail(
        None,
        401,
        code="UNAUTHORIZED",
        message="token revoked",
        headers={"WWW-Authenticate": challenge + ',error="invalid_token"'},
        when=revocation,
    )
    run = mirror.sync(registries={"dst": CREDENTIALS})
    assert run.returncode == 0, run.explain()
    assert rule.fired >= 1 and revocation.revoked
    mirror.assert_complete()
    issued = [r for r in token_server.requests if r.status == 200]
    assert len(issued) > len(revocation.revoked), "no token was fetched after the revocation"


def test_credentials_withdrawn_mid_run_fail_the_rest_cleanly(token_mirror, token_server):
    mirror = token_mirror
    revocation = Revocation(after=12, then=lambda: token_server.users.pop(TEST_USERNAME, None))
    challenge = f'Bearer realm="{token_server.realm}",service="{token_server.service}"'
    mirror.dst.fail(None, 401, headers={"WWW-Authenticate": challenge}, when=revocation)
    run = mirror.sync(registries={"dst": CREDENTIALS})
    token_server.add_user(TEST_USERNAME, TEST_PASSWORD)  # for the audit's own requests
    assert run.returncode in (1, 4), run.explain()  # some images failed, or every one did
    failed = run.images("failed")
    assert failed, run.report
    for image in failed:
        assert "401" in image["reason"] and "token" in image["reason"].lower(), image["reason"]
        assert TEST_PASSWORD not in image["reason"]
    assert TEST_PASSWORD not in run.stdout + run.stderr
    mirror.assert_sound()
    synced = {i["target"].split("/", 1)[1] for i in run.images("synced")}
    assert set(mirror.target_tags()) == synced, "a failed image left its tag at the target"


# -- credential helpers ---------------------------------------------------------------------


def _helper(bin_dir: Path, body: str) -> None:
    path = bin_dir / "docker-credential-xyz"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def helper_mirror(
    seeded: tuple[RegistryProcess, Corpus], basic_registry: RegistryProcess, tmp_path: Path
) -> tuple[Path, dict[str, str], RegistryProcess, Corpus]:
    """A config whose target takes its credentials from `docker-credential-xyz`, and the env
    that puts the test's helper first on PATH."""
    source, corpus = seeded
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker_config = tmp_path / "docker.json"
    docker_config.write_text(json.dumps({"credHelpers": {basic_registry.host: "xyz"}}))
    config = write_config(
        tmp_path / "mirror.json",
        source=source.host,
        targets={"dst": basic_registry.host},
        mappings=corpus_mappings(corpus),
        cache=tmp_path / "cache.json",
        registries={"dst": {"docker_config": str(docker_config)}},
    )
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return config, env, basic_registry, corpus


def _running_in_group(group: int) -> list[int]:
    """Processes of a process group that still run (zombies, which nobody may reap in a
    container without an init, do not count)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state != "Z":
            running.append(int(stat.parent.name))
    return running


def _nothing_pushed(target: RegistryProcess) -> bool:
    return not audit(target) and not list(target.storage_dir.glob("**/_manifests"))


def test_failing_credential_helper_fails_each_image_naming_the_helper(helper_mirror, tmp_path):
    config, env, target, corpus = helper_mirror
    _helper(tmp_path / "bin", 'echo "hunter2-secret"\necho "keychain is locked" >&2\nexit 1\n')
    run = run_sync(config, env=env)
    assert run.returncode == 4, run.explain()  # every image refused for authentication
    assert len(run.images("failed")) == len(corpus.images)
    for image in run.images("failed"):
        assert "docker-credential-xyz" in image["reason"], image["reason"]
        assert "exit code 1: keychain is locked" in image["reason"]
    assert "hunter2-secret" not in run.stdout + run.stderr
    assert _nothing_pushed(target)


def test_hanging_credential_helper_is_killed_after_its_timeout(helper_mirror, tmp_path):
    config, env, target, corpus = helper_mirror
    pids = tmp_path / "helper-pids"
    _helper(tmp_path / "bin", f"echo $$ >> {pids}\nsleep 600\n")
    run = run_sync(config, env={**env, HELPER_TIMEOUT_VARIABLE: "1"})
    assert run.returncode == 4, run.explain()
    for image in run.images("failed"):
        assert "docker-credential-xyz" in image["reason"], image["reason"]
        assert "no answer within 1 s" in image["reason"], image["reason"]
    # Bounded: the helper runs at most once per image, one second each.
    started = pids.read_text().split()
    assert 1 <= len(started) <= len(corpus.images)
    assert run.duration < len(started) * 1 + 30
    for pid in started:  # the helper's whole process group is gone, its `sleep` included
        assert not _running_in_group(int(pid)), f"helper process group {pid} outlived the run"
    assert _nothing_pushed(target)


def test_helper_timeout_variable_bounds_a_helper_and_rejects_nonsense(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _helper(bin_dir, "exec sleep 30\n")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"credsStore": "xyz"}))
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    quick = DockerConfig(config_path, env={"PATH": path, HELPER_TIMEOUT_VARIABLE: "0.3"})
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=r"no answer within 0\.3 s"):
        quick.credentials_for("reg.example.com")
    assert time.monotonic() - started < 5
    for nonsense in ("soon", "0", "-1", "inf", "nan"):
        config = DockerConfig(config_path, env={"PATH": path, HELPER_TIMEOUT_VARIABLE: nonsense})
        with pytest.raises(ConfigError, match=HELPER_TIMEOUT_VARIABLE):
            config.credentials_for("reg.example.com")
