"""The Quay plugin against the emulated quay.io: the conformance suite, and the one Quay quirk
that matters to a mirror (no mount without ``from``) shown to bite a plugin that ignores it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob
from ocync_conformance.outcomes import read_junit
from ocync_conformance.suite import RegistryConformance
from ocync_quay.emulation import quay_environment


class TestQuay(RegistryConformance):
    plugins = ["ocync_quay"]
    kind = "quay"
    environment = "quay"
    claimed_hosts = ("quay.io", "QUAY.IO", "quay.io:443")


# A plugin that mounts without `from` (as a registry with origin discovery would want), next
# to the generic plugin, both against the emulated quay.io (the Quay plugin's own run is
# `TestQuay`).
_COMPARISON = """
from ocync_conformance.suite.mounts import MountChecks
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import MountMode, MountPolicy


class MountsWithoutFrom:
    OCYNC_KINDS = ("without-from",)

    @hookimpl
    def ocync_mount_policy(self, registry, kind):
        if kind != "without-from":
            return None
        return MountPolicy(MountMode.WITHOUT_FROM, not_mounted_statuses=frozenset({401, 404}))


class TestWithoutFrom(MountChecks):
    plugins = ["ocync_oci"]
    extra_plugins = [MountsWithoutFrom()]
    kind = "without-from"
    environment = "quay"


class TestGeneric(MountChecks):
    plugins = ["ocync_oci"]
    environment = "quay"

"""


def test_a_mount_without_from_does_not_mount_on_quay(pytester: pytest.Pytester):
    pytester.makepyfile(test_quay=textwrap.dedent(_COMPARISON))
    report = pytester.path / "report.xml"
    pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tb=short", f"--junitxml={report}", timeout=300
    )
    outcomes = read_junit(report).failure_texts()
    failed = {name for name, text in outcomes["TestWithoutFrom"].items() if text is not None}
    assert failed == {"test_mount_of_present_blob"}, failed
    text = outcomes["TestWithoutFrom"]["test_mount_of_present_blob"] or ""
    assert "did not mount although the registry mounts" in text and "WITHOUT_FROM" in text, text
    # The generic plugin mounts with `from` too: Quay costs it nothing.
    broken = {name: text for name, text in outcomes["TestGeneric"].items() if text is not None}
    assert not broken, f"the generic plugin failed on the emulated quay.io: {broken}"
    assert set(outcomes["TestGeneric"]) == set(outcomes["TestWithoutFrom"])


@pytest.fixture
def quay(tmp_path: Path) -> Iterator[Target]:
    with quay_environment(tmp_path / "quay") as target:
        yield target


def test_quay_mounts_only_with_from(quay: Target) -> None:
    """The emulation answers as Quay does: a present blob mounts with `from`; without it, or
    from a repository that does not exist, the answer is an upload session (202)."""
    with quay.direct() as http:
        digest = push_blob(http, "myorg/base", b"shared layer")
    with httpx.Client(base_url=quay.proxy.url, auth=quay.direct_auth, timeout=30) as http:
        bare = http.post(f"/v2/myorg/app/blobs/uploads/?mount={digest}")
        missing = http.post(f"/v2/myorg/app/blobs/uploads/?mount={digest}&from=myorg/missing")
        named = http.post(f"/v2/myorg/app/blobs/uploads/?mount={digest}&from=myorg/base")
        mounted = http.head(f"/v2/myorg/app/blobs/{digest}")
    assert bare.status_code == 202 and bare.headers.get("Location"), bare.text
    assert missing.status_code == 202 and missing.headers.get("Location"), missing.text
    assert named.status_code == 201, named.text
    assert mounted.status_code == 200
