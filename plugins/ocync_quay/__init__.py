"""The Quay plugin (kind ``quay``)."""

from __future__ import annotations

from ocync_core import __version__

__all__ = ["OCYNC_HOSTS", "OCYNC_KINDS", "__version__"]

OCYNC_KINDS: tuple[str, ...] = ()
OCYNC_HOSTS: tuple[str, ...] = ()
