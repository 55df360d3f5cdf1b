"""Throttling: the plugin's window keys; a 429 storm shrinks only its window."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["ThrottleChecks"]


class ThrottleChecks(SuiteBase):
    pass
