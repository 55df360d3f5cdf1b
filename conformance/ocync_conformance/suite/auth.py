"""Authentication: anonymous, credentials, token refresh, one retry after a 401, realms.

Every check authenticates through the plugin's auth provider (the one `RegistryClient` gets
from the plugins), as `ocync sync` does; the proxy's log shows what went over the wire.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocync_conformance.environments import Target
from ocync_conformance.images import push_blob
from ocync_conformance.proxy import FaultProxy, ProxyAction
from ocync_conformance.suite.base import SuiteBase, requires
from ocync_conformance.suite.uploads import assert_blob_at_target, pieces
from ocync_core.client import RegistryClient
from ocync_core.digest import Digest
from ocync_core.errors import AuthenticationError, OcyncError, RegistryError
from ocync_core.plugins import Plugins
from ocync_core.registry import RegistrySettings

__all__ = ["AuthChecks"]

# Credentials to leak when the target has none of its own (an open registry ignores them).
_PLANTED_USER = "ocync-conformance"
_PLANTED_PASSWORD = "planted-secret-for-the-realm-check"


@dataclass(frozen=True)
class _Seen:
    method: str
    path: str
    authorization: str | None


class _RealmServer:
    """A token realm on another host than the registry, recording what reaches it."""

    def __init__(self, address: str) -> None:
        seen: list[_Seen] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._record()

            def do_POST(self) -> None:
                self._record()

            def _record(self) -> None:
                seen.append(_Seen(self.command, self.path, self.headers.get("Authorization")))
                body = b'{"details": "no tokens here"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{address}:{self._server.server_port}"

    def __enter__(self) -> _RealmServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback: a host other than the registry's."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks a route
        address = str(sock.getsockname()[0])
        if not address.startswith("127.") and address != "0.0.0.0":
            return address
    return None


def _names_registry(error: BaseException, settings: RegistrySettings) -> bool:
    text = str(error)
    names = {settings.label, settings.host}
    for url in (settings.url, settings.endpoint):
        if url:
            names.add(httpx.URL(url).netloc.decode())
    return any(name and name in text for name in names)


def _anonymous(settings: RegistrySettings, tmp_path: Path) -> RegistrySettings:
    """The same registry with no credentials at all (an empty Docker config included)."""
    config = tmp_path / "docker-config.json"
    config.write_text("{}")
    return replace(settings, username=None, password=None, token=None, docker_config=str(config))


def _challenge_for(target: Target, path: str) -> str | None:
    """The `WWW-Authenticate` the registry (through the proxy) sends an anonymous request."""
    with httpx.Client(
        base_url=target.proxy.url, verify=target.verify, timeout=30, trust_env=False
    ) as http:
        response = http.head(path)
    return response.headers.get("WWW-Authenticate") if response.status_code == 401 else None


class AuthChecks(SuiteBase):
    @requires("anonymous_pull", "the registry needs credentials to read")
    async def test_anonymous_pull(
        self,
        settings: RegistrySettings,
        loaded_plugins: Plugins,
        target: Target,
        proxy: FaultProxy,
        repo: str,
        tmp_path: Path,
    ) -> None:
        data = os.urandom(512)
        with target.direct() as http:
            digest = Digest.parse(push_blob(http, repo, data))
        anonymous = _anonymous(settings, tmp_path)
        async with (
            RegistryClient(anonymous, loaded_plugins) as client,
            client.open_blob(repo, digest, len(data)) as reader,
        ):
            got = b"".join([chunk async for chunk in reader.chunks()])
        assert got == data, f"an anonymous read of {digest} from {repo} returned other bytes"

    # Skips are decided in sync fixtures: pytest-trio drops the reason of a skip raised
    # inside a check's trio run.
    @pytest.fixture
    def wrong_settings(self, settings: RegistrySettings, target: Target) -> RegistrySettings:
        if target.wrong_credentials is None:
            pytest.skip("the environment has no wrong credentials to try")
        return replace(target.wrong_credentials, kind=settings.kind)

    @pytest.fixture
    def foreign_address(self) -> str:
        address = _non_loopback_address()
        if address is None:
            pytest.skip("this machine has no non-loopback address to stand for a foreign host")
        return address

    @requires("credentials", "the registry does not check credentials")
    async def test_wrong_credentials_are_refused(
        self,
        wrong_settings: RegistrySettings,
        loaded_plugins: Plugins,
        proxy: FaultProxy,
        repo: str,
    ) -> None:
        wrong = wrong_settings
        digest = Digest.of(os.urandom(32))
        with pytest.raises((AuthenticationError, RegistryError)) as caught:
            async with RegistryClient(wrong, loaded_plugins) as client:
                await client.upload_blob(repo, digest, 0, pieces(b"", 1))
        error = caught.value
        assert not isinstance(error, RegistryError) or error.status in (401, 403), (
            f"with a wrong password the registry's refusal should surface as 401/403, got {error}"
        )
        assert _names_registry(error, wrong), (
            f"the error for refused credentials does not name the registry {wrong.label}: {error}"
        )

    async def test_credentials_allow_push_and_pull(
        self, client: RegistryClient, target: Target, repo: str
    ) -> None:
        data = os.urandom(1500)
        digest = Digest.of(data)
        await client.upload_blob(repo, digest, len(data), pieces(data, 500))
        assert_blob_at_target(target, repo, data, "push with the configured credentials")
        async with client.open_blob(repo, digest, len(data)) as reader:
            got = b"".join([chunk async for chunk in reader.chunks()])
        assert got == data, f"pulling {digest} back from {repo} returned other bytes"

    @requires("credentials", "an open registry never answers 401")
    async def test_one_retry_after_a_401(
        self,
        client: RegistryClient,
        settings: RegistrySettings,
        target: Target,
        proxy: FaultProxy,
        repo: str,
    ) -> None:
        data = os.urandom(256)
        with target.direct() as http:
            digest = Digest.parse(push_blob(http, repo, data))
        path = f"/v2/{repo}/blobs/{digest}"
        challenge = _challenge_for(target, path)
        assert challenge, f"the registry's anonymous HEAD {path} carried no WWW-Authenticate"
        # Authorized once, so what the 401 refuses is a token or credential already in use.
        found = await client.blob_exists(repo, digest)
        assert found == len(data), f"HEAD of {digest} in {repo} answered {found} (no fault yet)"
        proxy.wait_idle()
        proxy.reset()
        proxy.fail(
            ProxyAction.BLOB_HEAD,
            401,
            count=1,
            code="UNAUTHORIZED",
            headers={"WWW-Authenticate": challenge},
            name="refused-credential",
        )
        outcome: int | OcyncError | None
        try:
            outcome = await client.blob_exists(repo, digest)
        except OcyncError as exc:
            outcome = exc
        proxy.wait_idle()
        heads = proxy.stats(ProxyAction.BLOB_HEAD)
        sent = dict(heads.statuses)
        assert heads.completed <= 2, (
            f"one 401 led to {heads.completed - 1} retries (a retry storm); statuses {sent}"
        )
        # A fixed password refused once is refused again: giving up is then right.
        static_basic = challenge.lower().startswith("basic") and settings.password is not None
        if heads.completed == 1 and static_basic:
            assert isinstance(outcome, AuthenticationError), (
                f"a refused Basic credential should surface as an authentication error: {outcome}"
            )
            return
        assert heads.completed == 2 and sent.get(401) == 1 and sent.get(200) == 1, (
            f"after one 401 ({challenge}) the request should be retried exactly once with "
            f"fresh authorization and succeed; blob HEAD statuses on the wire: {sent}"
        )
        assert outcome == len(data), f"the retried blob HEAD answered {outcome}"

    async def test_no_credentials_to_a_foreign_realm(
        self,
        settings: RegistrySettings,
        loaded_plugins: Plugins,
        proxy: FaultProxy,
        repo: str,
        foreign_address: str,
    ) -> None:
        if settings.password is None and settings.token is None:
            settings = replace(settings, username=_PLANTED_USER, password=_PLANTED_PASSWORD)
        secrets = [s for s in (settings.password, settings.token) if s]
        with _RealmServer(foreign_address) as realm:
            with httpx.Client(timeout=5, trust_env=False) as http:
                assert http.get(f"{realm.url}/probe").status_code == 401  # reachable
            realm.seen.clear()
            challenge = f'Bearer realm="{realm.url}/token",service="elsewhere"'
            # The probe and the first request both meet the foreign challenge.
            proxy.fail(
                None, 401, count=2, code="UNAUTHORIZED", headers={"WWW-Authenticate": challenge}
            )
            digest = Digest.of(os.urandom(32))
            with contextlib.suppress(OcyncError, httpx.HTTPError):
                async with RegistryClient(settings, loaded_plugins) as client:
                    await client.blob_exists(repo, digest)
            leaked = [
                f"{seen.method} {seen.path}"
                for seen in realm.seen
                if seen.authorization or any(secret in seen.path for secret in secrets)
            ]
        assert not leaked, (
            f"the registry's credentials were sent to a token realm on another host "
            f"({realm.url}, named by a 401 challenge): {leaked}"
        )
