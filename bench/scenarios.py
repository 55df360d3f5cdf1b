"""The scenarios, run side by side: every tool on the same corpus, alternating, each against
fresh target registries, all traffic through counting proxies in front of source and targets.

Per repeat: a source registry started on the cached corpus; then, for each scenario, each tool
in turn (the order flips every repeat, so neither always runs on a warmer page cache):
- cold: sync `bench/*` into an empty target; warm: again, nothing changed;
- partial: 5% of the tags get new images at the source, sync again (cold, warm and partial
  form a chain on the same target);
- two_targets: sync `bench/*` into two empty targets (skopeo: one run per target);
- many_small: sync `bench-small/*` (images of a few KiB: request overhead);
- large_blob: sync `bench-big/blob` (one large layer), with curl piping the same blob between
  the same proxies as the throughput reference.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.corpus import BIG, MAIN, SMALL, BenchCorpus, clone_storage, push_images
from bench.measure import Traffic
from bench.minimum import Minimum, minimum
from bench.model import EMPTY, Snapshot
from bench.tools import CurlPipe, SyncJob, Tool
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.registry_process import RegistryProcess

SCENARIOS = ("cold", "warm", "partial", "two_targets", "many_small", "large_blob")
_CHAIN = ("cold", "warm", "partial")
_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


@dataclass
class ScenarioRuns:
    minimum: Minimum
    tags: int
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Target:
    registry: RegistryProcess
    proxy: FaultProxy


@contextlib.contextmanager
def _targets(count: int) -> Iterator[list[_Target]]:
    with contextlib.ExitStack() as stack:
        found = []
        for n in range(count):
            registry = stack.enter_context(RegistryProcess())
            proxy = stack.enter_context(FaultProxy(registry, name=f"target{n}"))
            found.append(_Target(registry, proxy))
        yield found


def wrong_tags(snapshot: Snapshot, registry_url: str) -> list[str]:
    """Tags the target does not hold at the source's digest (checked behind the proxies)."""
    wrong = []
    with httpx.Client(base_url=registry_url, timeout=30) as http:
        for image in snapshot:
            head = http.head(
                f"/v2/{image.repository}/manifests/{image.tag}", headers={"Accept": _ACCEPT}
            )
            if head.headers.get("Docker-Content-Digest") != image.root.digest:
                wrong.append(f"{image.repository}:{image.tag}")
    return wrong


