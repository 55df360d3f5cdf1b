"""The contenders: `ocync sync`, `skopeo sync`, and curl piping one blob (the throughput bar).

Each runs as its own process against the proxies' addresses; none is tuned: ocync runs with
its default concurrency and its transfer cache in the job's directory (kept between the cold,
warm and partial runs of a chain, as a mirror job keeps it), skopeo with its defaults.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.measure import ProcessCost, run_process


@dataclass
class SyncJob:
    """Sync every tag of `repositories` from `source` to each of `targets` (host:port)."""

    source: str
    targets: list[str]
    repositories: list[str]
    namespace: str  # every repository is `<namespace>/<name>`
    workdir: Path
    label: str

    def log(self, tool: str) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / f"{tool}-{self.label}.log"


@dataclass
class Outcome:
    cost: ProcessCost
    problems: list[str] = field(default_factory=list)


class Tool(Protocol):
    name: str

    def sync(self, job: SyncJob) -> Outcome: ...


def _failures(codes: list[int], log: Path) -> list[str]:
    """One problem per failed process, with the last line it wrote to stderr."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    last = lines[-1][-200:] if lines else ""
    return [f"exit code {c}: {last}" for c in codes if c != 0]


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return found


def compile_bytecode(packages: tuple[str, ...]) -> None:
    """Byte-compile ocync as `pip install` from a wheel does, so each run times ocync, not
    Python compiling an editable checkout (with PYTHONDONTWRITEBYTECODE set nothing is cached).

    Python checks each .pyc against its source, so a stale one is never used.
    """
    for package in packages:
        spec = importlib.util.find_spec(package)
        folders = spec.submodule_search_locations if spec is not None else None
        for folder in folders or []:
            compileall.compile_dir(folder, quiet=1)


@dataclass
class Ocync:
    name: str = "ocync"
    profile: Path | None = None  # write a py-spy flamegraph here instead of plain timing

    def __post_init__(self) -> None:
        compile_bytecode(("ocync_core", *_builtin_plugins()))

    def config(self, job: SyncJob) -> Path:
        registries = {"src": {"url": f"http://{job.source}"}}
        registries |= {f"dst{n}": {"url": f"http://{t}"} for n, t in enumerate(job.targets)}
        doc = {
            "global": {"cache": str(job.workdir / "ocync-transfer-state.json")},
            "registries": registries,
            "defaults": {"source": "src", "targets": [f"dst{n}" for n in range(len(job.targets))]},
            "mappings": [{"from": repo} for repo in job.repositories],
        }
        path = job.workdir / "ocync.yaml"
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
        return path

    def sync(self, job: SyncJob) -> Outcome:
        job.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ocync_core", "sync", "-c", str(self.config(job)), "--json"]
        if self.profile is not None:
            argv = [_py_spy(), "record", "--rate", "200", "-o", str(self.profile), "--", *argv]
        cost, out = run_process(argv, job.log(self.name))
        problems = _failures(cost.exit_codes, job.log(self.name))
        try:
            report = json.loads(out[out.index("{") :])
            problems += [
                f"{i['target']}: {i['reason']}" for i in report["images"] if i["status"] == "failed"
            ]
        except ValueError:
            problems.append("no JSON report on stdout")
        return Outcome(cost, problems)


def _builtin_plugins() -> tuple[str, ...]:
    from ocync_core.plugins import BUILTIN_PLUGINS

    return tuple(name.split(".", 1)[0] for name in BUILTIN_PLUGINS)


@dataclass
class Skopeo:
    """`skopeo sync --src yaml`: one process per target, as skopeo syncs to one destination."""

    name: str = "skopeo"

    def sync(self, job: SyncJob) -> Outcome:
        job.workdir.mkdir(parents=True, exist_ok=True)
        source = job.workdir / "skopeo-source.yaml"
        images = {repo: [] for repo in job.repositories}  # [] means every tag
        source.write_text(json.dumps({job.source: {"images": images, "tls-verify": False}}))
        total = ProcessCost()
        for target in job.targets:
            argv = [
                "skopeo",
                "sync",
                "--src=yaml",
                "--dest=docker",
                "--dest-tls-verify=false",
                "--all",
                "--preserve-digests",  # byte-for-byte, as ocync always is
                str(source),
                f"{target}/{job.namespace}",  # yaml sources land at dest/<last component>
            ]
            cost, _ = run_process(argv, job.log(self.name))
            total.add(cost)
        return Outcome(total, _failures(total.exit_codes, job.log(self.name)))


# POST for an upload URL, then GET | PUT, streamed with `-T -` (a chunked PUT). The buffered
# `--data-binary @-` cannot be the reference: curl reads no more than 1 GiB into memory.
_CURL = r"""
set -euo pipefail
loc=$(curl -sSf -o /dev/null -w '%header{location}' -X POST "http://$DST/v2/$REPO/blobs/uploads/")
case "$loc" in http*) ;; *) loc="http://$DST$loc" ;; esac
curl -sSf "http://$SRC/v2/$REPO/blobs/$DIGEST" \
  | curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T - \
      "$loc&digest=$DIGEST"
"""


@dataclass
class CurlPipe:
    """Copies one blob (`digest` in `repository`), nothing else: the throughput reference."""

    digest: str
    repository: str
    name: str = "curl-stream"

    def sync(self, job: SyncJob) -> Outcome:
        total = ProcessCost()
        for target in job.targets:
            env = {
                "PATH": "/usr/bin:/bin",
                "SRC": job.source,
                "DST": target,
                "REPO": self.repository,
                "DIGEST": self.digest,
            }
            cost, _ = run_process(["bash", "-c", _CURL], job.log(self.name), env=env)
            total.add(cost)
        return Outcome(total, _failures(total.exit_codes, job.log(self.name)))
