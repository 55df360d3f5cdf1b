"""Conformance environments for the ACR plugin: a real docker-registry behind ACR's quirks.

``acr`` emulates a Standard-tier registry ``ocyncemulated.azurecr.io``:

- auth: ACR's token service (`AcrTokenService`): Microsoft Entra ID through
  ``/oauth2/exchange``, the admin user through ``/oauth2/token``, no anonymous access. ocync's
  Entra token is a fake one, given in ``AZURE_ACCESS_TOKEN`` (`Target.env`);
- quotas: the tier's ReadOps and WriteOps per minute, enforced by the fault proxy as two
  sliding one-second windows, so that a check sees them within a second: a request beyond a
  second's share of either (plus `JITTER_ALLOWANCE`) is refused with 429. That is far
  stricter than a per-minute quota, which lets a whole minute's worth through at once;
- the OCI 1.1 referrers API and tag-list pages, which ACR has and docker-registry lacks (the
  kit's `ReferrersRegistry` front).

``acr-basic`` is the same registry on the Basic tier (1,000 reads, 100 writes per minute).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import jwt

from ocync_acr.aad import AZURE_TOKEN_ENV
from ocync_acr.throttle import SKU_LIMITS
from ocync_acr.tokenservice import AcrTokenService
from ocync_conformance.capabilities import Capabilities
from ocync_conformance.certs import make_signing_cert
from ocync_conformance.environments import Target
from ocync_conformance.images import ChallengeAuth
from ocync_conformance.proxy import FaultProxy, FaultRule, ProxyAction
from ocync_conformance.referrers_registry import ReferrersRegistry
from ocync_conformance.registry_process import RegistryProcess
from ocync_core.registry import RegistrySettings

__all__ = [
    "AAD_PRINCIPAL",
    "ADMIN_PASSWORD",
    "ADMIN_USER",
    "ENVIRONMENTS",
    "JITTER_ALLOWANCE",
    "READ_REQUESTS",
    "REGISTRY_HOST",
    "WRITE_REQUESTS",
    "AcrEmulation",
    "emulate_acr",
    "fake_aad_token",
    "install_quotas",
]

REGISTRY_HOST = "ocyncemulated.azurecr.io"
ADMIN_USER = "ocyncemulated"  # ACR names the admin user after the registry
ADMIN_PASSWORD = "emulated-admin-password"
AAD_PRINCIPAL = "emulated-entra-identity"

# Requests a window admits beyond a second's share of the quota: a client that paces itself
# under the quota must not fail on a few hundred milliseconds of scheduling delay bunching
# its requests up (a per-minute quota would never notice).
JITTER_ALLOWANCE = 2

# What ACR counts as a read and as a write, among the requests the proxy tells apart.
READ_REQUESTS: tuple[ProxyAction, ...] = (
    ProxyAction.MANIFEST_HEAD,
    ProxyAction.MANIFEST_GET,
    ProxyAction.BLOB_HEAD,
    ProxyAction.BLOB_GET,
    ProxyAction.TAG_LIST,
    ProxyAction.REFERRERS,
    ProxyAction.CATALOG,
)
WRITE_REQUESTS: tuple[ProxyAction, ...] = (
    ProxyAction.MANIFEST_PUT,
    ProxyAction.UPLOAD_START,
    ProxyAction.UPLOAD_CHUNK,
    ProxyAction.UPLOAD_FINISH,
    ProxyAction.MOUNT,
)


@dataclass
class AcrEmulation:
    """A running emulated ACR: the suite's `Target` and the parts behind it."""

    target: Target
    tokens: AcrTokenService
    registry: RegistryProcess
    aad_token: str


def fake_aad_token(lifetime: float = 3600.0) -> str:
    """A JWT shaped like an Entra access token for ACR (unsigned in any way Azure would accept)."""
    now = int(time.time())
    claims = {
        "aud": "https://containerregistry.azure.net",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-00000000e1d0/",
        "oid": AAD_PRINCIPAL,
        "tid": "00000000-0000-0000-0000-00000000e1d0",
        "iat": now,
        "exp": now + int(lifetime),
    }
    return jwt.encode(claims, "emulated-entra-signing-key-of-32-bytes", algorithm="HS256")


def install_quotas(proxy: FaultProxy, sku: str) -> list[FaultRule]:
    """Refuse with 429 what goes beyond the tier's reads and writes per minute, at a grain of
    one second."""
    limits = SKU_LIMITS[sku]
    rules = []
    for actions, per_minute, what in (
        (READ_REQUESTS, limits.reads_per_minute, "ReadOps"),
        (WRITE_REQUESTS, limits.writes_per_minute, "WriteOps"),
    ):
        per_second = per_minute / 60 + JITTER_ALLOWANCE
        rule = proxy.emulate(proxy.limit_rate(actions, per_second, name=f"acr-{what.lower()}"))
        rule.message = f"too many requests: {what} quota of the {sku} tier ({per_minute}/min)"
        rules.append(rule)
    return rules


@contextmanager
def emulate_acr(workdir: Path, sku: str = "standard") -> Iterator[AcrEmulation]:
    """Start an emulated ACR registry of service tier `sku` under `workdir`."""
    with ExitStack() as stack:
        aad_token = fake_aad_token()
        tokens = stack.enter_context(
            AcrTokenService(
                registry_host=REGISTRY_HOST,
                aad_tokens={aad_token: AAD_PRINCIPAL},
                signing=make_signing_cert(workdir / "signing"),
            )
        )
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                token_server=tokens,
                username=ADMIN_USER,
                password=ADMIN_PASSWORD,
            )
        )
        front = stack.enter_context(ReferrersRegistry(registry))
        proxy = stack.enter_context(FaultProxy(front))
        install_quotas(proxy, sku)
        # An empty docker config: what the machine's own holds must not decide how ocync
        # authenticates here.
        docker_config = workdir / "docker-config.json"
        docker_config.write_text("{}")
        settings = RegistrySettings(
            host=REGISTRY_HOST,
            endpoint=proxy.url,
            docker_config=str(docker_config),
            options={"acr_sku": sku},
        )
        target = Target(
            name="acr" if sku == "standard" else f"acr-{sku}",
            settings=settings,
            proxy=proxy,
            upstream=front.url,
            capabilities=Capabilities(
                anonymous_pull=False,
                credentials=True,
                referrers_api=True,
                tag_pagination=True,
                documented_limits=SKU_LIMITS[sku].describe(sku),
            ),
            direct_auth=ChallengeAuth(ADMIN_USER, ADMIN_PASSWORD),
            env={AZURE_TOKEN_ENV: aad_token},
            # An Entra token the exchange refuses (with `auth_type: acr`, `token` is one).
            wrong_credentials=replace(
                settings,
                token="not-an-entra-token",
                options={**settings.options, "auth_type": "acr"},
            ),
        )
        yield AcrEmulation(target, tokens, registry, aad_token)


@contextmanager
def _environment(workdir: Path, sku: str) -> Iterator[Target]:
    with emulate_acr(workdir, sku) as emulation:
        yield emulation.target


ENVIRONMENTS: dict[str, Callable[[Path], AbstractContextManager[Target]]] = {
    "acr": partial(_environment, sku="standard"),
    "acr-basic": partial(_environment, sku="basic"),
}
