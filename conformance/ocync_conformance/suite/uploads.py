"""Uploads in the plugin's strategy: small, empty, large, streamed, chunk limits."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["UploadChecks"]


class UploadChecks(SuiteBase):
    pass
