"""The sync engine against a model: after any sequence of changes and syncs, the target holds
exactly the filtered source.

A Hypothesis state machine changes a real source docker-registry (new images, retags,
multi-arch indexes, tags the mapping's filter excludes), meddles with the target behind
ocync's back (a tag pointed elsewhere, a blob deleted under the transfer cache's feet) and
runs the real engine (`run_sync`, with its transfer cache) into a real target registry. Its
model is a dict, tag -> digest, of the source. After every sync:

- the target's tags and digests equal the model's tags that pass the filter, no more, no less;
- every image the sync copied is complete at the target (children and blobs);
- no image failed. A dry run writes nothing and names exactly the tags that differ.

docker-registry 2.8 cannot delete tags, so the model never does either.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.config import parse_config
from ocync_core.engine import SyncOptions, run_sync
from ocync_core.plugins import Plugins
from ocync_core.report import FAILED, SYNCED, WOULD_SYNC, SyncReport

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
TAGS = ["v1", "v2", "v3", "latest", "v2-rc", "dev"]
GLOB = ["v*", "latest"]
EXCLUDE = ["*-rc"]
# A few shared layers, as base images share theirs: blobs recur across images and tags.
LAYERS = [f"shared layer {n}\n".encode() * 50 for n in range(3)]
ARCHITECTURES = ["amd64", "arm64", "s390x"]


def wanted(tag: str) -> bool:
    """The mapping's tag filter, written out independently of ocync's."""
    return any(fnmatchcase(tag, g) for g in GLOB) and not any(fnmatchcase(tag, e) for e in EXCLUDE)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Plain distribution-API reads and writes, straight to one registry."""

    def __init__(self, process: RegistryProcess) -> None:
        self.http = httpx.Client(base_url=process.url, timeout=30)
        self.host = process.host

    def push_image(self, repo: str, reference: str, seed: int, layers: list[int]) -> bytes:
        raw = self._image(repo, seed, layers)
        push_manifest(self.http, repo, reference, raw, mediatypes.OCI_MANIFEST)
        return raw

    def push_index(self, repo: str, tag: str, seeds: list[int]) -> bytes:
        children = []
        for seed, architecture in zip(seeds, ARCHITECTURES, strict=False):
            raw = self._image(repo, seed, [seed % len(LAYERS)])
            push_manifest(self.http, repo, sha256(raw), raw, mediatypes.OCI_MANIFEST)
            children.append(
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": sha256(raw),
                    "size": len(raw),
                    "platform": {"os": "linux", "architecture": architecture},
                }
            )
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": children},
            indent=1,
        ).encode()
        push_manifest(self.http, repo, tag, index, mediatypes.OCI_INDEX)
        return index

    def _image(self, repo: str, seed: int, layers: list[int]) -> bytes:
        """Push a config and the chosen shared layers; the manifest's bytes naming them."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        blobs = [(mediatypes.OCI_CONFIG, config)] + [
            (mediatypes.OCI_LAYER, LAYERS[i]) for i in layers
        ]
        for _, data in blobs:
            push_blob(self.http, repo, data)
        descriptors = [
            {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
            for media_type, data in blobs
        ]
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": descriptors[0],
                "layers": descriptors[1:],
            }
        ).encode()

    def manifest(self, repo: str, reference: str) -> bytes:
        response = self.http.get(f"/v2/{repo}/manifests/{reference}", headers=ACCEPT)
        response.raise_for_status()
        return response.content

    def tags(self, repo: str) -> dict[str, str]:
        """Every tag of `repo` and the digest it resolves to."""
        response = self.http.get(f"/v2/{repo}/tags/list")
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        found = {}
        for tag in response.json().get("tags") or []:
            head = self.http.head(f"/v2/{repo}/manifests/{tag}", headers=ACCEPT)
            found[tag] = head.headers["Docker-Content-Digest"]
        return found

    def missing(self, repo: str, raw: bytes) -> list[str]:
        """What `raw` names that `repo` lacks: child manifests, and blobs all the way down."""
        doc = json.loads(raw)
        gaps: list[str] = []
        for child in doc.get("manifests", []):
            response = self.http.get(f"/v2/{repo}/manifests/{child['digest']}", headers=ACCEPT)
            if response.status_code != 200:
                gaps.append(child["digest"])
            else:
                gaps += self.missing(repo, response.content)
        for blob in [doc["config"], *doc["layers"]] if "config" in doc else []:
            if self.http.head(f"/v2/{repo}/blobs/{blob['digest']}").status_code != 200:
                gaps.append(blob["digest"])
        return gaps


class EngineModel(RuleBasedStateMachine):
    """One example: a fresh repository pair, a fresh cache file, and the model of the source."""

    source: Registry
    target: Registry
    plugins: Plugins
    runs = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        n = next(self.runs)
        self.source_repo = f"model/run{n}"
        self.target_repo = f"mirror/run{n}"
        self.model: dict[str, str] = {}
        self.seeds = itertools.count(1000 * n)
        self.scratch = Path(tempfile.mkdtemp(prefix="ocync-model-"))
        self.synced_once = False

    def teardown(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- the source changes ---------------------------------------------------------------

    @rule(tag=st.sampled_from(TAGS), layers=st.lists(st.integers(0, 2), max_size=2))
    def push_image(self, tag: str, layers: list[int]) -> None:
        raw = self.source.push_image(self.source_repo, tag, next(self.seeds), layers)
        self.model[tag] = sha256(raw)

    @rule(tag=st.sampled_from(TAGS), children=st.integers(1, 3))
    def push_index(self, tag: str, children: int) -> None:
        seeds = [next(self.seeds) for _ in range(children)]
        self.model[tag] = sha256(self.source.push_index(self.source_repo, tag, seeds))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), to=st.sampled_from(TAGS))
    def retag(self, data: st.DataObject, to: str) -> None:
        tag = data.draw(st.sampled_from(sorted(self.model)))
        raw = self.source.manifest(self.source_repo, tag)
        media_type = json.loads(raw)["mediaType"]
        push_manifest(self.source.http, self.source_repo, to, raw, media_type)
        self.model[to] = self.model[tag]

    # -- someone else changes the target --------------------------------------------------

    @precondition(lambda self: self.synced_once and any(wanted(t) for t in self.model))
    @rule(data=st.data())
    def point_a_mirrored_tag_elsewhere(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(t for t in self.model if wanted(t))))
        self.target.push_image(self.target_repo, tag, next(self.seeds), [])

    @precondition(lambda self: self.synced_once and self.model)
    @rule(layer=st.integers(0, 2))
    def delete_a_target_blob(self, layer: int) -> None:
        # The transfer cache still believes in it: the engine must notice when it matters.
        self.target.http.delete(f"/v2/{self.target_repo}/blobs/{sha256(LAYERS[layer])}")

    # -- ocync ----------------------------------------------------------------------------

    def _sync(self, *, dry_run: bool) -> SyncReport:
        doc = {
            "global": {"cache": str(self.scratch / "cache.json"), "max_concurrent_images": 4},
            "registries": {
                "src": {"url": f"http://{self.source.host}"},
                "dst": {"url": f"http://{self.target.host}"},
            },
            "mappings": [
                {
                    "from": self.source_repo,
                    "to": self.target_repo,
                    "source": "src",
                    "targets": "dst",
                    "tags": {"glob": GLOB, "exclude": EXCLUDE},
                }
            ],
        }
        config = parse_config(doc, plugins=self.plugins, env={})
        options = SyncOptions(dry_run=dry_run, handle_signals=False)

        async def main() -> SyncReport:
            return await run_sync(config, plugins=self.plugins, options=options)

        return trio.run(main)

    @rule()
    def sync(self) -> None:
        report = self._sync(dry_run=False)
        self.synced_once = True
        if not self.model:  # nothing pushed: the source repository does not exist yet
            assert report.images == [] and len(report.errors) == 1
            assert "NAME_UNKNOWN" in report.errors[0], report.errors
            return
        failed = [(r.source, r.reason) for r in report.images if r.status == FAILED]
        assert not failed and not report.errors, f"sync failed: {failed} {report.errors}"
        expected = {tag: digest for tag, digest in self.model.items() if wanted(tag)}
        assert self.target.tags(self.target_repo) == expected, "target differs from the source"
        for result in report.images:
            if result.status == SYNCED:
                tag = result.target.rsplit(":", 1)[1]
                raw = self.target.manifest(self.target_repo, tag)
                gaps = self.target.missing(self.target_repo, raw)
                assert not gaps, f"{tag} was pushed incomplete, missing {gaps}"

    @precondition(lambda self: self.model)
    @rule()
    def dry_run(self) -> None:
        before = self.target.tags(self.target_repo)
        report = self._sync(dry_run=True)
        assert self.target.tags(self.target_repo) == before, "a dry run changed the target"
        differing = {t for t, d in self.model.items() if wanted(t) and before.get(t) != d}
        named = {r.target.rsplit(":", 1)[1] for r in report.images if r.status == WOULD_SYNC}
        assert named == differing, "the dry run does not name exactly the tags that differ"


@pytest.fixture(scope="module")
def registries(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, Registry]]:
    with (
        RegistryProcess(workdir=tmp_path_factory.mktemp("model-src")) as source,
        RegistryProcess(workdir=tmp_path_factory.mktemp("model-dst")) as target,
    ):
        pair = Registry(source), Registry(target)
        yield pair
        for registry in pair:
            registry.http.close()


def test_target_always_equals_the_filtered_source(registries: tuple[Registry, Registry]):
    source, target = registries
    machine = type(
        "Engine", (EngineModel,), {"source": source, "target": target, "plugins": Plugins.load()}
    )
    run_state_machine_as_test(
        machine, settings=settings(max_examples=10, stateful_step_count=6, deadline=None)
    )
