"""The ``dockerhub`` conformance environment: docker-registry dressed as Docker Hub.

A real docker-registry with the kit's token server (service ``registry.docker.io``) behind a
`FaultProxy`; the target's identity is ``docker.io``, so the plugin recognises it. Docker
Hub's quirks are permanent proxy rules:

- the pull quota (`PullQuota`): manifest GETs count, HEADs do not; manifest responses carry
  ``RateLimit-Limit``/``RateLimit-Remaining``; a GET beyond the quota is refused with 429;
- a mount whose ``from`` names a repository this registry does not hold is refused with 400
  (`MountSources`), where docker-registry itself would open an upload (202).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ocync_conformance.capabilities import Capabilities
from ocync_conformance.environments import EnvironmentFactory, Target
from ocync_conformance.proxy import FaultProxy, ProxyAction, RequestView
from ocync_core.errors import InvalidReference
from ocync_core.reference import validate_repository
from ocync_core.registry import RegistrySettings
from ocync_dockerhub.emulated_quota import PullQuota

__all__ = [
    "DOCKERHUB_ENVIRONMENTS",
    "HUB_PASSWORD",
    "HUB_SERVICE",
    "HUB_USERNAME",
    "PULL_LIMIT",
    "MountSources",
    "dockerhub_environment",
]

HUB_SERVICE = "registry.docker.io"
HUB_USERNAME = "ocync-mirror"
HUB_PASSWORD = "dckr_pat_conformance"  # a personal access token stands for the password
# Docker Hub announces 100 pulls per 6 hours to anonymous clients; the emulation counts the
# same way with twice the room: the whole conformance suite spends a few dozen pulls, so a
# plugin that pulls far more than it needs runs out.
PULL_LIMIT = 200


class MountSources:
    """Which ``from`` repositories the emulated registry holds, read from its storage."""

    def __init__(self, storage_dir: Path) -> None:
        self._root = storage_dir / "docker" / "registry" / "v2" / "repositories"

    def holds(self, repository: str) -> bool:
        """True when `repository` has a blob or a manifest here (not just an open upload)."""
        try:
            validate_repository(repository)
        except InvalidReference:
            return False  # never a path outside the storage
        folder = self._root / repository
        return (folder / "_layers").is_dir() or (folder / "_manifests").is_dir()

    def from_elsewhere(self, request: RequestView) -> bool:
        """The `when` of the refusing rule: a mount whose ``from`` is not here."""
        query = parse_qs(urlsplit(request.target).query)
        source = query.get("from", [""])[0]
        return bool(source) and not self.holds(source)

    def install(self, proxy: FaultProxy) -> None:
        proxy.emulate(
            proxy.fail(
                ProxyAction.MOUNT,
                400,
                code="UNSUPPORTED",
                message="cannot mount: the from repository is not in this registry",
                when=self.from_elsewhere,
                name="mount-from-elsewhere",
            )
        )


@contextmanager
def dockerhub_environment(workdir: Path, *, quota: PullQuota | None = None) -> Iterator[Target]:
    """Start the emulated Docker Hub; `quota` defaults to `PULL_LIMIT` pulls per 6 hours."""
    from ocync_conformance.certs import make_signing_cert
    from ocync_conformance.images import ChallengeAuth
    from ocync_conformance.registry_process import RegistryProcess
    from ocync_conformance.tokenserver import TokenServer

    quota = quota if quota is not None else PullQuota(PULL_LIMIT)
    with ExitStack() as stack:
        tokens = stack.enter_context(
            TokenServer(
                users={HUB_USERNAME: HUB_PASSWORD},
                service=HUB_SERVICE,
                signing=make_signing_cert(workdir / "signing"),
            )
        )
        registry = stack.enter_context(
            RegistryProcess(
                workdir=workdir / "registry",
                token_server=tokens,
                username=HUB_USERNAME,
                password=HUB_PASSWORD,
            )
        )
        proxy = stack.enter_context(FaultProxy(registry, name="dockerhub"))
        quota.install(proxy)
        MountSources(registry.storage_dir).install(proxy)
        settings = RegistrySettings(
            host="docker.io", endpoint=proxy.url, username=HUB_USERNAME, password=HUB_PASSWORD
        )
        hours = quota.window / 3600
        yield Target(
            name="dockerhub",
            settings=settings,
            proxy=proxy,
            upstream=registry.url,
            capabilities=Capabilities(
                credentials=True,
                documented_limits=(
                    f"pull quota: {quota.limit} manifest GETs per {hours:g} h; HEADs are free"
                ),
            ),
            direct_auth=ChallengeAuth(HUB_USERNAME, HUB_PASSWORD),
            wrong_credentials=replace(settings, password="not-" + HUB_PASSWORD),
        )


DOCKERHUB_ENVIRONMENTS: dict[str, EnvironmentFactory] = {"dockerhub": dockerhub_environment}
