"""The GAR plugin passes the conformance suite against the emulated Artifact Registry, and the
emulation reproduces what the plugin exists for: the generic plugin, pointed at the same
emulation, fails the checks the GAR plugin passes.

Two quirks are proven this way. Credentials: with nothing configured, the generic plugin has no
way to an access token (it knows nothing of application-default credentials), so it cannot
push. Chunked uploads: the generic plugin already uploads with POST + one PUT, so the
emulation's refusal of every PATCH does not bother it as it is; the same plugin answering
CHUNKED for its uploads (as a plugin author might, for a registry with a chunk limit) fails
every upload check that sends a body, while the GAR plugin (`TestGar`) passes them all.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocync_conformance.outcomes import SuiteOutcomes, read_junit
from ocync_conformance.suite import RegistryConformance
from ocync_gar.emulation import CHUNKED_UPLOAD_REFUSAL


class TestGar(RegistryConformance):
    plugins = ["ocync_gar"]
    kind = "gar"
    environment = "gar"
    claimed_hosts = (
        "europe-west1-docker.pkg.dev",
        "us-docker.pkg.dev",
        "northamerica-northeast2-docker.pkg.dev",
        "gcr.io",
        "eu.gcr.io",
        "asia.gcr.io",
    )


_COMPARISON = '''
from dataclasses import replace

import pytest

from ocync_conformance.suite.auth import AuthChecks
from ocync_conformance.suite.uploads import UploadChecks
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import UploadMode, UploadStrategy

MIB = 1024 * 1024


class ChunkedUploads:
    """The generic plugin's uploads, but in PATCH chunks of at most 4 MiB."""

    @hookimpl
    def ocync_upload_strategy(self, registry, kind):
        return UploadStrategy(UploadMode.CHUNKED, max_chunk=4 * MIB) if kind == "oci" else None


def printed_access_token():
    """What `gcloud auth print-access-token` prints, from the emulation's credentials."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


class TestGenericWithoutCredentials(AuthChecks):
    plugins = ["ocync_oci"]
    environment = "gar"


class TestGenericChunked(UploadChecks):
    plugins = ["ocync_oci"]
    extra_plugins = [ChunkedUploads()]
    environment = "gar"

    @pytest.fixture
    def settings(self, target):
        # A generic registry user's way in: `docker login -u oauth2accesstoken`.
        return replace(
            target.settings,
            kind="oci",
            username="oauth2accesstoken",
            password=printed_access_token(),
        )
'''

# What each comparison class must show: which checks fail, and which still pass or skip.
# `TestGar` above passes every one of them with the GAR plugin.
_AUTH_FAILED = {"test_credentials_allow_push_and_pull", "test_one_retry_after_a_401"}
_AUTH_PASSED = {"test_wrong_credentials_are_refused", "test_no_credentials_to_a_foreign_realm"}
_AUTH_SKIPPED = {"test_anonymous_pull"}  # the emulated registry is private
_UPLOAD_FAILED = {
    "test_upload_small_blob",
    "test_upload_large_blob",
    "test_upload_streamed_blob",
    "test_upload_respects_chunk_limit",
}
# An empty blob is finished by its PUT alone: a CHUNKED upload sends no PATCH for it.
_UPLOAD_PASSED = {"test_upload_empty_blob"}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> SuiteOutcomes:
    """Run the comparison classes once, in a pytest subprocess, and read their outcomes."""
    directory = tmp_path_factory.mktemp("gar-comparison")
    (directory / "test_gar_comparison.py").write_text(_COMPARISON)
    report = directory / "report.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    run = subprocess.run(
        [*command, f"--junitxml={report}", "test_gar_comparison.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), f"the comparison run wrote no report:\n{run.stdout}\n{run.stderr}"
    return read_junit(report)


def test_without_credentials_the_generic_plugin_cannot_push(comparison: SuiteOutcomes):
    cls = "TestGenericWithoutCredentials"
    failed = comparison.failed.get(cls, {})
    assert set(failed) == _AUTH_FAILED, f"expected exactly {sorted(_AUTH_FAILED)} to fail"
    assert comparison.passed.get(cls) == _AUTH_PASSED, comparison
    assert comparison.skipped.get(cls) == _AUTH_SKIPPED, comparison
    unexplained = {name: text for name, text in failed.items() if "-> 401" not in text}
    assert not unexplained, f"failures that do not show the registry's 401: {unexplained}"


def test_chunked_uploads_fail_against_the_emulation(comparison: SuiteOutcomes):
    cls = "TestGenericChunked"
    failed = comparison.failed.get(cls, {})
    assert set(failed) == _UPLOAD_FAILED, f"expected exactly {sorted(_UPLOAD_FAILED)} to fail"
    assert comparison.passed.get(cls) == _UPLOAD_PASSED, comparison
    unexplained = {
        name: text for name, text in failed.items() if CHUNKED_UPLOAD_REFUSAL not in text
    }
    assert not unexplained, f"failures that do not name the refused PATCH: {unexplained}"
