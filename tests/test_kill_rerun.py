"""SIGKILL `ocync sync` at a random moment, then run it again normally.

However the first run dies (before any request, mid-blob, between a blob and its manifest, in
the middle of an index), the target must hold no manifest whose content is missing, and the
second run must finish the mirror without moving again any blob the first one completed.

Moments are measured in progress rather than seconds, so a loaded machine does not bunch them
up: a cold run of the corpus is counted once (requests at both registries), and case `kill-NN`
kills when the NN-th twentieth of that count, plus a seeded-random part of one twentieth, has
arrived. Blob reads at the source are slowed to 16 MiB/s per request so that the 2 MiB layers
stay in flight for a good part of the run and many kills land mid-blob.
"""

from __future__ import annotations

import random
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from urllib.parse import unquote

import pytest
from mirror_audit import audit, blob_present, tag_digests
from sync_harness import corpus_mappings, mirror_name, run_sync, start_sync, write_config

from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.proxy import FaultProxy, ProxyAction, RequestRecord
from ocync_conformance.registry_process import RegistryProcess

CASES = 20
SOURCE_READ_RATE = 16 * 1024 * 1024  # bytes per second per blob read at the source

_DIGEST_PARAM = re.compile(r"[?&]digest=([^&]+)")
_UPLOAD_REPO = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/")
_BLOB_PATH = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>[^/?]+)$")


@dataclass(frozen=True)
class Source:
    registry: RegistryProcess
    corpus: Corpus
    requests: int  # what a cold run sends to both registries

    def expected_tags(self) -> dict[str, str]:
        return {
            f"{mirror_name(image.repository)}:{image.tag}": image.digest
            for image in self.corpus.images
        }

    def placements(self) -> dict[str, set[str]]:
        """Target repository -> the blobs it must end up holding."""
        return {
            mirror_name(repo): blobs for repo, blobs in self.corpus.blobs_by_repository().items()
        }


def _proxies(source: RegistryProcess, target: RegistryProcess) -> tuple[FaultProxy, FaultProxy]:
    src = FaultProxy(source, name="kill-source")
    src.emulate(src.slow_body(ProxyAction.BLOB_GET, bytes_per_second=SOURCE_READ_RATE))
    return src, FaultProxy(target, name="kill-target")


def _config(directory: Path, src: FaultProxy, dst: FaultProxy, corpus: Corpus) -> Path:
    return write_config(
        directory / "mirror.json",
        source=src.host,
        targets={"dst": dst.host},
        mappings=corpus_mappings(corpus),
        cache=directory / "cache.json",
    )


def _kill_after(proxies: tuple[FaultProxy, ...], requests: int, process: Popen[str]) -> None:
    """SIGKILL the process as soon as the proxies have seen `requests` requests arrive."""
    deadline = time.monotonic() + 120
    while sum(p.stats().requests for p in proxies) < requests:
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


@pytest.fixture(scope="module")
def source(registry_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """The corpus at a source registry, and the requests of a cold run, counted once."""
    corpus = build_corpus(
        repositories=3, tags=2, families=2, base_size=2 * 1024 * 1024, app_size=48 * 1024
    )
    workdir = tmp_path_factory.mktemp("kill-source")
    with RegistryProcess(workdir=workdir / "registry") as registry:
        corpus.push(registry.url)
        with RegistryProcess(workdir=workdir / "measure") as target:
            src, dst = _proxies(registry, target)
            with src, dst:
                cold = run_sync(_config(workdir, src, dst, corpus))
                assert cold.returncode == 0, cold.explain()
                assert src.wait_idle() and dst.wait_idle()
                requests = src.stats().requests + dst.stats().requests
        yield Source(registry, corpus, requests)


def _uploads(log: list[RequestRecord]) -> set[tuple[str, str]]:
    """(repository, digest) of every upload the target saw completed or attempted."""
    found = set()
    for record in log:
        if record.action != ProxyAction.UPLOAD_FINISH:
            continue
        digest = _DIGEST_PARAM.search(record.path)
        repo = _UPLOAD_REPO.match(record.path)
        if digest and repo:
            found.add((repo["repo"], unquote(digest[1])))
    return found


def _source_reads(log: list[RequestRecord]) -> set[str]:
    found = set()
    for record in log:
        match = _BLOB_PATH.match(record.path.split("?", 1)[0])
        if record.action == ProxyAction.BLOB_GET and match:
            found.add(unquote(match["digest"]))
    return found


@pytest.mark.parametrize("case", range(CASES), ids=[f"kill-{i:02d}" for i in range(CASES)])
def test_sigkill_then_rerun_completes_without_moving_completed_blobs(
    source: Source, case: int, tmp_path: Path
) -> None:
    fraction = (case + random.Random(f"kill-{case}").random()) / CASES
    with RegistryProcess(workdir=tmp_path / "target") as target:
        src, dst = _proxies(source.registry, target)
        with src, dst:
            config = _config(tmp_path, src, dst, source.corpus)
            _kill_after((src, dst), 1 + int(fraction * source.requests), start_sync(config))
            assert src.wait_idle(10) and dst.wait_idle(10), "requests of the killed run hang"

            problems = audit(target)
            assert not problems, (
                f"right after SIGKILL at {fraction:.0%} of the run, the target holds manifests "
                f"whose content is missing: {problems}"
            )
            placements = source.placements()
            with target.client() as http:
                complete = {
                    (repo, digest)
                    for repo, digests in placements.items()
                    for digest in digests
                    if blob_present(http, repo, digest)
                }
            cut = [r for p in (src, dst) for r in p.log if r.error or r.status == 0]
            src.reset()
            dst.reset()

            rerun = run_sync(config)
            assert rerun.returncode == 0, rerun.explain()
            assert src.wait_idle(10) and dst.wait_idle(10)
            assert tag_digests(target, placements) == source.expected_tags(), (
                "after the rerun the target's tags differ from the source's"
            )
            assert not audit(target), "after the rerun a manifest's content is missing"

            uploaded_again = _uploads(dst.log) & complete
            assert not uploaded_again, (
                f"the rerun uploaded {len(uploaded_again)} blob(s) the killed run had completed: "
                f"{sorted(uploaded_again)}"
            )
            still_needed = {
                digest
                for repo, digests in placements.items()
                for digest in digests
                if (repo, digest) not in complete
            }
            fetched_again = _source_reads(src.log) - still_needed
            assert not fetched_again, (
                f"the rerun fetched {len(fetched_again)} blob(s) from the source that every "
                f"target repository already held: {sorted(fetched_again)}"
            )
            total = sum(len(ds) for ds in placements.values())
            print(
                f"kill at {fraction:.0%}: {len(complete)}/{total} placements complete, "
                f"{len(cut)} request(s) cut: {sorted({str(r.action) for r in cut})}"
            )
