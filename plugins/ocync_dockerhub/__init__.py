"""The Docker Hub plugin (kind ``dockerhub``): ``docker.io``, ``index.docker.io``,
``registry-1.docker.io``.

Where Docker Hub departs from a generic registry, and what the plugin does about it:

- references name ``docker.io``, but the API answers at ``https://registry-1.docker.io``:
  requests go there unless the configuration names an ``endpoint``;
- official images live under ``library/``: a one-component name (``nginx``) is
  ``library/nginx``, in a mapping's ``from`` and in its ``to`` when Docker Hub is the target;
- manifest GETs spend the pull quota and HEADs do not: a source tag is compared by HEAD before
  any GET (``head_first``), so a sync with nothing to do pulls nothing; GETs have a throttle
  window of their own, and ``RateLimit-Remaining`` slows discovery down before the quota runs
  out (`THROTTLE_POLICY`);
- a mount Docker Hub cannot do (its ``from`` names no repository there) is refused with 400
  rather than opening an upload (google/go-containerregistry#1741): read as "not mounted",
  and the blob is uploaded.

Authentication is the standard token exchange (realm ``auth.docker.io``, service
``registry.docker.io``), which the core's realm policy allows for these hosts; a personal
access token is the password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import MountMode, MountPolicy, ReadPolicy, ThrottlePolicy
from ocync_dockerhub.detect import (
    API_ENDPOINT,
    HUB_HOSTS,
    api_endpoint,
    hub_hostname,
    official_repository,
)
from ocync_dockerhub.throttle import THROTTLE_POLICY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from ocync_core.registry import RegistrySettings

__all__ = [
    "API_ENDPOINT",
    "HUB_HOSTS",
    "KIND",
    "MOUNT_POLICY",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "READ_POLICY",
    "THROTTLE_POLICY",
    "__version__",
    "official_repository",
]

KIND = "dockerhub"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = HUB_HOSTS

# 400 joins the statuses that mean "not mounted, no session opened": Docker Hub's answer to a
# mount whose `from` it does not hold. ocync only mounts within one registry, so `from` stays.
# No self-mount existence probe: on a first push the repository is not there yet, so every
# probe would be a refused request; blob HEADs are free and answer the same question.
MOUNT_POLICY = MountPolicy(
    mode=MountMode.WITH_FROM, not_mounted_statuses=frozenset({400, 401, 403, 404})
)
READ_POLICY = ReadPolicy(head_first=True)


def _ours(kind: str) -> bool:
    return kind == KIND


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if hub_hostname(registry.host) is not None else None


@hookimpl
def ocync_registry_endpoint(registry: RegistrySettings, kind: str) -> str | None:
    return api_endpoint(registry.host) if _ours(kind) else None


@hookimpl
def ocync_normalize_repository(
    registry: RegistrySettings, kind: str, repository: str
) -> str | None:
    return official_repository(repository) if _ours(kind) else None


@hookimpl
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy | None:
    return MOUNT_POLICY if _ours(kind) else None


@hookimpl
def ocync_read_policy(registry: RegistrySettings, kind: str) -> ReadPolicy | None:
    return READ_POLICY if _ours(kind) else None


@hookimpl
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    return THROTTLE_POLICY if _ours(kind) else None


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # docker-registry behind a token server, with Docker Hub's pull quota and mount answer.
    from ocync_dockerhub.emulation import DOCKERHUB_ENVIRONMENTS

    return DOCKERHUB_ENVIRONMENTS
