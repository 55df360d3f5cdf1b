"""Two `ocync sync` processes at the same time, sharing one transfer cache file.

Both must finish, and the cache they leave must load without a warning and hold what each of
them learnt: its saves take a file lock and merge with what is on disk instead of overwriting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_mirror import small_corpus
from mirror_audit import audit, tag_digests
from sync_harness import SyncRun, corpus_mappings, mirror_name, start_sync, write_config

from ocync_conformance.corpus import Corpus
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.cache import TransferCache


@pytest.fixture(scope="module")
def seeded(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, Corpus]]:
    corpus = small_corpus()
    with RegistryProcess(workdir=tmp_path_factory.mktemp("concurrent-source")) as source:
        corpus.push(source.url)
        yield source, corpus


def _at_once(*configs: Path) -> list[SyncRun]:
    processes = [start_sync(config) for config in configs]
    runs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        runs.append(SyncRun(process.returncode, out, err, 0.0))
    return runs


def _expected(corpus: Corpus) -> dict[str, str]:
    return {f"{mirror_name(i.repository)}:{i.tag}": i.digest for i in corpus.images}


def _assert_mirrored(target: RegistryProcess, corpus: Corpus) -> None:
    assert not audit(target), "a manifest at the target names missing content"
    repositories = [mirror_name(r) for r in corpus.repositories]
    assert tag_digests(target, repositories) == _expected(corpus)


def _load_without_warning(path: Path, caplog: pytest.LogCaptureFixture) -> TransferCache:
    with caplog.at_level(logging.WARNING, logger="ocync_core.cache"):
        cache = TransferCache.open(path)
    assert not caplog.records, f"the shared cache was damaged: {caplog.messages}"
    return cache


def test_two_mirrors_sharing_a_cache_both_finish_and_both_are_remembered(seeded, tmp_path, caplog):
    source, corpus = seeded
    cache = tmp_path / "cache.json"
    with (
        RegistryProcess(workdir=tmp_path / "one") as one,
        RegistryProcess(workdir=tmp_path / "two") as two,
    ):
        configs = [
            write_config(
                tmp_path / f"{target.port}.json",
                source=source.host,
                targets={"dst": target.host},
                mappings=corpus_mappings(corpus),
                cache=cache,
            )
            for target in (one, two)
        ]
        for run in _at_once(*configs):
            assert run.returncode == 0, run.explain()
        for target in (one, two):
            _assert_mirrored(target, corpus)
        remembered = _load_without_warning(cache, caplog)
        placements = {
            (target.host, mirror_name(repo), digest)
            for target in (one, two)
            for repo, digests in corpus.blobs_by_repository().items()
            for digest in digests
        }
        assert remembered.blob_entries() == placements, "a run's blobs were lost from the cache"
        tagged = {
            (target.host, mirror_name(i.repository), i.tag): i.digest
            for target in (one, two)
            for i in corpus.images
        }
        assert remembered.tag_entries() == tagged, "a run's tags were lost from the cache"


def test_the_same_mirror_started_twice_at_once_ends_complete(seeded, tmp_path, caplog):
    source, corpus = seeded
    with RegistryProcess(workdir=tmp_path / "target") as target:
        config = write_config(
            tmp_path / "mirror.json",
            source=source.host,
            targets={"dst": target.host},
            mappings=corpus_mappings(corpus),
            cache=tmp_path / "cache.json",
        )
        for run in _at_once(config, config):
            assert run.returncode == 0, run.explain()
            assert run.report["totals"]["failed"] == 0
        _assert_mirrored(target, corpus)
        remembered = _load_without_warning(tmp_path / "cache.json", caplog)
        assert {(h, r) for h, r, _ in remembered.blob_entries()} == {
            (target.host, mirror_name(repo)) for repo in corpus.repositories
        }
