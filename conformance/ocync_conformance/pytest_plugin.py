"""pytest plugin of the ocync conformance kit (entry point `pytest11`).

Kept import-light: registry fixtures live in `ocync_conformance.fixtures`, which itself imports
only pytest and the stdlib at module level (registries, certificates and JWT libraries are
imported when a fixture is first used), so installing ocync never slows down or breaks
unrelated pytest runs.
"""

import inspect
import sys
from collections.abc import Generator

import pytest

from ocync_conformance.ecr_emulator import ecr_emulator
from ocync_conformance.fixtures import (
    SeededRegistry,
    _seeded_storage,
    basic_registry,
    oci_layout,
    registry,
    registry_binary,
    registry_pair,
    seeded_layout,
    seeded_registry,
    shared_registry,
    skopeo_binary,
    tls_certs,
    tls_registry,
    token_registry,
    token_server,
    token_signing_cert,
)
from ocync_conformance.proxy_fixtures import ProxiedRegistry, fault_proxy, proxied_registry

__all__ = [
    "ProxiedRegistry",
    "SeededRegistry",
    "_seeded_storage",
    "basic_registry",
    "ecr_emulator",
    "fault_proxy",
    "oci_layout",
    "proxied_registry",
    "registry",
    "registry_binary",
    "registry_pair",
    "seeded_layout",
    "seeded_registry",
    "shared_registry",
    "skopeo_binary",
    "tls_certs",
    "tls_registry",
    "token_registry",
    "token_server",
    "token_signing_cert",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ocync", "ocync conformance kit")
    group.addoption(
        "--ocync-plugin",
        dest="ocync_plugin",
        metavar="NAME",
        default=None,
        help="load only this ocync plugin (and the built-in fallback) in the conformance suite",
    )
    group.addoption(
        "--ocync-registry",
        dest="ocync_registry",
        metavar="URL",
        default=None,
        help="run the conformance suite against this already running registry "
        "(credentials from OCYNC_REGISTRY_USERNAME / OCYNC_REGISTRY_PASSWORD)",
    )
    group.addoption(
        "--ocync-environment",
        dest="ocync_environment",
        metavar="NAME",
        default=None,
        help="the environment the suite of --ocync-plugin starts (default: the first one the "
        "plugin contributes, else one named after its kind, else open)",
    )
    group.addoption(
        "--ocync-kind",
        dest="ocync_kind",
        metavar="KIND",
        default=None,
        help="the registry kind the suite of --ocync-plugin tests (default: the plugin's first "
        "declared kind)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ocync_requires(capability, why): a conformance check that needs a registry capability",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The suite's async checks run under trio whatever the plugin project's pytest config says
    # (``trio_mode`` or not); its sync checks stay plain functions.
    for item in items:
        cls = getattr(item, "cls", None)
        function = getattr(item, "function", None)
        if (
            cls is not None
            and _is_suite(cls)
            and inspect.iscoroutinefunction(function)
            and item.get_closest_marker("trio") is None
        ):
            item.add_marker(pytest.mark.trio)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # pytest-trio reports a failed async check as its nursery's exception group; a plugin
    # author should read the check's own message (what broke) in the summary, not the group.
    cls = getattr(item, "cls", None)
    if call.excinfo is not None and cls is not None and _is_suite(cls):
        leaf = _only_exception(call.excinfo.value)
        if leaf is not call.excinfo.value:
            call.excinfo = pytest.ExceptionInfo.from_exception(leaf)
    return (yield)


def _is_suite(cls: type) -> bool:
    # Only a session that imported the suite can hold its checks: any other pytest run in an
    # environment with ocync installed never pays for importing it (httpx, trio, the core).
    base = sys.modules.get("ocync_conformance.suite.base")
    return base is not None and issubclass(cls, base.SuiteBase)


def _only_exception(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
