"""What a registry supports, as the conformance suite needs to know it.

A suite class declares its registry's capabilities (or takes its environment's); a check that
needs a capability the registry lacks is skipped with the capability's name and reason, never
silently passed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

__all__ = ["Capabilities", "require"]


@dataclass(frozen=True)
class Capabilities:
    """Registry features the suite exercises. Defaults describe docker-registry (distribution)."""

    anonymous_pull: bool = True
    """Reads need no credentials."""
    credentials: bool = False
    """The registry checks credentials (Basic, or Bearer tokens issued for them)."""
    mount: bool = True
    """Cross-repository blob mount (`POST ?mount=&from=`) answers 201 when the blob is there."""
    max_chunk: int | None = None
    """The largest PATCH body the registry accepts, when it has a limit."""
    tag_pagination: bool = False
    """`tags/list?n=` pages with a `Link` header (docker-registry 2.8 ignores `n`)."""
    referrers_api: bool = False
    """`GET /v2/<name>/referrers/<digest>` (OCI 1.1)."""
    batch_existence: bool = False
    """The plugin checks many blobs in one request (e.g. ECR's BatchCheckLayerAvailability)."""
    docker_v2_manifests: bool = True
    """Docker v2 schema 2 manifests and manifest lists are stored as sent."""
    documented_limits: str | None = None
    """The registry enforces its documented request limits (429 beyond them), described here
    (e.g. "2000 requests/min in all"); the plugin's throttle policy must stay within them."""

    def table(self) -> list[tuple[str, str]]:
        """(name, value) rows, for `ocync conformance` and reports."""
        return [(f.name, _show(getattr(self, f.name))) for f in dataclasses.fields(self)]


def _show(value: object) -> str:
    if value is True:
        return "yes"
    if value is False or value is None:
        return "no"
    return str(value)


def require(capabilities: Capabilities, name: str, why: str = "") -> None:
    """Skip the calling check unless the registry has capability `name`."""
    if not hasattr(capabilities, name):
        raise AttributeError(f"unknown conformance capability {name!r}")
    if not getattr(capabilities, name):
        reason = f"registry lacks capability {name!r}"
        pytest.skip(f"{reason}: {why}" if why else reason)
