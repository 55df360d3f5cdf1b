"""`ocync watch`: cycles against real registries, its HTTP endpoints, SIGHUP and SIGTERM.

The watcher runs as a real subprocess with JSON logs; the tests follow its log lines, probe
its endpoints and read `/metrics` with Prometheus' own text parser. Registries sit behind
FaultProxies so the requests `/metrics` counts can be compared with those on the wire.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.cli import cli
from ocync_core.errors import EXIT_BAD_INPUT, BadInput
from ocync_core.health import HealthServer, Readiness, parse_listen
from ocync_core.metrics import SyncMetrics, classify_request
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings
from ocync_core.watch import parse_interval

OCYNC = [sys.executable, "-m", "ocync_core", "--log-format", "json"]
ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
Entry = dict[str, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Watcher:
    """A running `ocync watch` whose JSON log lines are collected as they come."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [*OCYNC, "watch", "-c", str(config), "--interval", "1s", "--listen", ":0", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_PROXY": "*"},
        )
        self.entries: list[Entry] = []
        self._new: queue.Queue[Entry] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base = "http://" + self.wait_for(lambda e: "listen" in e)["listen"]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"level": "raw", "message": line.rstrip()}
            self._new.put(entry)

    def wait_for(self, wanted: Callable[[Entry], bool], timeout: float = 20.0) -> Entry:
        """The first log entry not waited for before that `wanted` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                entry = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                shown = "\n".join(json.dumps(e) for e in self.entries[-15:])
                raise AssertionError(
                    f"no such log entry within {timeout}s; last:\n{shown}"
                ) from None
            self.entries.append(entry)
            if wanted(entry):
                return entry

    def cycle_end(self, number: int | None = None) -> Entry:
        return self.wait_for(
            lambda e: "outcome" in e and (number is None or e.get("cycle") == number)
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5)

    def metrics(self) -> Samples:
        """Every sample of /metrics, by name and labels, through Prometheus' parser."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def stop(self, timeout: float = 10.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_watch() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(config: Path, *extra: str) -> Watcher:
        watcher = Watcher(config, *extra)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.kill()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write_config(path: Path, source: str, target: str, repositories: list[str]) -> Path:
    replace_file(
        path,
        json.dumps(
            {
                "global": {"cache": str(path.parent / "transfer-state.json")},
                # http:// spelt out: no HTTPS probe reaches the proxies first.
                "registries": {
                    "src": {"url": f"http://{source}"},
                    "dst": {"url": f"http://{target}"},
                },
                "defaults": {"source": "src", "targets": "dst"},
                "mappings": [{"from": repository} for repository in repositories],
            }
        ),
    )
    return path


