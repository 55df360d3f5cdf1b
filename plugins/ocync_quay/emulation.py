"""The ``quay`` conformance environment: docker-registry with a token server, as quay.io.

The token server answers for service ``quay.io`` and knows one robot account,
``myorg+mirror``; the target's identity is ``quay.io``, so the plugin recognises it.

Quay's mount answers need no proxy rule: like Quay, docker-registry mounts only when the mount
names its ``from`` repository, and answers a mount it cannot do (no ``from``, a missing
repository, a blob the repository lacks) with a normal upload session (202). The tests of the
plugin pin that the emulation keeps doing so.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import EnvironmentFactory, Target, token_registry_target

__all__ = ["QUAY_ENVIRONMENTS", "QUAY_SERVICE", "ROBOT_TOKEN", "ROBOT_USERNAME", "quay_environment"]

QUAY_SERVICE = "quay.io"
ROBOT_USERNAME = "myorg+mirror"
ROBOT_TOKEN = "ROBOT0CONFORMANCE0TOKEN"


def quay_environment(workdir: Path) -> AbstractContextManager[Target]:
    """Start the emulated quay.io."""
    return token_registry_target(
        workdir,
        name="quay",
        host="quay.io",
        service=QUAY_SERVICE,
        username=ROBOT_USERNAME,
        password=ROBOT_TOKEN,
        capabilities=Capabilities(credentials=True),
    )


QUAY_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"quay": quay_environment}
