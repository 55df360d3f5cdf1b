"""The conformance suite for the plugin named on the command line.

``ocync conformance PLUGIN`` runs this module; so can a plugin's CI, without a suite class of
its own::

    pytest --pyargs ocync_conformance.selected --ocync-plugin my-registry

What is tested comes from the options (see `select_plugin`): the plugin (``--ocync-plugin``),
its kind (``--ocync-kind``, else the plugin's first ``OCYNC_KINDS``) and the environment
(``--ocync-environment``, else one named after the kind, else the first one the plugin
contributes when testing its main kind, else ``open``); ``--ocync-registry URL`` replaces the
environment.

`SuiteBase` reads its configuration from class attributes, so `pytest_generate_tests` (which
pytest calls for every check of the class while collecting, before any fixture runs) sets them.
A plugin that cannot be loaded is then one collection error, not one error per check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar

import pytest

from ocync_conformance.environments import available_environments
from ocync_conformance.suite import RegistryConformance
from ocync_core.errors import BadInput
from ocync_core.plugins import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    FALLBACK_KIND,
    FALLBACK_PLUGIN,
    Plugins,
)

__all__ = ["Selection", "TestSelectedPlugin", "select_plugin"]

DEFAULT_ENVIRONMENT = "open"


@dataclass(frozen=True)
class Selection:
    """What the suite tests: a plugin, the kind it answers for, the environment to start."""

    plugin: str
    """The plugin under test, as registered (entry-point name or built-in module name)."""
    kind: str
    environment: str


def select_plugin(name: str, kind: str | None = None, environment: str | None = None) -> Selection:
    """Resolve a plugin name and optional overrides into a `Selection`.

    :raises BadInput: the plugin is not installed, or the kind or environment is unknown.
    """
    try:
        plugins = Plugins.load(allow=[name])
    except BadInput:
        # Plugins.load words it for OCYNC_PLUGINS; here the name came from the command line.
        raise BadInput(
            f"no ocync plugin named {name!r} is installed (installed: "
            f"{', '.join(_installed_plugins())})"
        ) from None
    under_test = _plugin_under_test(plugins)
    known = plugins.known_kinds()
    declared = next(i.kinds for i in plugins.describe() if i.name == under_test)
    main_kind = declared[0] if declared else FALLBACK_KIND
    if kind is None:
        kind = main_kind
    elif kind not in known:
        raise BadInput(
            f"kind {kind!r} is not served by plugin {under_test!r} (known kinds: "
            f"{', '.join(known)})"
        )
    if environment is None:
        # An environment named after the kind; else the plugin's own first one, which is for
        # its main kind (the ECR plugin's `ecr` is no place to test its `ecr-public`).
        contributed = list(_environments_of(plugins, under_test))
        if kind in available_environments(plugins):
            environment = kind
        elif contributed and kind == main_kind:
            environment = contributed[0]
        else:
            environment = DEFAULT_ENVIRONMENT
    elif environment not in (available := available_environments()):
        raise BadInput(
            f"no conformance environment {environment!r} (available: "
            f"{', '.join(sorted(available))})"
        )
    return Selection(plugin=under_test, kind=kind, environment=environment)


def _installed_plugins() -> list[str]:
    third_party = (ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted({*BUILTIN_PLUGINS, *third_party})


def _plugin_under_test(plugins: Plugins) -> str:
    # The fallback plugin always loads; it is the one under test only when nothing else is.
    names = [info.name for info in plugins.describe()]
    others = [n for n in names if n != FALLBACK_PLUGIN]
    return others[0] if others else FALLBACK_PLUGIN


def _environments_of(plugins: Plugins, plugin_name: str) -> Mapping[str, object]:
    hook = plugins.manager.hook.ocync_conformance_environments
    for impl in hook.get_hookimpls():
        if impl.plugin_name == plugin_name:
            return impl.function() or {}
    return {}


class TestSelectedPlugin(RegistryConformance):
    """Every check, for the plugin named by ``--ocync-plugin``."""

    selection: ClassVar[Selection | None] = None
    _selected_with: ClassVar[tuple[str, str | None, str | None] | None] = None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        options = (
            metafunc.config.getoption("ocync_plugin", default=None),
            metafunc.config.getoption("ocync_kind", default=None),
            metafunc.config.getoption("ocync_environment", default=None),
        )
        cls = type(self)
        name, kind, environment = options
        # Called once per check: resolve (load the plugins) only for the first one.
        if not name or cls._selected_with == options:
            return
        selection = select_plugin(name, kind=kind, environment=environment)
        cls._selected_with = options
        cls.selection = selection
        cls.plugins = [selection.plugin]
        cls.kind = selection.kind
        cls.environment = selection.environment

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _plugin_is_named(cls, request: pytest.FixtureRequest) -> None:
        # Autouse and class-scoped, so it runs before `target` starts a registry for nothing.
        if not request.config.getoption("ocync_plugin", default=None):
            pytest.skip(
                "no plugin to test: name one with --ocync-plugin NAME "
                "(or run `ocync conformance NAME`)"
            )
