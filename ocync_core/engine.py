"""The sync engine: discovery and execution overlap in one trio pipeline.

Discovery lists (or, for literal tags, just names) the tags of every mapping and feeds a
bounded channel; execution workers take one source tag at a time and copy it only where the
digests differ, reading each side once: a HEAD per target, then a HEAD at the source — or,
when a target lacks the tag, the source manifest GET by tag straight away (it is needed
anyway), unless the source's read policy is `head_first` (a pull quota counts GETs). One
`BlobMover` serves the whole run, so a blob is fetched once and uploaded once per target
registry; other repositories mount.

Failures are per image. SIGINT/SIGTERM stop discovery at once, let in-flight images finish
within the drain deadline, then cancel; the transfer cache is saved either way.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import trio

from ocync_core.api import open_clients
from ocync_core.artifacts import ArtifactRules, copy_referrers
from ocync_core.cache import TransferCache
from ocync_core.client import ManifestHead, RegistryClient, is_fallback_tag
from ocync_core.config import Config, ResolvedMapping, ResolvedTarget
from ocync_core.copy import ManifestTree
from ocync_core.errors import (
    AuthenticationError,
    InvalidReference,
    OcyncError,
    RegistryError,
    leaf_errors,
)
from ocync_core.filters import (
    TagRules,
    check_min_tags,
    filtered_index,
    missing_includes,
    select_tags,
)
from ocync_core.manifest import ImageIndex, Manifest, parse_manifest
from ocync_core.plugins import Plugins
from ocync_core.reference import validate_tag
from ocync_core.report import FAILED, SKIPPED, SYNCED, WOULD_SYNC, ImageResult, SyncReport
from ocync_core.staging import BlobStaging
from ocync_core.transfer import BlobMover

__all__ = ["SyncOptions", "run_sync"]

log = logging.getLogger(__name__)


@dataclass
class SyncOptions:
    dry_run: bool = False
    handle_signals: bool = True
    on_result: Callable[[ImageResult], None] | None = None
    on_discovered: Callable[[int], None] | None = None
    # Called once the registry clients are open (alias -> client): e.g. to read their throttle
    # windows for metrics. They are closed when `run_sync` returns.
    on_clients: Callable[[Mapping[str, RegistryClient]], None] | None = None


@dataclass
class _TagJob:
    mapping: ResolvedMapping
    tag: str
    # Every tag the source listed for the mapping (fallback tags too); None for named tags.
    source_tags: frozenset[str] | None = None


@dataclass
class _Run:
    config: Config
    clients: dict[str, RegistryClient]
    mover: BlobMover
    cache: TransferCache
    options: SyncOptions
    report: SyncReport = field(default_factory=SyncReport)
    stopping: bool = False
    _prepared: dict[tuple[str, str], trio.Lock] = field(default_factory=dict)
    _ready: set[tuple[str, str]] = field(default_factory=set)

    async def prepare(self, client: RegistryClient, repository: str) -> None:
        """Run the plugin's repository preparer once per target repository per run."""
        key = (client.registry.host, repository)
        lock = self._prepared.setdefault(key, trio.Lock())
        async with lock:
            if key in self._ready:
                return
            preparer = client.repository_preparer
            if preparer is not None and await preparer.ensure(repository):
                log.info("created repository %s on %s", repository, client.registry.label)
            self._ready.add(key)

    def record(self, result: ImageResult) -> None:
        self.report.images.append(result)
        if self.options.on_result is not None:
            self.options.on_result(result)


