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

import httpx

from ocync_core.errors import CredentialPolicyError
from ocync_core.registry import RegistrySettings, is_loopback_host, split_registry_url

__all__ = ["check_realm", "registry_hostnames"]

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
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


def _is_metadata(host: str) -> bool:
    if host in _METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _METADATA_ADDRESSES)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
