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

from contextlib import AbstractContextManager
from pathlib import Path

from ocync_chainguard.detect import CHAINGUARD_HOST
from ocync_chainguard.scope_check import token_misfits
from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import EnvironmentFactory, Target, token_registry_target
from ocync_conformance.proxy import FaultProxy

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


def chainguard_environment(workdir: Path) -> AbstractContextManager[Target]:
    """Start the emulated cgr.dev; its settings name ``cgr.dev``, its requests go to the proxy."""
    return token_registry_target(
        workdir,
        name="chainguard",
        host=CHAINGUARD_HOST,
        service=CHAINGUARD_HOST,
        username=USERNAME,
        password=PASSWORD,
        wrong_password="revoked-pull-token",
        capabilities=CAPABILITIES,
        quirks=install_quirks,
    )


CHAINGUARD_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"chainguard": chainguard_environment}
