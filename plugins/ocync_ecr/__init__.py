"""The Amazon ECR plugin (kind ``ecr``): the private ECR registries of every AWS partition.

- detection of ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]``, the dual-stack
  ``<account>.dkr-ecr[-fips].<region>.on.aws`` form and the other partitions' suffixes;
- auth with ``ecr:GetAuthorizationToken`` (boto3, AWS default chain or ``aws_profile``), sent
  as ``Authorization: Basic`` with no token exchange (`EcrAuth`);
- existence checks with ``BatchCheckLayerAvailability`` (`BatchExistenceChecker`);
- one throttle window per ECR action, paced at its quota (`THROTTLE_POLICY`);
- POST + single streamed PUT uploads, mounts with ``from`` (a 202 is an opened upload);
- an immutable tag that already exists reads as skipped (the core checks the digest);
- ``create_repositories``: `EcrRepositories` (exported as `REPOSITORY_PREPARER`).

ECR Public (``public.ecr.aws``) is not claimed yet: it is served by the generic plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import (
    MountMode,
    MountPolicy,
    PushOutcome,
    ThrottlePolicy,
    UploadMode,
    UploadStrategy,
)
from ocync_ecr.auth import EcrAuth
from ocync_ecr.aws import EcrApi
from ocync_ecr.detect import EcrHost, is_ecr_public_host, parse_ecr_host
from ocync_ecr.existence import BatchExistenceChecker
from ocync_ecr.options import EcrRegistryConfig
from ocync_ecr.public import ECR_PUBLIC_KIND, EcrPublicAuth
from ocync_ecr.repositories import EcrRepositories, MissingRepository, missing_repository_hint
from ocync_ecr.throttle import THROTTLE_POLICY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    import httpx
    from pydantic import BaseModel

    from ocync_core.client import RegistryClient
    from ocync_core.errors import RegistryError
    from ocync_core.policies import AuthProvider
    from ocync_core.registry import RegistrySettings

__all__ = [
    "KIND",
    "MOUNT_POLICY",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "REPOSITORY_PREPARER",
    "THROTTLE_POLICY",
    "UPLOAD_STRATEGY",
    "BatchExistenceChecker",
    "EcrApi",
    "EcrAuth",
    "EcrHost",
    "EcrRegistryConfig",
    "EcrRepositories",
    "MissingRepository",
    "__version__",
    "immutable_tag_outcome",
    "missing_repository_hint",
    "parse_ecr_host",
]

KIND = "ecr"
OCYNC_KINDS = (KIND, ECR_PUBLIC_KIND)
OCYNC_HOSTS = (
    "public.ecr.aws (kind ecr-public)",
    "<account>.dkr.ecr.<region>.amazonaws.com",
    "<account>.dkr.ecr-fips.<region>.amazonaws.com",
    "<account>.dkr-ecr[-fips].<region>.on.aws (dual-stack)",
    "<account>.dkr.ecr.<region>.amazonaws.com.cn",
    "<account>.dkr.ecr.<region>.{c2s.ic.gov,sc2s.sgov.gov,cloud.adc-e.uk,csp.hci.ic.gov}",
)

# Mount with `from=`: without BLOB_MOUNTING=ENABLED (or without a committed manifest in the
# source repository) ECR answers 202 and opens a normal upload, which the core then uses.
MOUNT_POLICY = MountPolicy(
    mode=MountMode.WITH_FROM, not_mounted_statuses=frozenset({401, 403, 404})
)
# Multi-PATCH uploads are broken on ECR (the Range stops advancing after the first chunk,
# aws/containers-roadmap#2831): one streamed PUT.
UPLOAD_STRATEGY = UploadStrategy(mode=UploadMode.POST_PUT)

# Called by the core for `create_repositories` (EcrRepositories(registry).ensure(repo)).
REPOSITORY_PREPARER = EcrRepositories


def _ours(kind: str) -> bool:
    return kind == KIND


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    if is_ecr_public_host(registry.host):
        return ECR_PUBLIC_KIND
    return KIND if parse_ecr_host(registry.host) is not None else None


@hookimpl
def ocync_auth_provider(
    registry: RegistrySettings, kind: str, http: httpx.AsyncClient
) -> AuthProvider | None:
    if kind == ECR_PUBLIC_KIND:
        # Everything else about ECR Public is a standard registry: only auth differs.
        return EcrPublicAuth(registry, http)
    if not _ours(kind):
        return None
    auth_type = registry.options.get("auth_type", "auto")
    if auth_type not in ("auto", KIND):
        return None  # basic/token/anonymous: the standard provider does what was asked
    if auth_type == "auto" and (registry.username or registry.token):
        return None  # explicit credentials (e.g. from `aws ecr get-login-password`)
    return EcrAuth(registry)


@hookimpl
def ocync_existence_checker(
    registry: RegistrySettings, kind: str, client: RegistryClient
) -> BatchExistenceChecker | None:
    if not _ours(kind):
        return None
    return BatchExistenceChecker(EcrApi(registry), getattr(client, "throttle", None))


@hookimpl
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy | None:
    return MOUNT_POLICY if _ours(kind) else None


@hookimpl
def ocync_upload_strategy(registry: RegistrySettings, kind: str) -> UploadStrategy | None:
    return UPLOAD_STRATEGY if _ours(kind) else None


@hookimpl
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    return THROTTLE_POLICY if _ours(kind) else None


def immutable_tag_outcome(error: RegistryError) -> PushOutcome | None:
    """`ImageTagAlreadyExistsException` as ECR's data plane reports it, read as a skip.

    ECR answers 400 ``TAG_INVALID`` "The image tag '<t>' already exists in the '<repo>'
    repository and cannot be overwritten because the repository is immutable." The hook
    cannot tell which digest the tag holds: the core HEADs the tag and accepts the skip only
    when it holds the digest it wanted to push.
    """
    texts = [f"{e.code} {e.message}" for e in error.errors] or [str(error)]
    for text in texts:
        lower = text.lower()
        if "imagetagalreadyexists" in lower:
            return PushOutcome(skipped=True, reason="immutable tag exists")
        if ("tag_invalid" in lower or not error.errors) and (
            "already exists" in lower and "immutable" in lower
        ):
            return PushOutcome(skipped=True, reason="immutable tag exists")
    return None


@hookimpl
def ocync_manifest_push_outcome(
    registry: RegistrySettings, kind: str, error: RegistryError, wanted_digest: str
) -> PushOutcome | None:
    return immutable_tag_outcome(error) if _ours(kind) else None


@hookimpl
def ocync_repository_preparer(registry: RegistrySettings, kind: str) -> EcrRepositories | None:
    # ECR refuses pushes to a repository that does not exist: check (and create, when
    # `create_repositories` is set) before the first push, with a message that says how.
    return EcrRepositories(registry) if _ours(kind) else None


@hookimpl
def ocync_registry_config_model() -> type[BaseModel]:
    return EcrRegistryConfig


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # The ECR emulator (moto for the API, a real docker-registry behind the data plane).
    from ocync_conformance.environments import ECR_ENVIRONMENTS

    return ECR_ENVIRONMENTS
