"""The objects plugin hooks return: what the core asks of a registry-specific plugin.

Hooks are synchronous; anything that must await (auth, existence checks) is a method of the
object a hook returns. Plain policies (mount, upload, push outcome) are frozen data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx

    from ocync_core.digest import Digest

__all__ = [
    "Action",
    "AuthProvider",
    "ExistenceChecker",
    "MountMode",
    "MountPolicy",
    "PushOutcome",
    "ReadPolicy",
    "RepositoryPreparer",
    "Scopes",
    "ThrottlePolicy",
    "UploadMode",
    "UploadStrategy",
    "WindowSpec",
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
    """Answers which blobs a repository already holds.

    A checker that spends one request per blob (a HEAD each) may say so with a class
    attribute ``per_blob_requests = True``: where the mount policy has `probe_existence`, ocync
    then skips it and lets the self-mount probe, which also opens the upload, answer instead.
    """

    async def exists(self, repository: str, digests: Sequence[Digest]) -> dict[Digest, bool]:
        """Map every digest asked about to whether `repository` has it."""


@runtime_checkable
class RepositoryPreparer(Protocol):
    """Makes a target repository exist (and be ready) before anything is pushed to it."""

    async def ensure(self, repository: str) -> bool:
        """Create `repository` if it is missing; True when it was created now."""


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
    # A mount from the repository itself answers 201 when it holds the blob and otherwise
    # opens the upload session (202), as the distribution registry does: one request both
    # checks and starts the upload, so blobs of unknown presence need no HEAD first.
    probe_existence: bool = False


class UploadMode(enum.Enum):
    POST_PUT = "post_put"  # POST to open a session, one streamed PUT with ?digest=
    SINGLE_PATCH = "single_patch"  # POST, one PATCH without Content-Range, empty PUT
    CHUNKED = "chunked"  # POST, PATCH chunks of at most `max_chunk`, empty PUT


@dataclass(frozen=True)
class UploadStrategy:
    mode: UploadMode = UploadMode.POST_PUT
    max_chunk: int | None = None


class Action(enum.Enum):
    """What a request does; a throttle policy maps actions to shared windows."""

    PING = "ping"
    MANIFEST_HEAD = "manifest_head"
    MANIFEST_GET = "manifest_get"
    MANIFEST_PUT = "manifest_put"
    BLOB_HEAD = "blob_head"
    BLOB_GET = "blob_get"
    BLOB_CHECK = "blob_check"  # a batched existence check through a registry API (ECR)
    UPLOAD_START = "upload_start"
    UPLOAD_CHUNK = "upload_chunk"
    UPLOAD_FINISH = "upload_finish"
    MOUNT = "mount"
    TAG_LIST = "tag_list"
    REFERRERS = "referrers"
    TOKEN = "token"


@dataclass(frozen=True)
class WindowSpec:
    """One AIMD concurrency window and, optionally, a token bucket in front of it.

    `cap` None means the registry's `max_concurrent`. `rate` is a documented requests-per-second
    ceiling (a token bucket of `burst` tokens); a paced request waits before taking a slot.
    """

    initial: float = 4.0
    cap: int | None = None
    rate: float | None = None
    burst: int = 1


@dataclass(frozen=True)
class ThrottlePolicy:
    """How a registry's capacity is shared out: which actions share a window, and its limits."""

    windows: Mapping[str, WindowSpec]
    window_of: Mapping[Action, str]
    default_window: str = "other"
    # Response headers that announce the remaining request budget (read when present).
    budget_headers: tuple[str, ...] = ("ratelimit-remaining", "x-ratelimit-remaining")
    # Below this remaining budget, new discovery slows down before the registry refuses.
    low_budget: int = 10

    def window_for(self, action: Action) -> str:
        return self.window_of.get(action, self.default_window)


@dataclass(frozen=True)
class ReadPolicy:
    """How ocync reads manifests and referrers from a registry it copies from.

    `head_first`: learn a tag's digest by HEAD before any manifest GET, even when a target
    lacks the tag. Registries that count GETs against a pull quota (Docker Hub) want it; the
    default saves that HEAD, fetching the manifest by tag at once when it is needed anyway.
    `referrers_api`: False for a registry known to lack the OCI 1.1 referrers API (GHCR), so
    referrers are looked up by fallback tag without asking the API first.
    """

    head_first: bool = False
    referrers_api: bool = True


@dataclass(frozen=True)
class PushOutcome:
    """A plugin's reading of a manifest-push error: success after all, with a reason."""

    skipped: bool
    reason: str
