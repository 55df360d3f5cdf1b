"""The registry keys the ECR plugin adds to the config, and reading them back from settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

__all__ = ["EcrOptions", "EcrRegistryConfig", "ecr_options"]


class EcrRegistryConfig(BaseModel):
    """ECR keys of a registry entry (they reach the plugin through `RegistrySettings.options`)."""

    aws_profile: str | None = Field(
        None,
        description="ECR: resolve AWS credentials for this registry from this named profile "
        "(needs auth_type: ecr)",
    )
    create_repositories: bool = Field(
        False, description="ECR: create a missing target repository instead of failing"
    )
    repository_tag_mutability: Literal["MUTABLE", "IMMUTABLE"] = Field(
        "MUTABLE", description="ECR: tag mutability of repositories ocync creates"
    )
    repository_encryption: Literal["AES256", "KMS"] = Field(
        "AES256", description="ECR: encryption of repositories ocync creates"
    )
    kms_key: str | None = Field(
        None, description="ECR: KMS key for repository_encryption: KMS (default: the AWS key)"
    )

    @model_validator(mode="after")
    def _ecr_keys_consistent(self) -> EcrRegistryConfig:
        # In the combined Registry model `auth_type` is a sibling field; alone it is absent.
        auth_type = getattr(self, "auth_type", None)
        if self.aws_profile is not None and auth_type is not None and auth_type != "ecr":
            raise ValueError(
                f"aws_profile needs auth_type: ecr (got auth_type: {auth_type}); "
                "set auth_type: ecr or remove aws_profile"
            )
        if self.kms_key is not None and self.repository_encryption != "KMS":
            raise ValueError("kms_key needs repository_encryption: KMS")
        return self


class EcrOptions(EcrRegistryConfig):
    """The same keys read from `RegistrySettings.options` (defaults when absent)."""

    model_config = {"extra": "ignore"}
    auth_type: str | None = None


def ecr_options(options: Mapping[str, Any]) -> EcrOptions:
    keys = set(EcrOptions.model_fields)
    return EcrOptions(**{k: v for k, v in options.items() if k in keys})