async def run_sync(
    config: Config,
    *,
    plugins: Plugins | None = None,
    options: SyncOptions | None = None,
    cache: TransferCache | None = None,
) -> SyncReport:
    """Sync every mapping of `config`; returns the report (never raises for one image)."""
    options = options or SyncOptions()
    started = time.monotonic()
    settings = config.settings
    if cache is None:
        cache = await trio.to_thread.run_sync(_open_cache, config)
    aliases = list(config.registries)
    target_hosts = {t.registry.host for m in config.mappings for t in m.targets}
    with tempfile.TemporaryDirectory(prefix="ocync-staging-") as scratch:
        staging = None
        if len(target_hosts) > 1:
            staging = BlobStaging(Path(settings.staging_dir or scratch))
        mover = BlobMover(
            limit=max(4, settings.max_concurrent_images), cache=cache, staging=staging
        )
        registries = [config.registries[a] for a in aliases]
        async with open_clients(*registries, plugins=plugins) as clients:
            run = _Run(config, dict(zip(aliases, clients, strict=True)), mover, cache, options)
            if options.on_clients is not None:
                options.on_clients(run.clients)
            await _pipeline(run, settings.max_concurrent_images, settings.drain_deadline)
    saved = await trio.to_thread.run_sync(cache.save)
    if not saved and config.settings.cache:
        log.warning("the transfer cache was not saved; the next run will check the registries")
    run.report.duration = time.monotonic() - started
    return run.report


def _open_cache(config: Config) -> TransferCache:
    path = config.settings.cache
    if not path:
        return TransferCache(None)
    return TransferCache.open(Path(path).expanduser(), ttl=config.settings.cache_ttl)


async def _pipeline(run: _Run, workers: int, drain_deadline: float) -> None:
    send, receive = trio.open_memory_channel[_TagJob](workers)
    async with trio.open_nursery() as outer:
        discovery = trio.CancelScope()
        execution = trio.CancelScope()

        async def stop_gracefully() -> None:
            run.stopping = True
            run.report.interrupted = True
            discovery.cancel()
            execution.deadline = min(execution.deadline, trio.current_time() + drain_deadline)

        if run.options.handle_signals and threading.current_thread() is threading.main_thread():
            outer.start_soon(_watch_signals, stop_gracefully)

        async def discover() -> None:
            with discovery:
                async with send, trio.open_nursery() as nursery:
                    limiter = trio.CapacityLimiter(8)
                    for mapping in run.config.mappings:
                        nursery.start_soon(_discover_mapping, run, mapping, send.clone(), limiter)

        async def execute() -> None:
            with execution:
                async with receive, trio.open_nursery() as nursery:
                    for _ in range(workers):
                        nursery.start_soon(_worker, run, receive.clone())
            if execution.cancelled_caught:
                run.report.errors.append(
                    f"drain deadline of {drain_deadline:g}s passed; in-flight images cancelled"
                )

        async with trio.open_nursery() as inner:
            inner.start_soon(discover)
            inner.start_soon(execute)
        outer.cancel_scope.cancel()


