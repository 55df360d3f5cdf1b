"""Run the conformance suite for one plugin in-process with pytest, and summarise the results.

`ocync conformance` calls `run_conformance` then prints `render`. pytest's own output stays
quiet (failures still show their messages); the summary groups the checks by the mixin that
defines them (`DetectionChecks`, `AuthChecks`, ...), so a plugin author sees which area of
the contract breaks.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

import pytest

from ocync_conformance import selected
from ocync_conformance.capabilities import Capabilities
from ocync_conformance.selected import Selection
from ocync_conformance.suite import GROUPS

__all__ = ["CheckResult", "ConformanceRun", "ResultCollector", "render", "run_conformance"]

Outcome = Literal["passed", "failed", "skipped"]

# Loaded with -p only when pytest does not autoload them: registering a module twice fails.
_NEEDED_PYTEST_PLUGINS = ("ocync_conformance.pytest_plugin", "pytest_trio.plugin")


@dataclass
class CheckResult:
    """One check's outcome; `message` is the skip reason or the failure's first line."""

    name: str
    group: str
    outcome: Outcome
    message: str = ""


@dataclass
class ConformanceRun:
    """Everything one run produced, for the summary and the exit code."""

    selection: Selection
    registry: str | None
    keyword: str | None
    checks: list[CheckResult]
    capabilities: Capabilities | None
    collection_errors: list[str]
    pytest_status: int

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.outcome == "failed"]

    @property
    def broken(self) -> bool:
        """The suite itself could not run (collection error, interruption, pytest crash)."""
        return bool(self.collection_errors) or self.pytest_status in (
            pytest.ExitCode.INTERRUPTED,
            pytest.ExitCode.INTERNAL_ERROR,
        )

    @property
    def refusal(self) -> str | None:
        """Why no check ran although the suite could: bad options, or none selected."""
        if self.pytest_status == pytest.ExitCode.USAGE_ERROR:
            return "pytest refused the options (see its message above)"
        if self.pytest_status == pytest.ExitCode.NO_TESTS_COLLECTED:
            return f"no check matches -k {self.keyword!r}" if self.keyword else "no check found"
        return None


@dataclass
class ResultCollector:
    """A pytest plugin object recording each check's outcome and the capabilities used."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    capabilities: Capabilities | None = None
    collection_errors: list[str] = field(default_factory=list)
    _groups: dict[str, str] = field(default_factory=dict)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self._groups[item.nodeid] = _group_of(item)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {report.longreprtext.strip()}")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> object:
        report = yield
        if call.when == "setup" and self.capabilities is None:
            # Every check requests `caps` (through the capability gate); it is the value the
            # checks actually ran with, the class's declaration or the environment's.
            caps = getattr(item, "funcargs", {}).get("caps")
            if isinstance(caps, Capabilities):
                self.capabilities = caps
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        known = self.results.get(report.nodeid)
        if known is not None and known.outcome == "failed":
            return  # the first failure (setup, call or teardown) is the one that says why
        name = report.nodeid.rpartition("::")[2]
        group = self._groups.get(report.nodeid, "other")
        if report.failed:
            self.results[report.nodeid] = CheckResult(name, group, "failed", _failure(report))
        elif report.skipped and known is None:
            self.results[report.nodeid] = CheckResult(name, group, "skipped", _skip(report))
        elif report.passed and report.when == "call" and known is None:
            self.results[report.nodeid] = CheckResult(name, group, "passed")


def _group_of(item: pytest.Item) -> str:
    cls = getattr(item, "cls", None)
    name = getattr(item, "originalname", item.name)
    for klass in cls.__mro__ if cls is not None else ():
        if name in vars(klass):
            return klass.__name__
    return "other"


