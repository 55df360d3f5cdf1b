"""The ``chainguard`` conformance environment: docker-registry behaving as ``cgr.dev`` does.

A real docker-registry with Bearer token auth (the kit's `TokenServer`, service ``cgr.dev``;
anonymous callers get pull tokens, as for the public ``cgr.dev/chainguard/*`` images) stands
behind a `FaultProxy` with one permanent rule: a request whose token was issued for another
scope set than the request needs is refused with 403 DENIED (`scope_check.token_misfits`).
docker-registry alone accepts any token that covers the request, so a client that reuses
tokens across scope sets passes against it and fails here, as it does against cgr.dev.

This module imports the conformance kit; only the kit imports it (through the plugin's
``ocync_conformance_environments`` hook).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from ocync_chainguard.detect import CHAINGUARD_HOST
from ocync_chainguard.scope_check import token_misfits
from ocync_conformance.capabilities import Capabilities
from ocync_conformance.certs import make_signing_cert
from ocync_conformance.environments import EnvironmentFactory, Target
from ocync_conformance.images import ChallengeAuth
from ocync_conformance.proxy import FaultProxy
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core.registry import RegistrySettings

__all__ = [
    "CAPABILITIES",
    "CHAINGUARD_ENVIRONMENTS",
    "PASSWORD",
    "USERNAME",
    "chainguard_environment",
    "install_quirks",
]

# A pull token's identity and secret (`chainctl auth pull-token` prints both).
USERNAME = "conformance-org/pull-token"
PASSWORD = "pull-token-secret-of-the-emulated-registry"

CAPABILITIES = Capabilities(anonymous_pull=True, credentials=True)


def install_quirks(proxy: FaultProxy) -> None:
    """Make `proxy` answer as cgr.dev does, for good (the rule survives `clear_faults`)."""
    proxy.emulate(
        proxy.fail(
            None,
            403,
            code="DENIED",
            message="cgr.dev: this token was issued for another scope set than the request "
            "needs (tokens are per scope set)",
            when=token_misfits,
            name="cgr.dev token per scope set",
        )
    )


@contextmanager
def chainguard_environment(workdir: Path) -> Iterator[Target]:
    """Start the emulated cgr.dev; its settings name ``cgr.dev``, its requests go to the proxy."""
    with ExitStack() as stack:
        tokens = stack.enter_context(
            TokenServer(
                users={USERNAME: PASSWORD},
                service=CHAINGUARD_HOST,
                signing=make_signing_cert(workdir / "signing"),
            )
        )
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                token_server=tokens,
                username=USERNAME,
                password=PASSWORD,
            )
        )
        proxy = stack.enter_context(FaultProxy(registry, name="chainguard"))
        install_quirks(proxy)
        settings = RegistrySettings(
            host=CHAINGUARD_HOST, endpoint=proxy.url, username=USERNAME, password=PASSWORD
        )
        yield Target(
            name="chainguard",
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=CAPABILITIES,
            direct_auth=ChallengeAuth(USERNAME, PASSWORD),
            wrong_credentials=replace(settings, password="revoked-pull-token"),
        )


CHAINGUARD_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"chainguard": chainguard_environment}
