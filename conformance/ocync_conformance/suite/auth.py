"""Authentication: anonymous, credentials, token refresh, one retry after a 401, realms."""

from __future__ import annotations

from ocync_conformance.suite.base import SuiteBase

__all__ = ["AuthChecks"]


class AuthChecks(SuiteBase):
    pass
