"""Detection and declarations: the plugin claims its hosts and answers coherently for its kind."""

from __future__ import annotations

import pytest

from ocync_conformance.suite.base import SuiteBase
from ocync_core.plugins import Plugins
from ocync_core.policies import Action, UploadMode
from ocync_core.registry import RegistrySettings

__all__ = ["DetectionChecks"]


class DetectionChecks(SuiteBase):
    def test_kind_is_declared(
        self, request: pytest.FixtureRequest, loaded_plugins: Plugins
    ) -> None:
        kind = request.cls.kind
        known = loaded_plugins.known_kinds()
        assert kind in known, (
            f"kind {kind!r} is not declared by any loaded plugin (declared kinds: "
            f"{', '.join(known)}); list it in the plugin module's OCYNC_KINDS"
        )

    def test_claimed_hosts_resolve_to_the_kind(
        self, request: pytest.FixtureRequest, loaded_plugins: Plugins
    ) -> None:
        hosts = request.cls.claimed_hosts
        if not hosts:
            pytest.skip("the suite class declares no claimed_hosts")
        wrong = {
            host: found
            for host in hosts
            if (found := loaded_plugins.kind_for(RegistrySettings(host=host))) != request.cls.kind
        }
        assert not wrong, "hosts not detected as kind {!r}: {}".format(
            request.cls.kind, ", ".join(f"{h} -> {k}" for h, k in wrong.items())
        )

    def test_declarations_are_coherent(
        self, settings: RegistrySettings, loaded_plugins: Plugins
    ) -> None:
        strategy = loaded_plugins.upload_strategy(settings)
        if strategy.mode is UploadMode.CHUNKED:
            assert strategy.max_chunk is not None and strategy.max_chunk > 0, (
                f"upload strategy is CHUNKED with max_chunk={strategy.max_chunk!r}: "
                "a chunked upload needs a positive chunk size"
            )
        policy = loaded_plugins.throttle_policy(settings)
        missing = sorted(
            {policy.window_for(action) for action in Action} - set(policy.windows),
        )
        assert not missing, (
            f"throttle policy maps actions to windows it does not define: {', '.join(missing)}"
        )
        for name, spec in policy.windows.items():
            assert spec.initial >= 1, f"window {name!r} starts below one request ({spec.initial})"
            assert spec.rate is None or spec.rate > 0, f"window {name!r} has rate {spec.rate}"
