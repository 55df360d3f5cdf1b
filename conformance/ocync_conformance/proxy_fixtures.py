"""pytest fixtures for the fault-injecting proxy (`ocync_conformance.proxy.FaultProxy`).

- `proxied_registry`: a fresh open docker-registry with a FaultProxy in front of it; yields a
  `ProxiedRegistry` (`.registry`, `.proxy`, `.host`/`.url` = the proxy's, `.client()`).
- `fault_proxy`: a factory, `fault_proxy(upstream, **kwargs) -> FaultProxy`, for proxies in
  front of any registry (a URL or a `RegistryProcess`); every proxy it made is stopped at
  teardown.

Import-light like `fixtures`: the proxy module is stdlib-only, and it is imported lazily anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from ocync_conformance.proxy import FaultProxy
    from ocync_conformance.registry_process import RegistryProcess

__all__ = ["ProxiedRegistry", "fault_proxy", "proxied_registry"]


@dataclass(frozen=True)
class ProxiedRegistry:
    """A registry reached through a FaultProxy: use `.host`/`.url` to go through the proxy,
    `.registry.host`/`.registry.url` to bypass it."""

    registry: RegistryProcess
    proxy: FaultProxy

    @property
    def host(self) -> str:
        """The proxy's `127.0.0.1:PORT`: the registry part of references through the proxy."""
        return self.proxy.host

    @property
    def url(self) -> str:
        return self.proxy.url

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client talking to the registry through the proxy."""
        kwargs.setdefault("base_url", self.proxy.url)
        return self.registry.client(**kwargs)


@pytest.fixture
def proxied_registry(registry: RegistryProcess) -> Iterator[ProxiedRegistry]:
    """A fresh open registry (the `registry` fixture) behind a FaultProxy with no faults."""
    from ocync_conformance.proxy import FaultProxy

    with FaultProxy(registry, name="proxied-registry") as proxy:
        yield ProxiedRegistry(registry=registry, proxy=proxy)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: `fault_proxy(upstream, *, name=..., rules=..., seed=...)` starts a FaultProxy
    in front of `upstream` (URL or RegistryProcess); all are stopped at teardown."""
    from ocync_conformance.proxy import FaultProxy

    started: list[FaultProxy] = []

    def factory(upstream: Any, **kwargs: Any) -> FaultProxy:
        kwargs.setdefault("name", f"fault-proxy-{len(started)}")
        proxy = FaultProxy(upstream, **kwargs)
        started.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in reversed(started):
            proxy.stop()
