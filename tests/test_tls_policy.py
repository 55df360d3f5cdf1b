"""TLS is verified by default; plain HTTP and unverified TLS happen only per registry, when asked.

- a registry whose certificate is not trusted is an error naming the registry and `ca_file`,
  never a reason to fall back to plain HTTP;
- `ca_file` trusts a private CA; `tls_verify: false` and `insecure_http: true` apply to their
  own registry only, each with a warning naming it;
- a loopback registry without a scheme tries HTTPS, then HTTP; any other host gets HTTPS only.

The CLI runs as a subprocess against real docker-registry processes over real TLS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocync_conformance.certs import ServerCert
from ocync_conformance.corpus import Corpus, build_corpus
from ocync_conformance.images import push_blob, push_manifest
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.client import RegistryClient
from ocync_core.errors import TransferError
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

OCYNC = [sys.executable, "-m", "ocync_core"]
UNVERIFIED = "TLS certificates are NOT verified"
PLAIN_HTTP = "plain HTTP to"


def ocync(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCYNC_", "SSL_CERT_"))}
    return subprocess.run(
        [*OCYNC, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def seed(registry: RegistryProcess) -> Corpus:
    corpus = build_corpus(repositories=1, tags=1, base_size=8 * 1024, app_size=2 * 1024)
    with registry.client() as http:
        for image in corpus.images:
            for digest, data in image.blobs.items():
                push_blob(http, image.repository, data, digest=digest)
            for reference, body, media_type in image.manifests:
                push_manifest(http, image.repository, reference, body, media_type)
    return corpus


def reference(registry: RegistryProcess | str, corpus: Corpus) -> str:
    host = registry if isinstance(registry, str) else registry.host
    image = corpus.images[0]
    return f"{host}/{image.repository}:{image.tag}"


@pytest.fixture
def tls_pair(
    registry_binary: str, tls_certs: ServerCert, tmp_path: Path
) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """Two HTTPS registries whose certificates a private CA signed (`tls_certs.ca_file`)."""
    with (
        RegistryProcess(workdir=tmp_path / "a", server_cert=tls_certs) as first,
        RegistryProcess(workdir=tmp_path / "b", server_cert=tls_certs) as second,
    ):
        yield first, second


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (a UDP connect sends nothing)."""
    for probe in ("192.0.2.1", "10.255.255.255"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((probe, 9))
            except OSError:
                continue
            address = sock.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


@pytest.fixture
def remote_registry(registry_binary: str, tmp_path: Path) -> Iterator[tuple[RegistryProcess, str]]:
    """A plain-HTTP registry reached at a non-loopback address of this machine: to ocync, a
    registry on another host. Yields (registry, `address:port`)."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach a registry on")
    overrides = {"http": {"addr": "0.0.0.0:0"}}
    with RegistryProcess(workdir=tmp_path / "remote", config_overrides=overrides) as reg:
        yield reg, f"{address}:{reg.port}"


def requests_from(registry: RegistryProcess, address: str) -> list[str]:
    """The registry's access-log lines for requests that came from `address`."""
    return [line for line in registry.log_file.read_text().splitlines() if line.startswith(address)]


# -- where requests go: RegistrySettings.base_urls -----------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            RegistrySettings(host="127.0.0.1:5000"),
            ["https://127.0.0.1:5000", "http://127.0.0.1:5000"],
        ),
        (
            RegistrySettings(host="localhost:5000"),
            ["https://localhost:5000", "http://localhost:5000"],
        ),
        (RegistrySettings(host="[::1]:5000"), ["https://[::1]:5000", "http://[::1]:5000"]),
        (RegistrySettings(host="127.0.0.2"), ["https://127.0.0.2", "http://127.0.0.2"]),
        (RegistrySettings(host="registry.example.test"), ["https://registry.example.test"]),
        (RegistrySettings(host="10.0.0.5:5000"), ["https://10.0.0.5:5000"]),
        (RegistrySettings(host="localhost.example.test"), ["https://localhost.example.test"]),
        (
            RegistrySettings(host="registry.example.test", endpoint="10.1.2.3:443"),
            ["https://10.1.2.3:443"],
        ),
        (
            RegistrySettings(host="registry.example.test", endpoint="127.0.0.1:8443"),
            ["https://127.0.0.1:8443", "http://127.0.0.1:8443"],
        ),
        (
            RegistrySettings(host="registry.example.test", url="https://registry.example.test"),
            ["https://registry.example.test"],
        ),
        (
            RegistrySettings(host="127.0.0.1:5000", url="https://127.0.0.1:5000"),
            ["https://127.0.0.1:5000"],
        ),
        (
            RegistrySettings(host="registry.example.test", insecure_http=True),
            ["http://registry.example.test"],
        ),
        (
            RegistrySettings(host="registry.example.test", url="http://registry.example.test"),
            ["http://registry.example.test"],
        ),
    ],
    ids=lambda value: value.label if isinstance(value, RegistrySettings) else None,
)
def test_only_loopback_without_a_scheme_may_fall_back_to_http(
    settings: RegistrySettings, expected: list[str]
) -> None:
    assert settings.base_urls() == expected


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (RegistrySettings(host="registry.example.test", insecure_http=True), "(insecure_http)"),
        (
            RegistrySettings(host="registry.example.test", url="http://registry.example.test"),
            "(the URL http://registry.example.test)",
        ),
        (
            RegistrySettings(host="registry.example.test", endpoint="http://10.1.2.3:80"),
            "(the URL http://10.1.2.3:80)",
        ),
    ],
)
def test_plain_http_to_another_machine_is_a_warning_naming_the_registry(
    settings: RegistrySettings, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    named = RegistrySettings(**{**settings.__dict__, "name": "mirror"})
    with caplog.at_level(logging.WARNING, logger="ocync_core.registry"):
        named.base_urls()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("registry mirror: plain HTTP to ")
    assert why in record.getMessage()


@pytest.mark.parametrize(
    "settings",
    [
        RegistrySettings(host="registry.example.test"),
        RegistrySettings(host="127.0.0.1:5000"),  # the HTTP fallback stays quiet: loopback
        RegistrySettings(host="127.0.0.1:5000", insecure_http=True),
        RegistrySettings(host="registry.example.test", endpoint="http://127.0.0.1:5000"),
    ],
    ids=["https", "loopback fallback", "loopback insecure_http", "loopback endpoint"],
)
def test_https_and_loopback_http_need_no_warning(
    settings: RegistrySettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ocync_core.registry"):
        settings.base_urls()
    assert caplog.records == []


# -- verified by default -------------------------------------------------------------------


async def test_an_untrusted_certificate_is_never_a_reason_to_try_http(tls_registry) -> None:
    settings = RegistrySettings(host=tls_registry.host, name="private")
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(str(request.url))

    async with RegistryClient(settings, Plugins.load()) as client:
        client.http.event_hooks["request"].append(record)
        with pytest.raises(TransferError) as caught:
            await client.base_url()
    # A loopback host without a scheme would try HTTP next; a certificate refusal stops it.
    assert sent == [f"https://{tls_registry.host}/v2/"]
    message = str(caught.value)
    assert message.startswith(f"registry private: cannot connect to https://{tls_registry.host}")
    assert "TLS certificate verification failed" in message and "ca_file" in message


def test_copy_from_an_untrusted_registry_fails_naming_it(tls_registry, target_registry) -> None:
    corpus = seed(tls_registry)
    target = f"{target_registry.host}/tls/app:1.0.0"
    refused = ocync("copy", reference(tls_registry, corpus), target)
    assert refused.returncode == 2, refused.stderr
    assert f"registry {tls_registry.host}: cannot connect to https://" in refused.stderr
    assert "certificate verif" in refused.stderr.lower() and "ca_file" in refused.stderr
    assert UNVERIFIED not in refused.stderr
    with target_registry.client() as http:
        assert http.get("/v2/tls/app/tags/list").status_code == 404  # nothing was copied

    trusted = ocync(
        "copy", "--json", reference(tls_registry, corpus), target,
        "--src-ca-file", str(tls_registry.ca_file),
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["digest"] == corpus.images[0].digest
    assert UNVERIFIED not in trusted.stderr


def test_ca_file_and_tls_verify_apply_to_their_own_registry_only(
    tls_pair, tls_certs: ServerCert, tmp_path: Path
) -> None:
    source, target = tls_pair
    corpus = seed(source)
    image = corpus.images[0]
    registries: dict[str, Any] = {
        "unverified": {"url": source.host, "tls_verify": False},
        "trusting": {"url": target.host, "ca_file": str(tls_certs.ca_file)},
        # The same registry without its CA: ca_file and tls_verify of the others do not help.
        "default": {"url": f"localhost:{target.port}"},
    }
    config = tmp_path / "mirror.yaml"
    config.write_text(
        json.dumps(
            {
                "global": {"cache": False},
                "registries": registries,
                "defaults": {"source": "unverified", "targets": ["trusting", "default"]},
                "mappings": [{"from": image.repository, "to": "tls/app"}],
            }
        )
    )
    run = ocync("sync", "-c", str(config), "--json")
    results = {i["target"].split("/")[0]: i for i in json.loads(run.stdout)["images"]}
    assert results[target.host]["status"] == "synced", results
    refused = results[f"localhost:{target.port}"]
    assert refused["status"] == "failed", results
    assert refused["reason"].startswith("registry default: cannot connect to https://localhost:")
    assert "TLS certificate verification failed" in refused["reason"]
    assert run.returncode == 1, run.stderr
    # One warning, for the one registry that asked not to verify.
    assert f"registry unverified: {UNVERIFIED}" in run.stderr
    assert run.stderr.count(UNVERIFIED) == 1, run.stderr


# -- plain HTTP ---------------------------------------------------------------------------


def test_a_remote_host_without_scheme_gets_https_only(remote_registry, target_registry) -> None:
    registry, remote = remote_registry
    corpus = seed(registry)
    address = remote.split(":")[0]
    run = ocync("copy", reference(remote, corpus), f"{target_registry.host}/remote/app:1.0.0")
    assert run.returncode == 2, run.stderr
    assert f"registry {remote}: cannot connect to https://{remote}" in run.stderr
    assert PLAIN_HTTP not in run.stderr
    # The registry speaks plain HTTP only: not one HTTP request reached it from ocync.
    assert requests_from(registry, address) == []


def test_insecure_http_to_a_remote_host_works_with_a_warning(
    remote_registry, target_registry
) -> None:
    registry, remote = remote_registry
    corpus = seed(registry)
    address = remote.split(":")[0]
    run = ocync(
        "copy", "--json", reference(remote, corpus), f"{target_registry.host}/remote/app:1.0.0",
        "--src-insecure-http",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["digest"] == corpus.images[0].digest
    assert f"registry {remote}: plain HTTP to {remote} (insecure_http)" in run.stderr
    assert run.stderr.count(PLAIN_HTTP) == 1, run.stderr  # not for the loopback target
    assert any('"GET /v2/' in line for line in requests_from(registry, address))