def replace_file(path: Path, text: str) -> None:
    """Write at once: the watcher re-reads the file every cycle and must never see half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def sample(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def requests_by_action(metrics: Samples, registry: str) -> dict[str, int]:
    found = {}
    for (name, labels), value in metrics.items():
        shown = dict(labels)
        if name == "ocync_requests_total" and shown["registry"] == registry and value:
            found[shown["action"]] = int(value)
    return found


def on_the_wire(proxy: FaultProxy) -> dict[str, int]:
    proxy.wait_idle()
    return dict(Counter(record.action for record in proxy.log))


def target_digests(registry: RegistryProcess, corpus: Corpus) -> dict[str, str]:
    with httpx.Client(base_url=registry.url, timeout=10) as http:
        found = {}
        for image in corpus.images:
            response = http.head(f"/v2/{image.repository}/manifests/{image.tag}", headers=ACCEPT)
            found[f"{image.repository}:{image.tag}"] = response.headers.get(
                "Docker-Content-Digest", f"HTTP {response.status_code}"
            )
        return found


def test_watch_syncs_every_interval_and_reports_on_its_endpoints(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
    fault_proxy: Callable[..., FaultProxy],
    start_watch: Callable[..., Watcher],
    tmp_path: Path,
):
    src, dst = registry_pair
    corpus = build_corpus(repositories=2, tags=2)
    corpus.push(src.url)
    src_proxy, dst_proxy = fault_proxy(src), fault_proxy(dst)
    # Holds the first cycle long enough to see /readyz before any cycle ended.
    src_proxy.delay("ping", 2.0, count=1)
    src_proxy.fail("tag_list", 429, count=1, code="TOOMANYREQUESTS")
    config = write_config(
        tmp_path / "mirror.yaml", src_proxy.host, dst_proxy.host, corpus.repositories
    )
    started = time.time()
    watcher = start_watch(config)

    assert watcher.get("/healthz").status_code == 200, "/healthz must answer while alive"
    early = watcher.get("/readyz")
    assert early.status_code == 503, f"/readyz was ready before any cycle ended: {early.text}"
    assert "no sync cycle has ended yet" in early.text
    assert watcher.get("/nowhere").status_code == 404

    first = watcher.cycle_end(1)
    assert (first["outcome"], first["synced"], first["skipped"], first["failed"]) == (
        "success", 4, 0, 0,
    ), f"the first cycle should sync the 4 images: {first}"  # fmt: skip
    ready = watcher.get("/readyz")
    assert ready.status_code == 200, f"/readyz did not flip after a good cycle: {ready.text}"
    second = watcher.cycle_end(2)
    assert (second["outcome"], second["synced"], second["skipped"]) == ("success", 0, 4), (
        f"the second cycle should find all 4 images up to date: {second}"
    )
    assert target_digests(dst, corpus) == {
        f"{i.repository}:{i.tag}": i.digest for i in corpus.images
    }, "the target does not hold the source's digests"

    metrics = watcher.metrics()
    assert sample(metrics, "ocync_images_total", status="synced") == 4, "synced images miscounted"
    assert sample(metrics, "ocync_images_total", status="failed") == 0
    cycles = sample(metrics, "ocync_cycles_total", outcome="success")
    assert cycles >= 2, "fewer cycles counted than the log shows"
    # A third cycle may be under way: its images are counted as they end.
    assert 4 * (cycles - 1) <= sample(metrics, "ocync_images_total", status="skipped") <= 4 * cycles
    assert sample(metrics, "ocync_last_cycle_images", status="skipped") == 4
    assert sample(metrics, "ocync_last_cycle_images", status="synced") == 0
    every_blob = {d: b for i in corpus.images for d, b in i.blobs.items()}
    unique_bytes = sum(len(b) for b in every_blob.values())
    assert sample(metrics, "ocync_transferred_bytes_total") == unique_bytes, (
        "transferred bytes differ from the corpus' unique blobs, each uploaded once"
    )
    assert sample(metrics, "ocync_blobs_total", outcome="transferred") == len(every_blob)
    assert sample(metrics, "ocync_rate_limited_total", registry="src", action="tag_list") == 1, (
        "the 429 the source answered to a tag list was not counted"
    )
    windows = {
        (dict(labels)["registry"], dict(labels)["window"]): value
        for (name, labels), value in metrics.items()
        if name == "ocync_throttle_window_size"
    }
    assert {registry for registry, _ in windows} == {"src", "dst"}, windows
    assert all(size >= 1 for size in windows.values()), windows
    # The windows the target used, reading and writing.
    assert {w for r, w in windows if r == "dst"} >= {"manifest_read", "upload"}, windows
    assert started <= sample(metrics, "ocync_last_success_timestamp_seconds") <= time.time()
    assert 0 < sample(metrics, "ocync_last_cycle_duration_seconds") < 10

    # Requests by registry and action equal those the proxies saw, once no cycle is running
    # between the two readings.
    wire: dict[str, dict[str, int]] = {}
    for proxy, alias in ((src_proxy, "src"), (dst_proxy, "dst")):
        for _ in range(100):
            wire[alias] = on_the_wire(proxy)
            counted = requests_by_action(watcher.metrics(), alias)
            if on_the_wire(proxy) == wire[alias]:
                break
        assert counted == wire[alias], (
            f"requests to {alias} by action: /metrics {counted}, wire {wire[alias]}"
        )
    assert wire["dst"].get("manifest_put", 0) >= 4, "the target proxy saw no pushes"

    assert watcher.stop() == 0, "SIGTERM must end the watch with exit code 0"
    watcher.wait_for(lambda e: e.get("message") == "stopped")


def test_sighup_applies_a_good_config_and_keeps_the_old_one_over_a_broken_one(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
    start_watch: Callable[..., Watcher],
    tmp_path: Path,
):
    src, dst = registry_pair
    corpus = build_corpus(repositories=2, tags=1)
    corpus.push(src.url)
    config = write_config(tmp_path / "mirror.yaml", src.host, dst.host, ["corpus/app00"])
    watcher = start_watch(config)
    first = watcher.cycle_end(1)
    assert (first["synced"], first["failed"]) == (1, 0), first

    good = config.read_text()
    replace_file(config, good.replace('"mappings": [', '"mappings": [{"from": "x", "colour": 1}, '))
    watcher.process.send_signal(signal.SIGHUP)
    refused = watcher.wait_for(lambda e: e["level"] == "error" and "SIGHUP" in e["message"])
    assert "previous one stays in force" in refused["message"], refused
    assert "colour" in refused["message"], f"the log does not say what is wrong: {refused}"
    # The next cycle reads the broken file too, refuses it, and runs on the good one.
    watcher.wait_for(lambda e: e["level"] == "error" and "next cycle" in e["message"])
    kept = watcher.cycle_end()
    assert (kept["outcome"], kept["skipped"], kept["failed"]) == ("success", 1, 0), (
        f"a broken config replaced the good one: {kept}"
    )
    rejected = sample(watcher.metrics(), "ocync_config_reloads_total", result="rejected")
    assert rejected >= 2, "the SIGHUP and the cycle's own reading should both be rejected"

    replace_file(config, good.replace('"mappings": [', '"mappings": [{"from": "corpus/app01"}, '))
    watcher.process.send_signal(signal.SIGHUP)
    applied = watcher.wait_for(lambda e: "outcome" in e and e["synced"] > 0)
    assert (applied["synced"], applied["skipped"], applied["failed"]) == (1, 1, 0), (
        f"the new mapping of a good config was not synced after SIGHUP: {applied}"
    )
    assert target_digests(dst, corpus) == {
        f"{i.repository}:{i.tag}": i.digest for i in corpus.images
    }

    stopping = time.monotonic()
    assert watcher.stop() == 0
    assert time.monotonic() - stopping < 5, "SIGTERM took too long"


def test_sigterm_during_a_cycle_stops_within_the_drain_deadline(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
    fault_proxy: Callable[..., FaultProxy],
    start_watch: Callable[..., Watcher],
    tmp_path: Path,
):
    src, dst = registry_pair
    build_corpus(repositories=1, tags=1, platforms=("linux/amd64",)).push(src.url)
    src_proxy = fault_proxy(src)
    src_proxy.delay("blob_get", 30.0)  # the cycle cannot end by itself within the test
    config = write_config(tmp_path / "mirror.yaml", src_proxy.host, dst.host, ["corpus/app00"])
    replace_file(
        config, config.read_text().replace('"global": {', '"global": {"drain_deadline": "1s", ')
    )
    watcher = start_watch(config)
    deadline = time.monotonic() + 20
    while src_proxy.stats("blob_get").in_flight == 0:
        assert time.monotonic() < deadline, "the cycle never reached a blob download"
        time.sleep(0.05)

    signalled = time.monotonic()
    assert watcher.stop() == 0, "a drained stop must exit with 0"
    assert time.monotonic() - signalled < 6, "the drain deadline of 1s was not kept"
    ended = watcher.cycle_end(1)
    assert ended["outcome"] == "interrupted", ended
    assert ended["synced"] == 0


def test_watch_refuses_bad_options_before_starting(tmp_path: Path, restore_logging: None):
    config = write_config(tmp_path / "mirror.yaml", "127.0.0.1:1", "127.0.0.1:2", ["a/b"])
    for option, value, said in (
        ("--interval", "0s", "longer than 0s"),
        ("--shard", "2/2", "0..1"),
        ("--listen", "nowhere", "HOST:PORT"),
    ):
        result = CliRunner().invoke(cli, ["watch", "-c", str(config), option, value])
        assert result.exit_code == EXIT_BAD_INPUT, f"{option} {value}: exit {result.exit_code}"
        assert said in result.stderr, result.stderr


def test_intervals_and_listen_addresses_parse():
    assert parse_interval("5m") == 300
    assert parse_interval("1h30m") == 5400
    assert parse_interval("90") == 90
    for bad in ("0", "soon", "-5s", ""):
        with pytest.raises(BadInput):
            parse_interval(bad)
    assert parse_listen("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert parse_listen(":9100") == ("", 9100)  # every interface
    assert parse_listen("[::]:9090") == ("::", 9090)
    for bad in ("9090", "host:", "host:70000"):
        with pytest.raises(BadInput):
            parse_listen(bad)


def test_every_interface_means_ipv4_and_ipv6_alike():
    with HealthServer("", 0, Readiness(60), SyncMetrics()) as server:
        port = int(server.address.rsplit(":", 1)[1])
        loopbacks = ["127.0.0.1", "[::1]"] if socket.has_dualstack_ipv6() else ["127.0.0.1"]
        for host in loopbacks:
            assert httpx.get(f"http://{host}:{port}/healthz", timeout=5).text == "ok\n", host


@pytest.mark.parametrize(
    ("method", "url", "action"),
    [
        ("GET", "http://r/v2/", "ping"),
        ("HEAD", "http://r/v2/a/b/manifests/v1", "manifest_head"),
        ("GET", "http://r/v2/a/manifests/sha256:00", "manifest_get"),
        ("PUT", "http://r/v2/a/manifests/v1", "manifest_put"),
        ("HEAD", "http://r/v2/a/b/c/blobs/sha256:00", "blob_head"),
        ("GET", "http://r/v2/a/blobs/sha256:00", "blob_get"),
        ("POST", "http://r/v2/a/b/blobs/uploads/", "upload_start"),
        ("POST", "http://r/v2/a/blobs/uploads/?mount=sha256:00&from=b", "mount"),
        ("PATCH", "http://r/v2/a/blobs/uploads/3f2a", "upload_chunk"),
        ("PUT", "http://r/v2/a/blobs/uploads/3f2a?digest=sha256:00", "upload_finish"),
        ("GET", "http://r/v2/a/b/tags/list?n=100", "tag_list"),
        ("GET", "http://r/v2/a/referrers/sha256:00", "referrers"),
        ("GET", "http://auth/token?service=r&scope=repository:a:pull", "token"),
        ("POST", "http://auth/oauth2/token", "token"),
        ("DELETE", "http://r/v2/a/manifests/v1", "other"),
        ("GET", "http://storage/bucket/object", "other"),
    ],
)
def test_requests_are_named_by_action(method: str, url: str, action: str):
    assert classify_request(method, httpx.URL(url)) == action


def test_readiness_needs_a_usable_cycle_within_two_intervals():
    now = [100.0]
    readiness = Readiness(interval=60, clock=lambda: now[0])
    assert readiness.check() == (False, "no sync cycle has ended yet")
    readiness.cycle_ended(usable=False)
    ready, reason = readiness.check()
    assert not ready and "failed completely" in reason
    readiness.cycle_ended(usable=True)
    now[0] += 120
    assert readiness.check()[0] is True, "two intervals after a good cycle is still ready"
    now[0] += 1
    ready, reason = readiness.check()
    assert not ready and "121s ago, more than 2 intervals" in reason


async def test_window_sizes_are_exported_per_registry_and_window(shared_registry: RegistryProcess):
    from ocync_core.client import RegistryClient

    metrics = SyncMetrics()
    settings = RegistrySettings(host=shared_registry.host, name="local", insecure_http=True)
    async with RegistryClient(settings, Plugins.load()) as client:
        for _ in range(8):
            await client.head_manifest("watch/windows", "absent")
        metrics.record_windows("local", client.throttle)
        sizes = client.throttle.snapshot()
    assert sizes, "the requests created no throttle window"
    text = metrics.exposition().decode()
    exported = {
        s.labels["window"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ocync_throttle_window_size" and s.labels["registry"] == "local"
    }
    assert exported == sizes
