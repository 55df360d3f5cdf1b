"""The GHCR plugin passes the conformance suite against the emulated GHCR, and the emulation
reproduces GHCR's quirks: plugins without them fail the checks the GHCR plugin passes.

The comparison runs in a pytest subprocess (as a plugin author's CI would) and reads each
check's outcome from the JUnit report:

- the generic plugin, whose five throttle windows admit far more than 33 requests a second,
  goes over the aggregate limit in the busy-client check. Its uploads pass: POST + one PUT is
  what GHCR accepts, so the upload quirks do not touch it;
- a plugin uploading 8 MiB PATCH chunks is refused above GHCR's 4 MiB limit;
- a plugin uploading 4 MiB PATCH chunks stays within the limit, and its second chunk is
  refused: GHCR keeps only the last chunk of a multi-PATCH upload.
"""

from __future__ import annotations

import textwrap

import pytest

from ocync_conformance.outcomes import read_junit
from ocync_conformance.suite import RegistryConformance


class TestGhcr(RegistryConformance):
    plugins = ["ocync_ghcr"]
    kind = "ghcr"
    environment = "ghcr"
    claimed_hosts = ("ghcr.io", "GHCR.IO", "https://ghcr.io", "ghcr.io:443")


_WITHOUT_THE_QUIRKS = '''
from ocync_conformance.suite.throttling import ThrottleChecks
from ocync_conformance.suite.uploads import UploadChecks
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import UploadMode, UploadStrategy


class ChunkedUploads:
    """Uploads to kind oci in PATCH chunks of `size` bytes."""

    def __init__(self, size):
        self.size = size

    @hookimpl
    def ocync_upload_strategy(self, registry, kind):
        if kind != "oci":
            return None
        return UploadStrategy(UploadMode.CHUNKED, max_chunk=self.size)


class TestGenericPlugin(ThrottleChecks, UploadChecks):
    plugins = ["ocync_oci"]
    environment = "ghcr"


class TestEightMiBChunks(UploadChecks):
    plugins = ["ocync_oci"]
    extra_plugins = [ChunkedUploads(8 << 20)]
    environment = "ghcr"


class TestFourMiBChunks(UploadChecks):
    plugins = ["ocync_oci"]
    extra_plugins = [ChunkedUploads(4 << 20)]
    environment = "ghcr"
'''

# The 429 storm and max_concurrent checks are left out: under a limit the generic plugin
# exceeds, whether their reads get through depends on timing.
_CHECKS = "documented_limits or described_window or test_upload"
_UPLOADS = {
    "test_upload_small_blob",
    "test_upload_empty_blob",
    "test_upload_large_blob",
    "test_upload_streamed_blob",
    "test_upload_respects_chunk_limit",
}
_CHUNKS_TOO_LARGE = {"test_upload_large_blob", "test_upload_respects_chunk_limit"}


def _failed_saying(checks: dict[str, str | None], phrase: str) -> set[str]:
    failed = {name: text for name, text in checks.items() if text is not None}
    unexplained = [name for name, text in failed.items() if phrase not in text]
    assert not unexplained, f"failures that do not say {phrase!r}: {unexplained}: {failed}"
    return set(failed)


def test_plugins_without_ghcrs_quirks_fail_against_the_emulation(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_without_the_quirks=textwrap.dedent(_WITHOUT_THE_QUIRKS))
    report = str(pytester.path / "report.xml")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tb=short", f"--junitxml={report}", "-k", _CHECKS, timeout=300
    )
    outcomes = read_junit(report).failure_texts(allow_skips=False)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()

    generic = outcomes["TestGenericPlugin"]
    assert set(generic) == {
        "test_every_action_has_a_described_window",
        "test_a_busy_client_stays_within_the_documented_limits",
        *_UPLOADS,
    }
    assert _failed_saying(generic, "2000 requests/min") == {
        "test_a_busy_client_stays_within_the_documented_limits"
    }, "the generic plugin should fail the documented-limits check, and only it"

    eight = outcomes["TestEightMiBChunks"]
    assert set(eight) == _UPLOADS
    assert _failed_saying(eight, "may not exceed 4194304 bytes") == _CHUNKS_TOO_LARGE

    four = outcomes["TestFourMiBChunks"]
    assert set(four) == _UPLOADS
    assert _failed_saying(four, "keeps only the last chunk") == _CHUNKS_TOO_LARGE
