"""The plugin contract: every `ocync_*` hook, typed and documented.

Hooks are called synchronously by pluggy and return objects; asynchronous work lives on the
returned objects (see `ocync_core.policies`). Registry-specific hooks are `firstresult`: a
plugin answers for the registries of its kind and returns None for the others; the generic
plugin `ocync_oci` is registered `trylast` and answers for every registry.

Every registry-specific hook receives `registry` (a `RegistrySettings`) and `kind`, the kind
resolved for it (the config's explicit `kind:`, else the first `ocync_registry_kind` answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    import click
    import httpx
    from pydantic import BaseModel

    from ocync_core.client import RegistryClient
    from ocync_core.errors import RegistryError
    from ocync_core.policies import (
        AuthProvider,
        ExistenceChecker,
        MountPolicy,
        PushOutcome,
        ReadPolicy,
        RepositoryPreparer,
        ThrottlePolicy,
        UploadStrategy,
    )
    from ocync_core.registry import RegistrySettings

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "ocync"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    """Claim a registry: return the kind name this plugin serves (e.g. ``"ecr"``), or None.

    :param registry: the registry's settings; match on ``registry.host``.
    :return: a kind name, or None to let other plugins answer.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_registry_endpoint(registry: RegistrySettings, kind: str) -> str | None:
    """Return the API endpoint for a registry whose settings name none, or None.

    For registries whose API lives on another host than the one in references (Docker Hub:
    ``docker.io`` is served by ``https://registry-1.docker.io``). Not called when the
    settings have an ``endpoint``; `registry.host` stays the registry's identity.

    :return: an ``http(s)://host[:port]`` URL, or None to send requests to the registry's own
        host.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_normalize_repository(
    registry: RegistrySettings, kind: str, repository: str
) -> str | None:
    """Return the canonical name of a repository of this registry, or None to keep it.

    Applied to the repositories a configuration names (``from``, and ``to`` for each target)
    before anything is requested (Docker Hub: ``nginx`` is ``library/nginx``).

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocync_auth_provider(
    registry: RegistrySettings, kind: str, http: httpx.AsyncClient
) -> AuthProvider | None:
    """Return the object that authorizes requests to this registry.

    :param registry: the registry's settings (explicit credentials, docker config path).
    :param kind: the registry's resolved kind.
    :param http: the HTTP client to use for token exchanges.
    :return: an `AuthProvider`, or None for registries of another kind.

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Transfer behaviour
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocync_existence_checker(
    registry: RegistrySettings, kind: str, client: RegistryClient
) -> ExistenceChecker | None:
    """Return the object that tells which blobs a repository holds.

    :param client: the registry's client, for checkers that use the Distribution API.
    :return: an `ExistenceChecker`, or None for registries of another kind.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_mount_policy(registry: RegistrySettings, kind: str) -> MountPolicy | None:
    """Return whether and how this registry mounts blobs across repositories.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_upload_strategy(registry: RegistrySettings, kind: str) -> UploadStrategy | None:
    """Return how blobs are uploaded to this registry (POST+PUT, one PATCH, chunks).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_read_policy(registry: RegistrySettings, kind: str) -> ReadPolicy | None:
    """Return how to read this registry as a source (HEAD before GET, referrers API or not).

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    """Return which requests share a concurrency window, and each window's limits.

    A registry with per-action quotas (ECR) gives every action its own window with a token
    bucket at the documented rate; a registry with one aggregate quota (GHCR) one window.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_manifest_push_outcome(
    registry: RegistrySettings, kind: str, error: RegistryError, wanted_digest: str
) -> PushOutcome | None:
    """Read a manifest-push error: return a `PushOutcome` when it is success after all.

    ECR answers an immutable tag that already holds ``wanted_digest`` with an error; that is
    a skip, not a failure. Return None to keep the error.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def ocync_repository_preparer(registry: RegistrySettings, kind: str) -> RepositoryPreparer | None:
    """Return an object that makes sure a target repository exists before the first push.

    Registries that need repositories created up front (ECR with ``create_repositories``)
    answer; registries that create them on push need not (the generic plugin returns None).

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Configuration and CLI
# ---------------------------------------------------------------------------------------------


@hookspec
def ocync_registry_config_model() -> type[BaseModel] | None:
    """Return a pydantic model of the registry keys this plugin adds to the config, or None."""


@hookspec
def ocync_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``ocync`` command group."""


# ---------------------------------------------------------------------------------------------
# Conformance kit
# ---------------------------------------------------------------------------------------------


@hookspec
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]] | None:
    """Return the conformance-kit environments this plugin brings, by name, or None.

    Each value takes a work directory and returns a context manager that starts the emulated
    registry and yields an `ocync_conformance.environments.Target`. Only the conformance kit
    calls this hook (ocync itself never imports the kit).
    """


def _hook_names() -> list[str]:
    return sorted(name for name in globals() if name.startswith("ocync_"))


HOOK_NAMES: list[str] = _hook_names()
