"""Faults at the source during `ocync sync`: retried, or one image fails cleanly, in bounded time.

Every test runs the real command against a real source and target, faults injected by the
source's FaultProxy, and ends by auditing the target: whatever failed, no manifest there names
a blob or child that is missing.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fault_mirror import Mirror, open_mirror, small_corpus
from sync_harness import mirror_name, start_sync

from ocync_conformance.corpus import Corpus
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.api import open_clients
from ocync_core.copy import copy_image
from ocync_core.errors import leaf_errors
from ocync_core.reference import Reference
from ocync_core.registry import RegistrySettings
from ocync_core.retry import RetryPolicy

READS = [
    ProxyAction.TAG_LIST,
    ProxyAction.MANIFEST_HEAD,
    ProxyAction.MANIFEST_GET,
    ProxyAction.BLOB_GET,
]


@pytest.fixture(scope="module")
def seeded(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, Corpus]]:
    corpus = small_corpus()
    with RegistryProcess(workdir=tmp_path_factory.mktemp("faults-source")) as source:
        corpus.push(source.url)
        yield source, corpus


@pytest.fixture
def mirror(seeded: tuple[RegistryProcess, Corpus], tmp_path: Path) -> Iterator[Mirror]:
    with open_mirror(*seeded, tmp_path) as m:
        yield m


def _gets(proxy: FaultProxy, digest: str) -> int:
    return len([r for r in proxy.log if r.action == ProxyAction.BLOB_GET and digest in r.path])


@pytest.mark.parametrize("fault", ["reset", "truncate", "corrupt"])
def test_broken_blob_download_is_fetched_again_and_the_mirror_completes(mirror, fault):
    victim = mirror.largest_blob()
    if fault == "reset":
        mirror.src.reset_connection(ProxyAction.BLOB_GET, path=victim, after_bytes=65536, count=1)
    elif fault == "truncate":
        mirror.src.truncate_body(ProxyAction.BLOB_GET, path=victim, keep_bytes=1000, count=1)
    else:
        mirror.src.corrupt_body(ProxyAction.BLOB_GET, path=victim, offset=1000, count=1)
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    assert run.report["totals"]["synced"] == len(mirror.corpus.images)
    mirror.assert_complete()
    assert _gets(mirror.src, victim) == 2, f"the {fault} blob was not fetched exactly once more"


def test_5xx_burst_on_source_reads_is_retried(mirror):
    burst = mirror.src.fail(READS, 503, count=6)
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    mirror.assert_complete()
    assert burst.fired == 6 and mirror.src.count(READS, status=503) == 6


def test_source_blob_that_never_arrives_intact_fails_only_its_image(mirror):
    """One image's layer always has a flipped byte, another's always breaks mid-body."""
    corrupt = mirror.only_blobs_of("corpus/app01")[0]
    cut = mirror.only_blobs_of("corpus/app02")[0]
    mirror.src.corrupt_body(ProxyAction.BLOB_GET, path=corrupt, offset=2000)
    mirror.src.reset_connection(ProxyAction.BLOB_GET, path=cut, after_bytes=4096)
    run = mirror.sync()
    assert run.returncode == 1, run.explain()  # partial: the other image synced
    failed = {i["source"].rsplit("/", 1)[1]: i["reason"] for i in run.images("failed")}
    assert set(failed) == {"app01:1.0.0", "app02:1.0.0"}, run.report
    assert corrupt in failed["app01:1.0.0"] and "does not match its digest" in failed["app01:1.0.0"]
    assert "reset" in failed["app02:1.0.0"].lower(), failed["app02:1.0.0"]
    assert [i["source"] for i in run.images("synced")] == [f"{mirror.src.host}/corpus/app00:1.0.0"]
    # Bounded: each broken blob is tried the policy's 5 times, then its image gives up.
    assert _gets(mirror.src, corrupt) == 5 and _gets(mirror.src, cut) == 5
    mirror.assert_sound()
    assert mirror.target_tags() == mirror.expected_tags(without=("corpus/app01", "corpus/app02"))
    with mirror.target.client() as http:
        head = http.head(f"/v2/{mirror_name('corpus/app01')}/blobs/{corrupt}")
    assert head.status_code == 404, "a blob that failed its digest check reached the target"


def test_source_stall_shorter_than_the_read_timeout_is_waited_out(mirror):
    stall = 1.0
    mirror.src.slow_body(
        ProxyAction.BLOB_GET, stall_seconds=stall, after_bytes=1000, path=mirror.largest_blob()
    )
    run = mirror.sync()
    assert run.returncode == 0, run.explain()
    mirror.assert_complete()
    assert stall <= run.duration < stall + 60


def test_a_stall_longer_than_the_registry_timeout_fails_that_image_in_bounded_time(mirror):
    victim = mirror.only_blobs_of("corpus/app01")[0]
    stall = mirror.src.slow_body(
        ProxyAction.BLOB_GET, stall_seconds=600, after_bytes=1000, path=victim
    )
    run = mirror.sync(registries={"src": {"timeout": "1s"}})
    assert run.returncode == 1, run.explain()  # partial: the other images were synced
    [failed] = run.images("failed")
    assert failed["target"].endswith("/mirror/app01:1.0.0")
    assert victim in failed["reason"], failed["reason"]
    assert stall.fired == 5  # every attempt of the retry policy waited 1 s, then gave up
    assert run.duration < 60
    mirror.assert_sound()
    assert mirror.target_tags() == mirror.expected_tags(without=("corpus/app01",))


def test_hung_source_is_bounded_by_the_drain_deadline_on_sigterm(mirror):
    """With the default 300 s timeout, SIGTERM and drain_deadline bound the run."""
    victim = mirror.only_blobs_of("corpus/app01")[0]
    mirror.src.slow_body(ProxyAction.BLOB_GET, stall_seconds=600, after_bytes=1000, path=victim)
    process = start_sync(mirror.config(drain_deadline="1s"))
    others = len(mirror.corpus.unique_blobs) - 1
    deadline = time.monotonic() + 60
    # Wait until every other blob has been read: the stalled one is all that is left.
    while mirror.src.count(ProxyAction.BLOB_GET) < others or not _gets_live(mirror.src):
        assert time.monotonic() < deadline and process.poll() is None, "the sync never hung"
        time.sleep(0.02)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert took < 1 + 10, f"SIGTERM with drain_deadline 1s took {took:.1f}s to end the run"
    assert process.returncode == 1, err  # partial: the other images were synced
    assert "SIGTERM" in err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert any("drain deadline" in e for e in report["errors"]), report["errors"]
    assert report["totals"]["synced"] == 2, report
    [cut_short] = [i for i in report["images"] if i["status"] == "failed"]
    assert cut_short["target"].endswith("/mirror/app01:1.0.0"), cut_short
    assert "drain deadline" in cut_short["reason"]
    mirror.assert_sound()
    assert mirror.target_tags() == mirror.expected_tags(without=("corpus/app01",))


def _gets_live(proxy: FaultProxy) -> bool:
    return proxy.stats(ProxyAction.BLOB_GET).in_flight > 0


@pytest.mark.parametrize(
    "stalled",
    [ProxyAction.MANIFEST_HEAD, ProxyAction.BLOB_GET, "blob_body"],
    ids=["manifest-head", "blob-response", "blob-body"],
)
async def test_stalled_source_times_out_and_fails_within_the_retry_budget(
    seeded_registry, registry, fault_proxy, stalled
):
    """The timeout path, with the client's 300 s read timeout scaled down to 0.5 s."""
    src = fault_proxy(seeded_registry.registry, name="stalled-source")
    if stalled == "blob_body":
        src.slow_body(ProxyAction.BLOB_GET, stall_seconds=60, after_bytes=10)
    else:
        src.delay(stalled, 60)
    source = Reference.parse(f"{src.host}/demo/app:v1")
    target = Reference.parse(f"{registry.host}/mirror/app:v1")
    settings = RegistrySettings(host=source.domain), RegistrySettings(host=target.domain)
    async with open_clients(*settings) as clients:
        for client in clients:
            client.http.timeout = httpx.Timeout(0.5)
            client.retry_policy = RetryPolicy(attempts=2, base=0.01, max_delay=0.01)
        started = time.monotonic()
        with pytest.raises(BaseException) as info:
            await copy_image(clients[0], source, clients[1], target)
        took = time.monotonic() - started
    leaves = leaf_errors(info.value)
    text = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
    assert "ReadTimeout" in text or "timed out" in text.lower(), text
    if stalled != "blob_body":
        assert "gave up after 2 attempts" in text and "/v2/demo/app/" in text, text
    # Two attempts of 0.5 s each (per request that stalled, a few run at once), no more.
    assert took < 2 * 0.5 * 3 + 2, f"a stalled source held the copy for {took:.1f}s"
    with httpx.Client(base_url=registry.url) as http:
        assert http.head("/v2/mirror/app/manifests/v1").status_code == 404
