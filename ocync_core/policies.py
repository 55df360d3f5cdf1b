"""The objects plugin hooks return: what the core asks of a registry-specific plugin.

Hooks are synchronous; anything that must await (auth, existence checks) is a method of the
object a hook returns. Plain policies (mount, upload, push outcome) are frozen data.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx

    from ocync_core.digest import Digest

__all__ = [
    "AuthProvider",
    "ExistenceChecker",
    "MountMode",
    "MountPolicy",
    "PushOutcome",
    "Scopes",
    "UploadMode",
    "UploadStrategy",
]

# A set of token scopes such as {"repository:team/app:pull,push", "repository:base:pull"}.
Scopes = frozenset[str]


@runtime_checkable
class AuthProvider(Protocol):
    """Puts credentials on requests for one registry."""

    async def authorize(self, request: httpx.Request, scopes: Scopes) -> None:
        """Set the request's Authorization header for these scopes, or leave it absent."""

    async def challenged(self, response: httpx.Response, scopes: Scopes) -> bool:
        """A 401 came back: learn its challenge and drop cached tokens for these scopes.

        Return True when a retry with fresh authorization may succeed (the client retries once).
        """


@runtime_checkable
class ExistenceChecker(Protocol):
    """Answers which blobs a repository already holds."""

    async def exists(self, repository: str, digests: Sequence[Digest]) -> dict[Digest, bool]:
        """Map every digest asked about to whether `repository` has it."""


class MountMode(enum.Enum):
    WITH_FROM = "with_from"  # POST ?mount=<digest>&from=<repo>
    WITHOUT_FROM = "without_from"  # POST ?mount=<digest>: the registry finds the blob itself
    NEVER = "never"


@dataclass(frozen=True)
class MountPolicy:
    """Whether and how a registry mounts blobs across repositories."""

    mode: MountMode = MountMode.WITH_FROM
    # Statuses that mean "not mounted, and no session was opened" (Harbor answers 401).
    not_mounted_statuses: frozenset[int] = frozenset()


class UploadMode(enum.Enum):
    POST_PUT = "post_put"  # POST to open a session, one streamed PUT with ?digest=
    SINGLE_PATCH = "single_patch"  # POST, one PATCH without Content-Range, empty PUT
    CHUNKED = "chunked"  # POST, PATCH chunks of at most `max_chunk`, empty PUT


@dataclass(frozen=True)
class UploadStrategy:
    mode: UploadMode = UploadMode.POST_PUT
    max_chunk: int | None = None


@dataclass(frozen=True)
class PushOutcome:
    """A plugin's reading of a manifest-push error: success after all, with a reason."""

    skipped: bool
    reason: str
