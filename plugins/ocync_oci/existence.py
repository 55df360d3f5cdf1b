"""The standard existence check: one HEAD per blob, a few at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from ocync_core.digest import Digest

__all__ = ["DEFAULT_HEAD_CONCURRENCY", "BlobHeadClient", "HeadExistenceChecker"]

# HEADs are cheap but each holds a connection; 8 keeps a registry's connection pool (and its
# rate limiter) comfortable while hiding most of the round-trip latency. The client's own
# throttle gate still applies on top of this.
DEFAULT_HEAD_CONCURRENCY = 8


class BlobHeadClient(Protocol):
    """What the checker needs of a registry client (`ocync_core.client.RegistryClient`)."""

    async def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """HEAD the blob: its size if the repository has it, else None."""


class HeadExistenceChecker:
    """An `ExistenceChecker` that HEADs every digest, at most `concurrency` at once.

    Plugins for registries with a batch API (ECR's BatchCheckLayerAvailability) replace it;
    plugins that only want to observe or filter the checks can wrap it.
    """

    # One HEAD per blob: a registry whose mount policy allows the self-mount probe gets that
    # instead (it checks and opens the upload in one request).
    per_blob_requests = True

    def __init__(self, client: BlobHeadClient, concurrency: int = DEFAULT_HEAD_CONCURRENCY) -> None:
        self._client = client
        # One limiter per checker, shared by concurrent `exists` calls on the same registry.
        self._limiter = trio.CapacityLimiter(concurrency)

    async def exists(self, repository: str, digests: Sequence[Digest]) -> dict[Digest, bool]:
        results: dict[Digest, bool] = {}
        failures: list[Exception] = []

        async def head(digest: Digest, cancel: trio.CancelScope) -> None:
            async with self._limiter:
                try:
                    size = await self._client.blob_exists(repository, digest)
                except Exception as exc:
                    # Keep the first failure and stop the others, so the caller gets the
                    # registry's error itself rather than an ExceptionGroup around it.
                    failures.append(exc)
                    cancel.cancel()
                    return
            # An empty blob has size 0: existence is "not None", never truthiness.
            results[digest] = size is not None

        async with trio.open_nursery() as nursery:
            for digest in dict.fromkeys(digests):  # each digest once, in the order asked
                nursery.start_soon(head, digest, nursery.cancel_scope)
        if failures:
            raise failures[0]
        return {digest: results[digest] for digest in digests}
