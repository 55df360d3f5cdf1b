"""Uploads in the plugin's strategy: small, empty, large, streamed, chunk limits.

Every upload goes through `RegistryClient.upload_blob`, which follows the plugin's
`UploadStrategy`; the proxy's log then shows whether the requests on the wire match what the
strategy declares, and the registry (asked directly) whether the blob arrived intact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import Target
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.suite.base import SuiteBase
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.policies import UploadMode, UploadStrategy

__all__ = ["UploadChecks", "assert_blob_at_target", "pieces"]

KIB = 1024
MIB = 1024 * KIB
# More than two chunks of the 4 MiB limit common among registries that have one.
LARGE_SIZE = 9 * MIB
# Above this limit a blob of "two chunks and a bit" gets slow to move for a quick check.
_LARGEST_LIMIT_TO_EXCEED = 8 * MIB
_CAPABILITY_LIMIT = "the registry's declared max_chunk capability"


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as a stream of `size`-byte pieces (the last may be shorter)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_blob_at_target(target: Target, repository: str, data: bytes, what: str) -> None:
    """The registry, asked directly, holds exactly `data` under its digest in `repository`."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    with target.direct() as http:
        response = http.get(f"/v2/{repository}/blobs/{digest}")
    assert response.status_code == 200, (
        f"{what}: the registry does not have {digest} in {repository} after the upload "
        f"(GET answered {response.status_code})"
    )
    stored = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
    assert stored == digest, (
        f"{what}: the registry holds {len(response.content)} bytes with digest {stored} "
        f"under {digest} ({len(data)} bytes were uploaded)"
    )


def _patch_sizes(proxy: FaultProxy) -> list[int]:
    return [r.bytes_in for r in proxy.log if r.action == ProxyAction.UPLOAD_CHUNK]


def assert_chunks_within(proxy: FaultProxy, limit: int, source: str) -> None:
    """No PATCH body on the wire is larger than `limit` bytes (`source` says whose limit)."""
    over = [size for size in _patch_sizes(proxy) if size > limit]
    assert not over, (
        f"{len(over)} PATCH request(s) sent a body above the registry's chunk limit "
        f"({source}: {limit} bytes): {', '.join(f'{size} bytes' for size in over)}"
    )


def assert_wire_matches_strategy(
    proxy: FaultProxy, strategy: UploadStrategy, size: int, what: str
) -> None:
    """One session (POST), the strategy's PATCH pattern, one final PUT, every byte sent once."""
    proxy.wait_idle()
    starts = proxy.count(ProxyAction.UPLOAD_START)
    finishes = proxy.stats(ProxyAction.UPLOAD_FINISH)
    patches = _patch_sizes(proxy)
    assert starts == 1, f"{what}: opened {starts} upload sessions (POST) for one blob, expected 1"
    assert finishes.completed == 1 and finishes.statuses[201] == 1, (
        f"{what}: expected one final PUT answered 201, saw statuses {dict(finishes.statuses)}"
    )
    mode = strategy.mode
    if mode is UploadMode.POST_PUT:
        assert not patches, (
            f"{what}: the upload strategy is POST_PUT (one PUT with the body) but "
            f"{len(patches)} PATCH request(s) went out"
        )
        sent = finishes.bytes_in
    elif mode is UploadMode.SINGLE_PATCH:
        assert len(patches) == 1, (
            f"{what}: the upload strategy is SINGLE_PATCH but {len(patches)} PATCH requests "
            f"went out (sizes {patches})"
        )
        sent = sum(patches)
    else:
        if strategy.max_chunk is not None:
            assert_chunks_within(
                proxy, strategy.max_chunk, "max_chunk of the plugin's CHUNKED upload strategy"
            )
        sent = sum(patches)
    assert sent == size, (
        f"{what}: {sent} body bytes went to the registry in {mode.name} mode for a {size}-byte blob"
    )


class UploadChecks(SuiteBase):
    async def _upload_and_check(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        data: bytes,
        piece: int,
        what: str,
        caps: Capabilities,
    ) -> None:
        await client.ping()  # the probe is not part of the upload's requests
        proxy.wait_idle()
        proxy.reset()
        await client.upload_blob(repo, Digest.of(data), len(data), pieces(data, piece))
        assert_wire_matches_strategy(proxy, client.upload_strategy, len(data), what)
        if caps.max_chunk is not None:
            assert_chunks_within(proxy, caps.max_chunk, _CAPABILITY_LIMIT)
        assert_blob_at_target(target, repo, data, what)

    async def test_upload_small_blob(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        caps: Capabilities,
    ) -> None:
        data = os.urandom(KIB)
        await self._upload_and_check(client, target, proxy, repo, data, KIB, "1 KiB upload", caps)

    async def test_upload_empty_blob(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        caps: Capabilities,
    ) -> None:
        await self._upload_and_check(client, target, proxy, repo, b"", 1, "empty upload", caps)

    async def test_upload_large_blob(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        caps: Capabilities,
    ) -> None:
        data = os.urandom(LARGE_SIZE)
        await self._upload_and_check(client, target, proxy, repo, data, MIB, "9 MiB upload", caps)

    async def test_upload_streamed_blob(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        caps: Capabilities,
    ) -> None:
        # Many small, odd-sized pieces: the strategy must regroup them, not send each alone.
        data = os.urandom(MIB + 123)
        await self._upload_and_check(
            client, target, proxy, repo, data, 7 * KIB + 3, "streamed upload of 7 KiB pieces", caps
        )

    async def test_upload_respects_chunk_limit(
        self,
        client: RegistryClient,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        caps: Capabilities,
    ) -> None:
        strategy = client.upload_strategy
        limit, source = caps.max_chunk, _CAPABILITY_LIMIT
        if limit is None and strategy.mode is UploadMode.CHUNKED:
            limit, source = strategy.max_chunk, "max_chunk of the plugin's CHUNKED upload strategy"
        if limit is None:
            size = MIB + KIB  # no limit anywhere: only the strategy's pattern to check
        elif limit <= _LARGEST_LIMIT_TO_EXCEED:
            # Two chunks and a bit: a plugin that sends larger chunks shows it on the wire.
            size = 2 * limit + KIB
        else:
            size = LARGE_SIZE
        data = os.urandom(size)
        await client.ping()
        proxy.wait_idle()
        proxy.reset()
        await client.upload_blob(repo, Digest.of(data), size, pieces(data, 256 * KIB))
        proxy.wait_idle()
        if limit is not None:
            assert_chunks_within(proxy, limit, source)
        assert_wire_matches_strategy(proxy, strategy, size, f"{size}-byte upload")
        assert_blob_at_target(target, repo, data, f"{size}-byte upload")
