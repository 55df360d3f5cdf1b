"""`ocync conformance [PLUGIN]`: runs the conformance suite for one plugin and summarises it.

Run as a subprocess (`python -m ocync_core`), as a plugin author runs it; each run selects a
few fast checks with -k so the whole file stays within seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from tinyplugin import build_and_install_tiny, tiny_env

from ocync_conformance.selected import Selection, select_plugin
from ocync_core.cli import cli
from ocync_core.errors import BadInput

OCYNC = [sys.executable, "-m", "ocync_core"]
FAST_CHECKS = "test_kind_is_declared or test_existence_of_present_and_absent_blobs"


def conformance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "OCYNC_PLUGINS"}
    return subprocess.run(
        [*OCYNC, "conformance", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def table_rows(out: str) -> dict[str, list[str]]:
    """The summary's indented rows, by their first cell."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:2] == "  "}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_generic_plugin_passes_and_prints_both_tables(tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    done = conformance("ocync_oci", "-k", FAST_CHECKS, "--junit-xml", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "conformance of plugin ocync_oci (kind oci) against environment open" in out
    assert "registry capabilities used:" in out
    assert any(line.split() == ["batch_existence", "no"] for line in out.splitlines())
    assert "results per group of checks:" in out
    rows = table_rows(out)
    assert rows["DetectionChecks"] == ["1", "0", "0"]
    assert rows["ExistenceChecks"] == ["1", "0", "0"]
    assert rows["total"] == ["2", "0", "0"]
    cases = ET.parse(junit).getroot().iter("testcase")
    assert {case.get("name") for case in cases} == set(FAST_CHECKS.split(" or "))


def test_skipped_checks_are_counted_with_their_reason() -> None:
    done = conformance("-k", "test_batch_existence_uses_few_requests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert table_rows(done.stdout)["ExistenceChecks"] == ["0", "0", "1"]
    assert "ExistenceChecks: registry lacks capability 'batch_existence'" in done.stdout


def test_unknown_plugin_is_bad_input() -> None:
    # Refused before pytest starts, so it runs in-process.
    done = CliRunner().invoke(cli, ["conformance", "ocync-no-such-plugin"])
    assert done.exit_code == 3, done.output
    assert "no ocync plugin named 'ocync-no-such-plugin' is installed" in done.stderr
    assert "ocync_oci" in done.stderr  # the installed ones are listed
    assert "results per group" not in done.stdout  # nothing ran


def test_unknown_environment_is_bad_input() -> None:
    done = CliRunner().invoke(cli, ["conformance", "ocync_oci", "--environment", "nowhere"])
    assert done.exit_code == 3, done.output
    assert "no conformance environment 'nowhere'" in done.stderr


def test_a_check_selection_matching_nothing_is_bad_input() -> None:
    done = conformance("-k", "no_check_has_this_name")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no check matches -k 'no_check_has_this_name'" in done.stderr


def test_failing_checks_exit_1_and_name_the_registry() -> None:
    registry = f"http://127.0.0.1:{closed_port()}"
    done = conformance("ocync_oci", "--registry", registry, "-k", FAST_CHECKS)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"against registry {registry}" in done.stdout
    assert "ExistenceChecks.test_existence_of_present_and_absent_blobs:" in done.stdout
    assert f"1 conformance check(s) failed for plugin ocync_oci against registry {registry}" in (
        done.stderr
    )


def test_an_already_running_registry_is_tested_through_the_proxy(shared_registry) -> None:
    """--registry: no registry started, the running one is reached through a local proxy."""
    done = conformance("ocync_oci", "--registry", shared_registry.url, "-k", FAST_CHECKS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"against registry {shared_registry.url}" in done.stdout
    with httpx.Client(base_url=shared_registry.url) as http:
        listing = http.get("/v2/_catalog", params={"n": 1000}).json()["repositories"]
    assert any(name.startswith("conformance/test-existence") for name in listing), listing


def test_third_party_plugin_is_tested_for_its_declared_kind(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    site = build_and_install_tiny(tmp_path_factory.mktemp("tiny"))
    done = conformance("ocync-tiny", "-k", "test_kind_is_declared", env=tiny_env(site))
    assert done.returncode == 0, done.stdout + done.stderr
    # Named by its distribution; tested as its entry point, for its first OCYNC_KINDS.
    assert "conformance of plugin tiny (kind tiny) against environment open" in done.stdout


def test_pytest_without_a_plugin_name_skips_the_suite_saying_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "ocync_conformance.selected", "-q", "-rs",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no plugin to test: name one with --ocync-plugin NAME" in done.stdout
    assert " passed" not in done.stdout and " failed" not in done.stdout


def test_selection_follows_the_plugin_declarations() -> None:
    assert select_plugin("ocync_oci") == Selection("ocync_oci", "oci", "open")
    # A built-in environment named after the kind wins over `open`.
    assert select_plugin("ocync-ecr") == Selection("ocync_ecr", "ecr", "ecr")
    assert select_plugin("ocync_ecr", kind="ecr-public") == Selection(
        "ocync_ecr", "ecr-public", "open"
    )
    assert select_plugin("ocync_oci", environment="basic").environment == "basic"
    with pytest.raises(BadInput, match="kind 'ecr' is not served by plugin 'ocync_oci'"):
        select_plugin("ocync_oci", kind="ecr")
