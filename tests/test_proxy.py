"""The fault-injecting proxy against a real docker-registry: forwarding, counting, faults."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from ocync_conformance.images import push_blob, push_manifest, sha256_digest
from ocync_conformance.proxy import (
    UPLOAD_ACTIONS,
    FaultProxy,
    ProxyAction,
    RequestView,
    classify,
)
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.policies import Action

if TYPE_CHECKING:
    # Not imported at run time: pytest loads the module as a plugin (below) and warns when
    # a plugin module was imported before it could rewrite its asserts.
    from ocync_conformance.proxy_fixtures import ProxiedRegistry

# The proxy fixtures (`proxied_registry`, `fault_proxy`), until the kit's pytest plugin
# exports them; harmless afterwards (the same fixture functions).

MIB = 1024 * 1024
REPO = "proxy/test"
CONFIG = b"{}"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# docker-registry 2.8 answers 404 for an OCI manifest unless the client accepts OCI types.
ACCEPT = {"Accept": MANIFEST_TYPE}


def _manifest(config_digest: str, layer_digest: str, layer_size: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(CONFIG),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
    ).encode()


def _pattern(size: int) -> bytes:
    block = hashlib.sha256(b"proxy").digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def _parallel(n: int, fn: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """Run fn(i) in n threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> httpx.Response:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


# --------------------------------------------------------------------------------------------
# classification


@pytest.mark.parametrize(
    ("method", "target", "action"),
    [
        ("GET", "/v2/", "ping"),
        ("GET", "/v2/_catalog?n=10", "catalog"),
        ("HEAD", "/v2/a/b/c/manifests/v1", "manifest_head"),
        ("GET", "/v2/a/manifests/sha256:abc", "manifest_get"),
        ("PUT", "/v2/a/manifests/v1", "manifest_put"),
        ("DELETE", "/v2/a/manifests/sha256:abc", "other"),
        ("HEAD", "/v2/a/b/blobs/sha256:abc", "blob_head"),
        ("GET", "/v2/a/b/blobs/sha256:abc", "blob_get"),
        ("POST", "/v2/a/b/blobs/uploads/", "upload_start"),
        ("POST", "/v2/a/b/blobs/uploads/?digest=sha256:abc", "upload_start"),
        ("POST", "/v2/a/b/blobs/uploads/?mount=sha256:abc&from=x/y", "mount"),
        ("PATCH", "/v2/a/b/blobs/uploads/0b7e-uuid?_state=xyz", "upload_chunk"),
        ("PUT", "/v2/a/b/blobs/uploads/0b7e-uuid?_state=xyz&digest=sha256:a", "upload_finish"),
        ("GET", "/v2/a/b/blobs/uploads/0b7e-uuid", "other"),
        ("GET", "/v2/a/b/tags/list?n=5", "tag_list"),
        ("GET", "/v2/a/b/referrers/sha256:abc?artifactType=x", "referrers"),
        ("GET", "/v2/blobs/manifests/tags", "manifest_get"),  # names may look like keywords
        ("GET", "/healthz", "other"),
    ],
)
def test_classify(method: str, target: str, action: str) -> None:
    assert classify(method, target) == action


def test_action_names_match_core_policies() -> None:
    # The proxy is standalone but speaks ocync's vocabulary: shared names are equal strings,
    # and rules accept the core enum directly.
    shared = {a.value for a in Action} & {a.value for a in ProxyAction}
    assert shared == {a.value for a in ProxyAction} - {"catalog", "other"}


# --------------------------------------------------------------------------------------------
# forwarding


