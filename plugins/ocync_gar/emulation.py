"""The ``gar`` conformance environment: Artifact Registry's quirks in front of docker-registry.

What stands where (all on 127.0.0.1):

- an emulated Google OAuth2 endpoint that issues one-hour access tokens to a service account,
  whose key file `Target.env` names in ``GOOGLE_APPLICATION_CREDENTIALS`` (so the plugin's
  application-default credentials come from the real google-auth library);
- the registry's token realm, which accepts only ``oauth2accesstoken`` with an access token
  that endpoint issued and that has not expired;
- docker-registry with token auth, reached through the kit's `FaultProxy`, whose permanent
  quirk rules refuse every PATCH (Artifact Registry has no chunked uploads,
  containers/skopeo#1101) and enforce the project quota of 60000 requests per minute.

The registry's identity is ``europe-west1-docker.pkg.dev``, so the plugin recognises it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.certs import make_signing_cert
from ocync_conformance.environments import Target
from ocync_conformance.images import ChallengeAuth
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.registry_process import RegistryProcess
from ocync_conformance.tokenserver import TokenServer
from ocync_core.registry import RegistrySettings
from ocync_gar.auth import ACCESS_TOKEN_USER
from ocync_gar.google_oauth import GoogleTokenEndpoint
from ocync_gar.throttle import REQUESTS_PER_MINUTE
from ocync_gar.token_realm import GarTokenRealm

__all__ = [
    "CHUNKED_UPLOAD_REFUSAL",
    "GAR_ENVIRONMENTS",
    "GAR_HOST",
    "QUOTA",
    "GarEmulation",
    "install_quirks",
    "start_gar",
]

GAR_HOST = "europe-west1-docker.pkg.dev"
CHUNKED_UPLOAD_REFUSAL = (
    "Artifact Registry does not support chunked uploads; upload the blob in one request"
)
QUOTA = f"{REQUESTS_PER_MINUTE} requests/min per project and location, all operations together"
_KIT_TOKEN_LIFETIME = 7 * 24 * 3600.0  # the seeding client's token outlives any test run


@dataclass(frozen=True)
class GarEmulation:
    """The running pieces, for tests that look behind the `Target`."""

    target: Target
    google: GoogleTokenEndpoint
    realm: GarTokenRealm
    registry: RegistryProcess
    key_file: Path


def install_quirks(proxy: FaultProxy) -> None:
    """Artifact Registry's behaviour as permanent proxy rules (they survive `clear_faults`)."""
    proxy.emulate(
        proxy.fail(
            ProxyAction.UPLOAD_CHUNK,
            405,
            code="UNSUPPORTED",
            message=CHUNKED_UPLOAD_REFUSAL,
            name="gar-no-chunked-uploads",
        )
    )
    proxy.emulate(
        proxy.limit_rate(None, REQUESTS_PER_MINUTE / 60, window=60.0, name="gar-project-quota")
    )


@contextmanager
def start_gar(workdir: Path) -> Iterator[GarEmulation]:
    """Start the emulation in `workdir`; everything stops when the block ends."""
    with ExitStack() as stack:
        google = stack.enter_context(GoogleTokenEndpoint())
        key_file = google.write_service_account_key(workdir / "service-account.json")
        signer = TokenServer(
            service=GAR_HOST,
            issuer="emulated Artifact Registry",
            anonymous_actions=(),
            signing=make_signing_cert(workdir / "signing"),
        )
        realm = stack.enter_context(GarTokenRealm(google, signer))
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                config_overrides={
                    "auth": {
                        "token": {
                            "realm": realm.realm,
                            "service": signer.service,
                            "issuer": signer.issuer,
                            "rootcertbundle": str(signer.cert_file),
                        }
                    }
                },
            )
        )
        proxy = stack.enter_context(FaultProxy(registry, name="gar"))
        install_quirks(proxy)
        # An empty Docker config: what a developer's ~/.docker holds must not leak in.
        docker_config = workdir / "docker-config.json"
        docker_config.write_text("{}")
        settings = RegistrySettings(
            host=GAR_HOST, endpoint=proxy.url, docker_config=str(docker_config)
        )
        target = Target(
            name="gar",
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(
                anonymous_pull=False, credentials=True, documented_limits=QUOTA
            ),
            direct_auth=ChallengeAuth(ACCESS_TOKEN_USER, google.mint(_KIT_TOKEN_LIFETIME)),
            env={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)},
            wrong_credentials=replace(
                settings, username=ACCESS_TOKEN_USER, password="ya29.made-up-access-token"
            ),
        )
        yield GarEmulation(target, google, realm, registry, key_file)


@contextmanager
def _gar(workdir: Path) -> Iterator[Target]:
    with start_gar(workdir) as emulation:
        yield emulation.target


GAR_ENVIRONMENTS: dict[str, Callable[[Path], Any]] = {"gar": _gar}
