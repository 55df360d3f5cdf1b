"""Detection: the plugin claims the hosts it declares."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["DetectionChecks"]


class DetectionChecks(SuiteBase):
    pass