class SideBySide:
    def __init__(
        self,
        corpus: BenchCorpus,
        tools: Sequence[Tool],
        scenarios: Sequence[str],
        workdir: Path | None = None,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.corpus = corpus
        self.tools = list(tools)
        self.scenarios = [s for s in SCENARIOS if s in scenarios]
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="ocync-bench-"))
        self.progress = progress
        main, updated = corpus.main, corpus.main.replaced(corpus.updates)
        after_chain = updated if "partial" in self.scenarios else main
        self.results: dict[str, ScenarioRuns] = {
            "cold": ScenarioRuns(minimum(main, [EMPTY]), len(main)),
            "warm": ScenarioRuns(minimum(main, [main]), len(main)),
            "partial": ScenarioRuns(minimum(updated, [main]), len(updated)),
            "two_targets": ScenarioRuns(minimum(after_chain, [EMPTY, EMPTY]), len(main)),
            "many_small": ScenarioRuns(minimum(corpus.small, [EMPTY]), len(corpus.small)),
            "large_blob": ScenarioRuns(minimum(corpus.big, [EMPTY]), len(corpus.big)),
        }
        self.results = {k: v for k, v in self.results.items() if k in self.scenarios}
        self._current: Snapshot = main

    def run(self, repeat: int) -> dict[str, ScenarioRuns]:
        for n in range(repeat):
            order = self.tools if n % 2 == 0 else self.tools[::-1]
            self._repeat(n, order)
        return self.results

    def _repeat(self, n: int, order: list[Tool]) -> None:
        base = self.workdir / f"repeat{n}"
        clone_storage(self.corpus.storage, base / "source" / "storage")
        with (
            RegistryProcess(workdir=base / "source") as source,
            FaultProxy(source, name="source") as proxy,
        ):
            self._current = self.corpus.main
            if any(s in self.scenarios for s in _CHAIN):
                self._chain(n, order, source, proxy)
            if "two_targets" in self.scenarios:
                for tool in order:
                    with _targets(2) as targets:
                        self._measure("two_targets", n, tool, proxy, targets, MAIN, base)
            if "many_small" in self.scenarios:
                for tool in order:
                    with _targets(1) as targets:
                        self._measure("many_small", n, tool, proxy, targets, SMALL, base)
            if "large_blob" in self.scenarios:
                blob = self.corpus.big_blob
                repo = self.corpus.big.images[0].repository
                curls = [CurlPipe(blob.digest, repo)]
                for tool in [*order, *curls]:
                    with _targets(1) as targets:
                        self._measure("large_blob", n, tool, proxy, targets, BIG, base)
        shutil.rmtree(base, ignore_errors=True)

    def _chain(self, n: int, order: list[Tool], source: RegistryProcess, proxy: FaultProxy) -> None:
        base = self.workdir / f"repeat{n}"
        with contextlib.ExitStack() as stack:
            targets = {tool.name: stack.enter_context(_targets(1)) for tool in order}
            for scenario in _CHAIN:
                if scenario == "partial":
                    if "partial" not in self.scenarios:
                        break
                    push_images(source.url, self.corpus.layout, self.corpus.updates)
                    self._current = self.corpus.main.replaced(self.corpus.updates)
                elif scenario == "warm" and "warm" not in self.scenarios:
                    continue
                for tool in order:
                    self._measure(scenario, n, tool, proxy, targets[tool.name], MAIN, base)

    def _snapshot(self, namespace: str) -> Snapshot:
        return {MAIN: self._current, SMALL: self.corpus.small, BIG: self.corpus.big}[namespace]

    def _measure(
        self,
        scenario: str,
        n: int,
        tool: Tool,
        source: FaultProxy,
        targets: list[_Target],
        namespace: str,
        base: Path,
    ) -> None:
        snapshot = self._snapshot(namespace)
        job = SyncJob(
            source=source.host,
            targets=[t.proxy.host for t in targets],
            repositories=snapshot.repositories,
            namespace=namespace,
            workdir=base / tool.name / ("chain" if scenario in _CHAIN else scenario),
            label=scenario,
        )
        for proxy in (source, *(t.proxy for t in targets)):
            proxy.wait_idle()
            proxy.reset()
        outcome = tool.sync(job)
        traffic = Traffic.collect(source, [t.proxy for t in targets])
        problems = list(outcome.problems)
        if not isinstance(tool, CurlPipe):
            for target in targets:
                wrong = wrong_tags(snapshot, target.registry.url)
                if wrong:
                    problems.append(f"{len(wrong)} tag(s) wrong at the target: {wrong[:3]}")
        cost = outcome.cost
        record: dict[str, Any] = {
            "repeat": n,
            "wall_s": round(cost.wall_s, 3),
            "cpu_s": round(cost.cpu_s, 3),
            "user_s": round(cost.user_s, 3),
            "sys_s": round(cost.sys_s, 3),
            "peak_rss_mb": round(cost.peak_rss_mb, 1),
            "exit_codes": cost.exit_codes,
            "problems": problems,
            **traffic.to_json(),
            **traffic.idle_ends(cost),
        }
        if scenario == "large_blob":
            blob = self.corpus.big_blob
            window = traffic.blob_window(blob.digest)
            record["blob_window_s"] = round(window, 3) if window else None
            record["blob_throughput_mbps"] = round(blob.size / window / 1e6, 1) if window else None
            record["process_throughput_mbps"] = round(blob.size / cost.wall_s / 1e6, 1)
        if scenario in self.results:  # a cold run only there for warm/partial is not kept
            self.results[scenario].runs.setdefault(tool.name, []).append(record)
        status = "ok" if not problems else f"PROBLEMS {problems[:2]}"
        self.progress(
            f"  repeat {n} {scenario:<11} {tool.name:<13} {cost.wall_s:7.2f} s "
            f"{record['requests']:6d} requests  {status}"
        )
