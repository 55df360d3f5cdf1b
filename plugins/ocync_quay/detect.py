"""Which hosts are Quay: quay.io only (a self-hosted Quay names its kind in the config)."""

from __future__ import annotations

__all__ = ["QUAY_HOSTS", "is_quay_host"]

QUAY_HOSTS = ("quay.io",)


def is_quay_host(host: str) -> bool:
    """True for quay.io in any case, with or without port 443 or a trailing dot."""
    name = host.strip().lower().removesuffix(":443").rstrip(".")
    return name in QUAY_HOSTS
