"""The Google Artifact Registry and Container Registry plugin (kind ``gar``).

Where these registries differ from the generic plugin, and why:

- detection of ``<location>-docker.pkg.dev`` (a region such as ``europe-west1`` or a
  multi-region such as ``us``), ``gcr.io`` and ``<name>.gcr.io`` (`parse_gar_host`);
- credentials (`GarAuth`): the user ``oauth2accesstoken`` with an OAuth2 access token as the
  password, from the configuration, else Google application-default credentials (the ``gcp``
  extra; refreshed before the token's hour runs out), else the Docker config (the ``gcloud``
  credential helper); a configured ``token`` is such an access token;
- uploads: POST + one streamed PUT, never a PATCH: Artifact Registry has no chunked uploads
  (containers/skopeo#1101; "You must use monolithic uploads", Artifact Registry Docker API);
- throttling: one window for every request, paced at the project's quota of 60000 requests
  per minute and location (`THROTTLE_POLICY`).

Mounts, existence checks, reads and referrers are the generic plugin's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ocync_core import __version__
from ocync_core.hookspecs import hookimpl
from ocync_core.policies import ThrottlePolicy, UploadMode, UploadStrategy
from ocync_gar.adc import AccessTokens, MissingExtra
from ocync_gar.auth import ACCESS_TOKEN_USER, GarAuth
from ocync_gar.detect import GarHost, parse_gar_host
from ocync_gar.throttle import THROTTLE_POLICY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    import httpx

    from ocync_core.policies import AuthProvider
    from ocync_core.registry import RegistrySettings

__all__ = [
    "ACCESS_TOKEN_USER",
    "KIND",
    "OCYNC_HOSTS",
    "OCYNC_KINDS",
    "THROTTLE_POLICY",
    "UPLOAD_STRATEGY",
    "AccessTokens",
    "GarAuth",
    "GarHost",
    "MissingExtra",
    "__version__",
    "parse_gar_host",
]

KIND = "gar"
OCYNC_KINDS = (KIND,)
OCYNC_HOSTS = (
    "<location>-docker.pkg.dev (europe-west1-docker.pkg.dev, us-docker.pkg.dev, ...)",
    "gcr.io",
    "<name>.gcr.io (eu.gcr.io, us.gcr.io, asia.gcr.io, ...)",
)

UPLOAD_STRATEGY = UploadStrategy(mode=UploadMode.POST_PUT)


def _ours(kind: str) -> bool:
    return kind == KIND


@hookimpl
def ocync_registry_kind(registry: RegistrySettings) -> str | None:
    return KIND if parse_gar_host(registry.host) is not None else None


@hookimpl
def ocync_auth_provider(
    registry: RegistrySettings, kind: str, http: httpx.AsyncClient
) -> AuthProvider | None:
    if not _ours(kind):
        return None
    auth_type = registry.options.get("auth_type", "auto")
    if auth_type == KIND:
        # Application-default credentials, and nothing else.
        adc_only = replace(registry, username=None, password=None, token=None)
        return GarAuth(adc_only, http, require_adc=True)
    if auth_type in ("auto", "token"):
        return GarAuth(registry, http)
    return None  # basic, docker_config, anonymous: the standard provider does what was asked


@hookimpl
def ocync_upload_strategy(registry: RegistrySettings, kind: str) -> UploadStrategy | None:
    return UPLOAD_STRATEGY if _ours(kind) else None


@hookimpl
def ocync_throttle_policy(registry: RegistrySettings, kind: str) -> ThrottlePolicy | None:
    return THROTTLE_POLICY if _ours(kind) else None


@hookimpl
def ocync_conformance_environments() -> Mapping[str, Callable[[Path], Any]]:
    # Imported only when the conformance kit asks: ocync itself never loads the kit.
    from ocync_gar.emulation import GAR_ENVIRONMENTS

    return GAR_ENVIRONMENTS
