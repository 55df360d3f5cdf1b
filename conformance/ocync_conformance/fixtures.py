"""pytest fixtures: real local registries, a token server, TLS, and real OCI images.

Import-light on purpose: this module is imported by the `pytest11` plugin in *every* pytest
run of an environment where ocync is installed, possibly without the test extras
(bcrypt, pyjwt, cryptography). Heavy modules are imported inside the fixtures.

Scopes: a docker-registry starts in ~70 ms, so registries are function-scoped (every test
gets empty storage and its own log); key material (RSA keygen) is session-scoped and shared.
`shared_registry` is the session-scoped open registry for read-mostly tests that use
unique repository names.

A missing docker-registry/skopeo is a test *failure* with install instructions, never a skip:
a skipped conformance suite looks green while proving nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ocync_conformance.certs import ServerCert, SigningCert
    from ocync_conformance.images import LayoutImage
    from ocync_conformance.registry_process import RegistryProcess
    from ocync_conformance.tokenserver import TokenServer

__all__ = [
    "TEST_PASSWORD",
    "TEST_USERNAME",
    "SeededRegistry",
    "basic_registry",
    "oci_layout",
    "registry",
    "registry_binary",
    "registry_pair",
    "seeded_layout",
    "seeded_registry",
    "shared_registry",
    "skopeo_binary",
    "tls_certs",
    "tls_registry",
    "token_registry",
    "token_server",
    "token_signing_cert",
]

TEST_USERNAME = "ocync"
TEST_PASSWORD = "ocync-test-password"


@dataclass(frozen=True)
class SeededRegistry:
    """An open registry holding `image` (multi-arch) as `<repository>:<tag>`."""

    registry: RegistryProcess
    image: LayoutImage
    repository: str = "demo/app"
    tag: str = "v1"

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def reference(self) -> str:
        """`127.0.0.1:PORT/demo/app:v1`."""
        return f"{self.registry.host}/{self.repository}:{self.tag}"

    @property
    def digest(self) -> str:
        return self.image.digest


@pytest.fixture(scope="session")
def registry_binary() -> str:
    """Path of the docker-registry binary; fails (not skips) with install help if missing."""
    from ocync_conformance.registry_process import RegistryNotInstalledError, find_registry_binary

    try:
        return find_registry_binary()
    except RegistryNotInstalledError as e:
        message = str(e)
    # Outside the except block: no "during handling of the above exception" noise.
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def skopeo_binary() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.fail(
            "skopeo is required to seed the ocync test registries. Install it with "
            "`sudo apt-get install -y docker-registry skopeo` (Debian/Ubuntu) or `make install`.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    """Private CA + server cert (SAN 127.0.0.1, localhost), shared by all TLS registries."""
    from ocync_conformance.certs import make_server_cert

    return make_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def token_signing_cert(tmp_path_factory: pytest.TempPathFactory) -> SigningCert:
    from ocync_conformance.certs import make_signing_cert

    return make_signing_cert(tmp_path_factory.mktemp("token-signing"))


def _start(
    tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: object
) -> RegistryProcess:
    from ocync_conformance.registry_process import RegistryProcess

    # Work dir under pytest's tmp tree (not /tmp/ocync-registry-*): the registry log survives
    # a failing test for inspection, and pytest prunes old runs.
    return RegistryProcess(workdir=tmp_path_factory.mktemp(name), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """A fresh open (no auth, plain HTTP) registry with empty storage."""
    reg = _start(tmp_path_factory, "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def shared_registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """One open registry for the whole session; use unique repository names."""
    reg = _start(tmp_path_factory, "shared-registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def registry_pair(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    """(source, target): two independent open registries."""
    src = _start(tmp_path_factory, "registry-src")
    try:
        dst = _start(tmp_path_factory, "registry-dst")
        try:
            yield src, dst
        finally:
            dst.stop()
    finally:
        src.stop()


@pytest.fixture
def basic_registry(
    registry_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """htpasswd Basic auth; `.username`/`.password` (TEST_USERNAME/TEST_PASSWORD);
    `.set_password()` rotates live."""
    reg = _start(tmp_path_factory, "basic-registry", username=TEST_USERNAME, password=TEST_PASSWORD)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def token_server(token_signing_cert: SigningCert) -> Iterator[TokenServer]:
    """A running TokenServer with user TEST_USERNAME/TEST_PASSWORD; anonymous gets pull."""
    from ocync_conformance.tokenserver import TokenServer

    with TokenServer(users={TEST_USERNAME: TEST_PASSWORD}, signing=token_signing_cert) as ts:
        yield ts


@pytest.fixture
def token_registry(
    registry_binary: str,
    token_server: TokenServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RegistryProcess]:
    """Bearer-token registry whose realm is `token_server` (`.token_server` on the registry);
    `.username`/`.password` are the token server's TEST_USERNAME/TEST_PASSWORD."""
    reg = _start(
        tmp_path_factory,
        "token-registry",
        token_server=token_server,
        username=TEST_USERNAME,
        password=TEST_PASSWORD,
    )
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def tls_registry(
    registry_binary: str, tls_certs: ServerCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    """Open registry over HTTPS (HTTP/2 capable); trust it with `.ca_file` / `.ssl_context()`."""
    reg = _start(tmp_path_factory, "tls-registry", server_cert=tls_certs)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> LayoutImage:
    """A multi-arch (linux/amd64 + linux/arm64) OCI image tagged `v1` in a fresh OCI layout."""
    from ocync_conformance.images import build_image_layout

    return build_image_layout(tmp_path_factory.mktemp("oci-layout"), tag="v1")


@pytest.fixture(scope="session")
def seeded_layout(tmp_path_factory: pytest.TempPathFactory) -> LayoutImage:
    """The session's multi-arch `v1` layout that `seeded_registry` holds (same digests as
    `oci_layout`: builds are deterministic)."""
    from ocync_conformance.images import build_image_layout

    return build_image_layout(tmp_path_factory.mktemp("seeded-layout"), tag="v1")


@pytest.fixture(scope="session")
def _seeded_storage(
    registry_binary: str,
    skopeo_binary: str,
    seeded_layout: LayoutImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    # skopeo takes ~0.5 s per copy: seed once per session, then give each test a registry
    # started on a copy of that storage (isolation at the cost of a few file copies).
    from ocync_conformance.images import seed_registry

    reg = _start(tmp_path_factory, "seed-template")
    try:
        seed_registry(seeded_layout.path, seeded_layout.tag, reg.host, "demo/app")
    finally:
        reg.stop()
    return reg.storage_dir


@pytest.fixture
def seeded_registry(
    _seeded_storage: Path,
    seeded_layout: LayoutImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SeededRegistry]:
    """A fresh open registry holding the multi-arch `seeded_layout` as `demo/app:v1`,
    pushed by skopeo with digests preserved. Yields a SeededRegistry (`.registry`,
    `.image`, `.host`, `.url`, `.reference`, `.digest`)."""
    reg = _start(tmp_path_factory, "seeded-registry", storage_template=_seeded_storage)
    try:
        yield SeededRegistry(registry=reg, image=seeded_layout)
    finally:
        reg.stop()
