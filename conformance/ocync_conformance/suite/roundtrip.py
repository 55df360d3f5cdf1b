"""A full ocync sync into the registry, checked digest by digest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ocync_conformance.corpus import Corpus, CorpusImage, build_corpus
from ocync_conformance.environments import Target
from ocync_conformance.proxy import UPLOAD_ACTIONS, FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.suite.base import SuiteBase
from ocync_core import mediatypes
from ocync_core.config import Config, parse_config
from ocync_core.engine import SyncOptions, run_sync
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings
from ocync_core.report import SyncReport

__all__ = ["SyncChecks", "SyncSource", "WithSyncSource", "sync_config", "sync_into"]

_ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
_WRITES = frozenset({*UPLOAD_ACTIONS, ProxyAction.MOUNT, ProxyAction.MANIFEST_PUT})


@dataclass(frozen=True)
class SyncSource:
    """A local docker-registry seeded with a tiny multi-arch corpus, to sync from."""

    registry: RegistryProcess
    corpus: Corpus

    @property
    def repository(self) -> str:
        return self.corpus.repositories[0]

    def image(self, tag: str) -> CorpusImage:
        return next(image for image in self.corpus.images if image.tag == tag)

    @property
    def tags(self) -> list[str]:
        return [image.tag for image in self.corpus.images]


class WithSyncSource(SuiteBase):
    """Adds `sync_source`: one source registry per suite class (registries are slow to start)."""

    @pytest.fixture(scope="class")
    @classmethod
    def sync_source(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncSource]:
        # One two-platform image in kilobytes: an index, its manifests, their blobs; no waiting.
        corpus = build_corpus(
            repositories=1, tags=1, families=1, base_size=2048, app_size=512, prefix="source"
        )
        with RegistryProcess(workdir=tmp_path_factory.mktemp("sync-source")) as registry:
            corpus.push(registry.url)
            yield SyncSource(registry, corpus)


def _registry_entry(settings: RegistrySettings) -> dict[str, Any]:
    """The configuration entry that makes ocync reach the registry as `settings` do."""
    entry: dict[str, Any] = {
        "url": settings.url or settings.host,
        "tls_verify": settings.tls_verify,
        "insecure_http": settings.insecure_http,
        "max_concurrent": settings.max_concurrent,
        **settings.options,
    }
    optional = {
        "kind": settings.kind,
        "endpoint": settings.endpoint,
        "ca_file": settings.ca_file,
        "token": settings.token,
        "docker_config": settings.docker_config,
    }
    entry.update({key: value for key, value in optional.items() if value is not None})
    if settings.username is not None:
        entry["credentials"] = {"username": settings.username, "password": settings.password}
    return entry


def sync_config(
    source: SyncSource,
    target: RegistrySettings,
    repository: str,
    plugins: Plugins,
    tags: Sequence[str] | None = None,
) -> Config:
    """A configuration syncing the source's repository (all tags, or `tags`) to `repository`."""
    mapping: dict[str, Any] = {"from": source.repository, "to": repository}
    if tags is not None:
        mapping["tags"] = {"glob": list(tags)}
    document = {
        # No transfer cache: a second run must learn from the registry that nothing is missing.
        "global": {"cache": False},
        "registries": {"source": {"url": source.registry.url}, "target": _registry_entry(target)},
        "defaults": {"source": "source", "targets": "target"},
        "mappings": [mapping],
    }
    return parse_config(document, source="conformance sync", plugins=plugins, env={})


async def sync_into(
    source: SyncSource,
    target: RegistrySettings,
    repository: str,
    plugins: Plugins,
    tags: Sequence[str] | None = None,
) -> SyncReport:
    """Run ocync's sync engine from the source into `repository`; fails on any failed image."""
    config = sync_config(source, target, repository, plugins, tags)
    report = await run_sync(config, plugins=plugins, options=SyncOptions(handle_signals=False))
    failed = [image for image in report.images if image.status == "failed"]
    assert not failed, f"ocync failed to sync {len(failed)} image(s) into {repository}: " + (
        "; ".join(f"{image.target}: {image.reason}" for image in failed)
    )
    return report


def _digest_problems(http: Any, repository: str, image: CorpusImage) -> list[str]:
    """Where the target differs from the source image (index by tag, children, blobs)."""
    problems: list[str] = []
    response = http.get(f"/v2/{repository}/manifests/{image.tag}", headers=_ACCEPT)
    if response.status_code != 200:
        return [f"{repository}:{image.tag} is missing (GET answered {response.status_code})"]
    actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
    if actual != image.digest:
        problems.append(f"{repository}:{image.tag} is {actual}, the source has {image.digest}")
    for reference, _, _ in image.manifests:
        if reference == image.tag:
            continue
        head = http.head(f"/v2/{repository}/manifests/{reference}", headers=_ACCEPT)
        if head.status_code != 200 or head.headers.get("Docker-Content-Digest") != reference:
            problems.append(f"manifest {repository}@{reference} missing ({head.status_code})")
    for digest in image.blobs:
        head = http.head(f"/v2/{repository}/blobs/{digest}")
        if head.status_code != 200:
            problems.append(f"blob {repository}@{digest} missing ({head.status_code})")
    return problems


class SyncChecks(WithSyncSource):
    async def test_sync_round_trip_keeps_digests_and_repeats_as_no_op(
        self,
        sync_source: SyncSource,
        settings: RegistrySettings,
        loaded_plugins: Plugins,
        target: Target,
        proxy: FaultProxy,
        repo: str,
    ) -> None:
        first = await sync_into(sync_source, settings, repo, loaded_plugins)
        synced = [image.target for image in first.images if image.status == "synced"]
        assert len(synced) == len(sync_source.corpus.images), (
            f"the first sync into an empty {repo} synced {len(synced)} of "
            f"{len(sync_source.corpus.images)} images: {[i.status for i in first.images]}"
        )
        proxy.wait_idle()
        pushed = proxy.count([ProxyAction.MANIFEST_PUT])
        assert pushed > 0, "the first sync reached the registry without a single manifest PUT"

        with target.direct() as http:
            problems = [
                problem
                for image in sync_source.corpus.images
                for problem in _digest_problems(http, repo, image)
            ]
        assert not problems, "after a sync the target differs from the source: " + "; ".join(
            problems
        )

        proxy.reset()
        await sync_into(sync_source, settings, repo, loaded_plugins)
        proxy.wait_idle()
        writes = [f"{r.method} {r.path} ({r.action})" for r in proxy.log if r.action in _WRITES]
        assert not writes, (
            f"a second sync of an unchanged source still wrote {len(writes)} time(s) to the "
            "registry (it should find everything present): " + "; ".join(writes[:5])
        )