def _skip(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _failure(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "failed"
    return f"{first} (in {report.when})" if report.when != "call" else first


def pytest_arguments(
    selection: Selection,
    registry: str | None = None,
    keyword: str | None = None,
    junit_xml: str | None = None,
) -> list[str]:
    """The pytest command line for `selection`, independent of the current directory's config."""
    suite = Path(selected.__file__)
    args = [
        str(suite),
        "-q",
        "--tb=short",
        "-p",
        "no:cacheprovider",
        # httpx imported anyio before pytest started: its pytest plugin cannot be rewritten,
        # which is irrelevant to the suite and would be the only warning shown.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        # An empty ini file and a fixed rootdir: the suite must not pick up the pytest
        # configuration (addopts, markers, plugins) of whatever project it is run from.
        "-c",
        os.devnull,
        "--rootdir",
        str(suite.parent),
        *_plugin_load_arguments(),
        "--ocync-plugin",
        selection.plugin,
        "--ocync-kind",
        selection.kind,
        "--ocync-environment",
        selection.environment,
    ]
    if registry:
        args += ["--ocync-registry", registry]
    if keyword:
        args += ["-k", keyword]
    if junit_xml:
        args += ["--junit-xml", junit_xml]
    return args


def _plugin_load_arguments() -> list[str]:
    autoloaded = (
        set()
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        else {ep.value for ep in entry_points(group="pytest11")}
    )
    return [arg for m in _NEEDED_PYTEST_PLUGINS if m not in autoloaded for arg in ("-p", m)]


def run_conformance(
    selection: Selection,
    registry: str | None = None,
    keyword: str | None = None,
    junit_xml: str | None = None,
) -> ConformanceRun:
    """Run the suite for `selection` in this process; pytest prints its own quiet output."""
    collector = ResultCollector()
    status = pytest.main(
        pytest_arguments(selection, registry, keyword, junit_xml), plugins=[collector]
    )
    return ConformanceRun(
        selection=selection,
        registry=registry,
        keyword=keyword,
        checks=list(collector.results.values()),
        capabilities=collector.capabilities,
        collection_errors=collector.collection_errors,
        pytest_status=int(status),
    )


def render(run: ConformanceRun) -> str:
    """The plain-text summary: capabilities used, then results per group of checks."""
    sel = run.selection
    where = f"registry {run.registry}" if run.registry else f"environment {sel.environment}"
    lines = [f"conformance of plugin {sel.plugin} (kind {sel.kind}) against {where}", ""]
    lines.append("registry capabilities used:")
    if run.capabilities is None:
        lines.append("  (unknown: no check got as far as the registry)")
    else:
        rows = run.capabilities.table()
        width = max(len(name) for name, _ in rows)
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += ["", *_group_table(run.checks)]
    skipped = Counter((c.group, c.message) for c in run.checks if c.outcome == "skipped")
    if skipped:
        lines += ["", "skipped:"]
        ordered = sorted(skipped.items(), key=lambda item: _group_order(item[0][0]))
        lines += [f"  {group}: {reason} (x{n})" for (group, reason), n in ordered]
    if run.failed:
        lines += ["", "failed:"]
        lines += [f"  {c.group}.{c.name}: {c.message}" for c in run.failed]
    if run.collection_errors:
        lines += ["", "the suite could not be collected:"]
        lines += [f"  {error}" for error in run.collection_errors]
    return "\n".join(lines)


_OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped")


def _group_order(group: str) -> tuple[int, str]:
    # The suite's own order of groups; groups it does not know (subclasses' own) come last.
    names = [g.__name__ for g in GROUPS]
    return (names.index(group) if group in names else len(names), group)


def _group_table(checks: list[CheckResult]) -> list[str]:
    groups = sorted({c.group for c in checks}, key=_group_order)
    counts = Counter((c.group, c.outcome) for c in checks)
    rows = [("group", *_OUTCOMES)]
    rows += [(g, *(str(counts[g, o]) for o in _OUTCOMES)) for g in groups]
    rows.append(("total", *(str(sum(counts[g, o] for g in groups)) for o in _OUTCOMES)))
    width = max(len(row[0]) for row in rows)
    return ["results per group of checks:"] + [
        f"  {row[0]:<{width}}" + "".join(f"  {cell:>7}" for cell in row[1:]) for row in rows
    ]
