"""Recognising the GitHub Container Registry by its host."""

from __future__ import annotations

__all__ = ["GHCR_HOST", "is_ghcr_host"]

GHCR_HOST = "ghcr.io"


def _hostname(host: str) -> str:
    """Lower-case host without scheme, path, port or trailing dot."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_ghcr_host(host: str) -> bool:
    """True for ``ghcr.io`` in any spelling a registry entry may use (scheme, port, case)."""
    return _hostname(host) == GHCR_HOST
