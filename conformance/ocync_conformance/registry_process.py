"""Run a real CNCF distribution registry (`docker-registry serve`) as a child process.

The registry gets a config written by us into a private temp dir (never Debian's
/etc/docker/registry/config.yml): filesystem storage there, deletes enabled, and
`http.addr: 127.0.0.1:0`. docker-registry 2.8 logs `listening on 127.0.0.1:PORT` (with
`, tls` appended for TLS), so the kernel picks the port and there is no race to guess one.

Variants (constructor arguments, combinable):
- open (default);
- htpasswd Basic auth (`username`/`password`, bcrypt hash; `set_password()` rotates it live,
  docker-registry re-reads the file when its mtime changes);
- Bearer token auth (`token_server=`; realm/service/issuer/rootcertbundle taken from it);
- TLS (`tls=True`; certificate from a private CA, see `ca_file`).

Plain `subprocess` (not trio) so it is usable from sync pytest fixtures, benchmarks and demos.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import bcrypt
import httpx
import yaml

from ocync_conformance.certs import ServerCert, make_server_cert
from ocync_conformance.images import ChallengeAuth

if TYPE_CHECKING:
    from ocync_conformance.tokenserver import TokenServer

__all__ = [
    "INSTALL_HINT",
    "RegistryNotInstalledError",
    "RegistryProcess",
    "RegistryStartError",
    "find_registry_binary",
]

INSTALL_HINT = (
    "docker-registry (CNCF distribution 2.8) is required for the ocync test registries. "
    "Install it with `sudo apt-get install -y docker-registry skopeo` (Debian/Ubuntu) or "
    "`make install`, or point OCYNC_DOCKER_REGISTRY at a `registry` binary."
)

_LISTEN_RE = re.compile(r"listening on (?:\[?[0-9a-fA-F.:]*?\]?):(\d+)")


class RegistryNotInstalledError(RuntimeError):
    """docker-registry binary not found."""


class RegistryStartError(RuntimeError):
    """docker-registry did not come up; the message carries the tail of its log."""


def find_registry_binary() -> str:
    """Locate the registry binary: $OCYNC_DOCKER_REGISTRY, `docker-registry`, or `registry`.

    Upstream release tarballs name the binary `registry`; Debian names it `docker-registry`.
    """
    explicit = os.environ.get("OCYNC_DOCKER_REGISTRY")
    if explicit:
        found = shutil.which(explicit)
        if found:
            return found
        raise RegistryNotInstalledError(
            f"OCYNC_DOCKER_REGISTRY={explicit!r} not found. " + INSTALL_HINT
        )
    for name in ("docker-registry", "registry"):
        found = shutil.which(name)
        if found:
            return found
    raise RegistryNotInstalledError(INSTALL_HINT)


# Strong references to every child still running: a RegistryProcess dropped without stop(),
# an interrupted session or a failing fixture must not leave docker-registry behind.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _kill_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
        _LIVE.clear()
    for proc in live:
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s; always reap (no zombies)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def _bcrypt_line(username: str, password: str) -> str:
    # Cost 5 (the minimum Go's bcrypt accepts is 4): verification runs on every request,
    # and the default cost 12 would add ~200 ms per request to every Basic-auth test.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}\n"


class RegistryProcess:
    """A running `docker-registry serve` on 127.0.0.1 with a private config and storage.

    Args:
        username, password: the registry's user. Without `token_server` this enables
            htpasswd Basic auth; with it, the user is registered with the token server
            (so `username`/`password` are always "the credentials for this registry").
        users: more users (name -> password), same rules.
        token_server: enable Bearer token auth against this TokenServer.
        tls: serve HTTPS with a cert signed by a private CA (`ca_file`); this also enables
            HTTP/2 via ALPN.
        server_cert: reuse already generated TLS files (saves key generation time).
        workdir: where config, storage, log and certs go (a fresh temp dir by default,
            removed on stop).
        storage_template: a storage dir (e.g. another registry's `storage_dir`) copied into
            this registry's storage before the first start: pre-seeded content in ~ms.
        config_overrides: deep-merged into the generated config (e.g. proxy, notifications).
        start_timeout: seconds to wait for `GET /v2/` to answer.
        start: start immediately (default) or on `start()` / `with`.
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
        tls: bool = False,
        server_cert: ServerCert | None = None,
        workdir: Path | str | None = None,
        storage_template: Path | str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        start_timeout: float = 15.0,
        start: bool = True,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self._users: dict[str, str] = dict(users or {})
        if username is not None and password is not None:
            self._users[username] = password
        if token_server is not None:
            for u, p in self._users.items():
                token_server.add_user(u, p)
        self._username = username
        self.token_server = token_server
        self.tls = tls or server_cert is not None
        self.start_timeout = start_timeout
        self._overrides = dict(config_overrides or {})

        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ocync-registry-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if storage_template is not None and not self.storage_dir.exists():
            shutil.copytree(storage_template, self.storage_dir)
        self._server_cert = server_cert
        if self.tls and self._server_cert is None:
            self._server_cert = make_server_cert(self.workdir / "tls")

        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._htpasswd_mtime_ns = 0
        self._log_offset = 0
        self._ssl_context: ssl.SSLContext | None = None
        if start:
            self.start()

    # -- configuration -----------------------------------------------------------------------

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "storage"

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def log_file(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def htpasswd_file(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def auth(self) -> str:
        """'none', 'htpasswd' or 'token'."""
        if self.token_server is not None:
            return "token"
        return "htpasswd" if self._users else "none"

    @property
    def _htpasswd(self) -> bool:
        return self.auth == "htpasswd"

    def build_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            # text to stderr: easy to grep for the port and to show in failures.
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # Short-lived registries: no background purge goroutine touching storage.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": "127.0.0.1:0",
                # A fixed secret silences the warning and keeps upload state valid on restart.
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.tls:
            assert self._server_cert is not None
            cfg["http"]["tls"] = {
                "certificate": str(self._server_cert.cert_file),
                "key": str(self._server_cert.key_file),
            }
        if self._htpasswd:
            cfg["auth"] = {
                "htpasswd": {"realm": "ocync-test-registry", "path": str(self.htpasswd_file)}
            }
        elif self.token_server is not None:
            ts = self.token_server
            cfg["auth"] = {
                "token": {
                    "realm": ts.realm,
                    "service": ts.service,
                    "issuer": ts.issuer,
                    "rootcertbundle": str(ts.cert_file),
                }
            }
        return _deep_merge(cfg, self._overrides)

    def _write_htpasswd(self) -> None:
        text = "".join(_bcrypt_line(u, p) for u, p in self._users.items())
        tmp = self.htpasswd_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        # Atomic replace: the registry never reads a half-written file.
        os.replace(tmp, self.htpasswd_file)
        # The registry reloads only when the mtime differs; two writes within the same
        # timestamp tick (coarse filesystems) would be missed, so force it strictly forward.
        st = self.htpasswd_file.stat()
        mtime = max(st.st_mtime_ns, self._htpasswd_mtime_ns + 1_000_000)
        os.utime(self.htpasswd_file, ns=(mtime, mtime))
        self._htpasswd_mtime_ns = mtime

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RegistryProcess:
        if self.running:
            return self
        binary = find_registry_binary()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self._htpasswd:
            self._write_htpasswd()
        self.config_file.write_text(yaml.safe_dump(self.build_config(), sort_keys=False))
        # REGISTRY_* variables override the config file; a developer's environment must not
        # leak into the tests (e.g. REGISTRY_HTTP_ADDR set for some other registry).
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        # Restart appends to the same log: only lines after this offset belong to this run.
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "serve", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,  # access log
                stderr=log,  # app log, including "listening on"
                env=env,
                cwd=self.workdir,
            )
        with _LIVE_LOCK:
            _LIVE.add(self._proc)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(cleanup=False)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        offset = self._log_offset
        while self._port is None:
            if self._proc.poll() is not None:
                raise RegistryStartError(
                    f"docker-registry exited with {self._proc.returncode}\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise RegistryStartError("docker-registry did not log its port\n" + self.log_tail())
            text = self.log_file.read_bytes()[offset:].decode(errors="replace")
            m = _LISTEN_RE.search(text)
            if m:
                self._port = int(m.group(1))
                break
            time.sleep(0.01)
        last_error: Exception | None = None
        with httpx.Client(verify=self.verify, timeout=2.0) as client:
            while True:
                if self._proc.poll() is not None:
                    raise RegistryStartError(
                        f"docker-registry exited with {self._proc.returncode}\n" + self.log_tail()
                    )
                try:
                    r = client.get(f"{self.url}/v2/")
                    if r.status_code in (200, 401):
                        return
                    last_error = RuntimeError(f"GET /v2/ -> {r.status_code}")
                except httpx.HTTPError as e:
                    last_error = e
                if time.monotonic() > deadline:
                    raise RegistryStartError(
                        f"GET {self.url}/v2/ did not answer: {last_error!r}\n" + self.log_tail()
                    )
                time.sleep(0.02)

    def stop(self, *, cleanup: bool = True) -> None:
        """Kill the process (SIGTERM, then SIGKILL) and wait; remove the temp dir if we own it."""
        proc, self._proc = self._proc, None
        self._port = None
        if proc is not None:
            _terminate(proc)
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        if cleanup and self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def restart(self) -> RegistryProcess:
        """Stop and start again with the same storage (the port changes)."""
        self.stop(cleanup=False)
        return self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"<RegistryProcess {self.auth}{' tls' if self.tls else ''} {where}>"

    # -- addresses and credentials -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("registry is not running")
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def ca_file(self) -> Path | None:
        """PEM of the private CA that signed the TLS cert (None when not TLS)."""
        return self._server_cert.ca_file if self._server_cert is not None else None

    @property
    def cert_dir(self) -> Path | None:
        """A directory with `ca.crt`, the layout skopeo/containers expect for `--*-cert-dir`."""
        if self.ca_file is None:
            return None
        d = self.workdir / "certs.d"
        if not (d / "ca.crt").exists():
            d.mkdir(exist_ok=True)
            shutil.copyfile(self.ca_file, d / "ca.crt")
        return d

    @property
    def username(self) -> str | None:
        return self._username

    @property
    def password(self) -> str | None:
        return self._users.get(self._username) if self._username is not None else None

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    def set_password(self, password: str, username: str | None = None) -> None:
        """Rotate (or add) a user's password; takes effect without restart.

        htpasswd: rewrites the file (docker-registry reloads it on mtime change);
        token: changes the password at the token server (tokens already issued stay valid).
        """
        user = username if username is not None else self._username
        if user is None or self.auth == "none":
            raise RuntimeError("set_password needs a registry with auth and a username")
        self._users[user] = password
        if self.token_server is not None:
            self.token_server.add_user(user, password)
        else:
            self._write_htpasswd()

    def remove_user(self, username: str) -> None:
        self._users.pop(username, None)
        if self.token_server is not None:
            self.token_server.users.pop(username, None)
        else:
            self._write_htpasswd()

    # -- conveniences ------------------------------------------------------------------------

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What to pass as httpx `verify=`: a context trusting only `ca_file` for TLS.

        For plain HTTP it is False: nothing is verified anyway, and httpx would otherwise
        load the certifi bundle for every client (~30-150 ms each).
        """
        if self.ca_file is None:
            return False
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=str(self.ca_file))
        return self._ssl_context

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client for this registry: base_url, CA trust, and auth.

        htpasswd: Basic with `username`/`password`; token: a small challenge-answering auth
        (`images.ChallengeAuth`) fetching tokens as `username` (anonymous if none).
        """
        kwargs.setdefault("base_url", self.url)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", 30.0)
        if self.auth == "htpasswd" and self.username is not None and self.password is not None:
            kwargs.setdefault("auth", (self.username, self.password))
        elif self.auth == "token":
            kwargs.setdefault("auth", ChallengeAuth(self.username, self.password))
        return httpx.Client(**kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "--- docker-registry log tail ---\n" + "\n".join(text.splitlines()[-lines:])
