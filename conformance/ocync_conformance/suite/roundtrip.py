"""A full ocync sync into the registry, checked digest by digest."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["SyncChecks"]


class SyncChecks(SuiteBase):
    pass
