"""Which hosts are Docker Hub, where its API answers, and how it names official images."""

from __future__ import annotations

from ocync_core.errors import InvalidReference
from ocync_core.reference import DEFAULT_DOMAIN, Reference

__all__ = ["API_ENDPOINT", "HUB_HOSTS", "api_endpoint", "hub_hostname", "official_repository"]

HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
API_ENDPOINT = "https://registry-1.docker.io"
# The names references use; neither is where the v2 API is meant to be reached.
_REFERENCE_HOSTS = frozenset({"docker.io", "index.docker.io"})


def hub_hostname(host: str) -> str | None:
    """The Docker Hub hostname `host` is (any case, port 443 allowed), or None."""
    name = host.strip().lower()
    if name.endswith(":443"):
        name = name.removesuffix(":443")
    name = name.rstrip(".")
    return name if name in HUB_HOSTS else None


def api_endpoint(host: str) -> str | None:
    """`https://registry-1.docker.io` for `docker.io` and `index.docker.io`; else None."""
    return API_ENDPOINT if hub_hostname(host) in _REFERENCE_HOSTS else None


def official_repository(repository: str) -> str:
    """`nginx` → `library/nginx`, as Docker Hub names official images; others are unchanged.

    The normalisation is the reference parser's (distribution/reference rules). A name it
    refuses is returned as written: the configuration's own validation reports it.
    """
    try:
        return Reference(DEFAULT_DOMAIN, repository).repository
    except InvalidReference:
        return repository
