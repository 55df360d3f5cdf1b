"""Recognising Chainguard's registry by its host."""

from __future__ import annotations

__all__ = ["CHAINGUARD_HOST", "is_chainguard_host"]

CHAINGUARD_HOST = "cgr.dev"


def _hostname(host: str) -> str:
    """Lower-case host without scheme, path, port or trailing dot."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_chainguard_host(host: str) -> bool:
    """True for ``cgr.dev`` in any spelling a registry entry may use (scheme, port, case)."""
    return _hostname(host) == CHAINGUARD_HOST
