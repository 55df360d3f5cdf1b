"""The Quay plugin: detection, its mount policy, and robot-account credentials (``org+name``)
through a real token exchange."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ocync_quay
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core.auth.dockerconfig import DockerConfig
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import AuthenticationError
from ocync_core.plugins import Plugins
from ocync_core.policies import MountMode
from ocync_core.registry import RegistrySettings
from ocync_quay import KIND, MOUNT_POLICY

ROBOT = "myorg+mirror"
ROBOT_TOKEN = "R0B0T-T0KEN-with+plus/and=equals"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return Plugins.load(allow=["ocync_quay"])


@pytest.mark.parametrize("host", ["quay.io", "QUAY.IO", "quay.io.", "quay.io:443"])
def test_claims_quay_io(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == KIND


@pytest.mark.parametrize(
    "host", ["cdn.quay.io", "quay.io.example.com", "myquay.io", "quay.io:8443", "quay.example.com"]
)
def test_leaves_other_hosts_alone(plugins: Plugins, host: str) -> None:
    assert plugins.kind_for(RegistrySettings(host=host)) == "oci"


def test_self_hosted_quay_is_declared(plugins: Plugins) -> None:
    settings = RegistrySettings(host="registry.corp.example", kind="quay")
    assert plugins.kind_for(settings) == KIND
    assert plugins.mount_policy(settings) is MOUNT_POLICY


def test_mounts_always_name_their_source(plugins: Plugins) -> None:
    policy = plugins.mount_policy(RegistrySettings(host="quay.io"))
    assert policy is MOUNT_POLICY and policy.mode is MountMode.WITH_FROM
    assert 202 not in policy.not_mounted_statuses, "Quay's upload session must be used"
    assert ocync_quay.ocync_mount_policy(registry=RegistrySettings(host="x"), kind="oci") is None


def test_listed_with_the_hosts_it_claims() -> None:
    infos = {info.name: info for info in Plugins.load().describe()}
    assert infos["ocync_quay"].kinds == ("quay",)
    assert "quay.io" in infos["ocync_quay"].hosts


# -- robot accounts through a real token exchange ---------------------------------------------


@dataclass(frozen=True)
class _Quay:
    registry: RegistryProcess
    tokens: TokenServer

    def robot(self, **kw: Any) -> RegistrySettings:
        kw.setdefault("username", ROBOT)
        kw.setdefault("password", ROBOT_TOKEN)
        return RegistrySettings(host="quay.io", endpoint=self.registry.url, **kw)


@pytest.fixture(scope="module")
def quay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Quay]:
    """docker-registry with a token server for service quay.io that knows one robot."""
    workdir = tmp_path_factory.mktemp("quay")
    with (
        TokenServer(users={ROBOT: ROBOT_TOKEN}, service="quay.io", workdir=workdir) as tokens,
        RegistryProcess(
            workdir=workdir / "registry", token_server=tokens, username=ROBOT, password=ROBOT_TOKEN
        ) as registry,
    ):
        yield _Quay(registry, tokens)


async def _push_and_read(settings: RegistrySettings, plugins: Plugins) -> None:
    data = os.urandom(256)
    digest = Digest.of(data)

    async def body() -> AsyncIterator[bytes]:
        yield data

    async with RegistryClient(settings, plugins) as client:
        await client.upload_blob("myorg/mirror-check", digest, len(data), body())
        assert await client.blob_exists("myorg/mirror-check", digest) == len(data)


async def test_a_robot_name_keeps_its_plus_through_the_token_exchange(
    plugins: Plugins, quay: _Quay
) -> None:
    quay.tokens.reset_requests()
    await _push_and_read(quay.robot(), plugins)
    users = {request.user for request in quay.tokens.requests if request.status == 200}
    assert users == {ROBOT}, f"the token server saw {users}, not the robot {ROBOT!r}"


async def test_a_robot_from_the_docker_config(
    plugins: Plugins, quay: _Quay, tmp_path: Path
) -> None:
    # What `docker login quay.io -u myorg+mirror` leaves behind.
    auth = base64.b64encode(f"{ROBOT}:{ROBOT_TOKEN}".encode()).decode()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"quay.io": {"auth": auth}}}))
    found = DockerConfig(str(config)).credentials_for("quay.io")
    assert found is not None and (found.username, found.password) == (ROBOT, ROBOT_TOKEN)
    quay.tokens.reset_requests()
    from_config = quay.robot(username=None, password=None, docker_config=str(config))
    await _push_and_read(from_config, plugins)
    assert {r.user for r in quay.tokens.requests if r.status == 200} == {ROBOT}


async def test_a_wrong_robot_token_is_refused(plugins: Plugins, quay: _Quay) -> None:
    with pytest.raises(AuthenticationError):
        await _push_and_read(quay.robot(password="not-the-token"), plugins)
