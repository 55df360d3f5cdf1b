"""Cross-repository mounts: 201, the 202 fallback, a missing source.

Mounts go through `RegistryClient.mount_blob` and, when not mounted, on to `upload_blob`
with the session the mount returned: the same two calls, in the same order, as ocync's blob
mover, so the plugin's `MountPolicy` decides what happens.
"""

from __future__ import annotations

import os

import pytest

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.suite.base import SuiteBase, new_repository, requires
from ocync_conformance.suite.uploads import assert_blob_at_target, pieces
from ocync_core.client import MountResult, RegistryClient
from ocync_core.digest import Digest
from ocync_core.plugins import Plugins
from ocync_core.policies import MountMode
from ocync_core.registry import RegistrySettings

__all__ = ["MountChecks"]

_BLOB_SIZE = 2048


def _mount_statuses(proxy: FaultProxy) -> list[int]:
    return [r.status for r in proxy.log if r.action == ProxyAction.MOUNT]


async def _quiet_client(client: RegistryClient, proxy: FaultProxy) -> None:
    """Probe the registry first, so only the requests under test are in the proxy's log."""
    await client.ping()
    proxy.wait_idle()
    proxy.reset()


async def _upload_after(
    client: RegistryClient, repo: str, data: bytes, result: MountResult
) -> None:
    """What ocync does after a mount that did not mount: upload, into the session if one."""
    digest = Digest.of(data)
    await client.upload_blob(repo, digest, len(data), pieces(data, 512), session=result.session)


