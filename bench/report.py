"""From runs to results: medians and spread, ratios, the must-show checks, Markdown, a plot."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.scenarios import ScenarioRuns

METRICS = (
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "requests",
    "requests_source",
    "requests_target",
    "bytes",
    "duplicate_blob_gets",
    "mounts",
    "throttled",
    "blob_throughput_mbps",
    "process_throughput_mbps",
    "before_first_request_s",
    "after_last_request_s",
)
# Per-repository or per-run requests, not per-tag ones (see the warm must-show).
_NOT_PER_TAG = ("tag_list", "ping")


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Medians and spread over the runs that succeeded (failed runs are listed, not averaged)."""
    runs = [r for r in runs if not r["problems"]]
    found = {}
    for metric in METRICS:
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if values:
            found[metric] = spread(values)
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def scenario_json(runs: ScenarioRuns) -> dict[str, Any]:
    summary = {tool: summarise(r) for tool, r in runs.runs.items()}

    def med(tool: str, metric: str) -> float | None:
        return summary.get(tool, {}).get(metric, {}).get("median")

    ratios: dict[str, dict[str, float | None]] = {
        "ocync/skopeo": {m: _ratio(med("ocync", m), med("skopeo", m)) for m in METRICS},
        "ocync/minimum": {
            "requests": _ratio(med("ocync", "requests"), runs.minimum.requests),
            "bytes": _ratio(med("ocync", "bytes"), runs.minimum.bytes),
        },
        "skopeo/minimum": {
            "requests": _ratio(med("skopeo", "requests"), runs.minimum.requests),
            "bytes": _ratio(med("skopeo", "bytes"), runs.minimum.bytes),
        },
    }
    ratios = {k: {m: v for m, v in r.items() if v is not None} for k, r in ratios.items()}
    return {
        "tags": runs.tags,
        "minimum": runs.minimum.to_json(),
        "runs": runs.runs,
        "summary": summary,
        "ratios": ratios,
    }


def _per_tag(run: dict[str, Any], side: str, tags: int, strict: bool) -> float:
    actions = run["by_action"][side]
    count = sum(n for a, n in actions.items() if strict or a not in _NOT_PER_TAG)
    return count / tags


def must_show(scenarios: Mapping[str, dict[str, Any]], elapsed_s: float, preset: str) -> list:
    """The claims the benchmark exists to check, each with its measured value."""
    checks: list[dict[str, Any]] = []

    def check(claim: str, value: float | None, limit: float | None, at_most: bool = True) -> None:
        """A claim with its limit; with no limit, a measurement shown beside the claims."""
        met = (
            None
            if limit is None
            else value is not None and (value <= limit if at_most else value >= limit)
        )
        checks.append({"claim": claim, "value": value, "limit": limit, "met": met})

    def med(scenario: str, tool: str, metric: str) -> float | None:
        s = scenarios.get(scenario, {}).get("summary", {}).get(tool, {})
        return s.get(metric, {}).get("median")

    if "cold" in scenarios:
        cold = scenarios["cold"]
        check(
            "cold: ocync requests / minimum", cold["ratios"]["ocync/minimum"].get("requests"), 1.1
        )
        dups = [r["duplicate_blob_gets"] for r in cold["runs"].get("ocync", [])]
        check("cold: ocync duplicate blob GETs (worst run)", max(dups) if dups else None, 0)
        check("cold: ocync wall / skopeo wall", cold["ratios"]["ocync/skopeo"].get("wall_s"), 0.5)
    if "warm" in scenarios:
        warm = scenarios["warm"]
        tags = warm["tags"]
        for side in ("source", "target"):
            for strict in (False, True):
                values = [_per_tag(r, side, tags, strict) for r in warm["runs"].get("ocync", [])]
                # The claim is about requests made per tag. Counting everything adds the tag
                # lists (one per repository, in the minimum too) and one `/v2/` ping.
                what = (
                    "all requests (tag lists and ping included)"
                    if strict
                    else "manifest and blob requests"
                )
                check(
                    f"warm: ocync {side} {what} per tag (worst run)",
                    round(max(values), 3) if values else None,
                    None if strict else 1.0,
                )
        check("warm: ocync wall / skopeo wall", warm["ratios"]["ocync/skopeo"].get("wall_s"), 0.2)
    if "large_blob" in scenarios:
        curl = med("large_blob", "curl-stream", "blob_throughput_mbps")
        ocync = med("large_blob", "ocync", "blob_throughput_mbps")
        check("large blob: ocync throughput / curl pipe", _ratio(ocync, curl), 0.5, False)
        ocync_proc = med("large_blob", "ocync", "process_throughput_mbps")
        curl_proc = med("large_blob", "curl-stream", "process_throughput_mbps")
        check(
            "large blob: same, whole processes (start-up included)",
            _ratio(ocync_proc, curl_proc),
            0.5,
            False,
        )
        rss = [r["peak_rss_mb"] for r in scenarios["large_blob"]["runs"].get("ocync", [])]
        check("large blob: ocync peak RSS MB (worst run)", max(rss) if rss else None, 150)
    if preset == "small":
        check("whole small-preset run, seconds", round(elapsed_s, 1), 120)
    return checks


def _fmt(s: dict[str, float] | None, digits: int = 2) -> str:
    if not s:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


