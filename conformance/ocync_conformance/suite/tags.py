"""Tag listing, with pagination."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["TagChecks"]


class TagChecks(SuiteBase):
    pass
