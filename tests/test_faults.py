"""Transient faults are retried, persistent ones fail cleanly: `ocync copy` via fault proxies."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import httpx
import pytest

from ocync_conformance.fixtures import SeededRegistry
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def copy(source: str, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocync_core", "copy", "--json", source, target],
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class Endpoints:
    """A seeded source and an empty target, each behind its own fault proxy."""

    source: FaultProxy
    target: FaultProxy
    seeded: SeededRegistry
    target_registry: RegistryProcess

    @property
    def src(self) -> str:
        return f"{self.source.host}/demo/app:v1"

    @property
    def dst(self) -> str:
        return f"{self.target.host}/mirror/app:v1"

    def same_digest(self) -> bool:
        with httpx.Client() as http:
            want = http.head(f"{self.seeded.url}/v2/demo/app/manifests/v1", headers=ACCEPT)
            got = http.head(
                f"{self.target_registry.url}/v2/mirror/app/manifests/v1", headers=ACCEPT
            )
        return got.headers.get("Docker-Content-Digest") == want.headers["Docker-Content-Digest"]


@pytest.fixture
def endpoints(seeded_registry, target_registry, fault_proxy) -> Endpoints:
    return Endpoints(
        fault_proxy(seeded_registry.registry, name="source"),
        fault_proxy(target_registry, name="target"),
        seeded_registry,
        target_registry,
    )


def test_upload_refused_once_is_retried_in_a_new_session(endpoints):
    e = endpoints
    e.target.fail([ProxyAction.UPLOAD_FINISH], status=503, count=1)
    result = copy(e.src, e.dst)
    assert result.returncode == 0, result.stderr
    assert e.same_digest()
    e.target.wait_idle()
    # A session opens with a plain POST, or with the self-mount probe that answered 202.
    starts = e.target.count([ProxyAction.UPLOAD_START]) + e.target.count(
        [ProxyAction.MOUNT], status=202
    )
    finishes = e.target.count([ProxyAction.UPLOAD_FINISH])
    assert finishes == starts == json.loads(result.stdout)["blobs_transferred"] + 1


def test_manifest_push_429_honours_retry_after(endpoints):
    e = endpoints
    e.target.fail([ProxyAction.MANIFEST_PUT], status=429, count=1, retry_after=1)
    result = copy(e.src, e.dst)
    assert result.returncode == 0, result.stderr
    e.target.wait_idle()
    puts = [r for r in e.target.log if r.action == ProxyAction.MANIFEST_PUT]
    refused = [r for r in puts if r.status == 429]
    assert len(refused) == 1
    retried = [r for r in puts if r.path == refused[0].path and r.status == 201]
    assert retried and retried[0].started - refused[0].started >= 1.0


@pytest.mark.parametrize("fault", ["reset", "truncate", "corrupt"])
def test_broken_blob_download_is_fetched_again(endpoints, fault):
    e = endpoints
    if fault == "reset":
        e.source.reset_connection([ProxyAction.BLOB_GET], count=1, after_bytes=10)
    elif fault == "truncate":
        e.source.truncate_body([ProxyAction.BLOB_GET], keep_bytes=100, count=1)
    else:
        e.source.corrupt_body([ProxyAction.BLOB_GET], count=1)
    result = copy(e.src, e.dst)
    assert result.returncode == 0, result.stderr
    assert e.same_digest()
    e.source.wait_idle()
    gets = e.source.count([ProxyAction.BLOB_GET])
    assert gets == json.loads(result.stdout)["blobs_transferred"] + 1


def test_persistent_5xx_fails_naming_the_request_and_status(endpoints):
    e = endpoints
    e.target.fail([ProxyAction.MANIFEST_PUT], status=500, rate=1.0)
    result = copy(e.src, e.dst)
    assert result.returncode == 2
    assert "PUT" in result.stderr and "500" in result.stderr and "/manifests/" in result.stderr
    e.target.wait_idle()
    # Bounded: the default policy makes 5 attempts for each manifest it tried to push.
    attempts = e.target.count([ProxyAction.MANIFEST_PUT])
    assert 5 <= attempts <= 15
    with httpx.Client() as http:
        tag = http.head(f"{e.target_registry.url}/v2/mirror/app/manifests/v1", headers=ACCEPT)
    assert tag.status_code == 404  # nothing half-pushed under the tag
