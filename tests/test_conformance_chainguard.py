"""The Chainguard plugin passes the conformance suite against the emulated cgr.dev, and the
emulation reproduces cgr.dev's tokens per scope set.

The generic plugin copes with that quirk already: the core's token cache is keyed by each
request's exact scope set, so the Chainguard plugin changes nothing in auth, and the generic
plugin passes the same checks (below, for contrast). What proves the emulation is a plugin
whose auth provider shares tokens: it asks once per repository for pull and push and reuses
that token for reads, a saving some clients make. docker-registry alone accepts it; the
emulated cgr.dev refuses every read it makes with 403, as cgr.dev does.
"""

from __future__ import annotations

import textwrap

import pytest

from ocync_conformance.outcomes import read_junit
from ocync_conformance.suite import RegistryConformance


class TestChainguard(RegistryConformance):
    plugins = ["ocync_chainguard"]
    kind = "chainguard"
    environment = "chainguard"
    claimed_hosts = ("cgr.dev", "CGR.DEV", "https://cgr.dev", "cgr.dev:443")


_TOKEN_SHARING = '''
from ocync_conformance.suite.auth import AuthChecks
from ocync_conformance.suite.existence import ExistenceChecks
from ocync_conformance.suite.manifests import ManifestChecks
from ocync_conformance.suite.uploads import UploadChecks
from ocync_core.auth.provider import StandardAuth
from ocync_core.auth.scopes import repository_scope
from ocync_core.hookspecs import hookimpl


class OneTokenPerRepository:
    """StandardAuth asked for pull and push on every repository a request names."""

    def __init__(self, registry, http):
        self.standard = StandardAuth(registry, http)

    @staticmethod
    def widened(scopes):
        names = {scope.split(":", 1)[1].rpartition(":")[0] for scope in scopes}
        return frozenset(repository_scope(name, "pull", "push") for name in names)

    async def authorize(self, request, scopes):
        await self.standard.authorize(request, self.widened(scopes))

    async def challenged(self, response, scopes):
        return await self.standard.challenged(response, self.widened(scopes))


class TokenSharing:
    @hookimpl
    def ocync_auth_provider(self, registry, kind, http):
        return OneTokenPerRepository(registry, http) if kind == "oci" else None


class Checks(AuthChecks, ExistenceChecks, ManifestChecks, UploadChecks):
    environment = "chainguard"
    plugins = ["ocync_oci"]


class TestTokenSharing(Checks):
    extra_plugins = [TokenSharing()]


class TestGenericPlugin(Checks):
    pass
'''

# Reads (refused to a shared token) and a push (whose scope set is the shared one).
_READS = {
    "test_credentials_allow_push_and_pull",
    "test_existence_of_present_and_absent_blobs",
    "test_oci_image_manifest_round_trips",
}
_PUSH = "test_upload_small_blob"
_HEAD_ONLY = "test_existence_of_present_and_absent_blobs"


def test_token_sharing_fails_against_the_emulation_and_the_generic_plugin_passes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_token_sharing=textwrap.dedent(_TOKEN_SHARING))
    report = str(pytester.path / "report.xml")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tb=short",
        f"--junitxml={report}",
        "-k",
        " or ".join(sorted({*_READS, _PUSH})),
        timeout=300,
    )
    outcomes = read_junit(report).failure_texts(allow_skips=False)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()

    sharing, generic = outcomes["TestTokenSharing"], outcomes["TestGenericPlugin"]
    assert set(sharing) == set(generic) == {*_READS, _PUSH}
    failed = {name: text for name, text in sharing.items() if text is not None}
    assert set(failed) == _READS, f"expected the reads to fail, and only them: {failed}"
    refused = {name for name, text in failed.items() if "-> 403" in text}
    assert refused == _READS, f"reads not refused with 403: {failed}"
    # The answer to a HEAD has no body to say why; the GETs' answers name the quirk.
    explained = {name for name, text in failed.items() if "per scope set" in text}
    assert explained >= _READS - {_HEAD_ONLY}, f"failures that do not name the quirk: {failed}"
    assert not any(generic.values()), f"the generic plugin failed: {generic}"
