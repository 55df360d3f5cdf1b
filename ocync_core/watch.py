"""Watch mode: sync, sleep for the interval, repeat, until SIGTERM or SIGINT.

Every cycle reads the configuration file again, and SIGHUP reads it at once (then starts the
next cycle as soon as none is running). A configuration that does not load keeps the previous
one in force, and the log says why.

Stopping: a signal between cycles stops at once. During a cycle, the sync engine itself takes
SIGTERM/SIGINT (no new images, in-flight ones finish within `drain_deadline`, the cache is
saved) and the watch ends after it. A signal that reaches the watch while a cycle runs (before
the engine listens, or a second one) gives the cycle `drain_deadline` more, or, the second
time, cancels it.

While watching, `HealthServer` answers ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import trio
from pydantic_core import PydanticCustomError

from ocync_core.client import RegistryClient
from ocync_core.config import Config, load_config, parse_duration
from ocync_core.engine import SyncOptions, run_sync
from ocync_core.errors import BadInput, OcyncError, leaf_errors
from ocync_core.health import HealthServer, Readiness
from ocync_core.metrics import RequestCounter, SyncMetrics
from ocync_core.plugins import Plugins
from ocync_core.report import EXIT_PARTIAL, FAILED, SKIPPED, SYNCED, ImageResult, SyncReport
from ocync_core.sharding import Shard, shard_config

__all__ = ["WatchOptions", "parse_interval", "watch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    config_path: Path
    interval: float
    host: str
    port: int
    shard: Shard | None = None


def parse_interval(text: str) -> float:
    """Seconds from ``5m``, ``1h30m``, ``90s`` or a bare number of seconds; more than zero."""
    try:
        seconds = float(text) if text.strip().replace(".", "", 1).isdigit() else None
        if seconds is None:
            seconds = parse_duration(text)
    except PydanticCustomError as exc:
        raise BadInput(f"--interval {text!r}: {exc.message()}") from None
    if not seconds > 0:
        raise BadInput(f"--interval {text!r}: the interval must be longer than 0s")
    return seconds


async def watch(options: WatchOptions) -> None:
    """Run the watch loop with its HTTP endpoints until a signal stops it.

    :raises ConfigError: the configuration does not load at start.
    :raises OcyncError: the endpoints cannot listen on the address asked.
    """
    metrics = SyncMetrics()
    plugins = Plugins.load(extra=[RequestCounter(metrics)])
    reader = _ConfigReader(options.config_path, plugins, options.shard)
    config = reader.read()
    readiness = Readiness(options.interval)
    try:
        server = HealthServer(options.host, options.port, readiness, metrics)
    except OSError as exc:
        raise OcyncError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror}"
        ) from None
    with server:
        log.info(
            "serving /healthz, /readyz and /metrics on http://%s",
            server.address,
            extra={"listen": server.address},
        )
        shard = f", shard {options.shard}" if options.shard else ""
        log.info(
            "watching %s: a sync every %gs, %d mapping(s)%s",
            options.config_path,
            options.interval,
            len(config.mappings),
            shard,
            extra={"interval": options.interval, "mappings": len(config.mappings)},
        )
        watcher = _Watcher(reader, config, plugins, metrics, readiness, options.interval)
        await watcher.run()
    log.info("stopped")


class _ConfigReader:
    """Loads the configuration file as this process syncs it (its shard only)."""

    def __init__(self, path: Path, plugins: Plugins, shard: Shard | None) -> None:
        self.path = path
        self._plugins = plugins
        self._shard = shard

    def read(self) -> Config:
        config = load_config(self.path, self._plugins)
        return shard_config(config, self._shard) if self._shard is not None else config


class _Watcher:
    def __init__(
        self,
        reader: _ConfigReader,
        config: Config,
        plugins: Plugins,
        metrics: SyncMetrics,
        readiness: Readiness,
        interval: float,
    ) -> None:
        self._reader = reader
        self._config = config
        self._plugins = plugins
        self._metrics = metrics
        self._readiness = readiness
        self._interval = interval
        self._cycle = 0
        self._stopping = False
        self._wake = trio.Event()
        self._cycle_scope: trio.CancelScope | None = None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            if threading.current_thread() is threading.main_thread():
                # Listening before the first cycle: the engine's own receiver, opened during a
                # cycle, then hands the signals back to this one when it closes.
                await nursery.start(self._handle_signals)
            while not self._stopping:
                if self._cycle > 0:
                    await self._reload("the next cycle")
                await self._run_cycle()
                if self._stopping:
                    break
                with trio.move_on_after(self._interval):
                    await self._wake.wait()
                self._wake = trio.Event()
            nursery.cancel_scope.cancel()

    # -- configuration ------------------------------------------------------------------------

    async def _reload(self, why: str) -> bool:
        """Read the configuration again; on failure keep the one in force and say why."""
        try:
            config = await trio.to_thread.run_sync(self._reader.read)
        except OcyncError as exc:
            self._metrics.record_reload(applied=False)
            log.error(
                "configuration not reloaded for %s, the previous one stays in force: %s",
                why,
                exc,
                extra={"config": str(self._reader.path)},
            )
            return False
        self._config = config
        self._metrics.record_reload(applied=True)
        log.debug("configuration read for %s: %d mappings", why, len(config.mappings))
        return True

    # -- cycles -------------------------------------------------------------------------------

    async def _run_cycle(self) -> None:
        self._cycle += 1
        number = self._cycle
        clients: dict[str, RegistryClient] = {}
        options = SyncOptions(on_result=self._on_result, on_clients=clients.update)
        started = time.monotonic()
        report: SyncReport | None = None
        scope = self._cycle_scope = trio.CancelScope()
        try:
            with scope:
                report = await run_sync(self._config, plugins=self._plugins, options=options)
        except Exception as exc:  # one broken cycle must not end a long-running mirror
            leaf = leaf_errors(exc)[0]
            log.error("cycle %d failed: %s", number, str(leaf) or type(leaf).__name__, exc_info=exc)
        finally:
            self._cycle_scope = None
        for alias, client in clients.items():  # where each AIMD window ended this cycle
            self._metrics.record_windows(alias, client.throttle)
        duration = time.monotonic() - started
        if report is None:
            outcome = "interrupted" if scope.cancelled_caught else "failure"
            if scope.cancelled_caught:
                log.warning("cycle %d cancelled: the drain deadline passed", number)
            self._metrics.record_unreported_cycle(outcome, duration)
            self._readiness.cycle_ended(usable=False)
            return
        outcome = _outcome(report)
        self._metrics.record_cycle(report, outcome)
        self._readiness.cycle_ended(usable=report.exit_code in (0, EXIT_PARTIAL))
        log.info(
            "cycle %d %s: %s",
            number,
            outcome,
            report.summary(),
            extra={
                "cycle": number,
                "outcome": outcome,
                "synced": report.count(SYNCED),
                "skipped": report.count(SKIPPED),
                "failed": report.count(FAILED) + len(report.errors),
                "bytes": report.blobs.bytes,
                "duration": round(report.duration, 3),
            },
        )
        if report.interrupted:
            self._stopping = True  # the engine took the signal meant for us

    def _on_result(self, result: ImageResult) -> None:
        self._metrics.record_image(result)
        fields = {
            "cycle": self._cycle,
            "status": result.status,
            "source": result.source,
            "target": result.target,
            "digest": result.digest,
            "reason": result.reason,
            "bytes": result.blobs.bytes,
        }
        if result.status == SKIPPED:
            log.debug("up to date  %s", result.target, extra=fields)
        elif result.status == FAILED:
            log.warning("%s", result.line(), extra=fields)
        else:
            log.info("%s", result.line(), extra=fields)

    # -- signals ------------------------------------------------------------------------------

    async def _handle_signals(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP received: reading the configuration again")
                    if await self._reload("SIGHUP"):
                        self._wake.set()
                else:
                    self._stop(signal.Signals(signum).name)

    def _stop(self, name: str) -> None:
        scope = self._cycle_scope
        if self._stopping:
            log.warning("%s received again: stopping now", name)
            if scope is not None:
                scope.cancel()
            return
        self._stopping = True
        self._wake.set()
        if scope is None:
            log.info("%s received: stopping", name)
            return
        deadline = self._config.settings.drain_deadline
        log.warning(
            "%s received: stopping once the cycle in flight ends (at most %gs more)",
            name,
            deadline,
        )
        scope.deadline = min(scope.deadline, trio.current_time() + deadline)


def _outcome(report: SyncReport) -> str:
    if report.interrupted:
        return "interrupted"
    if report.exit_code == 0:
        return "success"
    return "partial" if report.exit_code == EXIT_PARTIAL else "failure"
