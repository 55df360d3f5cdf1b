"""The GitHub Container Registry plugin (kind ``ghcr``): ``ghcr.io``.

What GHCR does differently, and what the plugin answers for it:

- one aggregate rate limit per principal (about 2000 requests/min, reads and writes alike):
  a single throttle window for every action, paced under the cap (`THROTTLE_POLICY`);
- a PATCH is capped at about 4 MiB and a multi-PATCH upload is reported to keep only its last
  chunk: uploads are POST + one streamed PUT, never chunks (`UPLOAD_STRATEGY`);
- no OCI 1.1 referrers API (signatures and attestations live in ``sha256-<hex>`` fallback
  tags): referrers are read from the fallback tag without asking the API (`READ_POLICY`).

Authentication is the standard Bearer exchange at ``https://ghcr.io/token`` with a personal
access token (or ``GITHUB_TOKEN``) as the password and any username, which the generic
plugin's `StandardAuth` already does; so are mounts and existence checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import ReadPolicy, ThrottlePolicy, UploadMode, UploadStrategy
from ocync_ghcr.detect import GHCR_HOST, is_ghcr_host
from ocync_ghcr.throttle import THROTTLE_POLICY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from ocync_core.registry import RegistrySettings

__all__ = [
    "KIND",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "READ_POLICY",
    "THROTTLE_POLICY",
    "UPLOAD_STRATEGY",
    "__version__",
    "is_ghcr_host",
]

KIND = "ghcr"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = (GHCR_HOST,)

# Pinned rather than inherited: whatever the generic default becomes, GHCR must never get
# PATCH chunks (416 above 4 MiB; only the last chunk kept below).
UPLOAD_STRATEGY = UploadStrategy(mode=UploadMode.POST_PUT)
READ_POLICY = ReadPolicy(referrers_api=False)


def _ours(kind: str) -> bool:
    return kind == KIND


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if is_ghcr_host(registry.host) else None


@hookimpl
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    return THROTTLE_POLICY if _ours(kind) else None


@hookimpl
def ocync_upload_strategy(registry: RegistrySettings, kind: str) -> UploadStrategy | None:
    return UPLOAD_STRATEGY if _ours(kind) else None


@hookimpl
def ocync_read_policy(registry: RegistrySettings, kind: str) -> ReadPolicy | None:
    return READ_POLICY if _ours(kind) else None


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # Imported only when the conformance kit asks: ocync itself never loads the kit.
    from ocync_ghcr.emulation import GHCR_ENVIRONMENTS

    return GHCR_ENVIRONMENTS
