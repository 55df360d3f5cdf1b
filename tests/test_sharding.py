"""Sharding: N shards split any configuration's mappings exactly, and together sync what one
unsharded run syncs, against real registries."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes
from ocync_core.cli import cli
from ocync_core.config import Config, parse_config
from ocync_core.errors import BadInput
from ocync_core.plugins import Plugins
from ocync_core.sharding import Shard, mapping_key, shard_config, shard_of

PLUGINS = Plugins.load()
ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}

_ALIASES = ["hub", "ghcr", "ecr", "gar", "local"]
_HOSTS = ["docker.io", "ghcr.io", "registry.example.com", "127.0.0.1:5000", "mirror.internal:8443"]
_REPOSITORIES = st.lists(
    st.sampled_from(["team", "app", "base", "tools", "node", "v2", "x-y", "a.b"]),
    min_size=1,
    max_size=3,
).map("/".join)


@st.composite
def config_data(draw: st.DrawFn) -> dict[str, Any]:
    """A valid configuration: a few registries, any number of mappings (duplicates too)."""
    aliases = draw(st.lists(st.sampled_from(_ALIASES), min_size=1, max_size=4, unique=True))
    hosts = draw(st.lists(st.sampled_from(_HOSTS), min_size=len(aliases), max_size=len(aliases)))
    mapping = st.fixed_dictionaries(
        {
            "from": _REPOSITORIES,
            # Never the `from` path: a mapping onto itself is refused by the config.
            "to": _REPOSITORIES.map("mirror/{}".format),
            "source": st.sampled_from(aliases),
        },
        optional={
            "targets": st.lists(st.sampled_from(aliases), min_size=1, max_size=3, unique=True)
        },
    )
    return {
        "global": {"cache": "/var/cache/ocync/state.json"},
        "registries": {alias: {"url": host} for alias, host in zip(aliases, hosts, strict=True)},
        "defaults": {"targets": aliases[:1]},
        "mappings": draw(st.lists(mapping, max_size=25)),
    }


def load(data: dict[str, Any]) -> Config:
    return parse_config(data, plugins=PLUGINS, env={})


@settings(max_examples=100, deadline=None)
@given(data=config_data(), count=st.integers(min_value=1, max_value=12))
def test_shards_partition_the_mappings_exactly(data: dict[str, Any], count: int):
    config = load(data)
    shards = [shard_config(config, Shard(index, count)) for index in range(count)]
    held = Counter(m.index for shard in shards for m in shard.mappings)
    assert set(held) == {m.index for m in config.mappings}, "a mapping belongs to no shard"
    assert all(n == 1 for n in held.values()), f"mappings in several shards: {held}"
    for index, shard in enumerate(shards):
        indexes = [m.index for m in shard.mappings]
        assert indexes == sorted(indexes), "a shard reordered the mappings"
        assert all(shard_of(m, count) == index for m in shard.mappings)
        assert shard.registries == config.registries
        assert shard.settings.cache == Path(f"/var/cache/ocync/state.shard-{index}-of-{count}.json")
    assert config.settings.cache == Path("/var/cache/ocync/state.json"), "the original changed"


@settings(max_examples=40, deadline=None)
@given(data=config_data(), count=st.integers(min_value=2, max_value=8), keep=st.data())
def test_removing_mappings_moves_no_other_mapping(
    data: dict[str, Any], count: int, keep: st.DataObject
):
    before = {mapping_key(m): shard_of(m, count) for m in load(data).mappings}
    kept = keep.draw(
        st.lists(st.sampled_from(data["mappings"]), unique_by=id)
        if data["mappings"]
        else st.just([])
    )
    after = load({**data, "mappings": kept})
    for mapping in after.mappings:
        assert shard_of(mapping, count) == before[mapping_key(mapping)]


def test_the_shard_of_a_mapping_is_the_same_in_every_process_and_version():
    """sha256 of the canonical key, never the salted `hash()`: pinned, so a change to the
    scheme (which would reshuffle every deployment's shards) cannot go unnoticed."""
    config = load(
        {
            "registries": {
                "src": {"url": "cgr.dev"},
                "ecr": {"url": "1.dkr.ecr.eu-west-1.amazonaws.com"},
            },
            "mappings": [
                {"from": "chainguard/static", "to": "static", "source": "src", "targets": "ecr"}
            ],
        }
    )
    [mapping] = config.mappings
    assert (
        mapping_key(mapping)
        == "cgr.dev/chainguard/static -> 1.dkr.ecr.eu-west-1.amazonaws.com/static"
    )
    assert [shard_of(mapping, n) for n in (1, 2, 3, 7, 16)] == [0, 0, 1, 3, 10]


def test_shard_arguments_are_checked():
    assert Shard.parse("0/1") == Shard(0, 1)
    assert Shard.parse(" 3 / 4 ") == Shard(3, 4)
    for text, said in (
        ("4/4", "within 0..3"),
        ("-1/2", "within 0..1"),
        ("1/0", "at least 1"),
        ("1", "expected I/N"),
        ("a/b", "expected I/N"),
        ("", "expected I/N"),
    ):
        with pytest.raises(BadInput, match=said.replace(".", r"\.")):
            Shard.parse(text)


# -- against real registries ------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def sync(config: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["-q", "sync", "-c", str(config), "--json", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def write_config(path: Path, source: str, target: str, corpus: Corpus) -> Path:
    path.write_text(
        json.dumps(
            {
                "global": {"cache": str(path.parent / "transfer-state.json")},
                "registries": {
                    "src": {"url": f"http://{source}"},
                    "dst": {"url": f"http://{target}"},
                },
                "defaults": {"source": "src", "targets": "dst"},
                "mappings": [{"from": repository} for repository in corpus.repositories],
            }
        )
    )
    return path


def digests(registry: RegistryProcess, corpus: Corpus) -> dict[str, str]:
    with httpx.Client(base_url=registry.url, timeout=10) as http:
        return {
            f"{i.repository}:{i.tag}": http.head(
                f"/v2/{i.repository}/manifests/{i.tag}", headers=ACCEPT
            ).headers.get("Docker-Content-Digest", "absent")
            for i in corpus.images
        }


def test_all_shards_together_sync_what_one_unsharded_run_syncs(
    registry_pair: tuple[RegistryProcess, RegistryProcess],
    target_registry: RegistryProcess,
    tmp_path: Path,
    restore_logging: None,
):
    source, whole_target = registry_pair
    corpus = build_corpus(repositories=6, tags=1, platforms=("linux/amd64",), base_size=4096)
    corpus.push(source.url)
    (tmp_path / "whole").mkdir()
    (tmp_path / "sharded").mkdir()
    whole = write_config(tmp_path / "whole" / "m.yaml", source.host, whole_target.host, corpus)
    sharded = write_config(
        tmp_path / "sharded" / "m.yaml", source.host, target_registry.host, corpus
    )

    unsharded = {image["source"] for image in sync(whole)["images"]}
    per_shard = [
        [image["source"] for image in sync(sharded, "--shard", f"{i}/3")["images"]]
        for i in range(3)
    ]
    every = [name for names in per_shard for name in names]
    assert sorted(every) == sorted(unsharded), "the shards together synced other images"
    assert len(every) == len(set(every)) == len(corpus.images), "an image synced by two shards"
    assert sum(1 for names in per_shard if names) >= 2, f"the work was not split: {per_shard}"

    expected = {f"{i.repository}:{i.tag}": i.digest for i in corpus.images}
    assert digests(whole_target, corpus) == expected
    assert digests(target_registry, corpus) == expected, "the shards' target differs"
    for index, names in enumerate(per_shard):
        cache = tmp_path / "sharded" / f"transfer-state.shard-{index}-of-3.json"
        assert cache.is_file() == bool(names), f"shard {index} did not keep its own cache"
    assert not (tmp_path / "sharded" / "transfer-state.json").exists()
