"""Running the real `ocync sync` command in a subprocess, as a mirror job would.

`write_config` writes a config (JSON is YAML) mapping source repositories to target
registries; `run_sync` runs it to the end and parses the `--json` report; `start_sync` starts
it without waiting, for tests that signal or kill the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocync_conformance.corpus import Corpus

__all__ = [
    "SyncRun",
    "corpus_mappings",
    "mirror_name",
    "run_sync",
    "start_sync",
    "write_config",
]


def mirror_name(repository: str) -> str:
    """Where a corpus repository lands at the target."""
    return repository.replace("corpus/", "mirror/", 1)


def corpus_mappings(corpus: Corpus, **extra: object) -> list[dict[str, object]]:
    return [{"from": repo, "to": mirror_name(repo), **extra} for repo in corpus.repositories]


def write_config(
    path: Path,
    *,
    source: str,
    targets: Mapping[str, str],
    mappings: Sequence[Mapping[str, object]],
    cache: Path | None,
    registries: Mapping[str, Mapping[str, object]] | None = None,
    **global_settings: object,
) -> Path:
    """A config with registry `src` (host `source`), the `targets` (alias -> host) as default
    targets, and extra keys per registry alias from `registries`."""
    hosts = {"src": source, **targets}
    doc: dict[str, Any] = {
        "global": {"cache": str(cache) if cache is not None else False, **global_settings},
        "registries": {
            alias: {"url": host, **(registries or {}).get(alias, {})}
            for alias, host in hosts.items()
        },
        "defaults": {"source": "src", "targets": list(targets)},
        "mappings": [dict(m) for m in mappings],
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


@dataclass
class SyncRun:
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def report(self) -> dict[str, Any]:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"ocync sync printed no JSON report (exit {self.returncode}):\n"
                f"{self.stdout}\n{self.stderr}"
            ) from exc

    def images(self, status: str | None = None) -> list[dict[str, Any]]:
        found = self.report["images"]
        return [i for i in found if status is None or i["status"] == status]

    def explain(self) -> str:
        failures = ""
        with contextlib.suppress(AssertionError):
            failures = "\n".join(
                f"{i['source']} -> {i.get('target')}: {i.get('reason')}"
                for i in self.images()
                if i["status"] == "failed"
            )
        return (
            f"exit {self.returncode} after {self.duration:.1f}s\n{failures}\n{self.stderr[-3000:]}"
        )


def _command(config: Path, extra: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "ocync_core", "sync", "-c", str(config), "--json", *extra]


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env or {})
    return merged


def run_sync(
    config: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> SyncRun:
    started = time.monotonic()
    done = subprocess.run(
        _command(config, extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(env),
    )
    return SyncRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def start_sync(
    config: Path, *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(config, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(env),
    )
