"""Microsoft Entra ID (AAD) access tokens, the first step of ACR's token exchange.

Where the token comes from, first match wins:

1. the registry's `token` with `auth_type: acr` (one registry, a token fetched beforehand);
2. the ``AZURE_ACCESS_TOKEN`` environment variable (every ACR registry; e.g. the output of
   ``az account get-access-token --resource https://containerregistry.azure.net``);
3. `azure-identity`'s ``DefaultAzureCredential`` (environment service principal, workload
   identity, managed identity, Azure CLI, ...), when the optional ``azure`` extra is installed.

A static token cannot be renewed: a run longer than its lifetime needs the SDK.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ocync_core.auth.jwt import jwt_expiry
from ocync_core.errors import AuthenticationError

if TYPE_CHECKING:
    from ocync_core.registry import RegistrySettings

__all__ = [
    "AZURE_TOKEN_ENV",
    "EXTRA_HINT",
    "AadToken",
    "AadTokenSource",
    "AadUnavailable",
    "AzureIdentityToken",
    "StaticAadToken",
    "aad_token_source",
]

AZURE_TOKEN_ENV = "AZURE_ACCESS_TOKEN"
EXTRA_HINT = "pip install 'ocync[azure]'"


@dataclass(frozen=True, repr=False)
class AadToken:
    """An Entra access token and when it expires (epoch seconds; None when unknown)."""

    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"AadToken(***, expires_at={self.expires_at})"


class AadUnavailable(AuthenticationError):
    """No Entra token can be had here (no token given, no SDK, no identity); says why."""


class AadTokenSource(Protocol):
    """Gives Entra access tokens for a scope."""

    async def token(self, scope: str) -> AadToken:
        """A token for `scope`; `AadUnavailable` when this source has none to give."""
        ...


@dataclass(repr=False)
class StaticAadToken:
    """A token given beforehand (config or environment); `origin` names where, for messages."""

    value: str = field(repr=False)
    origin: str
    clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"StaticAadToken(origin={self.origin!r})"

    async def token(self, scope: str) -> AadToken:
        expires_at = jwt_expiry(self.value)
        if expires_at is not None and expires_at <= self.clock():
            raise AuthenticationError(
                f"the Microsoft Entra token in {self.origin} expired; fetch a new one, or install "
                f"the Azure SDK ({EXTRA_HINT}) so that ocync renews tokens itself"
            )
        return AadToken(self.value, expires_at)


class AzureIdentityToken:
    """Tokens from `azure-identity`'s ``DefaultAzureCredential``, imported on first use.

    The SDK call blocks (HTTP to the identity endpoint, or a CLI subprocess): it runs in a
    worker thread. The credential caches and renews tokens itself.
    """

    def __init__(self, credential: Any = None) -> None:
        self._credential = credential
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return "AzureIdentityToken()"

    def _make_credential(self) -> Any:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise AadUnavailable(
                f"the Azure SDK is not installed ({EXTRA_HINT}) and {AZURE_TOKEN_ENV} is not set"
            ) from None
        return DefaultAzureCredential()

    async def token(self, scope: str) -> AadToken:
        async with self._lock:
            if self._credential is None:
                self._credential = self._make_credential()
        try:
            answer = await trio.to_thread.run_sync(
                self._credential.get_token, scope, abandon_on_cancel=True
            )
        except Exception as exc:  # azure.core's ClientAuthenticationError and its kind
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AadUnavailable(
                f"DefaultAzureCredential found no Microsoft Entra identity ({first_line[:300]})"
            ) from None
        return AadToken(str(answer.token), float(answer.expires_on))


def aad_token_source(registry: RegistrySettings, entra_only: bool) -> AadTokenSource:
    """Where this registry's Entra tokens come from (see the module docstring)."""
    if entra_only and registry.token:
        return StaticAadToken(registry.token, f"the token of registry {registry.label}")
    from_env = os.environ.get(AZURE_TOKEN_ENV)
    if from_env:
        return StaticAadToken(from_env, AZURE_TOKEN_ENV)
    return AzureIdentityToken()
