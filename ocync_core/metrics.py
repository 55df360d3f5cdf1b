"""Prometheus metrics of a long-running mirror (`ocync watch`), in a registry of their own.

Images, blobs and bytes come from the sync's per-image results; cycles, durations and the last
success from each cycle's report. Requests and 429s are counted per registry and action by
`RequestCounter`, a plugin that adds an httpx response hook to each registry client's HTTP
client (the one the `ocync_auth_provider` hook receives), and names the action from the
request's method and path, as the Distribution API spells it.

The registry is never prometheus-client's global one: two watchers in one process (tests,
embedding) keep separate figures, and no process-level collector is exported unasked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from typing import TYPE_CHECKING

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ocync_core.hookspecs import hookimpl
from ocync_core.policies import Action
from ocync_core.report import FAILED, SKIPPED, SYNCED

if TYPE_CHECKING:
    from ocync_core.policies import AuthProvider
    from ocync_core.registry import RegistrySettings
    from ocync_core.report import ImageResult, SyncReport
    from ocync_core.throttle import RegistryThrottle

__all__ = ["OTHER_ACTION", "RequestCounter", "SyncMetrics", "classify_request"]

OTHER_ACTION = "other"
_REPO = r"/v2/(?:[^/]+/)*?[^/]+"  # a repository name: one or more path components
_MANIFEST = re.compile(rf"{_REPO}/manifests/[^/]+")
_UPLOAD_START = re.compile(rf"{_REPO}/blobs/uploads/?")
_UPLOAD_SESSION = re.compile(rf"{_REPO}/blobs/uploads/[^/]+")
_BLOB = re.compile(rf"{_REPO}/blobs/[^/]+")
_TAGS = re.compile(rf"{_REPO}/tags/list")
_REFERRERS = re.compile(rf"{_REPO}/referrers/[^/]+")
_BY_METHOD: tuple[tuple[re.Pattern[str], dict[str, Action]], ...] = (
    (
        _MANIFEST,
        {"HEAD": Action.MANIFEST_HEAD, "GET": Action.MANIFEST_GET, "PUT": Action.MANIFEST_PUT},
    ),
    (_UPLOAD_SESSION, {"PATCH": Action.UPLOAD_CHUNK, "PUT": Action.UPLOAD_FINISH}),
    (_BLOB, {"HEAD": Action.BLOB_HEAD, "GET": Action.BLOB_GET}),
    (_TAGS, {"GET": Action.TAG_LIST}),
    (_REFERRERS, {"GET": Action.REFERRERS}),
)
_TOKEN_PARAMETERS = frozenset({"scope", "service", "account"})
_IMAGE_STATUSES = (SYNCED, SKIPPED, FAILED)


def classify_request(method: str, url: httpx.URL) -> str:
    """The action of a request (an `Action` value), or ``other``."""
    method = method.upper()
    path = url.path
    if path in ("/v2", "/v2/"):
        return Action.PING.value
    # Checked before blobs: an upload session path also looks like `blobs/<digest>`.
    if method == "POST" and _UPLOAD_START.fullmatch(path):
        mount = "mount" in url.params
        return (Action.MOUNT if mount else Action.UPLOAD_START).value
    for pattern, actions in _BY_METHOD:
        if pattern.fullmatch(path):
            action = actions.get(method)
            return action.value if action is not None else OTHER_ACTION
    # Token endpoints live anywhere (`/token`, `/v2/auth`, another host): they are recognised
    # by the token request's parameters, or by being a form POST (OAuth2).
    if method == "POST" or _TOKEN_PARAMETERS & set(url.params.keys()):
        return Action.TOKEN.value
    return OTHER_ACTION


class SyncMetrics:
    """The counters and gauges of one watcher, and their Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.images = Counter(
            "ocync_images", "Images handled, by outcome (one per tag and target).", ["status"],
            registry=r,
        )  # fmt: skip
        self.sync_errors = Counter(
            "ocync_sync_errors",
            "Failures that belong to no single image (e.g. a tag list that could not be read).",
            registry=r,
        )
        self.blobs = Counter(
            "ocync_blobs", "Blobs of synced images, by what happened to them.", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.transferred_bytes = Counter(
            "ocync_transferred_bytes", "Blob bytes uploaded to target registries.", registry=r
        )
        self.requests = Counter(
            "ocync_requests",
            "HTTP requests answered, by registry (config alias) and action.",
            ["registry", "action"],
            registry=r,
        )
        self.rate_limited = Counter(
            "ocync_rate_limited",
            "429 Too Many Requests answers, by registry and action.",
            ["registry", "action"],
            registry=r,
        )
        self.window_size = Gauge(
            "ocync_throttle_window_size",
            "AIMD concurrency window size, by registry and window.",
            ["registry", "window"],
            registry=r,
        )
        self.cycles = Counter(
            "ocync_cycles",
            "Sync cycles ended, by outcome: success, partial, failure or interrupted.",
            ["outcome"],
            registry=r,
        )
        self.cycle_duration = Gauge(
            "ocync_last_cycle_duration_seconds", "How long the last cycle took.", registry=r
        )
        self.last_cycle_images = Gauge(
            "ocync_last_cycle_images", "Images of the last cycle, by outcome.", ["status"],
            registry=r,
        )  # fmt: skip
        self.last_success = Gauge(
            "ocync_last_success_timestamp_seconds",
            "Unix time the last cycle in which nothing failed ended.",
            registry=r,
        )
        self.config_reloads = Counter(
            "ocync_config_reloads",
            "Configuration reads, by result: applied, or rejected (the previous one kept).",
            ["result"],
            registry=r,
        )
        # Every label value a dashboard filters on exists from the start, at zero.
        for status in _IMAGE_STATUSES:
            self.images.labels(status=status)
            self.last_cycle_images.labels(status=status)
        for outcome in ("transferred", "mounted", "skipped"):
            self.blobs.labels(outcome=outcome)
        for outcome in ("success", "partial", "failure", "interrupted"):
            self.cycles.labels(outcome=outcome)
        for result in ("applied", "rejected"):
            self.config_reloads.labels(result=result)

    def record_image(self, result: ImageResult) -> None:
        self.images.labels(status=result.status).inc()
        self.blobs.labels(outcome="transferred").inc(result.blobs.transferred)
        self.blobs.labels(outcome="mounted").inc(result.blobs.mounted)
        self.blobs.labels(outcome="skipped").inc(result.blobs.skipped)
        self.transferred_bytes.inc(result.blobs.bytes)

    def record_response(self, registry: str, response: httpx.Response) -> None:
        action = classify_request(response.request.method, response.request.url)
        self.requests.labels(registry=registry, action=action).inc()
        if response.status_code == 429:
            self.rate_limited.labels(registry=registry, action=action).inc()

    def record_windows(self, registry: str, throttle: RegistryThrottle) -> None:
        """Export the current size of every window of a registry's throttle."""
        for window, size in throttle.snapshot().items():
            self.window_size.labels(registry=registry, window=window).set(size)

    def record_cycle(self, report: SyncReport, outcome: str) -> None:
        """A cycle ended with `report` (the images were recorded one by one already)."""
        self.cycles.labels(outcome=outcome).inc()
        self.cycle_duration.set(report.duration)
        self.sync_errors.inc(len(report.errors))
        for status in _IMAGE_STATUSES:
            self.last_cycle_images.labels(status=status).set(report.count(status))
        if outcome == "success":
            self.last_success.set(time.time())

    def record_unreported_cycle(self, outcome: str, duration: float) -> None:
        """A cycle that ended without a report: it raised, or was cancelled."""
        self.cycles.labels(outcome=outcome).inc()
        self.cycle_duration.set(duration)
        if outcome == "failure":
            self.sync_errors.inc()

    def record_reload(self, applied: bool) -> None:
        self.config_reloads.labels(result="applied" if applied else "rejected").inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class RequestCounter:
    """A plugin counting every response each registry client receives, into `metrics`.

    It answers no question itself: it wraps `ocync_auth_provider`, the hook that receives the
    registry client's httpx client, to add a response hook to that client.
    """

    def __init__(self, metrics: SyncMetrics) -> None:
        self._metrics = metrics

    @hookimpl(wrapper=True)
    def ocync_auth_provider(
        self, registry: RegistrySettings, kind: str, http: httpx.AsyncClient
    ) -> Generator[None, AuthProvider | None, AuthProvider | None]:
        label = registry.label

        async def count(response: httpx.Response) -> None:
            self._metrics.record_response(label, response)

        http.event_hooks["response"].append(count)
        return (yield)