async def _watch_signals(stop: Callable[[], object]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning(
                "%s received: no new images; finishing the ones in flight",
                signal.Signals(signum).name,
            )
            await stop()  # type: ignore[misc]
            break


async def _discover_mapping(
    run: _Run,
    mapping: ResolvedMapping,
    send: trio.MemorySendChannel[_TagJob],
    limiter: trio.CapacityLimiter,
) -> None:
    async with send:
        source = run.clients[mapping.source_alias]
        what = f"mapping {mapping.source.host}/{mapping.source_repository}"
        try:
            rules = TagRules.from_model(mapping.tags)
            source_tags: frozenset[str] | None = None
            if rules.literal_only:
                tags = list(rules.include)  # named tags: no tag list is fetched at all
            else:
                # The limiter bounds tag-list requests only: a mapping waiting for a free worker
                # must not keep the next mappings from being listed meanwhile.
                async with limiter:
                    await source.throttle.discovery_pause()  # the source's budget is low
                    listing = await source.list_tags(mapping.source_repository)
                source_tags = frozenset(listing)
                # Fallback-tag indexes travel with their subject (artifacts), not as images.
                listed = [tag for tag in listing if not is_fallback_tag(tag)]
                listed = _valid_tags(run, mapping, listed)
                tags = select_tags(listed, rules)
                for tag in missing_includes(listed, rules):
                    name = f"{mapping.source.host}/{mapping.source_repository}:{tag}"
                    for target in mapping.targets:
                        run.record(
                            ImageResult(
                                name,
                                _target_name(target, tag),
                                FAILED,
                                reason="named in include, not at the source",
                            )
                        )
            check_min_tags(tags, rules, what=what)
        except OcyncError as exc:
            run.report.errors.append(f"{what}: {exc}" if what not in str(exc) else str(exc))
            log.error("%s: %s", what, exc)
            return
        if run.options.on_discovered is not None:
            run.options.on_discovered(len(tags) * len(mapping.targets))
        for tag in tags:
            await send.send(_TagJob(mapping, tag, source_tags))


async def _worker(run: _Run, receive: trio.MemoryReceiveChannel[_TagJob]) -> None:
    async with receive:
        async for job in receive:
            if run.stopping:
                break
            await _sync_tag(run, job)


@dataclass
class _TargetState:
    """One target of a tag: what its HEAD found, or why it could not be asked."""

    target: ResolvedTarget
    client: RegistryClient
    current: ManifestHead | None = None
    error: Exception | None = None


@dataclass
class _Wanted:
    """What the targets should hold: the digest, and the manifest once it has been read."""

    digest: str
    manifest: Manifest | None = None
    note: str = ""


async def _sync_tag(run: _Run, job: _TagJob) -> None:
    """One source tag to every target of its mapping."""
    mapping, tag = job.mapping, job.tag
    source = run.clients[mapping.source_alias]
    src_name = f"{mapping.source.host}/{mapping.source_repository}:{tag}"
    states: list[_TargetState] = []
    for target in mapping.targets:
        if _immutable_and_present(run, mapping, target, tag):
            run.record(
                ImageResult(
                    src_name,
                    _target_name(target, tag),
                    SKIPPED,
                    reason="immutable tag already at the target",
                )
            )
        else:
            states.append(_TargetState(target, run.clients[target.alias]))
    if not states:
        return
    started = time.monotonic()
    memo = _ManifestMemo(source, mapping.source_repository)
    try:
        await source.throttle.discovery_pause()
        wanted = await _read_tag(run, job, source, memo, states)
    except Exception as exc:  # every target of this tag fails with the reason
        for state in states:
            run.record(_failure(src_name, _target_name(state.target, tag), exc, started))
        return
    except BaseException:  # Cancelled, alone or in a group from a nursery below
        for state in states:
            _record_if_drained(run, src_name, _target_name(state.target, tag), started)
        raise

    async def one_target(state: _TargetState) -> None:
        target, client, current = state.target, state.client, state.current
        result = ImageResult(
            src_name, _target_name(target, tag), SYNCED, digest=wanted.digest, reason=wanted.note
        )
        try:
            if state.error is not None:
                raise state.error
            if current is not None and str(current.digest) == wanted.digest:
                result.status = SKIPPED
                run.cache.set_tag(client.registry.host, target.repository, tag, wanted.digest)
            elif run.options.dry_run:
                result.status = WOULD_SYNC
                result.reason = "target differs" if current else "not at the target"
            else:
                manifest = wanted.manifest or await memo.get(wanted.digest)
                await _push(
                    run,
                    job,
                    memo,
                    client,
                    target,
                    manifest,
                    result,
                    check_children=current is not None,
                    filtered=bool(wanted.note),
                )
                run.cache.set_tag(client.registry.host, target.repository, tag, wanted.digest)
        except Exception as exc:  # one bad image never stops the others
            result = _failure(src_name, result.target, exc, started)
        except BaseException:  # Cancelled, alone or in a group from a nursery below
            _record_if_drained(run, src_name, result.target, started)
            raise
        result.duration = time.monotonic() - started
        run.record(result)

    async with trio.open_nursery() as nursery:
        for state in states:
            nursery.start_soon(one_target, state)


def _record_if_drained(run: _Run, source: str, target: str, started: float) -> None:
    """Name an image the drain deadline cut short, so the report says which ones to look at."""
    if run.stopping:
        failed = ImageResult(
            source, target, FAILED, reason="cancelled: the drain deadline passed before it finished"
        )
        failed.duration = time.monotonic() - started
        run.record(failed)


async def _read_tag(
    run: _Run,
    job: _TagJob,
    source: RegistryClient,
    memo: _ManifestMemo,
    states: list[_TargetState],
) -> _Wanted:
    """HEAD the targets and read the source tag, in as few requests as the policy allows."""
    mapping, tag = job.mapping, job.tag
    repository = mapping.source_repository
    # A tag every target held at the last run most likely still matches: ask both sides at
    # once. So does a head_first source, whose HEAD comes before any GET anyway.
    known = all(
        run.cache.tag_digest(s.client.registry.host, s.target.repository, tag) is not None
        for s in states
    )
    if source.read_policy.head_first or known:
        head: ManifestHead | None = None

        async def head_source() -> None:
            nonlocal head
            head = await source.head_manifest(repository, tag)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(head_source)
            nursery.start_soon(_head_targets, states, tag)
        if head is None:
            raise OcyncError(f"tag {tag} is no longer at the source")
        wanted = _Wanted(str(head.digest))
        if mapping.platforms:
            wanted = _filtered(await memo.get(wanted.digest), mapping)
        return wanted
    await _head_targets(states, tag)
    lacking = any(s.error is None and s.current is None for s in states)
    if mapping.platforms or (lacking and not run.options.dry_run):
        # The manifest is needed anyway: one GET by tag instead of a HEAD and a GET.
        try:
            manifest = await source.get_manifest(repository, tag)
        except RegistryError as error:
            if error.status == 404:
                raise OcyncError(f"tag {tag} is no longer at the source") from error
            raise
        memo.keep(manifest)
        return (
            _filtered(manifest, mapping)
            if mapping.platforms
            else _Wanted(str(manifest.digest), manifest)
        )
    head = await source.head_manifest(repository, tag)
    if head is None:
        raise OcyncError(f"tag {tag} is no longer at the source")
    return _Wanted(str(head.digest))


async def _head_targets(states: list[_TargetState], tag: str) -> None:
    async def head(state: _TargetState) -> None:
        try:
            state.current = await state.client.head_manifest(state.target.repository, tag)
        except Exception as exc:  # this target fails; the others go on
            state.error = exc

    async with trio.open_nursery() as nursery:
        for state in states:
            nursery.start_soon(head, state)


class _ManifestMemo:
    """Source manifests read for one tag, shared by its targets: each is fetched once."""

    def __init__(self, source: RegistryClient, repository: str) -> None:
        self.source = source
        self.repository = repository
        self._done: dict[str, Manifest] = {}
        self._pending: dict[str, trio.Event] = {}

    def keep(self, manifest: Manifest) -> None:
        self._done[str(manifest.digest)] = manifest

    async def get(self, digest: str) -> Manifest:
        while digest not in self._done:
            pending = self._pending.get(digest)
            if pending is not None:
                await pending.wait()  # the fetching task failed if the manifest is still absent
                continue
            self._pending[digest] = trio.Event()
            try:
                self._done[digest] = await self.source.get_manifest(self.repository, digest)
            finally:
                self._pending.pop(digest).set()
        return self._done[digest]


async def _push(
    run: _Run,
    job: _TagJob,
    memo: _ManifestMemo,
    client: RegistryClient,
    target: ResolvedTarget,
    manifest: Manifest,
    result: ImageResult,
    *,
    check_children: bool,
    filtered: bool,
) -> None:
    mapping, tag = job.mapping, job.tag
    source = memo.source
    await run.prepare(client, target.repository)

    def tree() -> ManifestTree:
        return ManifestTree(
            source, mapping.source_repository, client, target.repository, run.mover, fetch=memo.get
        )

    copied = tree()
    try:
        await copied.copy(manifest, tag, check_children=check_children)
    except (RegistryError, BaseExceptionGroup) as failure:
        blob_unknown = [
            e
            for e in leaf_errors(failure)
            if isinstance(e, RegistryError) and e.has_code("MANIFEST_BLOB_UNKNOWN")
        ]
        if not blob_unknown:
            raise
        # The transfer cache believed in blobs the registry no longer has: check, then retry.
        run.mover.forget_repository(client, target.repository)
        copied = tree()
        await copied.copy(manifest, tag, check_children=True)
    result.blobs = copied.blobs
    if copied.skipped and copied.skipped[-1].startswith(f"{tag}:"):
        result.status = SKIPPED  # e.g. an immutable tag that already holds this digest
        result.reason = copied.skipped[-1].split(": ", 1)[1]
        return
    if not filtered:
        # A platform-filtered index has a new digest: the source's referrers name the old one.
        await copy_referrers(
            source,
            mapping.source_repository,
            client,
            target.repository,
            manifest.digest,
            run.mover,
            ArtifactRules.from_model(mapping.artifacts),
            result.blobs,
            source_tags=job.source_tags,
        )


def _filtered(manifest: Manifest, mapping: ResolvedMapping) -> _Wanted:
    """The source manifest, or the index cut down to the mapping's platforms."""
    unchanged = _Wanted(str(manifest.digest), manifest)
    if not isinstance(manifest, ImageIndex):
        return unchanged
    raw = filtered_index(manifest, list(mapping.platforms))
    if raw is None:
        return unchanged
    filtered = parse_manifest(raw, manifest.media_type, what="platform-filtered index")
    kept = ", ".join(str(p) for p in mapping.platforms)
    note = f"platforms {kept}: new index digest, source {str(manifest.digest)[:19]}"
    return _Wanted(str(filtered.digest), filtered, note)


def _immutable_and_present(
    run: _Run, mapping: ResolvedMapping, target: ResolvedTarget, tag: str
) -> bool:
    pattern = mapping.tags.immutable_tags
    if not pattern or not fnmatchcase(tag, pattern):
        return False
    return run.cache.tag_digest(target.registry.host, target.repository, tag) is not None


def _valid_tags(run: _Run, mapping: ResolvedMapping, listed: list[str]) -> list[str]:
    """The listed tags that are tags; any other name fails as an image, never goes in a URL.

    A hostile or broken registry could list `../../other/manifests/x`: joined into a URL it
    would read and write repositories no mapping names.
    """
    valid = []
    for tag in listed:
        try:
            valid.append(validate_tag(tag))
        except InvalidReference as error:
            name = f"{mapping.source.host}/{mapping.source_repository}:{tag!r}"
            for target in mapping.targets:
                run.record(
                    ImageResult(
                        name,
                        f"{target.registry.host}/{target.repository}:{tag!r}",
                        FAILED,
                        reason=f"the source listed an invalid tag name: {error}",
                    )
                )
    return valid


def _target_name(target: ResolvedTarget, tag: str) -> str:
    return f"{target.registry.host}/{target.repository}:{tag}"


def _failure(source: str, target: str, error: BaseException, started: float) -> ImageResult:
    leaves = leaf_errors(error)
    ours = [e for e in leaves if isinstance(e, OcyncError)]
    chosen = ours[0] if ours else leaves[0]
    reason = str(chosen) or type(chosen).__name__
    if not isinstance(chosen, OcyncError):
        reason = f"{type(chosen).__name__}: {reason}"
    log.debug("image %s -> %s failed", source, target, exc_info=error)
    return ImageResult(
        source,
        target,
        FAILED,
        reason=reason,
        duration=time.monotonic() - started,
        auth_failure=isinstance(chosen, AuthenticationError),
    )
