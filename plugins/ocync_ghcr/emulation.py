"""The ``ghcr`` conformance environment: docker-registry behaving as GHCR does.

A real docker-registry with Bearer token auth (the kit's `TokenServer`) stands behind a
`FaultProxy` whose permanent rules (`FaultProxy.emulate`) are GHCR's quirks:

- every request counts against one aggregate limit of 2000 requests/min; the emulation
  enforces the same rate per second (a sliding one-second window of 33 requests), which is
  stricter than a minute's budget but passed by any client that paces itself;
- a PATCH body above 4 MiB is refused with 416;
- a PATCH continuing an upload (``Content-Range`` not starting at 0) is refused: GHCR is
  reported to keep only the last chunk of a multi-PATCH upload, and a refusal makes that loss
  visible instead of surfacing later as a digest mismatch;
- there is no referrers API: docker-registry already answers 404.

This module imports the conformance kit; only the kit imports it (through the plugin's
``ocync_conformance_environments`` hook).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import EnvironmentFactory, Target, token_registry_target
from ocync_conformance.proxy import FaultKind, FaultProxy, FaultRule, ProxyAction, RequestView
from ocync_ghcr.detect import GHCR_HOST
from ocync_ghcr.throttle import CAP_PER_MINUTE

__all__ = [
    "CAPABILITIES",
    "GHCR_ENVIRONMENTS",
    "MAX_PATCH",
    "PASSWORD",
    "USERNAME",
    "ghcr_environment",
    "install_quirks",
]

MAX_PATCH = 4 << 20
# GHCR takes any username with a personal access token (or GITHUB_TOKEN) as the password.
USERNAME = "octocat"
PASSWORD = "ghp_conformanceTokenForTheEmulatedRegistry"

CAPABILITIES = Capabilities(
    anonymous_pull=True,  # public packages
    credentials=True,
    max_chunk=MAX_PATCH,
    referrers_api=False,
    documented_limits=f"{CAP_PER_MINUTE} requests/min in all",
)


def _continues_an_upload(request: RequestView) -> bool:
    """A PATCH whose ``Content-Range`` starts past byte 0: the second chunk or later."""
    value = request.headers.get("content-range", "").strip().lower()
    if not value:
        return False
    start = value.removeprefix("bytes").strip(" =").partition("-")[0].strip()
    return start != "0"


def install_quirks(proxy: FaultProxy) -> None:
    """Make `proxy` answer as GHCR does, for good (the rules survive `clear_faults`)."""
    proxy.emulate(
        FaultRule(
            kind=FaultKind.LIMIT_RATE,
            limit=CAP_PER_MINUTE / 60,
            window=1.0,
            message=f"GHCR: over {CAP_PER_MINUTE} requests/min for this principal",
            name="ghcr aggregate rate limit",
        )
    )
    proxy.emulate(
        proxy.fail(
            ProxyAction.UPLOAD_CHUNK,
            416,
            code="BLOB_UPLOAD_INVALID",
            message=f"GHCR: a PATCH body may not exceed {MAX_PATCH} bytes (4 MiB)",
            when=lambda request: request.content_length > MAX_PATCH,
            name="ghcr 4 MiB PATCH limit",
        )
    )
    proxy.emulate(
        proxy.fail(
            ProxyAction.UPLOAD_CHUNK,
            416,
            code="BLOB_UPLOAD_INVALID",
            message="GHCR keeps only the last chunk of a multi-PATCH upload; "
            "upload in one PATCH or one PUT",
            when=_continues_an_upload,
            name="ghcr multi-PATCH upload",
        )
    )


def ghcr_environment(workdir: Path) -> AbstractContextManager[Target]:
    """Start the emulated GHCR; its settings name ``ghcr.io``, its requests go to the proxy."""
    return token_registry_target(
        workdir,
        name="ghcr",
        host=GHCR_HOST,
        service=GHCR_HOST,
        username=USERNAME,
        password=PASSWORD,
        wrong_password="ghp_revokedToken",
        capabilities=CAPABILITIES,
        quirks=install_quirks,
    )


GHCR_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"ghcr": ghcr_environment}
