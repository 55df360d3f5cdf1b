"""A Hypothesis state machine: random operations against the registry and a model."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["ModelChecks"]


class ModelChecks(SuiteBase):
    pass
