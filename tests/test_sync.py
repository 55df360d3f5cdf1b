"""`ocync sync` end to end: a generated corpus between real registries, counted at the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ocync_conformance.accesslog import read_access_log
from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.registry_process import RegistryProcess
from ocync_core import mediatypes

ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}


def ocync(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocync_core", *args], capture_output=True, text=True, timeout=timeout
    )


def write_config(
    path: Path,
    source: RegistryProcess,
    targets: dict[str, RegistryProcess],
    corpus: Corpus,
    cache: Path,
    **mapping_extra: object,
) -> Path:
    registries = {"src": {"url": source.host}}
    registries.update({alias: {"url": reg.host} for alias, reg in targets.items()})
    doc = {
        "global": {"cache": str(cache)},
        "registries": registries,
        "defaults": {"source": "src", "targets": list(targets)},
        "mappings": [
            {"from": repo, "to": repo.replace("corpus/", "mirror/"), **mapping_extra}
            for repo in corpus.repositories
        ],
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def target_digests(registry: RegistryProcess, corpus: Corpus) -> dict[str, str]:
    found = {}
    with httpx.Client(base_url=registry.url) as http:
        for image in corpus.images:
            repo = image.repository.replace("corpus/", "mirror/")
            response = http.head(f"/v2/{repo}/manifests/{image.tag}", headers=ACCEPT)
            found[f"{repo}:{image.tag}"] = response.headers.get("Docker-Content-Digest", "")
    return found


def expected_digests(corpus: Corpus) -> dict[str, str]:
    return {
        f"{i.repository.replace('corpus/', 'mirror/')}:{i.tag}": i.digest for i in corpus.images
    }


@pytest.fixture
def corpus_source(registry_binary, tmp_path_factory):
    corpus = build_corpus(repositories=10, tags=3)
    with RegistryProcess(workdir=tmp_path_factory.mktemp("corpus-src")) as source:
        corpus.push(source.url)
        yield source, corpus


def test_corpus_sync_cold_then_warm(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    assert len(corpus.images) == 30 and len(corpus.repositories) == 10
    config = write_config(
        tmp_path / "mirror.yaml", source, {"dst": target_registry}, corpus, tmp_path / "cache.json"
    )
    before = len(read_access_log(source.log_file))

    cold = ocync("sync", "-c", str(config), "--json")
    assert cold.returncode == 0, cold.stderr
    report = json.loads(cold.stdout)
    assert report["totals"]["synced"] == 30 and report["totals"]["failed"] == 0
    assert target_digests(target_registry, corpus) == expected_digests(corpus)

    # Each unique source blob was fetched exactly once, counted by the source registry.
    source_log = read_access_log(source.log_file)[before:]
    blob_gets = Counter(e.uri.rsplit("/", 1)[1] for e in source_log if e.is_blob_get)
    assert set(blob_gets) == corpus.unique_blobs
    assert max(blob_gets.values()) == 1

    # Shared base layers reached other repositories by mount, not by upload.
    target_log = read_access_log(target_registry.log_file, agent_prefix="ocync/")
    mounted = [e for e in target_log if e.is_mount and e.status == 201]
    uploads = [e for e in target_log if e.method == "PUT" and "/blobs/uploads/" in e.uri]
    assert len(uploads) == len(corpus.unique_blobs)
    per_repo = sum(len(blobs) for blobs in corpus.blobs_by_repository().values())
    assert len(mounted) == per_repo - len(corpus.unique_blobs) > 0
    assert report["totals"]["blobs_mounted"] == len(mounted)

    # Warm: nothing changed -> zero blob bytes, at most two requests per tag.
    src_mark = len(read_access_log(source.log_file))
    dst_mark = len(read_access_log(target_registry.log_file))
    warm = ocync("sync", "-c", str(config), "--json")
    assert warm.returncode == 0, warm.stderr
    totals = json.loads(warm.stdout)["totals"]
    assert totals["skipped"] == 30 and totals["bytes"] == 0 and totals["blobs_transferred"] == 0
    src_requests = read_access_log(source.log_file)[src_mark:]
    dst_requests = read_access_log(target_registry.log_file)[dst_mark:]
    tag_requests = [e for e in src_requests + dst_requests if "/manifests/" in e.uri]
    assert len(tag_requests) <= 2 * 30
    # The rest is one tag listing per mapping and a ping per registry.
    others = [e for e in src_requests + dst_requests if "/manifests/" not in e.uri]
    assert len(others) <= 10 + 2 * 2


def test_immutable_tags_skip_with_zero_requests(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    config = write_config(
        tmp_path / "m.yaml",
        source,
        {"dst": target_registry},
        corpus,
        tmp_path / "cache.json",
        tags={"immutable_tags": "1.*"},
    )
    assert ocync("sync", "-c", str(config)).returncode == 0
    mark = len(read_access_log(target_registry.log_file))
    warm = ocync("sync", "-c", str(config), "--json")
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)["totals"]["skipped"] == 30
    manifest_requests = [
        e for e in read_access_log(target_registry.log_file)[mark:] if "/manifests/" in e.uri
    ]
    assert manifest_requests == []


def test_literal_tags_do_not_list_the_source(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    config = write_config(
        tmp_path / "m.yaml",
        source,
        {"dst": target_registry},
        corpus,
        tmp_path / "cache.json",
        tags={"include": ["1.1.0"]},
    )
    mark = len(read_access_log(source.log_file))
    result = ocync("sync", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "synced" in result.stdout and result.stdout.count("\n") == 11  # 10 images + summary
    assert not [e for e in read_access_log(source.log_file)[mark:] if "/tags/list" in e.uri]


def test_one_failing_mapping_does_not_stop_the_others(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    config = write_config(
        tmp_path / "m.yaml", source, {"dst": target_registry}, corpus, tmp_path / "cache.json"
    )
    doc = json.loads(config.read_text())
    doc["mappings"].append({"from": "corpus/missing", "tags": {"include": ["1.0.0"]}})
    config.write_text(json.dumps(doc))
    result = ocync("sync", "-c", str(config), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["totals"]["synced"] == 30 and report["totals"]["failed"] == 1
    failed = [i for i in report["images"] if i["status"] == "failed"]
    assert "corpus/missing" in failed[0]["source"]


def test_sigterm_then_rerun_fetches_no_completed_blob_again(registry_binary, tmp_path):
    corpus = build_corpus(repositories=6, tags=3, base_size=2 * 1024 * 1024, app_size=512 * 1024)
    with (
        RegistryProcess(workdir=tmp_path / "src") as source,
        RegistryProcess(workdir=tmp_path / "dst") as target,
    ):
        corpus.push(source.url)
        config = write_config(
            tmp_path / "m.yaml", source, {"dst": target}, corpus, tmp_path / "cache.json"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "ocync_core", "sync", "-c", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Wait until some blobs reached the target, then ask it to stop.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [e for e in read_access_log(target.log_file) if e.method == "PUT"]
            if len(done) >= 3:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1, err  # partial: stopped before the end
        first_report = json.loads(out)
        assert first_report["interrupted"] is True
        assert first_report["totals"]["synced"] < len(corpus.images)
        assert "SIGTERM" in err
        first = read_access_log(source.log_file)
        fetched_first = {
            e.uri.rsplit("/", 1)[1] for e in first if e.is_blob_get and e.status == 200
        }
        completed = {
            e.uri.split("digest=")[1].split("&")[0].replace("%3A", ":")
            for e in read_access_log(target.log_file)
            if e.method == "PUT" and "digest=" in e.uri and e.status == 201
        }
        mark = len(first)

        again = ocync("sync", "-c", str(config), "--json")
        assert again.returncode == 0, again.stderr
        assert target_digests(target, corpus) == expected_digests(corpus)
        refetched = {
            e.uri.rsplit("/", 1)[1]
            for e in read_access_log(source.log_file)[mark:]
            if e.is_blob_get
        }
        assert not (refetched & completed), "a blob completed by the first run was fetched again"
        assert fetched_first and completed


def test_two_targets_fetch_each_blob_once(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    with RegistryProcess(workdir=tmp_path / "second") as second:
        config = write_config(
            tmp_path / "m.yaml",
            source,
            {"one": target_registry, "two": second},
            corpus,
            tmp_path / "cache.json",
        )
        mark = len(read_access_log(source.log_file))
        result = ocync("sync", "-c", str(config), "--json")
        assert result.returncode == 0, result.stderr
        assert target_digests(target_registry, corpus) == expected_digests(corpus)
        assert target_digests(second, corpus) == expected_digests(corpus)
        gets = Counter(
            e.uri.rsplit("/", 1)[1]
            for e in read_access_log(source.log_file)[mark:]
            if e.is_blob_get
        )
        assert set(gets) == corpus.unique_blobs and max(gets.values()) == 1


@pytest.mark.parametrize(
    ("mutation", "path"),
    [
        (lambda d: d["registries"]["src"].update(urll="x"), "registries.src.urll"),
        (lambda d: d["global"].update(max_concurrent_images="ten"), "global.max_concurrent_images"),
        (lambda d: d["mappings"][0].update(source="nope"), "mappings[0].source"),
        (lambda d: d["mappings"][0].update(tags={"latest": 3}), "mappings[0].tags"),
        (lambda d: d["mappings"][0].update(tags={"semver": ">>1.x.y"}), "mappings[0].tags.semver"),
    ],
)
def test_bad_configs_exit_3_naming_the_path(tmp_path, mutation, path):
    doc = {
        "global": {},
        "registries": {"src": {"url": "127.0.0.1:1"}, "dst": {"url": "127.0.0.1:2"}},
        "defaults": {"source": "src", "targets": "dst"},
        "mappings": [{"from": "team/app"}],
    }
    mutation(doc)
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps(doc))
    for command in (["sync", "-c", str(config)], ["validate", str(config)]):
        result = ocync(*command)
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert path in result.stderr, result.stderr
        assert "bad.yaml" in result.stderr


def test_shortest_config_validates(tmp_path):
    config = tmp_path / "mirror.yaml"
    config.write_text(
        "registries:\n"
        "  src: { url: cgr.dev }\n"
        "  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com }\n"
        "defaults: { source: src, targets: ecr }\n"
        "mappings:\n"
        "  - from: chainguard/static\n"
        "    to: static\n"
    )
    result = ocync("validate", str(config))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_dry_run_writes_nothing(corpus_source, target_registry, tmp_path):
    source, corpus = corpus_source
    config = write_config(
        tmp_path / "m.yaml", source, {"dst": target_registry}, corpus, tmp_path / "cache.json"
    )
    result = ocync("sync", "-c", str(config), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["would_sync"] == 30
    writes = [e for e in read_access_log(target_registry.log_file) if e.method in ("PUT", "POST")]
    assert writes == []
    assert os.path.getsize(target_registry.log_file) > 0