def test_push_and_pull_through_proxy(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    layer = os.urandom(300_000)
    with httpx.Client(base_url=proxy.url, timeout=10) as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        # Location rewritten to the proxy: the client never learns the upstream's address.
        assert location.startswith(f"{proxy.url}/v2/{REPO}/blobs/uploads/")
        assert proxied_registry.registry.host not in location
        assert r.headers["Docker-Upload-UUID"]
        digest = sha256_digest(layer)
        r = c.put(
            f"{location}&digest={digest}",
            content=layer,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Location"].startswith(proxy.url)

        config_digest = push_blob(c, REPO, CONFIG)
        body = _manifest(config_digest, digest, len(layer))
        r = c.put(f"/v2/{REPO}/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256_digest(body)

        r = c.head(f"/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST_TYPE})
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(body))  # kept on HEAD, no body sent
        assert r.headers["Docker-Content-Digest"] == sha256_digest(body)
        r = c.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST_TYPE})
        assert r.content == body
        assert r.headers["Content-Type"] == MANIFEST_TYPE

        r = c.head(f"/v2/{REPO}/blobs/{digest}")
        assert (r.status_code, r.headers["Content-Length"]) == (200, str(len(layer)))
        r = c.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206
        assert r.content == layer[10:20]
        assert r.headers["Content-Range"].startswith("bytes 10-19/")
        assert c.get(f"/v2/{REPO}/tags/list").json()["tags"] == ["v1"]
        # Errors pass through unchanged, with the registry's JSON body.
        r = c.get(f"/v2/{REPO}/manifests/nope")
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"

    assert proxy.wait_idle()
    s = proxy.stats
    assert s(ProxyAction.UPLOAD_START).requests == 2
    assert s("upload_finish").statuses == {201: 2}
    assert s("upload_finish").bytes_in == len(layer) + len(CONFIG)
    assert s(Action.MANIFEST_PUT).bytes_in == len(body)
    assert s("manifest_head").statuses == {200: 1} and s("manifest_head").bytes_out == 0
    assert s("manifest_get").statuses == {200: 1, 404: 1}
    assert s("blob_get").bytes_out == 10
    assert s("tag_list").requests == 1
    assert s(UPLOAD_ACTIONS).requests == 4
    total = s()
    assert total.requests == len(proxy.log) == 11
    assert total.in_flight == 0
    # The upstream saw exactly what the client sent (and nothing more).
    assert all(r.faults == () and r.error is None for r in proxy.log)


def test_chunked_request_body_is_forwarded(proxied_registry: ProxiedRegistry) -> None:
    data = _pattern(3 * MIB + 17)

    def pieces() -> object:
        for i in range(0, len(data), 700_000):
            yield data[i : i + 700_000]

    with proxied_registry.client() as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        # A generator body has no length: httpx sends Transfer-Encoding: chunked.
        r = c.patch(r.headers["Location"], content=pieces())  # type: ignore[arg-type]
        assert r.status_code == 202, r.text
        digest = sha256_digest(data)
        sep = "&" if "?" in r.headers["Location"] else "?"
        r = c.put(f"{r.headers['Location']}{sep}digest={digest}")
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{REPO}/blobs/{digest}").content == data
    proxied_registry.proxy.wait_idle()
    assert proxied_registry.proxy.stats("upload_chunk").bytes_in == len(data)


def _download_seconds(url: str, digest: str, size: int, rounds: int = 3) -> float:
    best = float("inf")
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(rounds):
            started = time.perf_counter()
            got = 0
            with c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r:
                for chunk in r.iter_raw():
                    got += len(chunk)
            best = min(best, time.perf_counter() - started)
            assert got == size
    return best


def test_large_blob_round_trip_and_throughput(proxied_registry: ProxiedRegistry) -> None:
    data = _pattern(64 * MIB)
    digest = sha256_digest(data)
    proxy = proxied_registry.proxy
    assert push_blob(proxy.url, REPO, data) == digest
    with proxied_registry.client() as c, c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r:
        h = hashlib.sha256()
        for chunk in r.iter_raw():
            h.update(chunk)
        assert f"sha256:{h.hexdigest()}" == digest
        assert r.num_bytes_downloaded == len(data)

    direct = _download_seconds(proxied_registry.registry.url, digest, len(data))
    via = _download_seconds(proxy.url, digest, len(data))
    ratio = direct / via
    print(
        f"\n64 MiB blob GET: direct {len(data) / direct / 1e6:.0f} MB/s, "
        f"via proxy {len(data) / via / 1e6:.0f} MB/s, ratio {ratio:.2f}"
    )
    assert ratio >= 0.25  # loose: catches pathologies, not a benchmark


# --------------------------------------------------------------------------------------------
# limits


def test_concurrency_limit_refuses_only_above_n(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    proxy.delay(ProxyAction.PING, 0.5)  # holds the admitted requests in flight
    rule = proxy.limit_concurrency([ProxyAction.PING], 3, retry_after=2)

    def ping(_: int) -> httpx.Response:
        with httpx.Client(base_url=proxy.url, timeout=10) as c:
            return c.get("/v2/")

    responses = _parallel(8, ping)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [429] * 5
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["Retry-After"] == "2"
    assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert rule.fired == 5
    # Other actions are not limited, and sequential requests stay under the limit.
    proxy.clear_faults()
    proxy.limit_concurrency(ProxyAction.PING, 1)
    with httpx.Client(base_url=proxy.url) as c:
        assert [c.get("/v2/").status_code for _ in range(5)] == [200] * 5
    proxy.wait_idle()
    s = proxy.stats(ProxyAction.PING)
    assert s.statuses == {200: 8, 429: 5}
    assert s.faults["limit_concurrency"] == 5
    assert s.peak_in_flight == 8


def test_rate_limit_sliding_window(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    proxy.limit_rate(ProxyAction.PING, 5)  # no Retry-After
    with httpx.Client(base_url=proxy.url) as c:
        first = [c.get("/v2/") for _ in range(8)]
        assert [r.status_code for r in first] == [200] * 5 + [429] * 3
        assert "Retry-After" not in first[-1].headers
        time.sleep(1.05)  # the window slid past the first five
        assert [c.get("/v2/").status_code for _ in range(6)] == [200] * 5 + [429]
        # Only pings are limited.
        assert c.get(f"/v2/{REPO}/tags/list").status_code == 404


# --------------------------------------------------------------------------------------------
# failures


def test_fail_count_then_pass(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    rule = proxy.fail(
        ProxyAction.MANIFEST_PUT,
        400,
        count=2,
        code="MANIFEST_BLOB_UNKNOWN",
        message="blob unknown to registry",
    )
    with proxied_registry.client() as c:
        config = push_blob(c, REPO, CONFIG)
        body = _manifest(config, config, len(CONFIG))
        for _ in range(2):
            r = c.put(
                f"/v2/{REPO}/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE}
            )
            assert r.status_code == 400
            assert r.json()["errors"][0] == {
                "code": "MANIFEST_BLOB_UNKNOWN",
                "message": "blob unknown to registry",
                "detail": None,
            }
            # Refused before the upstream: nothing was stored.
            assert c.head(f"/v2/{REPO}/manifests/v1", headers=ACCEPT).status_code == 404
        assert push_manifest(c, REPO, "v1", body) == sha256_digest(body)
    assert rule.fired == 2
    proxy.wait_idle()
    puts = [r for r in proxy.log if r.action == "manifest_put"]
    assert [(r.status, r.fault) for r in puts] == [(400, "fail"), (400, "fail"), (201, None)]


def test_fail_after_upstream_and_413(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    proxy.fail("manifest_put", 500, count=1, after_upstream=True, name="lost-response")
    proxy.fail("manifest_put", 413, path=r"/manifests/big$", code="SIZE_INVALID")
    with proxied_registry.client() as c:
        config = push_blob(c, REPO, CONFIG)
        body = _manifest(config, config, len(CONFIG))
        r = c.put(f"/v2/{REPO}/manifests/v1", content=body, headers={"Content-Type": MANIFEST_TYPE})
        assert r.status_code == 500
        # The registry did store it: the client just never heard.
        assert c.head(f"/v2/{REPO}/manifests/v1", headers=ACCEPT).status_code == 200
        r = c.put(
            f"/v2/{REPO}/manifests/big", content=body, headers={"Content-Type": MANIFEST_TYPE}
        )
        assert r.status_code == 413
        assert r.json()["errors"][0]["code"] == "SIZE_INVALID"
    proxy.wait_idle()
    assert [r.fault for r in proxy.log if r.action == "manifest_put"] == [
        "lost-response",
        "fail",
    ]


def test_fail_at_rate_is_seeded(
    fault_proxy: Callable[..., FaultProxy], registry: RegistryProcess
) -> None:
    outcomes = []
    for _ in range(2):
        proxy = fault_proxy(registry, seed=7)
        proxy.fail(ProxyAction.PING, 503, rate=0.3, retry_after=1)
        with httpx.Client(base_url=proxy.url) as c:
            outcomes.append([c.get("/v2/").status_code for _ in range(100)])
        proxy.stop()
    assert outcomes[0] == outcomes[1]  # same seed, same order: same faults
    failures = outcomes[0].count(503)
    assert 15 <= failures <= 45
    assert set(outcomes[0]) == {200, 503}


# --------------------------------------------------------------------------------------------
# broken connections and bodies


@pytest.fixture
def stored_blob(proxied_registry: ProxiedRegistry) -> tuple[str, bytes]:
    data = _pattern(4 * MIB)
    digest = push_blob(proxied_registry.registry.url, REPO, data)  # directly: not counted
    return digest, data


def test_reset_before_response(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    proxy.reset_connection(ProxyAction.PING, count=1)
    with httpx.Client(base_url=proxy.url) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.get("/v2/")
        assert c.get("/v2/").status_code == 200  # count=1: the next one passes
    proxy.wait_idle()
    assert [(r.status, r.fault) for r in proxy.log] == [(0, "reset_connection"), (200, None)]


def test_reset_mid_body(proxied_registry: ProxiedRegistry, stored_blob: tuple[str, bytes]) -> None:
    digest, data = stored_blob
    proxy = proxied_registry.proxy
    proxy.reset_connection(ProxyAction.BLOB_GET, after_bytes=MIB, count=1)
    got = 0
    with httpx.Client(base_url=proxy.url) as c:
        with (
            pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
            c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r,
        ):
            assert r.status_code == 200
            assert r.headers["Content-Length"] == str(len(data))
            for chunk in r.iter_raw():
                got += len(chunk)
        assert got <= MIB
        assert c.get(f"/v2/{REPO}/blobs/{digest}").content == data
    proxy.wait_idle()
    first = proxy.log[0]
    assert (first.fault, first.bytes_out) == ("reset_connection", MIB)


def test_truncated_body(proxied_registry: ProxiedRegistry, stored_blob: tuple[str, bytes]) -> None:
    digest, data = stored_blob
    proxy = proxied_registry.proxy
    proxy.truncate_body(ProxyAction.BLOB_GET, keep_bytes=100_000)
    got = bytearray()
    with (
        httpx.Client(base_url=proxy.url) as c,
        pytest.raises(httpx.RemoteProtocolError),
        c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r,
    ):
        assert r.headers["Content-Length"] == str(len(data))  # the original length
        for chunk in r.iter_raw():
            got += chunk
    assert bytes(got) == data[:100_000]


def test_corrupt_body(proxied_registry: ProxiedRegistry, stored_blob: tuple[str, bytes]) -> None:
    digest, data = stored_blob
    proxied_registry.proxy.corrupt_body(ProxyAction.BLOB_GET, offset=2 * MIB + 5, count=1)
    with proxied_registry.client() as c:
        r = c.get(f"/v2/{REPO}/blobs/{digest}")
        got = r.content
        assert r.headers["Docker-Content-Digest"] == digest  # the headers still claim it
        assert len(got) == len(data)
        assert [i for i in range(len(got)) if got[i] != data[i]] == [2 * MIB + 5]
        assert sha256_digest(got) != digest
        assert c.get(f"/v2/{REPO}/blobs/{digest}").content == data


def test_stalled_body_fires_client_read_timeout(
    proxied_registry: ProxiedRegistry, stored_blob: tuple[str, bytes]
) -> None:
    digest, _ = stored_blob
    proxy = proxied_registry.proxy
    proxy.slow_body(ProxyAction.BLOB_GET, stall_seconds=30, after_bytes=1000)
    started = time.monotonic()
    with (
        httpx.Client(base_url=proxy.url, timeout=httpx.Timeout(10, read=0.3)) as c,
        pytest.raises(httpx.ReadTimeout),
        c.stream("GET", f"/v2/{REPO}/blobs/{digest}") as r,
    ):
        assert r.status_code == 200
        for _ in r.iter_raw():
            pass
    assert time.monotonic() - started < 5
    # The proxy notices the client left when the stall ends or the proxy stops (teardown).


def test_slow_body_throttles(proxied_registry: ProxiedRegistry) -> None:
    data = os.urandom(150_000)
    digest = push_blob(proxied_registry.registry.url, REPO, data)
    proxied_registry.proxy.slow_body(ProxyAction.BLOB_GET, bytes_per_second=500_000)
    with proxied_registry.client() as c:
        started = time.monotonic()
        assert c.get(f"/v2/{REPO}/blobs/{digest}").content == data
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0  # 150 kB at 500 kB/s is 0.3 s


# --------------------------------------------------------------------------------------------
# measurement, runtime changes, teardown


def test_mean_in_flight_for_a_known_load(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    clients = [httpx.Client(base_url=proxy.url, timeout=10) for _ in range(4)]
    try:
        for c in clients:  # connect first: only the slow requests are measured
            assert c.get("/v2/").status_code == 200
        proxy.wait_idle()
        proxy.reset()
        proxy.delay(ProxyAction.PING, 0.6)
        responses = _parallel(4, lambda i: clients[i].get("/v2/"))
    finally:
        for c in clients:
            c.close()
    assert {r.status_code for r in responses} == {200}
    proxy.wait_idle()
    s = proxy.stats(ProxyAction.PING)
    assert s.peak_in_flight == 4
    # 4 x 0.6 s over a span of 0.6 s plus the threads' start skew (loaded CI machines).
    assert 3.0 <= s.mean_in_flight <= 4.0
    assert s.mean_in_flight <= s.busy_mean_in_flight <= 4.0
    assert max(r.in_flight_at_start for r in proxy.log) == 4
    assert all(r.duration >= 0.6 and r.fault == "delay" for r in proxy.log)


def test_reset_clear_faults_and_runtime_rules(proxied_registry: ProxiedRegistry) -> None:
    proxy = proxied_registry.proxy
    with httpx.Client(base_url=proxy.url) as c:
        rule = proxy.fail(ProxyAction.PING, 502)
        assert c.get("/v2/").status_code == 502
        proxy.remove_rule(rule)
        assert c.get("/v2/").status_code == 200
        proxy.fail(None, 503)  # every action
        assert c.get(f"/v2/{REPO}/tags/list").status_code == 503
        proxy.clear_faults()
        assert proxy.rules == []
        assert c.get("/v2/").status_code == 200
    proxy.wait_idle()
    assert proxy.stats().requests == 4
    proxy.reset()
    assert proxy.log == [] and proxy.stats().requests == 0


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("FaultProxy-")]


def test_stop_ends_all_threads_even_mid_stall(registry: RegistryProcess) -> None:
    before = set(_proxy_threads())
    proxy = FaultProxy(registry, name="teardown")
    proxy.slow_body(ProxyAction.PING, stall_seconds=60)
    client = httpx.Client(base_url=proxy.url, timeout=httpx.Timeout(10, read=0.2))
    idle = httpx.Client(base_url=proxy.url)
    try:
        proxy.clear_faults()
        assert idle.get("/v2/").status_code == 200  # a kept-alive idle connection
        proxy.slow_body(ProxyAction.PING, stall_seconds=60)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v2/")
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2
        assert not proxy.running
        assert set(_proxy_threads()) <= before
        handler_threads = [t for t in proxy._threads if t.is_alive()]
        assert handler_threads == []
    finally:
        client.close()
        idle.close()
        proxy.stop()


def test_upload_limit_under_parallel_pushes(proxied_registry: ProxiedRegistry) -> None:
    """The issue's scenario in small: 12 pushers against an upload limit of 4."""
    proxy = proxied_registry.proxy
    proxy.delay(UPLOAD_ACTIONS, 0.02)  # a little latency, so requests overlap
    proxy.limit_concurrency(UPLOAD_ACTIONS, 4)
    blobs = [os.urandom(20_000 + i) for i in range(36)]

    def push_three(i: int) -> list[str]:
        with proxied_registry.client() as c:
            digests = []
            for blob in blobs[i * 3 : i * 3 + 3]:
                while True:
                    try:
                        digests.append(push_blob(c, REPO, blob))
                        break
                    except httpx.HTTPStatusError as e:
                        assert e.response.status_code == 429
                        time.sleep(0.01)
            return digests

    with ThreadPoolExecutor(12) as pool:
        digests = [d for ds in pool.map(push_three, range(12)) for d in ds]
    assert digests == [sha256_digest(b) for b in blobs]
    with proxied_registry.registry.client() as c:
        for blob, digest in zip(blobs, digests, strict=True):
            assert c.get(f"/v2/{REPO}/blobs/{digest}").content == blob
    proxy.wait_idle()
    admitted = proxy.stats(UPLOAD_ACTIONS, where=lambda r: r.status != 429)
    assert admitted.peak_in_flight <= 4
    # A PUT refused after its POST was admitted restarts the push: more than 36 POSTs.
    assert set(admitted.statuses) == {201, 202} and admitted.statuses[201] == 36
    everything = proxy.stats(UPLOAD_ACTIONS)
    assert everything.throttled > 0
    print(
        f"\nupload limit 4: {everything.requests} requests, {everything.throttled} refused, "
        f"admitted mean in flight {admitted.mean_in_flight:.2f}"
    )
    assert admitted.mean_in_flight > 1.5


def test_tls_upstream(
    fault_proxy: Callable[..., FaultProxy], tls_registry: RegistryProcess
) -> None:
    # The proxy speaks plain HTTP to clients and verified TLS (the registry's CA) upstream.
    proxy = fault_proxy(tls_registry)
    assert proxy.upstream.startswith("https://")
    with httpx.Client(base_url=proxy.url) as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert r.status_code == 202
        assert r.headers["Location"].startswith(proxy.url)
        assert push_blob(c, REPO, b"over tls") == sha256_digest(b"over tls")


def test_fail_when_predicate_sees_headers(proxied_registry: ProxiedRegistry) -> None:
    """A quirk rule keyed on a request header: only a PATCH above 1 KiB is refused."""
    proxy = proxied_registry.proxy
    rule = proxy.fail(
        ProxyAction.UPLOAD_CHUNK, 416, when=lambda request: request.content_length > 1024
    )
    with proxied_registry.client() as c:
        started = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        small = c.patch(
            location, content=b"x" * 1024, headers={"Content-Type": "application/octet-stream"}
        )
        assert small.status_code == 202
        big = c.patch(
            small.headers["Location"],
            content=b"y" * 1025,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert big.status_code == 416
    assert rule.fired == 1


def test_add_headers_to_relayed_responses(proxied_registry: ProxiedRegistry) -> None:
    """Fixed headers replace the upstream's; computed ones are asked for once per request."""
    proxy = proxied_registry.proxy
    seen: list[str] = []

    def per_request(request: RequestView) -> dict[str, str]:
        seen.append(request.method)
        return {"RateLimit-Remaining": f"{100 - len(seen)};w=21600"}

    proxy.add_headers(ProxyAction.MANIFEST_GET, per_request)
    proxy.add_headers(ProxyAction.BLOB_HEAD, {"Docker-Distribution-Api-Version": "emulated/1"})
    with proxied_registry.client() as c:
        config = push_blob(c, REPO, CONFIG)
        push_manifest(c, REPO, "v1", _manifest(config, config, len(CONFIG)))
        first = c.get(f"/v2/{REPO}/manifests/v1", headers=ACCEPT)
        second = c.get(f"/v2/{REPO}/manifests/v1", headers=ACCEPT)
        head = c.head(f"/v2/{REPO}/manifests/v1", headers=ACCEPT)
        blob = c.head(f"/v2/{REPO}/blobs/{config}")
    assert first.status_code == second.status_code == 200
    assert first.headers["RateLimit-Remaining"] == "99;w=21600"
    assert second.headers["RateLimit-Remaining"] == "98;w=21600"
    assert first.headers["Docker-Content-Digest"], "the upstream's own headers were dropped"
    assert "RateLimit-Remaining" not in head.headers, "a rule for GETs touched a HEAD"
    assert seen == ["GET", "GET"]
    assert blob.headers.get_list("Docker-Distribution-Api-Version") == ["emulated/1"]
