"""A full or read-only disk under a real `ocync sync`: the run goes on without staging, or
without saving its cache, says so, and never damages the cache file it had.

Each case runs the sync in a private mount namespace (`unshare --mount`) where a tiny tmpfs is
mounted over the staging or cache directory: real ENOSPC and EROFS, nothing faked.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_mirror import small_corpus
from mirror_audit import audit, tag_digests
from sync_harness import SyncRun, corpus_mappings, mirror_name, run_sync, write_config

from ocync_conformance.corpus import Corpus
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.cache import TransferCache
from ocync_core.staging import STALE_PARTIAL_SECONDS, BlobStaging


def _can_mount_privately() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "t", "/mnt"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


needs_private_mounts = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _can_mount_privately(),
    reason="needs a private mount namespace where tmpfs can be mounted (root)",
)

# Fills a file system to its last byte (dd stops with ENOSPC, which is the point).
FILL = "dd if=/dev/zero of={dir}/filler bs=4k 2>/dev/null || true"


def _sync_command(config: Path, out: Path, err: Path) -> str:
    sync = [sys.executable, "-m", "ocync_core", "sync", "-c", str(config), "--json"]
    return f"{shlex.join(sync)} > {shlex.quote(str(out))} 2> {shlex.quote(str(err))}"


def _in_namespace(script: str) -> None:
    """Run a shell script in a private mount namespace; its mounts vanish when it ends."""
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _result(out: Path, err: Path, code: Path) -> SyncRun:
    return SyncRun(int(code.read_text()), out.read_text(), err.read_text(), 0.0)


@pytest.fixture(scope="module")
def seeded(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, Corpus]]:
    corpus = small_corpus()
    with RegistryProcess(workdir=tmp_path_factory.mktemp("disk-source")) as source:
        corpus.push(source.url)
        yield source, corpus


def _assert_mirrored(target: RegistryProcess, corpus: Corpus, repositories: list[str]) -> None:
    assert not audit(target), "a manifest at the target names missing content"
    expected = {
        f"{mirror_name(i.repository)}:{i.tag}": i.digest
        for i in corpus.images
        if i.repository in repositories
    }
    assert tag_digests(target, [mirror_name(r) for r in repositories]) == expected


@needs_private_mounts
@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_staging_on_a_broken_disk_is_turned_off_and_both_targets_complete(seeded, tmp_path, disk):
    source, corpus = seeded
    staging = tmp_path / "staging"
    staging.mkdir()
    out, err, code = tmp_path / "out.json", tmp_path / "err.txt", tmp_path / "code"
    with (
        RegistryProcess(workdir=tmp_path / "one") as one,
        RegistryProcess(workdir=tmp_path / "two") as two,
    ):
        config = write_config(
            tmp_path / "mirror.json",
            source=source.host,
            targets={"one": one.host, "two": two.host},
            mappings=corpus_mappings(corpus),
            cache=tmp_path / "cache.json",
            staging_dir=str(staging),
        )
        # Full: 64 KiB, far below one 512 KiB layer. Read-only: nothing can be created at all.
        options = "size=64k" if disk == "full" else "ro,size=1m"
        leftovers = tmp_path / "leftovers"
        _in_namespace(
            f"mount -t tmpfs -o {options} tmpfs {staging}\n"
            f"{_sync_command(config, out, err)} && echo 0 > {code} || echo $? > {code}\n"
            f"find {staging} -type f -name '.*' > {leftovers}\n"
        )
        run = _result(out, err, code)
        assert run.returncode == 0, run.explain()
        assert run.stderr.count("staging disabled for the rest of the run") == 1, run.stderr
        reason = "No space left on device" if disk == "full" else "Read-only file system"
        assert reason in run.stderr, run.stderr
        assert leftovers.read_text() == "", "partial staging files were left behind"
        for target in (one, two):
            _assert_mirrored(target, corpus, corpus.repositories)


@needs_private_mounts
@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_cache_on_a_broken_disk_is_not_saved_and_the_old_file_survives(seeded, tmp_path, disk):
    source, corpus = seeded
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    cache = cache_dir / "cache.json"
    before = tmp_path / "before.json"
    out, err, code = tmp_path / "out.json", tmp_path / "err.txt", tmp_path / "code"
    with RegistryProcess(workdir=tmp_path / "target") as target:

        def config(name: str, repositories: list[str]) -> Path:
            chosen = [m for m in corpus_mappings(corpus) if m["from"] in repositories]
            return write_config(
                tmp_path / name,
                source=source.host,
                targets={"dst": target.host},
                mappings=chosen,
                cache=cache,
            )

        first = config("first.json", corpus.repositories[:1])
        everything = config("all.json", corpus.repositories)
        breaking = (
            FILL.format(dir=cache_dir) if disk == "full" else f"mount -o remount,ro {cache_dir}"
        )
        _in_namespace(
            f"mount -t tmpfs -o size=256k tmpfs {cache_dir}\n"
            f"{_sync_command(first, out, err)}\n"
            f"cp {cache} {before}\n"
            f"{breaking}\n"
            f"{_sync_command(everything, out, err)} && echo 0 > {code} || echo $? > {code}\n"
            f"cp {cache} {tmp_path / 'after.json'}\n"
        )
        run = _result(out, err, code)
        assert run.returncode == 0, run.explain()
        _assert_mirrored(target, corpus, corpus.repositories)
        assert "could not save the transfer cache" in run.stderr, run.stderr
        assert "the transfer cache was not saved" in run.stderr, run.stderr
        assert ("ENOSPC" if disk == "full" else "EROFS") in run.stderr, run.stderr
        after = (tmp_path / "after.json").read_bytes()
        assert after == before.read_bytes(), "the cache file changed although it was not saved"
        kept = TransferCache.open(tmp_path / "after.json")
        assert {r for _, r, _ in kept.blob_entries()} == {mirror_name(corpus.repositories[0])}


def test_staged_copy_gone_bad_since_an_earlier_run_is_fetched_again(seeded, tmp_path):
    """A kept `staging_dir` whose copy of a layer rotted on disk (same size, one byte off)."""
    source, corpus = seeded
    staging = tmp_path / "staging"

    def mirror_to_two_targets(name: str) -> int:
        """Mirror through a fresh pair of targets; returns how many blobs were read."""
        with (
            RegistryProcess(workdir=tmp_path / name / "one") as one,
            RegistryProcess(workdir=tmp_path / name / "two") as two,
            FaultProxy(source, name="source") as src,
        ):
            config = write_config(
                tmp_path / f"{name}.json",
                source=src.host,
                targets={"one": one.host, "two": two.host},
                mappings=corpus_mappings(corpus),
                cache=None,
                staging_dir=str(staging),
            )
            run = run_sync(config)
            assert run.returncode == 0, run.explain()
            for target in (one, two):
                _assert_mirrored(target, corpus, corpus.repositories)
            assert src.wait_idle()
            return src.count(ProxyAction.BLOB_GET, status=200)

    first_reads = mirror_to_two_targets("first")
    assert first_reads == len(corpus.unique_blobs)  # staged once, uploaded twice from disk
    victim = max(corpus.unique_blobs, key=lambda d: len(_blob(corpus, d)))
    staged = staging / victim.replace(":", "/")
    rotten = bytearray(staged.read_bytes())
    rotten[len(rotten) // 2] ^= 0xFF
    staged.write_bytes(bytes(rotten))

    second_reads = mirror_to_two_targets("second")
    assert second_reads == 1, "only the rotten staged copy should have been fetched again"
    assert staged.read_bytes() == _blob(corpus, victim), "the staged copy was not repaired"


def _blob(corpus: Corpus, digest: str) -> bytes:
    return next(i.blobs[digest] for i in corpus.images if digest in i.blobs)


def test_a_kept_staging_dir_sheds_what_a_killed_run_left_half_written(tmp_path):
    staging = tmp_path / "staging" / "sha256"
    staging.mkdir(parents=True)
    complete = staging / ("ab" * 32)
    abandoned = staging / f".{'cd' * 32}.x1y2z3"  # as mkstemp names a download in progress
    in_progress = staging / f".{'ef' * 32}.a1b2c3"
    for path in (complete, abandoned, in_progress):
        path.write_bytes(b"layer bytes")
    long_ago = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(abandoned, (long_ago, long_ago))
    os.utime(complete, (long_ago, long_ago))

    BlobStaging(tmp_path / "staging")

    assert not abandoned.exists(), "a download no run has written to for an hour stays for ever"
    assert in_progress.exists(), "another run's download in progress was removed"
    assert complete.exists(), "a complete staged blob is for later runs to reuse"
