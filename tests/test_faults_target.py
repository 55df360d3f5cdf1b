"""Faults at the target during `ocync sync`: refusals fail one image with the registry's own
words while the others finish; transient failures are retried; nothing is left half-pushed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_mirror import Mirror, open_mirror, small_corpus

from ocync_conformance.corpus import Corpus
from ocync_conformance.proxy import ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.errors import EXIT_FAILURE

WRITES = [ProxyAction.MOUNT, ProxyAction.UPLOAD_START, ProxyAction.UPLOAD_FINISH]
VICTIM_TAG = "/v2/mirror/app01/manifests/1.0.0"


@pytest.fixture(scope="module")
def seeded(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, Corpus]]:
    corpus = small_corpus()
    with RegistryProcess(workdir=tmp_path_factory.mktemp("faults-target")) as source:
        corpus.push(source.url)
        yield source, corpus


@pytest.fixture
def mirror(seeded: tuple[RegistryProcess, Corpus], tmp_path: Path) -> Iterator[Mirror]:
    with open_mirror(*seeded, tmp_path) as m:
        yield m


# (status, registry error code, registry message, (fewest, most) pushes of the refused tag):
# a blob the registry calls unknown may earn one more try after the blobs are re-checked, a 429
# gets the retry policy's 5 attempts, a final refusal no second one.
REFUSALS = {
    "blob-unknown": (400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", (1, 2)),
    "too-large": (413, "SIZE_INVALID", "manifest exceeds the 4 MiB limit of this registry", (1, 1)),
    "quota": (403, "DENIED", "storage quota exceeded for namespace mirror", (1, 1)),
    "throttled-forever": (429, "TOOMANYREQUESTS", "push rate limit exceeded", (5, 5)),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_refused_manifest_fails_its_image_with_the_registry_message(mirror, refusal):
    status, code, message, (fewest, most) = REFUSALS[refusal]
    mirror.dst.fail(
        ProxyAction.MANIFEST_PUT, status, code=code, message=message, path=f"{VICTIM_TAG}$"
    )
    run = mirror.sync()
    assert run.returncode == 1, run.explain()  # partial: the other images finished
    [failed] = run.images("failed")
    assert failed["target"].endswith("/mirror/app01:1.0.0")
    assert f"-> {status} ({code}: {message})" in failed["reason"], failed["reason"]
    assert run.report["totals"]["synced"] == 2
    puts = [
        r for r in mirror.dst.log if r.action == ProxyAction.MANIFEST_PUT and r.path == VICTIM_TAG
    ]
    assert fewest <= len(puts) <= most, f"{len(puts)} pushes of the refused tag"

    mirror.assert_sound()
    assert mirror.target_tags() == mirror.expected_tags(without=("corpus/app01",))


def test_5xx_burst_on_target_writes_is_retried(mirror):
    burst = mirror.dst.fail([*WRITES, ProxyAction.MANIFEST_PUT], 503, count=6)
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    assert burst.fired == 6
    mirror.assert_complete()


@pytest.mark.parametrize("when", ["before-response", "mid-request"])
def test_connection_reset_during_an_upload_is_retried_in_a_new_session(mirror, when):
    largest = mirror.largest_blob().split(":", 1)[1]  # upload URLs carry it percent-encoded
    if when == "before-response":
        rule = mirror.dst.reset_connection(ProxyAction.UPLOAD_FINISH, path=largest, count=1)
    else:
        # The registry stores the blob, then the answer is lost: the retry must cope with a
        # blob that is, in fact, already there.
        rule = mirror.dst.fail(
            ProxyAction.UPLOAD_FINISH, 502, path=largest, count=1, after_upstream=True
        )
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    assert rule.fired == 1
    mirror.assert_complete()
    finishes = [r for r in mirror.dst.log if r.action == ProxyAction.UPLOAD_FINISH]
    assert len([r for r in finishes if largest in r.path]) == 2


def test_a_blob_the_registry_briefly_could_not_read_earns_one_more_push(mirror):
    # docker-registry's filesystem storage rewrites a blob's link file in place when a second
    # writer (another run, another tool) mounts or uploads it again: a manifest PUT reading it
    # meanwhile gets DIGEST_INVALID and MANIFEST_BLOB_UNKNOWN together, in that order.
    body = json.dumps(
        {
            "errors": [
                {"code": "DIGEST_INVALID", "message": "provided digest did not match"},
                {"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry"},
            ]
        }
    ).encode()
    refusal = mirror.dst.fail(
        ProxyAction.MANIFEST_PUT, 400, body=body, path=f"{VICTIM_TAG}$", count=1
    )
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    assert refusal.fired == 1
    mirror.assert_complete()
    puts = [
        r for r in mirror.dst.log if r.action == ProxyAction.MANIFEST_PUT and r.path == VICTIM_TAG
    ]
    assert len(puts) == 2


def test_a_full_quota_for_every_image_is_a_failure_not_a_credential_problem(mirror):
    mirror.dst.fail(
        ProxyAction.MANIFEST_PUT, 403, code="DENIED", message="storage quota exceeded for mirror"
    )
    run = mirror.sync()
    assert run.returncode == EXIT_FAILURE, run.explain()  # not EXIT_AUTH: no credential to fix
    failed = run.images("failed")
    assert len(failed) == len(mirror.corpus.images)
    assert all("storage quota exceeded" in i["reason"] for i in failed)