class MountChecks(SuiteBase):
    @requires("mount", "the registry cannot mount blobs across repositories")
    async def test_mount_of_present_blob(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        source = new_repository(target, "mount-source")
        data = os.urandom(_BLOB_SIZE)
        with target.direct() as http:
            digest = Digest.parse(push_blob(http, source, data))
        await _quiet_client(client, proxy)
        result = await client.mount_blob(repo, digest, source)
        proxy.wait_idle()
        sent = [f"{r.method} {r.action} -> {r.status}" for r in proxy.log]
        assert result.mounted, (
            f"mount of {digest} from {source} into {repo} did not mount although the registry "
            f"mounts (MountPolicy mode {client.mount_policy.mode.name}); requests: {sent}"
        )
        assert _mount_statuses(proxy) == [201] and len(sent) == 1, (
            f"mounting a present blob should take one request answered 201; sent: {sent}"
        )
        assert_blob_at_target(target, repo, data, f"mount from {source}")

    @pytest.fixture
    def source_without_blob(
        self, target: Target, settings: RegistrySettings, loaded_plugins: Plugins
    ) -> str:
        """A repository that exists but lacks the blob to mount; skips when no 202 can come.

        Decided here, in a sync fixture: pytest-trio drops the reason of a skip raised inside
        a check's trio run.
        """
        if loaded_plugins.mount_policy(loaded_plugins.resolve(settings)).mode is MountMode.NEVER:
            pytest.skip("the plugin's MountPolicy never mounts, so no mount can open a session")
        source = new_repository(target, "mount-empty-source")
        absent = Digest.of(os.urandom(32))
        with target.direct() as http:
            push_blob(http, source, os.urandom(64))
            probe = http.post(f"/v2/{source}-probe/blobs/uploads/?mount={absent}&from={source}")
        if probe.status_code != 202:
            pytest.skip(
                f"the registry answers {probe.status_code}, not 202 with an upload session, to "
                "a mount from a repository that lacks the blob"
            )
        return source

    async def test_mount_202_continues_in_the_opened_session(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        source_without_blob: str,
    ) -> None:
        # The source repository exists but lacks the blob: the registry falls back to opening
        # an upload session (202), which the upload must then use.
        source = source_without_blob
        data = os.urandom(_BLOB_SIZE)
        digest = Digest.of(data)
        await _quiet_client(client, proxy)
        result = await client.mount_blob(repo, digest, source)
        proxy.wait_idle()
        statuses = _mount_statuses(proxy)
        assert statuses == [202], (
            f"a mount the registry answers with 202 (it did so directly) answered {statuses} "
            "through ocync"
        )
        policy = client.mount_policy
        assert 202 not in policy.not_mounted_statuses, (
            "the plugin's MountPolicy lists 202 among not_mounted_statuses: ocync ignored the "
            "upload session the registry opened for the mount (it leaks, and a second session "
            "is opened for the upload)"
        )
        assert not result.mounted, f"mount answered 202 but ocync took {digest} as mounted"
        assert result.session is not None, (
            f"mount of {digest} into {repo} answered 202 with a session: ocync ignored the "
            "upload session the registry opened"
        )
        await _upload_after(client, repo, data, result)
        proxy.wait_idle()
        starts = proxy.count(ProxyAction.UPLOAD_START)
        assert starts == 0, (
            f"after a mount answered 202, ocync ignored the upload session the registry opened "
            f"and sent {starts} new upload POST(s) for {digest}"
        )
        assert proxy.count(ProxyAction.UPLOAD_FINISH, status=201) == 1, (
            f"the upload into the mount's session did not end with one PUT answered 201: "
            f"{[f'{r.method} {r.action} -> {r.status}' for r in proxy.log]}"
        )
        assert_blob_at_target(target, repo, data, "upload into the session a mount opened")

    async def test_mount_of_missing_blob_then_upload(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        # Neither the blob nor the source repository exist anywhere in the registry.
        source = f"{repo}-absent-source"
        data = os.urandom(_BLOB_SIZE)
        digest = Digest.of(data)
        await _quiet_client(client, proxy)
        result = await client.mount_blob(repo, digest, source)
        proxy.wait_idle()
        statuses = _mount_statuses(proxy)
        assert not result.mounted, (
            f"mount of {digest}, which the registry does not hold, was taken as mounted "
            f"(mount answered {statuses})"
        )
        assert len(statuses) <= 1, f"one mount attempt became {len(statuses)}: {statuses}"
        await _upload_after(client, repo, data, result)
        proxy.wait_idle()
        starts = proxy.count(ProxyAction.UPLOAD_START)
        expected = 0 if result.session is not None else 1
        assert starts == expected, (
            f"after a mount answered {statuses}, the upload opened {starts} session(s) "
            f"(expected {expected}: the mount {'did' if expected == 0 else 'did not'} open one)"
        )
        assert_blob_at_target(target, repo, data, "upload after a mount of a missing blob")

    @pytest.fixture
    def probing(self, settings: RegistrySettings, loaded_plugins: Plugins) -> None:
        # A sync fixture: a skip raised here, before the check's trio run, keeps its reason.
        policy = loaded_plugins.mount_policy(loaded_plugins.resolve(settings))
        if not policy.probe_existence:
            pytest.skip("the plugin's MountPolicy does not use the self-mount probe")

    @pytest.mark.usefixtures("probing")
    async def test_self_mount_probe_tells_presence(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        """A plugin whose MountPolicy sets `probe_existence` lets ocync skip blob HEADs: a
        mount from the repository itself must answer 201 for a blob it holds and open an
        upload session (202) for one it lacks, as the distribution registry does."""
        held = os.urandom(_BLOB_SIZE)
        with target.direct() as http:
            held_digest = Digest.parse(push_blob(http, repo, held))
        absent = os.urandom(_BLOB_SIZE)
        await _quiet_client(client, proxy)
        present = await client.mount_blob(repo, held_digest, repo)
        missing = await client.mount_blob(repo, Digest.of(absent), repo)
        proxy.wait_idle()
        statuses = _mount_statuses(proxy)
        assert present.mounted, (
            f"MountPolicy.probe_existence is set, but a mount of {held_digest} from {repo} "
            f"into itself, which holds it, answered {statuses[:1]}: ocync would re-upload "
            "every blob a repository already holds"
        )
        assert not missing.mounted and missing.session is not None, (
            f"MountPolicy.probe_existence is set, but a self-mount of a blob {repo} lacks "
            f"answered {statuses[1:]}: it must open the upload session (202) the upload uses"
        )
        await _upload_after(client, repo, absent, missing)
        proxy.wait_idle()
        assert proxy.count(ProxyAction.UPLOAD_START) == 0, (
            "the upload after a self-mount probe opened a new session instead of using the probe's"
        )
        assert_blob_at_target(target, repo, absent, "upload into a self-mount probe's session")
