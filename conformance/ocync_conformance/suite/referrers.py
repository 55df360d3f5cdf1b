"""Referrers: the OCI 1.1 API and the fallback tag."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["ReferrerChecks"]


class ReferrerChecks(SuiteBase):
    pass
