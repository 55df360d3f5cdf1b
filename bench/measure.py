"""One measured run of a tool: its process cost (wait4 rusage) and its traffic (proxy logs)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocync_conformance.proxy import FaultProxy, RequestRecord


@dataclass
class ProcessCost:
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    peak_rss_mb: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    # time.monotonic() of the first start and last exit: the proxies log on the same clock.
    started: float = 0.0
    ended: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def add(self, other: ProcessCost) -> None:
        """Steps run one after the other: times add up, the peak is the largest."""
        self.wall_s += other.wall_s
        self.user_s += other.user_s
        self.sys_s += other.sys_s
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.exit_codes += other.exit_codes
        self.started = min(self.started, other.started) if self.started else other.started
        self.ended = max(self.ended, other.ended)


def _tree_hwm_kib(pid: int) -> int:
    """Sum of VmHWM over `pid` and its descendants (a shell pipeline's processes run at once)."""
    total = 0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        hwm = next(line for line in text.splitlines() if line.startswith("VmHWM"))
        total += int(hwm.split()[1])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _tree_hwm_kib(int(child))
    except (OSError, StopIteration, ValueError):
        pass  # gone, or a zombie without memory
    return total


class _PeakRss:
    """Polls the child's high-water RSS until stopped.

    Not `ru_maxrss`: a child forked from a large parent (this harness, with its proxies' logs)
    inherits the parent's high-water mark at exec, so rusage would report the harness.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_hwm_kib(self.pid))
            self._stop.wait(interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def run_process(
    argv: Sequence[str], log: Path, *, timeout: float = 3600, env: Mapping[str, str] | None = None
) -> tuple[ProcessCost, str]:
    """Run `argv`, stdout returned, stderr to `log`; CPU from the child's own rusage.

    `os.wait4` gives the CPU of exactly this child (and the children it waited for, e.g. the
    curls of a shell pipeline), where RUSAGE_CHILDREN would mix in every earlier child.
    """
    out_path = log.with_suffix(".out")
    with open(out_path, "wb") as out, open(log, "ab") as err:
        started, mono_started = time.perf_counter(), time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env or os.environ)
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        peak = _PeakRss(proc.pid)
        try:
            # WNOWAIT first: the exited child stays readable while the poller takes its last
            # look; then reap it with its rusage.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            peak_kib = peak.stop()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            peak.stop()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cost = ProcessCost(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=peak_kib / 1024,
        exit_codes=[proc.returncode],
        started=mono_started,
        ended=time.monotonic(),
    )
    return cost, out_path.read_text(errors="replace")


def _digest_of(record: RequestRecord) -> str:
    return record.path.split("?")[0].rsplit("/", 1)[-1]


@dataclass
class Traffic:
    """What the proxies saw, split into the source side and the target side."""

    source: list[RequestRecord]
    target: list[RequestRecord]

    @classmethod
    def collect(cls, source: FaultProxy, targets: Sequence[FaultProxy]) -> Traffic:
        for proxy in (source, *targets):
            proxy.wait_idle(timeout=30)
        return cls(source.log, [r for t in targets for r in t.log])

    @property
    def records(self) -> list[RequestRecord]:
        return [*self.source, *self.target]

    @property
    def duplicate_blob_gets(self) -> int:
        """Source blob GETs beyond the first for each digest."""
        seen = Counter(_digest_of(r) for r in self.source if r.action == "blob_get")
        return sum(n - 1 for n in seen.values() if n > 1)

    def blob_window(self, digest: str) -> float | None:
        """Seconds from the first source GET of `digest` to the end of the target request that
        committed it (the upload PUT naming the digest, or a mount)."""
        hex_digest = digest.split(":")[-1]  # queries may carry it URL-encoded
        gets = [r.started for r in self.source if r.action == "blob_get" and hex_digest in r.path]
        done = [
            r.ended
            for r in self.target
            if r.action in ("upload_finish", "mount") and hex_digest in r.path and r.status == 201
        ]
        if not gets or not done:
            return None
        return max(done) - min(gets)

    def idle_ends(self, cost: ProcessCost) -> dict[str, float | None]:
        """Seconds from the process start to its first request, and from the last response to
        its exit: start-up (imports, config) and shutdown, where no request is on the wire."""
        every = self.records
        if not every:
            return {"before_first_request_s": None, "after_last_request_s": None}
        first = min(r.started for r in every)
        last = max(r.ended for r in every)
        return {
            "before_first_request_s": round(first - cost.started, 3),
            "after_last_request_s": round(cost.ended - last, 3),
        }

    def to_json(self) -> dict[str, Any]:
        every = self.records
        return {
            "requests": len(every),
            "requests_source": len(self.source),
            "requests_target": len(self.target),
            "bytes": sum(r.bytes_in + r.bytes_out for r in every),
            "by_action": {
                "source": dict(Counter(r.action for r in self.source)),
                "target": dict(Counter(r.action for r in self.target)),
            },
            "duplicate_blob_gets": self.duplicate_blob_gets,
            "mounts": sum(1 for r in self.target if r.action == "mount" and r.status == 201),
            "mount_attempts": sum(1 for r in self.target if r.action == "mount"),
            "throttled": sum(1 for r in every if r.status == 429),
            "server_errors": sum(1 for r in every if r.status >= 500),
        }