def markdown(record: dict[str, Any]) -> str:
    corpus = record["corpus"]
    main = corpus["main"]
    lines = [
        f"# ocync vs skopeo — preset `{record['preset']}`, seed {record['seed']}",
        "",
        f"{record['started']}; {record['repeat']} repeat(s); {record['host']['cpus']} CPUs; "
        f"ocync {record['host']['ocync']}, {record['host']['skopeo']}, "
        f"docker-registry {record['host']['registry']}.",
        "",
        f"Corpus: {main['repositories']} repositories, {main['tags']} tags, "
        f"{main['manifests']} manifests, {main['unique_blobs']} unique blobs "
        f"({main['blob_bytes'] / 2**20:.0f} MiB); {corpus['updated_tags']} tag(s) changed in "
        f"`partial`; `many_small`: {corpus['small']['tags']} tags; `large_blob`: "
        f"{corpus['big_blob_bytes'] / 2**20:.0f} MiB.",
        "",
        "Medians, (min..max) over repeats. Requests and bytes: both proxies (source + targets).",
        "",
        "| scenario | tool | wall s | CPU s | peak RSS MB | requests | MB moved | dup GETs | "
        "mounts | 429s | s to 1st request | s after last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in record["scenarios"].items():
        minimum = s["minimum"]
        for tool, summary in s["summary"].items():
            if not summary:
                lines.append(f"| {name} | {tool} | every run failed (see Problems) |||||||||")
                continue
            mb = summary.get("bytes")
            mb = {k: (v / 1e6 if k != "n" else v) for k, v in mb.items()} if mb else None
            lines.append(
                f"| {name} | {tool} | {_fmt(summary.get('wall_s'))} | "
                f"{_fmt(summary.get('cpu_s'))} | {_fmt(summary.get('peak_rss_mb'), 0)} | "
                f"{_fmt(summary.get('requests'), 0)} | {_fmt(mb, 1)} | "
                f"{_fmt(summary.get('duplicate_blob_gets'), 0)} | "
                f"{_fmt(summary.get('mounts'), 0)} | {_fmt(summary.get('throttled'), 0)} | "
                f"{_fmt(summary.get('before_first_request_s'))} | "
                f"{_fmt(summary.get('after_last_request_s'))} |"
            )
        lines.append(
            f"| {name} | *minimum* | | | | {minimum['requests']} | "
            f"{minimum['bytes'] / 1e6:.1f} | 0 | {minimum['target']['by_action'].get('mount', 0)} "
            "| 0 | | |"
        )
    lines += [
        "",
        "| scenario | ocync/skopeo wall | ocync/skopeo CPU | ocync/skopeo requests | "
        "ocync/minimum requests | skopeo/minimum requests | ocync/minimum bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in record["scenarios"].items():
        r, m, sk = s["ratios"]["ocync/skopeo"], s["ratios"]["ocync/minimum"], s["ratios"]
        lines.append(
            f"| {name} | {r.get('wall_s', '-')} | {r.get('cpu_s', '-')} | "
            f"{r.get('requests', '-')} | {m.get('requests', '-')} | "
            f"{sk['skopeo/minimum'].get('requests', '-')} | {m.get('bytes', '-')} |"
        )
    if "large_blob" in record["scenarios"]:
        lines += [
            "",
            "| large blob | blob MB/s (proxy window) | MB/s (whole process) |",
            "|---|---|---|",
        ]
        for tool, summary in record["scenarios"]["large_blob"]["summary"].items():
            lines.append(
                f"| {tool} | {_fmt(summary.get('blob_throughput_mbps'), 0)} | "
                f"{_fmt(summary.get('process_throughput_mbps'), 0)} |"
            )
    lines += ["", "| must show | measured | limit | met |", "|---|---|---|---|"]
    for c in record["must_show"]:
        met = "-" if c["met"] is None else "yes" if c["met"] else "**no**"
        limit = "-" if c["limit"] is None else c["limit"]
        lines.append(f"| {c['claim']} | {c['value']} | {limit} | {met} |")
    lines += ["", "Requests by action, ocync against the minimum (first repeat):", ""]
    for name, s in record["scenarios"].items():
        runs = s["runs"].get("ocync")
        if not runs:
            continue
        for side in ("source", "target"):
            seen = runs[0]["by_action"][side]
            least = s["minimum"][side]["by_action"]
            actions = sorted(set(seen) | set(least))
            parts = [f"{a} {seen.get(a, 0)}/{least.get(a, 0)}" for a in actions]
            lines.append(f"- {name}, {side}: " + ", ".join(parts))
    problems = [
        f"- {name} {tool} repeat {r['repeat']}: {p}"
        for name, s in record["scenarios"].items()
        for tool, runs in s["runs"].items()
        for r in runs
        for p in r["problems"]
    ]
    if problems:
        lines += ["", "Problems:", "", *problems]
    return "\n".join(lines) + "\n"


def plot(record: dict[str, Any], path: Path) -> str | None:
    """A PNG of the ratios; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    names = list(record["scenarios"])
    series = {
        "ocync/skopeo wall": [
            record["scenarios"][n]["ratios"]["ocync/skopeo"].get("wall_s") for n in names
        ],
        "ocync/skopeo CPU": [
            record["scenarios"][n]["ratios"]["ocync/skopeo"].get("cpu_s") for n in names
        ],
        "ocync/skopeo requests": [
            record["scenarios"][n]["ratios"]["ocync/skopeo"].get("requests") for n in names
        ],
        "ocync/minimum requests": [
            record["scenarios"][n]["ratios"]["ocync/minimum"].get("requests") for n in names
        ],
    }
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        xs = [i + k * width for i in range(len(names))]
        ax.bar(xs, [v or 0 for v in values], width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names)
    ax.set_ylabel("ratio (log scale, 1 = equal)")
    ax.set_title(f"ocync ratios, preset {record['preset']} (medians of {record['repeat']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
