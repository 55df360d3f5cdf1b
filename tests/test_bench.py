"""The benchmark harness: its theoretical minimum on a corpus small enough to count by hand,
and one run of `python -m bench` on the tiny preset, whose JSON record must be complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.minimum import minimum
from bench.model import EMPTY, Blob, Image, Manifest, Snapshot

REPO_ROOT = Path(__file__).resolve().parent.parent
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BASE = Blob("sha256:base", 100)  # shared by every image


def _image(repository: str, tag: str, n: int) -> Image:
    """An index (10 bytes) over one manifest (20 bytes): config (5) + BASE + app layer (50)."""
    blobs = (Blob(f"sha256:config{n}", 5), BASE, Blob(f"sha256:app{n}", 50))
    child = Manifest(f"sha256:manifest{n}", 20, MANIFEST, blobs)
    return Image(repository, tag, Manifest(f"sha256:index{n}", 10, INDEX), (child,))


# ns/a has two tags, ns/b one: 7 unique blobs, BASE in both repositories.
SOURCE = Snapshot((_image("ns/a", "t1", 1), _image("ns/a", "t2", 2), _image("ns/b", "t1", 3)))


def test_cold_minimum_fetches_each_blob_once_and_mounts_across_repositories():
    least = minimum(SOURCE, [EMPTY])
    assert dict(least.source.requests) == {"tag_list": 2, "manifest_get": 6, "blob_get": 7}
    assert dict(least.target.requests) == {
        "upload_start": 7,
        "upload_finish": 7,
        "mount": 1,  # BASE into ns/b
        "manifest_put": 6,
    }
    assert least.requests == 15 + 21
    assert least.source.bytes == 3 * 10 + 3 * 20 + 100 + 3 * 50 + 3 * 5
    assert least.target.bytes == least.source.bytes  # uploads and pushes carry the same bodies


def test_warm_minimum_is_one_head_per_tag_per_side_plus_tag_lists():
    least = minimum(SOURCE, [SOURCE])
    assert dict(least.source.requests) == {"tag_list": 2, "manifest_head": 3}
    assert dict(least.target.requests) == {"manifest_head": 3}
    assert least.bytes == 0


def test_partial_minimum_copies_only_the_changed_tag():
    changed = SOURCE.replaced([_image("ns/a", "t2", 4)])
    least = minimum(changed, [SOURCE])
    # Unchanged tags: a HEAD; the changed one: its index GET (instead of the HEAD).
    assert dict(least.source.requests) == {
        "tag_list": 2,
        "manifest_head": 2,
        "manifest_get": 2,
        "blob_get": 2,  # config4 and app4; BASE is already in ns/a at the target
    }
    assert dict(least.target.requests) == {
        "manifest_head": 3,
        "upload_start": 2,
        "upload_finish": 2,
        "manifest_put": 2,
    }


def test_two_targets_fetch_once_and_upload_to_each():
    least = minimum(SOURCE, [EMPTY, EMPTY])
    assert least.source.total == 15
    assert least.target.total == 2 * 21
    assert least.target.bytes == 2 * least.source.bytes


def test_harness_runs_the_tiny_corpus_and_records_every_field(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--preset=tiny",
            "--repeat=1",
            "--scenarios=cold,large_blob",
            f"--cache-dir={tmp_path / 'cache'}",
            f"--results={tmp_path / 'results'}",
            "--no-latest",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record_file,) = (tmp_path / "results").glob("*-tiny.json")
    record = json.loads(record_file.read_text())
    assert (tmp_path / "results" / record_file.name.replace(".json", ".md")).exists()
    for key in ("started", "elapsed_s", "preset", "seed", "repeat", "host", "corpus"):
        assert key in record, f"record lacks {key}"
    assert set(record["scenarios"]) == {"cold", "large_blob"}
    run_fields = {
        "wall_s",
        "cpu_s",
        "peak_rss_mb",
        "requests",
        "requests_source",
        "requests_target",
        "bytes",
        "by_action",
        "duplicate_blob_gets",
        "mounts",
        "throttled",
        "problems",
    }
    for name, scenario in record["scenarios"].items():
        assert {"minimum", "runs", "summary", "ratios", "tags"} <= set(scenario)
        assert {"ocync", "skopeo"} <= set(scenario["runs"]), name
        for tool, runs in scenario["runs"].items():
            (run,) = runs
            assert run_fields <= set(run), f"{name}/{tool} lacks {run_fields - set(run)}"
            assert run["problems"] == [], f"{name}/{tool}: {run['problems']}"
            assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mb"] > 0
        assert "ocync/skopeo" in scenario["ratios"] and "ocync/minimum" in scenario["ratios"]

    cold = record["scenarios"]["cold"]
    corpus = record["corpus"]["main"]
    assert cold["minimum"]["source"]["by_action"]["blob_get"] == corpus["unique_blobs"]
    ocync = cold["runs"]["ocync"][0]
    # Every blob crossed exactly once: the proxy counted what the minimum predicts.
    assert ocync["by_action"]["source"]["blob_get"] == corpus["unique_blobs"]
    assert ocync["duplicate_blob_gets"] == 0
    assert ocync["requests"] >= cold["minimum"]["requests"]
    big = record["scenarios"]["large_blob"]
    assert "curl-stream" in big["runs"]
    assert all(r[0]["blob_throughput_mbps"] > 0 for r in big["runs"].values())
    assert {c["claim"] for c in record["must_show"]} >= {"cold: ocync requests / minimum"}
