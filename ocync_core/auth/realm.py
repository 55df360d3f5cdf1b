"""Where a token realm may be, before anything (least of all a password) is sent to it.

The realm comes from the registry's 401, i.e. from the network. A hostile or compromised
registry, or a man in the middle of a plain-HTTP one, could point it anywhere: at a server
that collects passwords, or at a cloud metadata endpoint (SSRF). So:

* never to link-local / metadata addresses, or a non-http(s) scheme, even anonymously;
* with credentials: only to the registry's own host, a subdomain of it, or a host under the
  registry's parent domain (registry-1.docker.io → auth.docker.io, registry.gitlab.com →
  gitlab.com), and only over HTTPS unless the realm is loopback.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import httpx

from ocync_core.errors import CredentialPolicyError
from ocync_core.registry import RegistrySettings, is_loopback_host, split_registry_url

__all__ = ["check_realm", "is_registry_url", "registry_hostnames", "registry_origins"]

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
# IPv4 as the C resolver also reads it: 1 to 4 parts, each decimal, octal (0251) or hex (0xa9).
# `2852039166`, `0xa9fea9fe` and `169.254.43518` all reach 169.254.169.254.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
# RFC 6052 NAT64 well-known prefix: the low 32 bits are an IPv4 address the network reaches.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA_ADDRESSES = (
    ipaddress.ip_network("169.254.0.0/16"),  # AWS, Azure, GCP, OCI, OpenStack metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS IMDS over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
# Second-level labels of two-label public suffixes (example.co.uk): a parent domain made
# only of these is shared by strangers, so it grants nothing.
_GENERIC_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne"})
# Domains where anyone can host a server under a sibling name (there is no public-suffix list
# among our dependencies; these are the ones a registry is plausibly served from).
_SHARED_SUFFIXES = (
    "amazonaws.com",
    "appspot.com",
    "azurewebsites.net",
    "cloudfront.net",
    "fly.dev",
    "github.io",
    "herokuapp.com",
    "netlify.app",
    "ngrok-free.app",
    "ngrok.io",
    "onrender.com",
    "pages.dev",
    "vercel.app",
    "workers.dev",
)
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


def _hostname(netloc: str) -> str:
    """The host part of `host[:port]` / `[v6]:port`, lowercased, without a trailing dot."""
    if netloc.startswith("["):
        name = netloc[1 : netloc.index("]")] if "]" in netloc else netloc[1:]
    elif netloc.count(":") == 1:
        name = netloc.rsplit(":", 1)[0]
    else:
        name = netloc
    return name.lower().rstrip(".")


def registry_hostnames(registry: RegistrySettings) -> frozenset[str]:
    """Every hostname that is this registry: its identity, URL and endpoint (and Hub aliases)."""
    names: set[str] = set()
    for source in (registry.host, registry.url, registry.endpoint):
        if source:
            names.add(_hostname(split_registry_url(source)[1]))
    if names & set(_DOCKER_HUB_HOSTS):
        names.update(_DOCKER_HUB_HOSTS)
    return frozenset(names)


def registry_origins(registry: RegistrySettings) -> frozenset[tuple[str, int | None]]:
    """Every (hostname, port) that is this registry; port None: the scheme's default port.

    Credentials go only to these: another port of the same host is another server.
    """
    origins: set[tuple[str, int | None]] = set()
    for source in (registry.host, registry.url, registry.endpoint):
        if source:
            netloc = split_registry_url(source)[1]
            port = netloc.rsplit(":", 1)[1] if not netloc.endswith("]") and ":" in netloc else ""
            origins.add((_hostname(netloc), int(port) if port.isdigit() else None))
    if {name for name, _ in origins} & set(_DOCKER_HUB_HOSTS):
        origins.update((name, None) for name in _DOCKER_HUB_HOSTS)
    return frozenset(origins)


def is_registry_url(origins: frozenset[tuple[str, int | None]], url: httpx.URL) -> bool:
    """Whether `url` points at one of `origins` (`registry_origins`): same host and port."""
    host = url.host.lower().rstrip(".")
    default = {"https": 443, "http": 80}.get(url.scheme)
    port = url.port if url.port is not None else default
    if (host, port) in origins:
        return True
    return (host, None) in origins and port in (80, 443)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` denotes to the resolver, in any spelling it accepts; else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone does not matter
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_metadata(host: str) -> bool:
    if host in _METADATA_HOSTS:
        return True
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return any(address in network for network in _METADATA_ADDRESSES)


def _is_ip(host: str) -> bool:
    return _address(host) is not None


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _shares_domain(realm_host: str, registry_host: str) -> bool:
    if realm_host == registry_host:
        return True
    if _is_ip(realm_host) or _is_ip(registry_host):
        return False  # IP addresses have no parent domain
    if _within(realm_host, registry_host):
        return True
    labels = registry_host.split(".")
    parent = ".".join(labels[1:])
    if len(labels) < 3:
        return False  # the parent of ghcr.io is "io": shared by everyone
    if len(labels) == 3 and labels[1] in _GENERIC_SECOND_LEVEL:
        return False  # the parent of example.co.uk is "co.uk"
    if any(_within(parent, suffix) for suffix in _SHARED_SUFFIXES):
        return False
    return _within(realm_host, parent)


def check_realm(registry: RegistrySettings, realm: str, *, with_credentials: bool) -> httpx.URL:
    """The realm as a URL, if a token may be requested there; else CredentialPolicyError.

    `with_credentials` says whether the request would carry credentials (Basic or an
    identity token): only then do the domain and plain-HTTP rules apply.
    """
    who = f"registry {registry.label}"
    try:
        url = httpx.URL(realm)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise CredentialPolicyError(f"{who}: token realm {realm!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise CredentialPolicyError(
            f"{who}: token realm {realm!r} is not an http(s) URL; refusing to use it"
        )
    if url.userinfo:
        raise CredentialPolicyError(
            f"{who}: token realm {url.copy_with(username=None, password=None)} carries a "
            "user name; refusing to use it"
        )
    host = url.host.lower().rstrip(".")
    if _is_metadata(host):
        raise CredentialPolicyError(
            f"{who}: token realm {realm!r} points at a link-local / cloud metadata address; "
            "refusing to contact it"
        )
    if not with_credentials:
        return url
    realm_loopback = is_loopback_host(host)
    if url.scheme == "http" and not realm_loopback:
        raise CredentialPolicyError(
            f"{who}: token realm {realm!r} is plain HTTP to a non-local host; refusing to "
            "send credentials there (use an https realm)"
        )
    if realm_loopback and registry.is_loopback:
        return url
    if any(_shares_domain(host, name) for name in registry_hostnames(registry)):
        return url
    raise CredentialPolicyError(
        f"{who}: token realm {realm!r} is on another domain than the registry; refusing to "
        "send credentials there"
    )
