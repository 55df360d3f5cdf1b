"""Manifests and indexes, OCI and Docker v2, stored byte for byte."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["ManifestChecks"]


class ManifestChecks(SuiteBase):
    pass
