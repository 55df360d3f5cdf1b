"""A Hypothesis state machine: random operations against the registry and a model.

Each step does through the plugin's hooks what ocync does (upload, mount or upload, push a
manifest, tag, sync from a source) and records the expected outcome in a plain in-memory model;
after every step the registry, asked through the plugin again, must agree with the model.

Hypothesis drives the machine synchronously, so it runs in a worker thread and every registry
operation is sent back to the check's trio loop (where the client lives) with
`trio.from_thread.run`.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import trio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ocync_conformance.environments import Target
from ocync_conformance.suite.roundtrip import SyncSource, WithSyncSource, sync_into
from ocync_core import mediatypes
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.manifest import Manifest, parse_manifest
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

__all__ = ["ModelChecks", "RegistryModel"]

T = TypeVar("T")

# Each step is a round trip to a real registry: a handful of short programs find what a
# broken plugin gets wrong, and shrinking (hundreds of replays) would take minutes, so the
# failing program is reported as generated.
MODEL_SETTINGS = settings(
    max_examples=3,
    stateful_step_count=5,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
_TAGS = ("latest", "stable", "edge")


@dataclass
class _Repository:
    """What one repository must hold."""

    blobs: dict[Digest, int] = field(default_factory=dict)  # digest -> size
    manifests: dict[Digest, Manifest] = field(default_factory=dict)
    tags: dict[str, Digest] = field(default_factory=dict)
    # Blobs added since the last blob HEADs: the existence checker is asked about every blob
    # after every step, a HEAD per blob only after the step that added it.
    unheaded: set[Digest] = field(default_factory=set)

    def add_blob(self, digest: Digest, size: int) -> None:
        self.blobs[digest] = size
        self.unheaded.add(digest)


@dataclass(frozen=True)
class _Harness:
    """What the machine needs from the check: the plugin's client and the check's trio loop."""

    client: RegistryClient
    target: Target
    settings: RegistrySettings
    plugins: Plugins
    source: SyncSource

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(function, *args)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upload(client: RegistryClient, repository: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    await client.upload_blob(repository, digest, len(data), _one_chunk(data))
    return digest


async def _mount_or_upload(
    client: RegistryClient, repository: str, digest: Digest, source: str, data: bytes
) -> None:
    """As ocync moves a blob within a registry: mount it, else upload (into the session the
    refused mount opened, if any)."""
    result = await client.mount_blob(repository, digest, source)
    if not result.mounted:
        await client.upload_blob(
            repository, digest, len(data), _one_chunk(data), session=result.session
        )


def _image_manifest(config: Digest, layers: list[Digest], sizes: dict[Digest, int]) -> Manifest:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(config),
            "size": sizes[config],
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": str(layer),
                "size": sizes[layer],
            }
            for layer in layers
        ],
        # Unique bytes, so two pushes of the same blobs are two manifests.
        "annotations": {"org.ocync.conformance.nonce": secrets.token_hex(4)},
    }
    return parse_manifest(json.dumps(document).encode(), mediatypes.OCI_MANIFEST)


async def _differences(client: RegistryClient, repositories: dict[str, _Repository]) -> list[str]:
    """Everything the registry, asked through the plugin, reports differently from the model
    (blob HEADs only for the blobs not HEADed yet)."""
    problems: list[str] = []

    async def existence(name: str, model: _Repository) -> None:
        absent = Digest.of(os.urandom(16))
        asked = [*model.blobs, absent]
        answer = await client.existence_checker.exists(name, asked)
        for digest in asked:
            if answer.get(digest) != (digest in model.blobs):
                problems.append(
                    f"existence checker says {digest} in {name} is {answer.get(digest)}, "
                    f"the model says {digest in model.blobs}"
                )

    async def head_blob(name: str, digest: Digest, size: int) -> None:
        found = await client.blob_exists(name, digest)
        if found != size:
            problems.append(f"blob HEAD {name}@{digest} answered {found}, expected size {size}")

    async def resolve_tag(name: str, tag: str, digest: Digest) -> None:
        head = await client.head_manifest(name, tag)
        if head is None or head.digest != digest:
            found = head.digest if head else "nothing"
            problems.append(f"tag {name}:{tag} resolves to {found}, the model says {digest}")

    async def read_manifest(name: str, manifest: Manifest) -> None:
        got = await client.get_manifest(name, str(manifest.digest))
        if got.raw != manifest.raw:
            problems.append(f"manifest {name}@{manifest.digest} read back different bytes")

    async with trio.open_nursery() as nursery:
        for name, model in repositories.items():
            nursery.start_soon(existence, name, model)
            for digest in model.unheaded:
                nursery.start_soon(head_blob, name, digest, model.blobs[digest])
            model.unheaded.clear()
            for tag, digest in model.tags.items():
                nursery.start_soon(resolve_tag, name, tag, digest)
            for manifest in model.manifests.values():
                nursery.start_soon(read_manifest, name, manifest)
    return problems


class RegistryModel(RuleBasedStateMachine):
    """Random operations on two fresh repositories, mirrored in a model."""

    harness: ClassVar[_Harness]

    def __init__(self) -> None:
        super().__init__()
        namespace = f"conformance/model-{secrets.token_hex(3)}"
        self.repositories = {f"{namespace}/{name}": _Repository() for name in ("red", "blue")}
        for name in self.repositories:
            self.harness.target.create_repository(name)
        self.contents: dict[Digest, bytes] = {}
        self.synced = False

    def _name(self, which: int) -> str:
        return list(self.repositories)[which]

    def _with(self, what: str) -> list[str]:
        return [name for name, model in self.repositories.items() if getattr(model, what)]

    @rule(which=st.integers(0, 1), data=st.binary(min_size=1, max_size=256))
    def push_blob(self, which: int, data: bytes) -> None:
        name = self._name(which)
        digest = self.harness.call(_upload, self.harness.client, name, data)
        self.repositories[name].add_blob(digest, len(data))
        self.contents[digest] = data

    @precondition(lambda self: self._with("blobs"))
    @rule(data=st.data())
    def mount_blob(self, data: st.DataObject) -> None:
        source = data.draw(st.sampled_from(self._with("blobs")), label="from")
        into = next(name for name in self.repositories if name != source)
        digest = data.draw(st.sampled_from(sorted(self.repositories[source].blobs, key=str)))
        content = self.contents[digest]
        self.harness.call(_mount_or_upload, self.harness.client, into, digest, source, content)
        self.repositories[into].add_blob(digest, len(content))

    @precondition(lambda self: self._with("blobs"))
    @rule(data=st.data())
    def push_manifest(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self._with("blobs")), label="repository")
        model = self.repositories[name]
        present = sorted(model.blobs, key=str)
        config = data.draw(st.sampled_from(present), label="config")
        layers = data.draw(st.lists(st.sampled_from(present), max_size=3, unique=True))
        manifest = _image_manifest(config, layers, model.blobs)
        self.harness.call(self.harness.client.put_manifest, name, str(manifest.digest), manifest)
        model.manifests[manifest.digest] = manifest

    @precondition(lambda self: self._with("manifests"))
    @rule(data=st.data(), tag=st.sampled_from(_TAGS))
    def tag_manifest(self, data: st.DataObject, tag: str) -> None:
        name = data.draw(st.sampled_from(self._with("manifests")), label="repository")
        model = self.repositories[name]
        digest = data.draw(st.sampled_from(sorted(model.manifests, key=str)), label="manifest")
        self.harness.call(self.harness.client.put_manifest, name, tag, model.manifests[digest])
        model.tags[tag] = digest

    # A sync is the slowest step by far (a run of the engine, fresh clients, fresh tokens):
    # one per program still puts synced content beside everything the other rules do.
    @precondition(lambda self: not self.synced)
    @rule(which=st.integers(0, 1))
    def sync_from_source(self, which: int) -> None:
        self.synced = True
        name = self._name(which)
        harness = self.harness
        harness.call(sync_into, harness.source, harness.settings, name, harness.plugins)
        model = self.repositories[name]
        for image in harness.source.corpus.images:
            for digest, content in image.blobs.items():
                model.add_blob(Digest.parse(digest), len(content))
                self.contents[Digest.parse(digest)] = content
            for _, body, media_type in image.manifests:
                manifest = parse_manifest(body, media_type)
                model.manifests[manifest.digest] = manifest
            model.tags[image.tag] = Digest.parse(image.digest)

    @invariant()
    def registry_matches_model(self) -> None:
        problems = self.harness.call(_differences, self.harness.client, self.repositories)
        assert not problems, (
            "the registry, asked through the plugin, disagrees with what was done to it: "
            + "; ".join(problems[:8])
        )


class ModelChecks(WithSyncSource):
    async def test_random_operations_match_a_model(
        self,
        client: RegistryClient,
        target: Target,
        settings: RegistrySettings,
        loaded_plugins: Plugins,
        sync_source: SyncSource,
    ) -> None:
        harness = _Harness(client, target, settings, loaded_plugins, sync_source)
        machine = type("RegistryModelRun", (RegistryModel,), {"harness": harness})
        run = functools.partial(run_state_machine_as_test, machine, settings=MODEL_SETTINGS)
        await trio.to_thread.run_sync(run)
