"""`python -m bench`: ocync against skopeo on a generated corpus, with the theoretical minimum.

Writes `bench/results/<stamp>-<preset>.json` (every run), `.md` and `.png`, and copies the
Markdown to `bench/results/latest.md`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpus import MAIN, load_or_build
from bench.presets import PRESETS
from bench.report import markdown, must_show, plot, scenario_json
from bench.scenarios import SCENARIOS, SideBySide
from bench.tools import Ocync, Skopeo, SyncJob
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.registry_process import RegistryProcess, find_registry_binary

RESULTS = Path(__file__).resolve().parent / "results"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def _host() -> dict[str, Any]:
    repo = Path(__file__).resolve().parent.parent
    return {
        "cpus": os.cpu_count(),
        # Other work on the machine shows up in wall times: say how busy it was.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ocync": _version(["git", "-C", str(repo), "describe", "--always", "--dirty"]),
        "skopeo": _version(["skopeo", "--version"]),
        "registry": _version([find_registry_binary(), "--version"]),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and scenario")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {SCENARIOS}"
    )
    parser.add_argument("--cache-dir", type=Path, help="corpus cache (~/.cache/ocync-bench)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", action="store_true", help="also run a cold ocync sync under py-spy"
    )
    parser.add_argument("--no-latest", action="store_true", help="do not update latest.md")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    return args


def _profile(corpus: Any, out: Path) -> None:
    """One cold sync of the main corpus under py-spy (separate from the timed runs)."""
    work = Path(tempfile.mkdtemp(prefix="ocync-bench-profile-"))
    try:
        from bench.corpus import clone_storage

        clone_storage(corpus.storage, work / "source" / "storage")
        with (
            RegistryProcess(workdir=work / "source") as source,
            FaultProxy(source) as proxy,
            RegistryProcess() as target,
            FaultProxy(target) as target_proxy,
        ):
            job = SyncJob(
                proxy.host, [target_proxy.host], corpus.main.repositories, MAIN, work, "profile"
            )
            outcome = Ocync(profile=out).sync(job)
            if outcome.problems:
                print(f"profile run: {outcome.problems}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    preset = PRESETS[args.preset]
    print(f"corpus {preset.name} seed {args.seed} ...", flush=True)
    corpus = load_or_build(preset, args.seed, args.cache_dir)
    generation_s = time.perf_counter() - started
    print(f"corpus ready in {generation_s:.1f} s: {json.dumps(corpus.summary())}", flush=True)

    bench = SideBySide(
        corpus,
        [Ocync(), Skopeo()],
        args.scenarios.split(","),
        progress=lambda line: print(line, flush=True),
    )
    try:
        results = bench.run(args.repeat)
    finally:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    scenarios = {name: scenario_json(runs) for name, runs in results.items()}

    args.results.mkdir(parents=True, exist_ok=True)
    base = args.results / f"{stamp}-{preset.name}"
    profile = None
    if args.profile:
        profile = base.with_suffix(".profile.svg")
        _profile(corpus, profile)
        print(f"flamegraph: {profile}")
    elapsed = time.perf_counter() - started
    record = {
        "version": 1,
        "started": stamp,
        "elapsed_s": round(elapsed, 1),
        "generation_s": round(generation_s, 1),
        "preset": preset.name,
        "seed": args.seed,
        "repeat": args.repeat,
        "host": _host(),
        "corpus": corpus.summary(),
        "scenarios": scenarios,
        "must_show": must_show(scenarios, elapsed, preset.name),
        "profile": str(profile) if profile else None,
    }
    base.with_suffix(".json").write_text(json.dumps(record, indent=1))
    text = markdown(record)
    base.with_suffix(".md").write_text(text)
    if not args.no_latest:
        (args.results / "latest.md").write_text(text)
    why_not = plot(record, base.with_suffix(".png"))
    print(text)
    print(why_not or f"plot: {base.with_suffix('.png')}")
    print(f"record: {base.with_suffix('.json')} ({elapsed:.0f} s)")
    problems = [
        p for s in scenarios.values() for r in s["runs"].values() for x in r for p in x["problems"]
    ]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
