"""Deliberately broken plugins fail the conformance kit, and its messages name what is broken.

Each case writes a plugin author's test file (a broken plugin object registered through
`extra_plugins`, in a suite class for one group of checks) next to the same group run with
the generic plugin, runs pytest on it in a subprocess, and reads the outcome per check from
the JUnit report: the broken class fails, every failure says why in the kit's words, and the
generic plugin passes the very same checks.
"""

from __future__ import annotations

import textwrap

import pytest

from ocync_conformance.outcomes import SuiteOutcomes, read_junit

# Imports, the broken kind, and the generic plugin's class; each case adds its plugin.
_HEADER = '''
from ocync_conformance.capabilities import Capabilities
from ocync_conformance.suite.existence import ExistenceChecks
from ocync_conformance.suite.mounts import MountChecks
from ocync_conformance.suite.uploads import UploadChecks
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import MountMode, MountPolicy, UploadMode, UploadStrategy

MIB = 1024 * 1024
KIND = "broken"


class BrokenPlugin:
    """Serves kind "broken" only; the suite class names that kind explicitly."""

    OCYNC_KINDS = (KIND,)
'''


def _run_suite(
    pytester: pytest.Pytester, body: str, checks: str
) -> tuple[pytest.RunResult, SuiteOutcomes]:
    """Run the checks `checks` (a ``-k`` expression) of the suite classes in `body`."""
    pytester.makepyfile(test_plugin=_HEADER + textwrap.dedent(body))
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tb=short", f"--junitxml={report}", "-k", checks, timeout=300
    )
    return result, read_junit(report)


def _assert_broken_fails(
    result: pytest.RunResult, outcomes: SuiteOutcomes, broken: str, generic: str, phrase: str
) -> None:
    failures = outcomes.failed.get(broken, {})
    assert result.ret != 0, "the kit passed a broken plugin"
    assert failures, f"no check of {broken} failed: {outcomes}"
    unexplained = {name: msg for name, msg in failures.items() if phrase not in msg}
    assert not unexplained, f"failures that do not say {phrase!r}: {unexplained}"
    result.assert_outcomes(
        failed=len(failures),
        passed=len(outcomes.passed.get(broken, [])) + len(outcomes.passed.get(generic, [])),
        skipped=len(outcomes.skipped.get(broken, [])) + len(outcomes.skipped.get(generic, [])),
    )
    result.stdout.fnmatch_lines([f"*AssertionError: *{phrase}*"])
    # The same checks, with the generic plugin: they pass, so the plugin is what fails them.
    assert not outcomes.failed.get(generic), f"the generic plugin failed: {outcomes.failed}"
    assert outcomes.passed.get(generic), f"the generic plugin passed nothing: {outcomes}"
    assert outcomes.checks(generic) == outcomes.checks(broken)


def test_chunks_above_the_registry_limit_fail_the_upload_checks(pytester: pytest.Pytester):
    result, outcomes = _run_suite(
        pytester,
        """
        class OversizedChunks(BrokenPlugin):
            @hookimpl
            def ocync_upload_strategy(self, registry, kind):
                if kind != KIND:
                    return None
                return UploadStrategy(mode=UploadMode.CHUNKED, max_chunk=8 * MIB)


        class TestOversizedChunks(UploadChecks):
            plugins = ["ocync_oci"]
            extra_plugins = [OversizedChunks()]
            kind = KIND
            capabilities = Capabilities(max_chunk=4 * MIB)


        class TestGenericWithChunkLimit(UploadChecks):
            plugins = ["ocync_oci"]
            capabilities = Capabilities(max_chunk=4 * MIB)
        """,
        "test_upload_large_blob or test_upload_respects_chunk_limit",
    )
    _assert_broken_fails(
        result,
        outcomes,
        "TestOversizedChunks",
        "TestGenericWithChunkLimit",
        "above the registry's chunk limit",
    )


def test_mount_policy_ignoring_the_202_session_fails_the_mount_checks(pytester: pytest.Pytester):
    result, outcomes = _run_suite(
        pytester,
        """
        class Ignores202(BrokenPlugin):
            @hookimpl
            def ocync_mount_policy(self, registry, kind):
                if kind != KIND:
                    return None
                return MountPolicy(MountMode.WITH_FROM, not_mounted_statuses=frozenset({202}))


        class TestIgnores202(MountChecks):
            plugins = ["ocync_oci"]
            extra_plugins = [Ignores202()]
            kind = KIND


        class TestGenericMounts(MountChecks):
            plugins = ["ocync_oci"]
        """,
        "test_mount_202_continues_in_the_opened_session",
    )
    _assert_broken_fails(
        result, outcomes, "TestIgnores202", "TestGenericMounts", "ignored the upload session"
    )


def test_lying_existence_checker_fails_the_existence_checks(pytester: pytest.Pytester):
    result, outcomes = _run_suite(
        pytester,
        """
        class EverythingExists:
            async def exists(self, repository, digests):
                return {digest: True for digest in digests}


        class LyingExistence(BrokenPlugin):
            @hookimpl
            def ocync_existence_checker(self, registry, kind, client):
                return EverythingExists() if kind == KIND else None


        class TestLyingExistence(ExistenceChecks):
            plugins = ["ocync_oci"]
            extra_plugins = [LyingExistence()]
            kind = KIND


        class TestGenericExistence(ExistenceChecks):
            plugins = ["ocync_oci"]
        """,
        "test_existence_of_present_and_absent_blobs",
    )
    _assert_broken_fails(
        result,
        outcomes,
        "TestLyingExistence",
        "TestGenericExistence",
        "existence checker answered wrongly",
    )
