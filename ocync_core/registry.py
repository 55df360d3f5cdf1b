"""Per-registry settings: where requests go, how TLS is checked, which credentials apply."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ocync_core.errors import BadInput

__all__ = ["RegistrySettings", "is_loopback_host", "split_registry_url"]

log = logging.getLogger(__name__)


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    name = _strip_port(host).strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def split_registry_url(url: str) -> tuple[str | None, str]:
    """Split `https://host:port` into (scheme, host:port); a bare `host:port` has no scheme."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInput(f"registry URL {url!r}: expected http(s)://host[:port]")
        if parts.path.strip("/"):
            raise BadInput(f"registry URL {url!r}: a registry URL has no path")
        return parts.scheme, parts.netloc
    return None, url.rstrip("/")


@dataclass(frozen=True)
class RegistrySettings:
    """Everything ocync knows about one registry before talking to it.

    `host` is the registry as it appears in references (`ghcr.io`, `127.0.0.1:5000`).
    `url` may carry a scheme (`http://127.0.0.1:5000`); `endpoint` overrides where requests
    actually go (proxies, VPC endpoints, emulators) while `host` stays the identity.
    """

    host: str
    url: str | None = None
    name: str | None = None
    kind: str | None = None
    endpoint: str | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    insecure_http: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    docker_config: str | None = None
    max_concurrent: int = 16
    timeout: float = 300.0  # seconds a request may wait for the next bytes (read and write)
    connect_timeout: float = 30.0
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """How messages name this registry."""
        return self.name or self.host

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self._target_netloc())

    def _target_netloc(self) -> str:
        source = self.endpoint or self.url or self.host
        return split_registry_url(source)[1]

    def base_urls(self) -> list[str]:
        """Base URLs to try, in order. Loopback without a scheme tries HTTPS, then HTTP.

        Plain HTTP to another machine happens only when asked for (`insecure_http` or an
        ``http://`` URL), and is logged as a warning naming the registry.
        """
        source = self.endpoint or self.url or self.host
        scheme, netloc = split_registry_url(source)
        if scheme is None and self.insecure_http:
            scheme = "http"
        if scheme == "http" and not is_loopback_host(netloc):
            why = "insecure_http" if self.insecure_http else f"the URL {source}"
            log.warning(
                "registry %s: plain HTTP to %s (%s): requests and responses are neither "
                "encrypted nor authenticated",
                self.label,
                netloc,
                why,
            )
        if scheme is not None:
            return [f"{scheme}://{netloc}"]
        if is_loopback_host(netloc):
            # Local test and development registries mostly speak plain HTTP; traffic to a
            # loopback address never leaves the machine.
            return [f"https://{netloc}", f"http://{netloc}"]
        return [f"https://{netloc}"]
