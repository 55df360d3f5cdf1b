"""Registries for the conformance suite to run against: started locally, or already running.

An *environment* is a name and a factory: given a work directory, it starts a registry (and
whatever stands beside it: a token server, moto) and yields a `Target`. Every target puts a
`FaultProxy` on the path ocync takes, so the suite can count requests on the wire and inject
faults, and keeps a direct way in (`Target.direct()`) for seeding and checking behind the
plugin's back.

Environments of the built-in plugins: the generic plugin brings ``open``, ``basic``, ``bearer``,
``tls`` (docker-registry in its four auth/TLS variants) and ``referrers`` (docker-registry plus
what it lacks: the OCI 1.1 referrers API and tag-list pages); the ECR plugin brings ``ecr`` (the
ECR emulator). Every plugin, built-in or not, adds its own with the hook
``ocync_conformance_environments`` (declared in `ocync_core.hookspecs`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.proxy import FaultProxy
from ocync_core.registry import RegistrySettings

if TYPE_CHECKING:
    from ocync_core.plugins import Plugins

__all__ = [
    "DOCKER_REGISTRY_ENVIRONMENTS",
    "ECR_ENVIRONMENTS",
    "EnvironmentFactory",
    "Target",
    "available_environments",
    "contributed_environments",
    "external_target",
    "start_environment",
    "token_registry_target",
]

TEST_USERNAME = "ocync"
TEST_PASSWORD = "conformance-secret"


@dataclass
class Target:
    """A running registry, ready for the suite.

    Attributes:
        name: the environment's name (``open``, ``ecr``, a plugin's own, or ``external``).
        settings: how ocync reaches the registry: through `proxy`, with the credentials the
            plugin needs. The suite sets `kind` on top.
        proxy: the counting, fault-injecting proxy on ocync's path.
        upstream: the registry's own base URL, behind the proxy.
        capabilities: what the registry supports (a suite class may declare its own instead).
        direct_auth: how `direct()` authenticates (None: anonymous).
        verify: TLS trust for `direct()`.
        env: process environment the plugin needs while the suite runs (e.g. ``AWS_*``).
        create_repository: makes a repository exist before the suite pushes to it (registries
            that do not create repositories on first push, such as ECR).
        wrong_credentials: `settings` with a password the registry refuses, when it checks.
    """

    name: str
    settings: RegistrySettings
    proxy: FaultProxy
    upstream: str
    capabilities: Capabilities
    direct_auth: httpx.Auth | None = None
    verify: ssl.SSLContext | bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    create_repository: Callable[[str], None] = lambda name: None
    wrong_credentials: RegistrySettings | None = None

    def direct(self) -> httpx.Client:
        """A plain HTTP client straight to the registry, bypassing ocync and the proxy."""
        return httpx.Client(
            base_url=self.upstream, auth=self.direct_auth, verify=self.verify, timeout=60
        )


EnvironmentFactory = Callable[[Path], AbstractContextManager[Target]]


@contextmanager
def _open(workdir: Path) -> Iterator[Target]:
    from ocync_conformance.registry_process import RegistryProcess

    with RegistryProcess(workdir=workdir / "registry") as registry, FaultProxy(registry) as proxy:
        yield Target(
            name="open",
            settings=RegistrySettings(host=proxy.host, url=proxy.url),
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(),
        )


@contextmanager
def _basic(workdir: Path) -> Iterator[Target]:
    from ocync_conformance.registry_process import RegistryProcess

    with (
        RegistryProcess(
            workdir=workdir / "registry", username=TEST_USERNAME, password=TEST_PASSWORD
        ) as registry,
        FaultProxy(registry) as proxy,
    ):
        settings = RegistrySettings(
            host=proxy.host, url=proxy.url, username=TEST_USERNAME, password=TEST_PASSWORD
        )
        yield Target(
            name="basic",
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(anonymous_pull=False, credentials=True),
            direct_auth=httpx.BasicAuth(TEST_USERNAME, TEST_PASSWORD),
            wrong_credentials=replace(settings, password="not-" + TEST_PASSWORD),
        )


@contextmanager
def token_registry_target(
    workdir: Path,
    *,
    name: str,
    username: str,
    password: str,
    capabilities: Capabilities,
    host: str | None = None,
    service: str | None = None,
    wrong_password: str | None = None,
    quirks: Callable[[FaultProxy], None] | None = None,
) -> Iterator[Target]:
    """docker-registry with the kit's token server (one user), behind a `FaultProxy`.

    What most registry emulations start from: `host` is the identity ocync sees (e.g.
    ``ghcr.io``; None: the proxy's own address), `service` the token service's name, `quirks`
    installs the registry's behaviour on the proxy (with `FaultProxy.emulate`).
    """
    from ocync_conformance.certs import make_signing_cert
    from ocync_conformance.images import ChallengeAuth
    from ocync_conformance.registry_process import RegistryProcess
    from ocync_conformance.tokenserver import TokenServer

    with ExitStack() as stack:
        tokens = stack.enter_context(
            TokenServer(
                users={username: password},
                signing=make_signing_cert(workdir / "signing"),
                **({"service": service} if service is not None else {}),
            )
        )
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                token_server=tokens,
                username=username,
                password=password,
            )
        )
        proxy = stack.enter_context(FaultProxy(registry, name=name))
        if quirks is not None:
            quirks(proxy)
        if host is None:
            settings = RegistrySettings(
                host=proxy.host, url=proxy.url, username=username, password=password
            )
        else:
            settings = RegistrySettings(
                host=host, endpoint=proxy.url, username=username, password=password
            )
        yield Target(
            name=name,
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=capabilities,
            direct_auth=ChallengeAuth(username, password),
            wrong_credentials=replace(settings, password=wrong_password or "not-" + password),
        )


def _bearer(workdir: Path) -> AbstractContextManager[Target]:
    return token_registry_target(
        workdir,
        name="bearer",
        username=TEST_USERNAME,
        password=TEST_PASSWORD,
        capabilities=Capabilities(credentials=True),
    )


@contextmanager
def _tls(workdir: Path) -> Iterator[Target]:
    from ocync_conformance.certs import make_server_cert
    from ocync_conformance.registry_process import RegistryProcess

    cert = make_server_cert(workdir / "tls")
    with (
        RegistryProcess(workdir=workdir / "registry", server_cert=cert) as registry,
        FaultProxy(registry, server_cert=cert) as proxy,
    ):
        yield Target(
            name="tls",
            settings=RegistrySettings(host=proxy.host, url=proxy.url, ca_file=str(cert.ca_file)),
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(),
            verify=ssl.create_default_context(cafile=str(cert.ca_file)),
        )


@contextmanager
def _referrers(workdir: Path) -> Iterator[Target]:
    from ocync_conformance.referrers_registry import ReferrersRegistry
    from ocync_conformance.registry_process import RegistryProcess

    with (
        RegistryProcess(workdir=workdir / "registry") as registry,
        ReferrersRegistry(registry) as front,
        FaultProxy(front) as proxy,
    ):
        yield Target(
            name="referrers",
            settings=RegistrySettings(host=proxy.host, url=proxy.url),
            proxy=proxy,
            upstream=front.url,
            capabilities=Capabilities(referrers_api=True, tag_pagination=True),
        )


@contextmanager
def _ecr(workdir: Path) -> Iterator[Target]:
    from ocync_conformance.ecr_emulator import EcrEmulator

    with (
        EcrEmulator(workdir=workdir / "ecr", blob_mounting=True) as emulator,
        FaultProxy(emulator.endpoint) as proxy,
    ):
        yield Target(
            name="ecr",
            settings=RegistrySettings(host=emulator.host, endpoint=proxy.url),
            proxy=proxy,
            upstream=emulator.registry.url,
            capabilities=Capabilities(
                anonymous_pull=False,
                credentials=True,
                batch_existence=True,
            ),
            direct_auth=httpx.BasicAuth("AWS", emulator.password),
            env=emulator.env(),
            create_repository=emulator.create_repository,
        )


# Contributed by the built-in plugins through the same hook as any third party's: the generic
# plugin brings docker-registry in its variants, the ECR plugin the ECR emulator.
DOCKER_REGISTRY_ENVIRONMENTS: dict[str, EnvironmentFactory] = {
    "open": _open,
    "basic": _basic,
    "bearer": _bearer,
    "tls": _tls,
    "referrers": _referrers,
}
ECR_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"ecr": _ecr}


def available_environments(plugins: Plugins | None = None) -> dict[str, EnvironmentFactory]:
    """Every environment the loaded plugins contribute, built-in plugins included."""
    return contributed_environments(plugins)


def contributed_environments(plugins: Plugins | None = None) -> dict[str, EnvironmentFactory]:
    """Environments the installed plugins bring (hook ``ocync_conformance_environments``)."""
    from ocync_core.plugins import Plugins

    plugins = plugins if plugins is not None else Plugins.load()
    found: dict[str, EnvironmentFactory] = {}
    hook = plugins.manager.hook.ocync_conformance_environments
    for impl in hook.get_hookimpls():
        for name, factory in (impl.function() or {}).items():
            if name in found:
                raise ValueError(
                    f"conformance environment {name!r} is contributed twice "
                    f"(again by plugin {impl.plugin_name!r})"
                )
            found[name] = factory
    return found


def start_environment(name: str, workdir: Path) -> AbstractContextManager[Target]:
    environments = available_environments()
    try:
        factory = environments[name]
    except KeyError:
        raise ValueError(
            f"no conformance environment {name!r}; available: {', '.join(sorted(environments))}"
        ) from None
    workdir.mkdir(parents=True, exist_ok=True)
    return factory(workdir)


@contextmanager
def external_target(url: str, capabilities: Capabilities | None = None) -> Iterator[Target]:
    """A registry that is already running (e.g. a CI service container) at `url`.

    Credentials, when the registry needs them, come from ``OCYNC_REGISTRY_USERNAME`` and
    ``OCYNC_REGISTRY_PASSWORD``. ocync reaches it through a local `FaultProxy`; its
    identity (`settings.host`) stays the registry's, so the plugin recognises it.
    """
    from ocync_conformance.images import ChallengeAuth

    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.netloc:
        raise ValueError(f"--ocync-registry: {url!r} is not a registry URL")
    upstream = f"{parts.scheme}://{parts.netloc}"
    username = os.environ.get("OCYNC_REGISTRY_USERNAME")
    password = os.environ.get("OCYNC_REGISTRY_PASSWORD")
    with FaultProxy(upstream) as proxy:
        settings = RegistrySettings(
            host=parts.netloc, endpoint=proxy.url, username=username, password=password
        )
        yield Target(
            name="external",
            settings=settings,
            proxy=proxy,
            upstream=upstream,
            capabilities=capabilities or Capabilities(credentials=username is not None),
            direct_auth=ChallengeAuth(username, password) if username else ChallengeAuth(),
            wrong_credentials=(
                replace(settings, password="not-" + password) if password is not None else None
            ),
        )
