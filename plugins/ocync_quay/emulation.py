"""The ``quay`` conformance environment: docker-registry with a token server, as quay.io.

The token server answers for service ``quay.io`` and knows one robot account,
``myorg+mirror``; the target's identity is ``quay.io``, so the plugin recognises it.

Quay's mount answers need no proxy rule: like Quay, docker-registry mounts only when the mount
names its ``from`` repository, and answers a mount it cannot do (no ``from``, a missing
repository, a blob the repository lacks) with a normal upload session (202). The tests of the
plugin pin that the emulation keeps doing so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import EnvironmentFactory, Target
from ocync_conformance.proxy import FaultProxy
from ocync_core.registry import RegistrySettings

__all__ = ["QUAY_ENVIRONMENTS", "QUAY_SERVICE", "ROBOT_TOKEN", "ROBOT_USERNAME", "quay_environment"]

QUAY_SERVICE = "quay.io"
ROBOT_USERNAME = "myorg+mirror"
ROBOT_TOKEN = "ROBOT0CONFORMANCE0TOKEN"


@contextmanager
def quay_environment(workdir: Path) -> Iterator[Target]:
    """Start the emulated quay.io."""
    from ocync_conformance.certs import make_signing_cert
    from ocync_conformance.images import ChallengeAuth
    from ocync_conformance.registry_process import RegistryProcess
    from ocync_conformance.tokenserver import TokenServer

    with ExitStack() as stack:
        tokens = stack.enter_context(
            TokenServer(
                users={ROBOT_USERNAME: ROBOT_TOKEN},
                service=QUAY_SERVICE,
                signing=make_signing_cert(workdir / "signing"),
            )
        )
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                token_server=tokens,
                username=ROBOT_USERNAME,
                password=ROBOT_TOKEN,
            )
        )
        proxy = stack.enter_context(FaultProxy(registry, name="quay"))
        settings = RegistrySettings(
            host="quay.io", endpoint=proxy.url, username=ROBOT_USERNAME, password=ROBOT_TOKEN
        )
        yield Target(
            name="quay",
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(credentials=True),
            direct_auth=ChallengeAuth(ROBOT_USERNAME, ROBOT_TOKEN),
            wrong_credentials=replace(settings, password="not-" + ROBOT_TOKEN),
        )


QUAY_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"quay": quay_environment}
