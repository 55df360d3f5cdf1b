"""The ACR plugin passes the conformance suite against the emulated ACR, and the emulation
reproduces what the plugin exists for: the generic plugin, pointed at the same registry, fails.

- Auth: the emulated registry takes a Microsoft Entra identity through `/oauth2/exchange` (the
  fake Entra token is in `AZURE_ACCESS_TOKEN`) and refuses anonymous tokens. The generic plugin
  knows no Entra ID: it asks `/oauth2/token` anonymously and is refused.
- Quotas: on the Basic tier (1,000 reads, 100 writes per minute) the kit's busy client, all at
  once, goes over the limits with the generic plugin, even holding the admin user's
  credentials, and stays within them with the ACR plugin told `acr_sku: basic`. On the
  Standard tier that burst (48 reads, 8 writes) fits in a second's share of the quotas, so it
  fails nobody there: the Standard emulation proves only that the ACR plugin's pacing holds.
"""

from __future__ import annotations

import textwrap

import pytest

from ocync_conformance.outcomes import SuiteOutcomes, read_junit
from ocync_conformance.suite import RegistryConformance


class TestAcr(RegistryConformance):
    plugins = ["ocync_acr"]
    kind = "acr"
    environment = "acr"
    claimed_hosts = ("myregistry.azurecr.io", "myregistry.azurecr.cn", "myregistry.azurecr.us")


_COMPARISON = """
from dataclasses import replace

import pytest

from ocync_acr.emulation import ADMIN_PASSWORD, ADMIN_USER
from ocync_conformance.suite.auth import AuthChecks
from ocync_conformance.suite.throttling import ThrottleChecks


class TestAcrPluginAuth(AuthChecks):
    plugins = ["ocync_acr"]
    kind = "acr"
    environment = "acr"


class TestGenericPluginAuth(AuthChecks):
    plugins = ["ocync_oci"]
    kind = "oci"
    environment = "acr"


class TestAcrPluginBasicTier(ThrottleChecks):
    plugins = ["ocync_acr"]
    kind = "acr"
    environment = "acr-basic"


class TestGenericPluginBasicTier(ThrottleChecks):
    plugins = ["ocync_oci"]
    kind = "oci"
    environment = "acr-basic"

    @pytest.fixture
    def settings(self, target):
        # The admin user: the generic plugin gets in, so only the quotas can fail it.
        return replace(target.settings, kind="oci", username=ADMIN_USER, password=ADMIN_PASSWORD)
"""

AUTH_CHECKS = (
    "test_credentials_allow_push_and_pull",
    "test_one_retry_after_a_401",
    "test_wrong_credentials_are_refused",
)
LIMITS_CHECK = "test_a_busy_client_stays_within_the_documented_limits"


def _run(pytester: pytest.Pytester, checks: tuple[str, ...]) -> SuiteOutcomes:
    pytester.makepyfile(test_comparison=textwrap.dedent(_COMPARISON))
    report = pytester.path / "report.xml"
    pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--tb=short",
        f"--junitxml={report}",
        "-k",
        " or ".join(checks),
        timeout=300,
    )
    return read_junit(report)


def test_the_generic_plugin_fails_where_the_acr_plugin_is_needed(pytester: pytest.Pytester):
    outcomes = _run(pytester, (*AUTH_CHECKS, LIMITS_CHECK))

    # The ACR plugin passes every one of these checks.
    assert not outcomes.failed.get("TestAcrPluginAuth"), outcomes.failed
    assert outcomes.passed.get("TestAcrPluginAuth") == set(AUTH_CHECKS)
    assert not outcomes.failed.get("TestAcrPluginBasicTier"), outcomes.failed
    assert outcomes.passed.get("TestAcrPluginBasicTier") == {LIMITS_CHECK}

    # The generic plugin cannot get a token without the Entra exchange: every check that
    # needs one fails, on the token endpoint's refusal. Refusing wrong credentials it can do.
    auth_failures = outcomes.failed.get("TestGenericPluginAuth", {})
    assert set(auth_failures) == {
        "test_credentials_allow_push_and_pull",
        "test_one_retry_after_a_401",
    }, outcomes
    assert outcomes.passed.get("TestGenericPluginAuth") == {"test_wrong_credentials_are_refused"}
    for name, text in auth_failures.items():
        assert "/oauth2/token" in text and "answered 401" in text, (name, text)
        assert "authentication required" in text, (name, text)

    # With credentials, the generic plugin's burst still goes over the Basic tier's quotas.
    limit_failures = outcomes.failed.get("TestGenericPluginBasicTier", {})
    assert set(limit_failures) == {LIMITS_CHECK}, outcomes
    text = limit_failures[LIMITS_CHECK]
    assert "429" in text, text
    assert "documented limits" in text or "quota of the basic tier" in text, text
