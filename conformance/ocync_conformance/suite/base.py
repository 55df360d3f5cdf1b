"""What every check of the suite stands on: the target registry, the plugins, a client.

A suite class (a subclass of `RegistryConformance`) says which plugins to load, which registry
kind they are for, which environment to start and, if it knows better than the environment,
what the registry supports. The fixtures here turn that into one running `Target` per class
(registries are slow to start; each check works in a repository of its own) and a fresh
`RegistryClient` per check, built exactly as `ocync sync` builds one.

Command-line options (added by the kit's pytest plugin) override the class:
``--ocync-registry URL`` runs against an already running registry instead of starting one,
``--ocync-plugin NAME`` loads only that plugin (plus the built-in fallback).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import ClassVar

import pytest

from ocync_conformance.capabilities import Capabilities, require
from ocync_conformance.environments import Target, external_target, start_environment
from ocync_conformance.proxy import FaultProxy
from ocync_core.client import RegistryClient
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

__all__ = ["SuiteBase", "new_repository", "requires"]


class SuiteBase:
    """Configuration and fixtures shared by every group of checks."""

    plugins: ClassVar[Sequence[str] | None] = None
    """Installed plugins to load by name (entry point or distribution); None loads all."""
    extra_plugins: ClassVar[Sequence[object]] = ()
    """Plugin objects registered in-process (a plugin under development, a test double)."""
    kind: ClassVar[str] = "oci"
    """The registry kind the plugin under test answers for."""
    environment: ClassVar[str] = "open"
    """The environment to start (see `ocync_conformance.environments`)."""
    capabilities: ClassVar[Capabilities | None] = None
    """What the registry supports; None takes the environment's own declaration."""
    claimed_hosts: ClassVar[Sequence[str]] = ()
    """Hosts the plugin must recognise as its kind without an explicit `kind:`."""

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def target(
        cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Target]:
        """The registry under test, started once per suite class."""
        url = request.config.getoption("ocync_registry", default=None)
        starting = (
            external_target(url, cls.capabilities)
            if url
            else start_environment(cls.environment, tmp_path_factory.mktemp(cls.environment))
        )
        with starting as target, pytest.MonkeyPatch.context() as patch:
            for name, value in target.env.items():
                patch.setenv(name, value)
            yield target

    @pytest.fixture
    def caps(self, request: pytest.FixtureRequest, target: Target) -> Capabilities:
        declared: Capabilities | None = request.cls.capabilities
        return declared if declared is not None else target.capabilities

    @pytest.fixture(autouse=True)
    def _capability_gate(self, request: pytest.FixtureRequest, caps: Capabilities) -> None:
        # Skipped here, before the check's trio run starts, so the reason reaches the report.
        for mark in request.node.iter_markers("ocync_requires"):
            require(caps, *mark.args)

    @pytest.fixture
    def proxy(self, target: Target) -> FaultProxy:
        """The proxy on ocync's path, with no faults and an empty log for this check."""
        target.proxy.clear_faults()
        target.proxy.wait_idle()
        target.proxy.reset()
        return target.proxy

    @pytest.fixture
    def loaded_plugins(self, request: pytest.FixtureRequest) -> Plugins:
        only = request.config.getoption("ocync_plugin", default=None)
        allow = [only] if only else request.cls.plugins
        return Plugins.load(allow=allow, extra=request.cls.extra_plugins)

    @pytest.fixture
    def settings(self, request: pytest.FixtureRequest, target: Target) -> RegistrySettings:
        """The target's settings with the kind under test made explicit."""
        return replace(target.settings, kind=request.cls.kind)

    @pytest.fixture
    async def client(
        self, settings: RegistrySettings, loaded_plugins: Plugins, proxy: FaultProxy
    ) -> AsyncIterator[RegistryClient]:
        async with RegistryClient(settings, loaded_plugins) as client:
            yield client

    @pytest.fixture
    def repo(self, request: pytest.FixtureRequest, target: Target) -> str:
        """A fresh repository for this check (created first where the registry needs that)."""
        return new_repository(target, request.node.name)


def requires(capability: str, why: str = "") -> pytest.MarkDecorator:
    """Mark a check as needing `capability`; without it the check is skipped, saying why.

    Skip from a marker or a sync fixture, not inside an async check: pytest-trio re-raises a
    skip from inside the trio run without its reason.
    """
    return pytest.mark.ocync_requires(capability, why)


def new_repository(target: Target, label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower())[:40].strip("-") or "check"
    name = f"conformance/{slug}-{secrets.token_hex(3)}"
    target.create_repository(name)
    return name
