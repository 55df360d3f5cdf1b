"""The registry keys the ACR plugin adds to the config, and reading them back from settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

__all__ = ["AcrOptions", "AcrRegistryConfig", "Sku", "acr_options"]

Sku = Literal["basic", "standard", "premium"]


class AcrRegistryConfig(BaseModel):
    """ACR keys of a registry entry (they reach the plugin through `RegistrySettings.options`)."""

    acr_sku: Sku = Field(
        "standard",
        description="ACR: the registry's service tier; reads and writes are paced at its "
        "documented ReadOps/WriteOps per minute",
    )
    acr_aad_scope: str | None = Field(
        None,
        description="ACR: the Microsoft Entra scope of the token exchanged for registry access "
        "(default: the registry cloud's, e.g. https://containerregistry.azure.net/.default)",
    )

    @model_validator(mode="after")
    def _acr_keys_consistent(self) -> AcrRegistryConfig:
        # In the combined Registry model these are sibling fields; alone they are absent.
        if getattr(self, "auth_type", None) == "acr" and getattr(self, "credentials", None):
            raise ValueError(
                "auth_type: acr authenticates with Microsoft Entra ID; remove credentials, or "
                "use auth_type: auto to send them (the admin user or a repository token)"
            )
        return self


class AcrOptions(AcrRegistryConfig):
    """The same keys read from `RegistrySettings.options` (defaults when absent)."""

    model_config = {"extra": "ignore"}
    auth_type: str = "auto"


def acr_options(options: Mapping[str, Any]) -> AcrOptions:
    keys = set(AcrOptions.model_fields)
    return AcrOptions(**{k: v for k, v in options.items() if k in keys and v is not None})
