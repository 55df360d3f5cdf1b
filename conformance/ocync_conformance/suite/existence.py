"""Existence checks: the plugin's `ExistenceChecker` says exactly what the registry holds."""

from __future__ import annotations

import os

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.suite.base import SuiteBase, requires
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest

__all__ = ["ExistenceChecks"]


class ExistenceChecks(SuiteBase):
    async def test_existence_of_present_and_absent_blobs(
        self, client: RegistryClient, target: Target, repo: str
    ) -> None:
        with target.direct() as http:
            present = [Digest.parse(push_blob(http, repo, os.urandom(64))) for _ in range(3)]
        absent = [Digest.parse(f"sha256:{os.urandom(32).hex()}") for _ in range(3)]
        answer = await client.existence_checker.exists(repo, [*present, *absent])
        wrong = {d: answer.get(d) for d in [*present, *absent] if answer.get(d) != (d in present)}
        assert not wrong, (
            f"existence checker answered wrongly for {len(wrong)} blob(s) in {repo}: "
            + ", ".join(f"{d} -> {v} (registry has it: {d in present})" for d, v in wrong.items())
        )

    @requires("batch_existence", "the registry has no batch check")
    async def test_batch_existence_uses_few_requests(
        self,
        client: RegistryClient,
        target: Target,
        repo: str,
        proxy: FaultProxy,
    ) -> None:
        digests = [Digest.parse(f"sha256:{os.urandom(32).hex()}") for _ in range(40)]
        answer = await client.existence_checker.exists(repo, digests)
        assert set(answer) == set(digests) and not any(answer.values())
        blob_heads = proxy.count(["blob_head"])
        assert blob_heads == 0, (
            f"a batch existence check of 40 blobs sent {blob_heads} blob HEADs to the registry"
        )
