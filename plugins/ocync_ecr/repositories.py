"""Preparing target repositories: ECR refuses pushes to a repository that does not exist."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ocync_core.errors import BadInput
from ocync_ecr.aws import EcrApi, error_code

if TYPE_CHECKING:
    from ocync_core.registry import RegistrySettings

__all__ = ["EcrRepositories", "MissingRepository", "missing_repository_hint"]


class MissingRepository(BadInput):
    """The target repository does not exist and the registry may not create it."""


def missing_repository_hint(registry: RegistrySettings, repository: str) -> str:
    return (
        f"repository {repository} does not exist in ECR registry {registry.host}; create it "
        "(ecr:CreateRepository) or set create_repositories: true"
    )


class EcrRepositories:
    """Makes sure target repositories exist (``create_repositories: true``).

    `ensure` asks DescribeRepositories once per repository (cached); a missing repository is
    created with the registry's `repository_tag_mutability` and `repository_encryption`
    (`kms_key`) when `create_repositories` is on, else `MissingRepository` explains the fix.
    """

    def __init__(self, registry: RegistrySettings, api: EcrApi | None = None) -> None:
        self.registry = registry
        self.api = api or EcrApi(registry)
        self._known: set[str] = set()
        self._locks: dict[str, trio.Lock] = {}
        self.created: list[str] = []

    async def ensure(self, repository: str) -> bool:
        """Make sure `repository` exists; True when this call created it."""
        if repository in self._known:
            return False
        lock = self._locks.setdefault(repository, trio.Lock())
        async with lock:
            if repository in self._known:
                return False
            created = await self._ensure(repository)
            self._known.add(repository)
            return created

    async def exists(self, repository: str) -> bool:
        try:
            await self.api.call(
                "DescribeRepositories", **self.api.registry_id(), repositoryNames=[repository]
            )
        except Exception as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                return False
            raise self.api.failure("DescribeRepositories", exc) from exc
        return True

    async def _ensure(self, repository: str) -> bool:
        if await self.exists(repository):
            return False
        options = self.api.options
        if not options.create_repositories:
            raise MissingRepository(missing_repository_hint(self.registry, repository))
        encryption: dict[str, Any] = {"encryptionType": options.repository_encryption}
        if options.repository_encryption == "KMS" and options.kms_key:
            encryption["kmsKey"] = options.kms_key
        try:
            await self.api.call(
                "CreateRepository",
                **self.api.registry_id(),
                repositoryName=repository,
                imageTagMutability=options.repository_tag_mutability,
                encryptionConfiguration=encryption,
            )
        except Exception as exc:
            if error_code(exc) == "RepositoryAlreadyExistsException":
                return False  # created by someone else meanwhile
            raise self.api.failure("CreateRepository", exc) from exc
        self.created.append(repository)
        return True
