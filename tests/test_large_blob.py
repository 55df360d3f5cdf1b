"""A 1 GiB blob streams source -> target with bounded memory (peak RSS of the ocync process)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator

import httpx

from ocync_conformance.images import push_blob, push_manifest
from ocync_core import mediatypes

GIB = 1024 * 1024 * 1024
RSS_LIMIT_MB = 150

# Runs `ocync copy` as the only child of a fresh interpreter, so RUSAGE_CHILDREN is its own peak.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run([sys.executable, "-m", "ocync_core", "copy", "--json", *sys.argv[1:]],
                      capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "seconds": time.monotonic() - started,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _pattern_blocks(total: int, block: int = 1024 * 1024) -> Iterator[bytes]:
    """Deterministic, non-repeating content: each block is a hash chain, cheap to generate."""
    seed = hashlib.sha256(b"ocync-large-blob").digest()
    base = bytes(range(256)) * (block // 256)
    sent = 0
    counter = 0
    while sent < total:
        stamp = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        chunk = stamp + base[len(stamp) :]
        chunk = chunk[: total - sent]
        counter += 1
        sent += len(chunk)
        yield chunk


def _upload_streamed(url: str, repository: str, total: int) -> str:
    """POST, one streamed PATCH hashing as it goes, then PUT ?digest=: one pass over the data."""
    hasher = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for chunk in _pattern_blocks(total):
            hasher.update(chunk)
            yield chunk

    with httpx.Client(base_url=url, timeout=600) as http:
        started = http.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.url.join(started.headers["Location"])
        patched = http.patch(
            location, content=body(), headers={"Content-Type": "application/octet-stream"}
        )
        assert patched.status_code == 202, patched.text
        digest = f"sha256:{hasher.hexdigest()}"
        final = httpx.URL(str(patched.url.join(patched.headers["Location"]))).copy_merge_params(
            {"digest": digest}
        )
        done = http.put(final, headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    return digest


def test_one_gib_blob_copies_with_bounded_memory(registry, target_registry, capsys):
    layer = _upload_streamed(registry.url, "big/blob", GIB)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_digest = push_blob(registry.url, "big/blob", config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {
                "mediaType": mediatypes.OCI_CONFIG,
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [{"mediaType": mediatypes.OCI_LAYER, "digest": layer, "size": GIB}],
        }
    ).encode()
    push_manifest(registry.url, "big/blob", "v1", manifest, mediatypes.OCI_MANIFEST)

    measured = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            f"{registry.host}/big/blob:v1",
            f"{target_registry.host}/big/blob:v1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    outcome = json.loads(measured.stdout)
    assert outcome["rc"] == 0, outcome["stderr"]
    report = json.loads(outcome["stdout"])
    assert report["bytes"] >= GIB
    peak_mb = outcome["max_rss_kb"] / 1024
    with capsys.disabled():
        rate = GIB / outcome["seconds"] / 1e6
        print(
            f"\n1 GiB copy: {outcome['seconds']:.1f} s ({rate:.0f} MB/s), peak RSS {peak_mb:.0f} MB"
        )
    assert peak_mb < RSS_LIMIT_MB

    with httpx.Client(base_url=target_registry.url) as http:
        head = http.head(f"/v2/big/blob/blobs/{layer}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == GIB
