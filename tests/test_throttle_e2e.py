"""Adaptive throttling against the fault-injecting proxy in front of a real registry."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import trio

from ocync_conformance.corpus import build_corpus
from ocync_conformance.images import push_blob
from ocync_conformance.proxy import MANIFEST_ACTIONS, UPLOAD_ACTIONS, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import RegistryError
from ocync_core.hookspecs import hookimpl
from ocync_core.manifest import parse_manifest
from ocync_core.plugins import Plugins
from ocync_core.policies import Action, ThrottlePolicy, WindowSpec
from ocync_core.registry import RegistrySettings
from ocync_core.retry import RetryPolicy
from ocync_oci import THROTTLE_POLICY

# Every request to the uploads endpoint: the sessions ocync opens with a self-mount probe too.
_UPLOADING = UPLOAD_ACTIONS | {ProxyAction.MOUNT}

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def test_sync_through_an_upload_limit_of_eight(registry_binary, fault_proxy, tmp_path):
    """ocync runs as its own process, as in production: the proxy then measures the traffic
    without sharing an interpreter lock with the client it measures."""
    corpus = build_corpus(repositories=34, tags=3, app_size=2 * 1024 * 1024, base_size=256 * 1024)
    assert len(corpus.unique_blobs) >= 200
    with (
        RegistryProcess(workdir=tmp_path / "src") as source,
        RegistryProcess(workdir=tmp_path / "dst") as target,
    ):
        corpus.push(source.url)
        proxy = fault_proxy(target)
        proxy.limit_concurrency(_UPLOADING, 8)
        config = tmp_path / "ocync.yaml"
        config.write_text(
            json.dumps(
                {
                    "global": {"cache": False, "max_concurrent_images": 32},
                    "registries": {
                        "src": {"url": source.host},
                        "dst": {"url": proxy.host, "max_concurrent": 32},
                    },
                    "defaults": {"source": "src", "targets": "dst"},
                    "mappings": [{"from": repo} for repo in corpus.repositories],
                }
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "ocync_core", "sync", "-c", str(config), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        proxy.wait_idle()

        with httpx.Client(base_url=target.url) as http:
            for image in corpus.images:
                head = http.head(f"/v2/{image.repository}/manifests/{image.tag}", headers=ACCEPT)
                assert head.headers["Docker-Content-Digest"] == image.digest

        uploads = proxy.stats(_UPLOADING)
        admitted = proxy.stats(_UPLOADING, where=lambda r: r.status != 429)
        print(
            f"\nupload limit 8: {uploads.requests} upload requests, {uploads.throttled} refused "
            f"({uploads.throttled / uploads.requests:.1%}); mean in flight at the proxy "
            f"{admitted.busy_mean_in_flight:.2f} while uploading, {admitted.mean_in_flight:.2f} "
            f"over the run; peak {admitted.peak_in_flight}"
        )
        assert uploads.throttled < 0.05 * uploads.requests
        assert admitted.peak_in_flight <= 8
        assert admitted.busy_mean_in_flight >= 5


class _PacedPushes:
    """A plugin declaring a documented cap of 10 manifest pushes per second."""

    @hookimpl
    def ocync_throttle_policy(self, registry: RegistrySettings, kind: str) -> ThrottlePolicy:
        windows = dict(THROTTLE_POLICY.windows)
        # A tenth under the documented 10/s: a push that waits for a window slot after taking
        # its token reaches the registry late, next to the following one, and a registry
        # counting any 1-s window would see 11 with only a 5% margin.
        windows["manifest_write"] = WindowSpec(initial=4, rate=9.0, burst=1)
        return ThrottlePolicy(windows=windows, window_of=THROTTLE_POLICY.window_of)


async def test_paced_manifest_pushes_meet_no_429(proxied_registry):
    proxy = proxied_registry.proxy
    with httpx.Client(base_url=proxied_registry.registry.url) as http:
        config = push_blob(http, "paced/app", b"{}")
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_EMPTY_JSON, "digest": config, "size": 2},
            "layers": [],
        }
    ).encode()
    manifest = parse_manifest(raw, mediatypes.OCI_MANIFEST)
    proxy.limit_rate([ProxyAction.MANIFEST_PUT], 10)
    plugins = Plugins.load(allow=["ocync_oci"], extra=[_PacedPushes()])
    client = RegistryClient(RegistrySettings(host=proxied_registry.host), plugins)
    started = trio.current_time()
    async with client, trio.open_nursery() as nursery:
        for n in range(100):
            nursery.start_soon(client.put_manifest, "paced/app", f"t{n}", manifest)
    elapsed = trio.current_time() - started
    proxy.wait_idle()
    pushes = proxy.stats(MANIFEST_ACTIONS, where=lambda r: r.method == "PUT")
    assert pushes.requests == 100
    assert pushes.throttled == 0
    assert elapsed >= 9.9  # paced at 9/s, not bursted and retried


async def test_storm_on_manifest_window_leaves_blob_reads_alone(proxied_registry):
    """429s on manifest reads shrink only that window; blob reads keep growing theirs."""
    proxy = proxied_registry.proxy
    with httpx.Client(base_url=proxied_registry.registry.url) as http:
        digest = Digest.parse(push_blob(http, "storm/app", b"x" * 1024))
    proxy.fail([ProxyAction.MANIFEST_HEAD], status=429, rate=1.0)
    client = RegistryClient(RegistrySettings(host=proxied_registry.host), Plugins.load())
    client.retry_policy = RetryPolicy(attempts=2, base=0.01, max_delay=0.05)
    refused = 0

    async def hammer() -> None:
        nonlocal refused
        for _ in range(10):
            with pytest.raises(RegistryError) as caught:
                await client.head_manifest("storm/app", "v1")
            assert caught.value.status == 429
            refused += 1

    async def read() -> None:
        for _ in range(20):
            assert await client.blob_exists("storm/app", digest) == 1024

    async with client:
        await client.ping()
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(hammer)
                nursery.start_soon(read)
    windows = client.throttle.snapshot()
    assert refused == 80
    assert windows["manifest_read"] == 1.0
    assert windows["blob_read"] > THROTTLE_POLICY.windows["blob_read"].initial
    assert client.throttle.window_for(Action.BLOB_HEAD).halvings == 0
