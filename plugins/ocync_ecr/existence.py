"""Existence checks with `BatchCheckLayerAvailability`: up to 100 digests per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ocync_core.policies import Action
from ocync_ecr.aws import EcrApi, error_code

if TYPE_CHECKING:
    from ocync_core.digest import Digest
    from ocync_core.throttle import RegistryThrottle

__all__ = ["BATCH_SIZE", "BatchExistenceChecker"]

BATCH_SIZE = 100  # the API's limit on layerDigests


class BatchExistenceChecker:
    """An `ExistenceChecker` asking ECR's control plane instead of HEADing every blob.

    ``AVAILABLE`` is True; ``UNAVAILABLE`` and failures (MissingLayerDigest, InvalidLayerDigest)
    are False; a repository that does not exist holds nothing. Each call holds a slot of the
    registry throttle's BLOB_CHECK window (the BatchCheckLayerAvailability bucket) when given.
    """

    def __init__(self, api: EcrApi, throttle: RegistryThrottle | None = None) -> None:
        self.api = api
        self.throttle = throttle
        self.calls = 0  # BatchCheckLayerAvailability calls made (tests, diagnostics)

    async def exists(self, repository: str, digests: Sequence[Digest]) -> dict[Digest, bool]:
        unique = list(dict.fromkeys(digests))
        by_text = {str(d): d for d in unique}
        found: dict[str, bool] = {}
        failures: list[Exception] = []

        async def check(batch: list[str], cancel: trio.CancelScope) -> None:
            try:
                found.update(await self._batch(repository, batch))
            except Exception as exc:
                failures.append(exc)
                cancel.cancel()

        async with trio.open_nursery() as nursery:
            for i in range(0, len(by_text), BATCH_SIZE):
                batch = list(by_text)[i : i + BATCH_SIZE]
                nursery.start_soon(check, batch, nursery.cancel_scope)
        if failures:
            raise failures[0]
        return {digest: found.get(str(digest), False) for digest in digests}

    async def _batch(self, repository: str, batch: list[str]) -> dict[str, bool]:
        params: dict[str, Any] = {
            **self.api.registry_id(),
            "repositoryName": repository,
            "layerDigests": batch,
        }
        self.calls += 1
        if self.throttle is None:
            return await self._ask(params, batch)
        async with self.throttle.slot(Action.BLOB_CHECK) as ticket:
            try:
                answer = await self._ask(params, batch)
            except Exception as exc:
                if error_code(exc) in ("ThrottlingException", "TooManyRequestsException"):
                    ticket.congested()
                raise
            ticket.ok()
            return answer

    async def _ask(self, params: dict[str, Any], batch: list[str]) -> dict[str, bool]:
        try:
            answer = await self.api.call("BatchCheckLayerAvailability", **params)
        except Exception as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                return dict.fromkeys(batch, False)
            raise self.api.failure("BatchCheckLayerAvailability", exc) from exc
        result = dict.fromkeys(batch, False)
        for layer in answer.get("layers") or []:
            digest = layer.get("layerDigest")
            if digest in result:
                result[digest] = layer.get("layerAvailability") == "AVAILABLE"
        # failures (MissingLayerDigest, InvalidLayerDigest) stay False.
        return result
