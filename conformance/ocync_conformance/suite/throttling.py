"""Throttling: the plugin's window keys; a 429 storm shrinks only its window."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace

import pytest
import trio

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.suite.base import SuiteBase, requires
from ocync_core import mediatypes
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import RegistryError
from ocync_core.plugins import Plugins
from ocync_core.policies import Action, ThrottlePolicy
from ocync_core.registry import RegistrySettings
from ocync_core.retry import RetryPolicy

__all__ = ["ThrottleChecks"]

# Requests the check can both refuse (a storm) and serve (reads of what it seeded).
_DRIVEN = (Action.MANIFEST_HEAD, Action.BLOB_HEAD, Action.TAG_LIST)
_STORM_CALLS = 3  # per storming task; every call is refused, retried once, refused again
_READ_CALLS = 6  # per reading task
_TASKS = 4
_MAX_CONCURRENT = 3  # below every window's usual initial size, so the aggregate cap shows
_BUSY_READS = 16  # per read action, all at once: more than any sane window admits
_BUSY_UPLOADS = 4


@dataclass(frozen=True)
class _Seeded:
    repository: str
    tag: str
    blob: Digest
    blob_size: int


def _seed(target: Target, repository: str) -> _Seeded:
    config = b"{}"
    with target.direct() as http:
        blob = push_blob(http, repository, config)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": blob, "size": 2},
                "layers": [],
            }
        ).encode()
        push_manifest(http, repository, "v1", body, mediatypes.OCI_MANIFEST)
    return _Seeded(repository, "v1", Digest.parse(blob), len(config))


def _storm_call(client: RegistryClient, seeded: _Seeded, action: Action) -> Awaitable[object]:
    repo = seeded.repository
    if action is Action.MANIFEST_HEAD:
        return client.head_manifest(repo, "absent")
    if action is Action.BLOB_HEAD:
        return client.blob_exists(repo, Digest.parse(f"sha256:{os.urandom(32).hex()}"))
    return client.list_tags(repo)


async def _read(client: RegistryClient, seeded: _Seeded, action: Action) -> str | None:
    """Read what was seeded; a description of what went wrong, or None."""
    repo = seeded.repository
    try:
        if action is Action.MANIFEST_HEAD:
            head = await client.head_manifest(repo, seeded.tag)
            return None if head is not None else f"{repo}:{seeded.tag} was reported missing"
        if action is Action.BLOB_HEAD:
            size = await client.blob_exists(repo, seeded.blob)
            ok = size == seeded.blob_size
            return None if ok else f"blob HEAD of {seeded.blob} answered size {size}"
        tags = await client.list_tags(repo)
        return None if seeded.tag in tags else f"tag list of {repo} lacks {seeded.tag}: {tags}"
    except RegistryError as error:
        return f"{action.value} failed: {error}"


def _separate_pair(policy: ThrottlePolicy) -> tuple[Action, Action] | None:
    """A storm action and a read action that the policy keeps in different windows."""
    for storm in _DRIVEN:
        for read in _DRIVEN:
            if policy.window_for(storm) != policy.window_for(read):
                return storm, read
    return None


class ThrottleChecks(SuiteBase):
    @pytest.fixture
    def storm_pair(
        self, settings: RegistrySettings, loaded_plugins: Plugins
    ) -> tuple[Action, Action]:
        # A sync fixture: a skip raised here, before the check's trio run, keeps its reason.
        policy = loaded_plugins.throttle_policy(loaded_plugins.resolve(settings))
        pair = _separate_pair(policy)
        if pair is None:
            pytest.skip("the plugin's policy keeps every action in one window")
        return pair

    async def test_every_action_has_a_described_window(self, client: RegistryClient) -> None:
        policy = client.throttle.policy
        undescribed = {
            action.value: policy.window_for(action)
            for action in Action
            if policy.window_for(action) not in policy.windows
        }
        assert not undescribed, (
            "the plugin's throttle policy sends actions to windows it does not describe "
            f"(they would get default limits): {undescribed}; described: {sorted(policy.windows)}"
        )

    async def test_429_storm_shrinks_only_its_own_window(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        storm_pair: tuple[Action, Action],
    ) -> None:
        storm, read = storm_pair
        seeded = _seed(target, repo)
        storm_key = client.throttle.policy.window_for(storm)
        read_key = client.throttle.policy.window_for(read)
        storm_window = client.throttle.window(storm_key)
        read_window = client.throttle.window(read_key)
        storm_start, read_start = storm_window.size, read_window.size
        client.retry_policy = RetryPolicy(attempts=2, base=0.01, max_delay=0.05)
        proxy.fail([ProxyAction(storm.value)], status=429, rate=1.0)
        unexpected: list[str] = []

        async def hammer() -> None:
            for _ in range(_STORM_CALLS):
                try:
                    await _storm_call(client, seeded, storm)
                except RegistryError as error:
                    if error.status != 429:
                        unexpected.append(f"{storm.value}: {error}")
                else:
                    unexpected.append(f"a {storm.value} refused with 429 reported success")

        async def read_many() -> None:
            for _ in range(_READ_CALLS):
                problem = await _read(client, seeded, read)
                if problem:
                    unexpected.append(f"while {storm.value} was refused, {problem}")

        await client.ping()
        async with trio.open_nursery() as nursery:
            for _ in range(_TASKS):
                nursery.start_soon(hammer)
                nursery.start_soon(read_many)
        proxy.wait_idle()

        assert not unexpected, "; ".join(unexpected[:5])
        refused = proxy.count([ProxyAction(storm.value)], status=429)
        assert refused >= _TASKS * _STORM_CALLS, f"only {refused} {storm.value} refused on the wire"
        shrank = storm_window.size < storm_start or storm_start == 1.0
        assert storm_window.halvings >= 1 and shrank, (
            f"{refused} 429s on {storm.value} left its window {storm_key!r} at "
            f"{storm_window.size:.2f} (it started at {storm_start:.2f}); it should shrink"
        )
        shrunk = {
            key: f"{window.size:.2f} after {window.halvings} halving(s)"
            for key, window in client.throttle.windows.items()
            if key != storm_key and window.halvings
        }
        assert not shrunk, (
            f"a 429 storm on {storm.value} (window {storm_key!r}) also shrank: {shrunk}"
        )
        assert read_window.size >= read_start, (
            f"{read.value} kept succeeding during the storm, yet its window {read_key!r} fell "
            f"from {read_start:.2f} to {read_window.size:.2f}"
        )

    async def test_max_concurrent_caps_every_window(
        self,
        settings: RegistrySettings,
        loaded_plugins: Plugins,
        target: Target,
        proxy: FaultProxy,
        repo: str,
    ) -> None:
        capped = replace(settings, max_concurrent=_MAX_CONCURRENT)
        seeded = _seed(target, repo)
        async with RegistryClient(capped, loaded_plugins) as client:
            policy = client.throttle.policy
            keys = {*policy.windows, *(policy.window_for(action) for action in Action)}
            over = {
                key: client.throttle.window(key).cap
                for key in sorted(keys)
                if client.throttle.window(key).cap > _MAX_CONCURRENT
            }
            assert not over, (
                f"with max_concurrent {_MAX_CONCURRENT} these windows may still go wider: {over}"
            )
            proxy.delay([ProxyAction.BLOB_HEAD], 0.05)
            await client.ping()
            problems: list[str | None] = []

            async def read() -> None:
                problems.append(await _read(client, seeded, Action.BLOB_HEAD))

            async with trio.open_nursery() as nursery:
                for _ in range(4 * _MAX_CONCURRENT):
                    nursery.start_soon(read)
        proxy.wait_idle()
        failed = [problem for problem in problems if problem]
        assert not failed, "; ".join(failed[:5])
        peak = proxy.stats([ProxyAction.BLOB_HEAD]).peak_in_flight
        assert peak <= _MAX_CONCURRENT, (
            f"with max_concurrent {_MAX_CONCURRENT}, {peak} blob HEADs were in flight at once"
        )

    @requires("documented_limits", "the registry enforces no documented request limit")
    async def test_a_busy_client_stays_within_the_documented_limits(
        self, client: RegistryClient, target: Target, proxy: FaultProxy, repo: str
    ) -> None:
        """Everything at once: the throttle policy alone must keep every request under the
        registry's limits, so not one is refused (the retries would hide the 429s)."""
        seeded = _seed(target, repo)
        await client.ping()
        proxy.reset()
        problems: list[str] = []

        async def read(action: Action) -> None:
            problem = await _read(client, seeded, action)
            if problem:
                problems.append(problem)

        async def upload(index: int) -> None:
            data = f"busy upload {index} {os.urandom(8).hex()}".encode()
            try:
                await client.upload_blob(repo, Digest.of(data), len(data), _chunks(data))
            except RegistryError as error:
                problems.append(f"upload {index} failed: {error}")

        async with trio.open_nursery() as nursery:
            for action in _DRIVEN:
                for _ in range(_BUSY_READS):
                    nursery.start_soon(read, action)
            for index in range(_BUSY_UPLOADS):
                nursery.start_soon(upload, index)
        proxy.wait_idle()
        assert not problems, "; ".join(problems[:5])
        refused = {
            f"{record.method} {record.action}": record.status
            for record in proxy.log
            if record.status == 429
        }
        total = proxy.count(status=429)
        assert not total, (
            f"{total} request(s) went over the registry's documented limits "
            f"({target.capabilities.documented_limits}) and were refused with 429, e.g. "
            f"{sorted(refused)[:4]}: the plugin's throttle policy does not encode them"
        )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data
