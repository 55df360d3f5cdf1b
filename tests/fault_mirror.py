"""A mirror under fault: a seeded source and a fresh target, each behind a FaultProxy.

Tests inject faults on `src` / `dst`, run the real `ocync sync` with `sync()`, and check the
target with `assert_sound()` (no manifest whose content is missing) and `assert_complete()`
(every tag of the source, with its digest).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirror_audit import audit, tag_digests
from sync_harness import SyncRun, corpus_mappings, mirror_name, run_sync, write_config

from ocync_conformance.corpus import Corpus, CorpusImage, build_corpus
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.registry_process import RegistryProcess

__all__ = ["Mirror", "open_mirror", "small_corpus"]


def small_corpus() -> Corpus:
    """Three multi-arch images; app00 and app02 share base layers, app01 has its own."""
    return build_corpus(
        repositories=3, tags=1, families=2, base_size=512 * 1024, app_size=16 * 1024
    )


@dataclass
class Mirror:
    source: RegistryProcess
    corpus: Corpus
    target: RegistryProcess
    src: FaultProxy
    dst: FaultProxy
    workdir: Path

    def config(
        self,
        *,
        registries: Mapping[str, Mapping[str, object]] | None = None,
        **global_settings: object,
    ) -> Path:
        return write_config(
            self.workdir / "mirror.json",
            source=self.src.host,
            targets={"dst": self.dst.host},
            mappings=corpus_mappings(self.corpus),
            cache=self.workdir / "cache.json",
            registries=registries,
            **global_settings,
        )

    def sync(
        self, *extra: str, env: Mapping[str, str] | None = None, **settings: object
    ) -> SyncRun:
        run = run_sync(self.config(**settings), *extra, env=env)
        self.src.wait_idle()
        self.dst.wait_idle()
        return run

    def image(self, repository: str) -> CorpusImage:
        return next(i for i in self.corpus.images if i.repository == repository)

    def only_blobs_of(self, repository: str) -> list[str]:
        """Blobs of this repository's image no other image has, largest first."""
        image = self.image(repository)
        others = {d for i in self.corpus.images if i is not image for d in i.blobs}
        mine = [d for d in image.blobs if d not in others]
        return sorted(mine, key=lambda d: len(image.blobs[d]), reverse=True)

    def largest_blob(self) -> str:
        sizes = {d: len(data) for i in self.corpus.images for d, data in i.blobs.items()}
        return max(sizes, key=lambda d: sizes[d])

    def expected_tags(self, *, without: tuple[str, ...] = ()) -> dict[str, str]:
        return {
            f"{mirror_name(i.repository)}:{i.tag}": i.digest
            for i in self.corpus.images
            if i.repository not in without
        }

    def target_tags(self) -> dict[str, str]:
        return tag_digests(self.target, [mirror_name(r) for r in self.corpus.repositories])

    def assert_sound(self) -> None:
        problems = audit(self.target)
        assert not problems, f"the target holds manifests whose content is missing: {problems}"

    def assert_complete(self) -> None:
        self.assert_sound()
        assert self.target_tags() == self.expected_tags(), "target tags differ from the source"


@contextmanager
def open_mirror(source: RegistryProcess, corpus: Corpus, workdir: Path) -> Iterator[Mirror]:
    """A fresh empty target registry for `corpus` at `source`, both behind fault proxies."""
    with (
        RegistryProcess(workdir=workdir / "target") as target,
        FaultProxy(source, name="source") as src,
        FaultProxy(target, name="target") as dst,
    ):
        yield Mirror(source, corpus, target, src, dst, workdir)
