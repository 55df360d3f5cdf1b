"""Cross-repository mounts: 201, the 202 fallback, a missing source."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["MountChecks"]


class MountChecks(SuiteBase):
    pass
