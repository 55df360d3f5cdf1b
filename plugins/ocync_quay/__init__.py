"""The Quay plugin (kind ``quay``): quay.io, and self-hosted Quay declared with ``kind: quay``.

Where Quay departs from a generic registry, and what the plugin does about it:

- Quay mounts a blob only when the mount names its ``from`` repository: it does no origin
  discovery, so a bare ``?mount=`` quietly opens a normal upload and the blob is uploaded
  again. The plugin pins ``MountMode.WITH_FROM`` (`MOUNT_POLICY`, otherwise the generic
  policy); a mount Quay cannot do (missing repository, no read access, blob absent) is
  answered with an upload session, which the core uses.
- Robot accounts (``org+name``) are the usual credentials: plain Basic credentials of the
  standard token exchange, which keeps the ``+`` intact; nothing to override.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import ocync_oci
from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import MountMode, MountPolicy
from ocync_quay.detect import QUAY_HOSTS, is_quay_host

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from ocync_core.registry import RegistrySettings

__all__ = ["KIND", "MOUNT_POLICY", "OCYNC_HOSTS", "OCYNC_KINDS", "__version__", "is_quay_host"]

KIND = "quay"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = (*QUAY_HOSTS, "self-hosted Quay (with kind: quay)")

MOUNT_POLICY = replace(ocync_oci.MOUNT_POLICY, mode=MountMode.WITH_FROM)


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if is_quay_host(registry.host) else None


@hookimpl
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy | None:
    return MOUNT_POLICY if kind == KIND else None


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # docker-registry behind a token server for service quay.io, with a robot account.
    from ocync_quay.emulation import QUAY_ENVIRONMENTS

    return QUAY_ENVIRONMENTS
