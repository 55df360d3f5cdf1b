"""The generic OCI registry plugin: the standard answer to every ocync hook.

Every hookimpl is ``trylast``, so any plugin that answers for its own kind wins, and this one
answers for everything else (kind ``oci``). It never claims a registry by detection: ``oci``
is what a registry is when nobody claims it. Other built-ins may reuse its building blocks
(`HeadExistenceChecker`, `MOUNT_POLICY`, `UPLOAD_STRATEGY`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import (
    Action,
    MountMode,
    MountPolicy,
    PushOutcome,
    ReadPolicy,
    ThrottlePolicy,
    UploadMode,
    UploadStrategy,
    WindowSpec,
)
from ocync_oci.existence import BlobHeadClient, HeadExistenceChecker

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    import click
    import httpx
    from pydantic import BaseModel

    from ocync_core.client import RegistryClient
    from ocync_core.errors import RegistryError
    from ocync_core.policies import AuthProvider
    from ocync_core.registry import RegistrySettings

__all__ = [
    "MOUNT_POLICY",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "READ_POLICY",
    "THROTTLE_POLICY",
    "UPLOAD_STRATEGY",
    "BlobHeadClient",
    "HeadExistenceChecker",
    "__version__",
]

OCYNC_KINDS = ("oci",)
OCYNC_HOSTS = ("any OCI Distribution registry (fallback)",)

# Mount with `from=`; a 401/403/404 is "not mounted, no session opened": Harbor answers 401
# to a mount from a repository that does not exist (or the token lacks pull on it). A mount
# from the target repository itself replaces the blob HEAD (the conformance kit checks it).
MOUNT_POLICY = MountPolicy(
    mode=MountMode.WITH_FROM,
    not_mounted_statuses=frozenset({401, 403, 404}),
    probe_existence=True,
)
UPLOAD_STRATEGY = UploadStrategy(mode=UploadMode.POST_PUT)
READ_POLICY = ReadPolicy()

# Coarse groups: a registry that refuses one kind of request usually still serves the others
# (reads vs writes, manifests vs blobs), so a 429 shrinks only its own group.
THROTTLE_POLICY = ThrottlePolicy(
    windows={
        "manifest_read": WindowSpec(initial=8),
        "manifest_write": WindowSpec(initial=4),
        "blob_read": WindowSpec(initial=8),
        "upload": WindowSpec(initial=4),
        "other": WindowSpec(initial=4),
    },
    window_of={
        Action.MANIFEST_HEAD: "manifest_read",
        Action.MANIFEST_GET: "manifest_read",
        Action.MANIFEST_PUT: "manifest_write",
        Action.BLOB_HEAD: "blob_read",
        Action.BLOB_GET: "blob_read",
        Action.BLOB_CHECK: "blob_read",
        Action.UPLOAD_START: "upload",
        Action.UPLOAD_CHUNK: "upload",
        Action.UPLOAD_FINISH: "upload",
        Action.MOUNT: "upload",
    },
    default_window="other",
)


@hookimpl(trylast=True)
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return None  # "oci" is the fallback, never a claim


@hookimpl(trylast=True)
def ocync_registry_endpoint(registry: RegistrySettings, kind: str) -> str | None:
    return None  # requests go to the registry's own host


@hookimpl(trylast=True)
def ocync_normalize_repository(
    registry: RegistrySettings, kind: str, repository: str
) -> str | None:
    return None  # a repository is named as written


@hookimpl(trylast=True)
def ocync_auth_provider(
    registry: RegistrySettings, kind: str, http: httpx.AsyncClient
) -> AuthProvider:
    # Imported here: only commands that talk to registries pay for the auth stack.
    from ocync_core.auth.provider import StandardAuth

    return StandardAuth(registry, http)


@hookimpl(trylast=True)
def ocync_existence_checker(
    registry: RegistrySettings, kind: str, client: RegistryClient
) -> HeadExistenceChecker:
    return HeadExistenceChecker(client)


@hookimpl(trylast=True)
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy:
    return MOUNT_POLICY


@hookimpl(trylast=True)
def ocync_upload_strategy(registry: RegistrySettings, kind: str) -> UploadStrategy:
    return UPLOAD_STRATEGY


@hookimpl(trylast=True)
def ocync_read_policy(registry: RegistrySettings, kind: str) -> ReadPolicy:
    return READ_POLICY


@hookimpl(trylast=True)
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy:
    return THROTTLE_POLICY


@hookimpl(trylast=True)
def ocync_repository_preparer(registry: RegistrySettings, kind: str) -> None:
    return None  # an OCI registry creates a repository on its first push


@hookimpl(trylast=True)
def ocync_manifest_push_outcome(
    registry: RegistrySettings, kind: str, error: RegistryError, wanted_digest: str
) -> PushOutcome | None:
    return None  # a generic registry's error is an error


@hookimpl(trylast=True)
def ocync_registry_config_model() -> type[BaseModel] | None:
    return None  # no keys beyond the core's


@hookimpl(trylast=True)
def ocync_register_commands(cli: click.Group) -> None:
    return None  # no commands beyond the core's


@hookimpl(trylast=True)
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # docker-registry in its auth/TLS variants, plus the referrers API it lacks; imported only
    # when the conformance kit asks, so ocync itself never loads the kit.
    from ocync_conformance.environments import DOCKER_REGISTRY_ENVIRONMENTS

    return DOCKER_REGISTRY_ENVIRONMENTS
