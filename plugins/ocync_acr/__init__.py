"""The Azure Container Registry plugin (kind ``acr``): ``<name>.azurecr.io`` and the sovereign
clouds' ``.azurecr.cn`` and ``.azurecr.us``.

What differs from a generic registry, and why:

- auth (`AcrAuth`): the admin user, a repository-scoped token or the docker config entry go
  through the standard token exchange; otherwise a Microsoft Entra ID token (``azure-identity``,
  the optional ``azure`` extra, or a token given beforehand) is exchanged at
  ``/oauth2/exchange`` for an ACR refresh token, which ``/oauth2/token`` trades for access
  tokens per scope set. The generic plugin knows no Entra ID, so it reads such a registry
  anonymously, which ACR refuses unless anonymous pull is on;
- throttling (`throttle_policy`): ACR limits ReadOps and WriteOps per minute by service tier
  (``acr_sku``: basic, standard, premium), so every read shares one window paced under the
  read quota, every write one paced under the write quota;
- mounts (`MOUNT_POLICY`): blob existence is checked with a HEAD (a read) rather than probed
  with a self-mount (a write): writes are the scarcer quota, five to ten times over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_acr.auth import AcrAuth
from ocync_acr.detect import AcrHost, parse_acr_host
from ocync_acr.options import AcrRegistryConfig, acr_options
from ocync_acr.throttle import SKU_LIMITS, throttle_policy
from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import MountMode, MountPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    import httpx
    from pydantic import BaseModel

    from ocync_core.policies import AuthProvider, ThrottlePolicy
    from ocync_core.registry import RegistrySettings

__all__ = [
    "KIND",
    "MOUNT_POLICY",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "SKU_LIMITS",
    "AcrAuth",
    "AcrHost",
    "AcrRegistryConfig",
    "__version__",
    "parse_acr_host",
    "throttle_policy",
]

KIND = "acr"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = (
    "<name>.azurecr.io",
    "<name>.azurecr.cn (Azure China)",
    "<name>.azurecr.us (Azure US Government)",
)

# Mount with `from=`; a 401/403/404 (a repository-scoped token without pull on `from`) means
# "not mounted, no session". No self-mount probe: it would spend a write where a HEAD spends
# a read.
MOUNT_POLICY = MountPolicy(
    mode=MountMode.WITH_FROM,
    not_mounted_statuses=frozenset({401, 403, 404}),
    probe_existence=False,
)


def _ours(kind: str) -> bool:
    return kind == KIND


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if parse_acr_host(registry.host) is not None else None


@hookimpl
def ocync_auth_provider(
    registry: RegistrySettings, kind: str, http: httpx.AsyncClient
) -> AuthProvider | None:
    if not _ours(kind):
        return None
    auth_type = acr_options(registry.options).auth_type
    if auth_type == KIND:
        return AcrAuth(registry, http, entra_only=True)
    if auth_type != "auto" or registry.username is not None or registry.token:
        # basic/token/docker_config/anonymous, or explicit credentials (admin user, scoped
        # token): the standard exchange does exactly what was asked.
        return None
    return AcrAuth(registry, http)


@hookimpl
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    return throttle_policy(acr_options(registry.options).acr_sku) if _ours(kind) else None


@hookimpl
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy | None:
    return MOUNT_POLICY if _ours(kind) else None


@hookimpl
def ocync_registry_config_model() -> type[BaseModel]:
    return AcrRegistryConfig


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # A real docker-registry behind ACR's token service and quotas; imported only when the
    # conformance kit asks, so ocync itself never loads the kit.
    from ocync_acr.emulation import ENVIRONMENTS

    return ENVIRONMENTS
