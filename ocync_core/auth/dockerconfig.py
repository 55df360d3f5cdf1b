"""Credentials from a Docker CLI `config.json`: `credHelpers`, `credsStore`, then `auths`.

Everything here blocks (file reads, credential-helper subprocesses); async callers run it via
`trio.to_thread.run_sync`. Errors name the helper and the host, never what a helper printed on
stdout, because that is where secrets travel.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocync_core.auth.credentials import Credentials
from ocync_core.errors import AuthenticationError, ConfigError

__all__ = ["DOCKER_HUB_SERVER", "HELPER_TIMEOUT_VARIABLE", "DockerConfig", "default_config_path"]

# The key `docker login` writes for Docker Hub, and what it passes to credential helpers.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
# A helper reporting a missing entry says this (docker-credential-helpers' ErrCredentialsNotFound).
_NOT_FOUND = "credentials not found"
# docker-credential-helpers' convention: this username means the secret is an identity token.
_IDENTITY_TOKEN_USER = "<token>"
DEFAULT_HELPER_TIMEOUT = 20.0
# A helper that hangs (a locked keychain waiting for a prompt nobody answers) holds up every
# image that needs its registry: unattended mirrors may want to give up sooner.
HELPER_TIMEOUT_VARIABLE = "OCYNC_CREDENTIAL_HELPER_TIMEOUT"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _helper_timeout(env: Mapping[str, str]) -> float:
    """Seconds a credential helper may take: `OCYNC_CREDENTIAL_HELPER_TIMEOUT`, else 20."""
    raw = env.get(HELPER_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_HELPER_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{HELPER_TIMEOUT_VARIABLE}: expected seconds > 0, got {raw[:40]!r}")
    return seconds


def _host_of_key(key: str) -> str:
    """`https://host/v1/`, `http://host`, `host/path` and `host` all name `host`."""
    rest = key.strip()
    for prefix in ("https://", "http://"):
        if rest.lower().startswith(prefix):
            rest = rest[len(prefix) :]
            break
    return rest.split("/", 1)[0].lower()


def _candidate_hosts(host: str) -> tuple[str, ...]:
    host = _host_of_key(host)
    if host in _DOCKER_HUB_HOSTS:
        return _DOCKER_HUB_HOSTS
    return (host,)


class DockerConfig:
    """A Docker CLI configuration file, read lazily (first lookup), at most once.

    `path` None means the default location; a missing file is an empty configuration.
    `helper_timeout` bounds each credential-helper run (seconds of wall time; this runs in a
    worker thread, outside trio's clock); None means `$OCYNC_CREDENTIAL_HELPER_TIMEOUT`, else
    20 seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        helper_timeout: float | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_config_path(env)
        self.helper_timeout = helper_timeout
        self._env = dict(os.environ if env is None else env)
        self._data: dict[str, Any] | None = None

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, helper_timeout: float | None = None
    ) -> DockerConfig:
        """A configuration given as data (tests, or config embedded elsewhere)."""
        config = cls(os.devnull, helper_timeout=helper_timeout)
        config._data = dict(data)
        return config

    def __repr__(self) -> str:
        return f"DockerConfig({str(self.path)!r})"

    # -- loading --------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            raise ConfigError(f"cannot read Docker config {self.path}: {exc.strerror}") from None
        data: Any = {}
        if raw.strip():
            try:
                data = json.loads(raw)
            except ValueError:
                # No excerpt: the file holds base64 credentials.
                raise ConfigError(f"Docker config {self.path} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Docker config {self.path} is not a JSON object")
        self._data = data
        return data

    # -- lookup ---------------------------------------------------------------------------

    def credentials_for(self, host: str) -> Credentials | None:
        """Credentials for a registry host, or None when the configuration has none.

        Order: `credHelpers[host]`, then `credsStore`, then `auths`. A helper that answers
        "credentials not found" lets the lookup fall through to the next source.
        """
        data = self._load()
        candidates = _candidate_hosts(host)
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _host_of_key(key) in candidates and isinstance(helper, str) and helper:
                    found = self.run_helper(helper, self._server_url(host, key))
                    if found is not None:
                        return found
                    break
        store = data.get("credsStore")
        if isinstance(store, str) and store:
            found = self.run_helper(store, self._server_url(host, None))
            if found is not None:
                return found
        return self._from_auths(data.get("auths"), candidates)

    @staticmethod
    def _server_url(host: str, key: str | None) -> str:
        # Helpers store entries under what `docker login` passed them: the Hub URL for
        # Docker Hub, the bare host otherwise (or the exact credHelpers key when we have one).
        if _host_of_key(host) in _DOCKER_HUB_HOSTS:
            return DOCKER_HUB_SERVER
        return key if key is not None else host

    @staticmethod
    def _from_auths(auths: object, candidates: tuple[str, ...]) -> Credentials | None:
        if not isinstance(auths, dict):
            return None
        by_host: dict[str, Mapping[str, Any]] = {}
        for key, entry in auths.items():
            if isinstance(entry, dict):
                by_host.setdefault(_host_of_key(str(key)), entry)
        for host in candidates:
            entry = by_host.get(host)
            if entry is not None:
                found = _entry_credentials(entry, host)
                if found is not None:
                    return found
        return None

    def run_helper(self, helper: str, server_url: str) -> Credentials | None:
        """Run `docker-credential-<helper> get` with the server URL on stdin."""
        program = f"docker-credential-{helper}"
        where = f"credential helper {program} for {server_url}"
        timeout = self.helper_timeout
        if timeout is None:
            timeout = _helper_timeout(self._env)
        try:
            proc = subprocess.Popen(
                [program, "get"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                # Own process group, so a timeout kills the helper's children too (a shell
                # script's `sleep`, a keychain prompt) instead of leaving our pipes open.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise AuthenticationError(f"{where}: {program} not found on PATH") from None
        except OSError as exc:
            raise AuthenticationError(f"{where}: cannot run ({exc.strerror})") from None
        try:
            out, err = proc.communicate(server_url.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise AuthenticationError(f"{where}: no answer within {timeout:g} s") from None
        said = err.decode("utf-8", "replace").strip().splitlines()
        if proc.returncode != 0:
            # "Not found" arrives on stdout (docker-credential-helpers) or stderr (others);
            # matching a fixed phrase reveals nothing of what else stdout held.
            if _NOT_FOUND in out.decode("utf-8", "replace").lower() or any(
                _NOT_FOUND in line.lower() for line in said
            ):
                return None
            detail = f": {said[0][:200]}" if said else ""
            raise AuthenticationError(f"{where} failed with exit code {proc.returncode}{detail}")
        try:
            doc = json.loads(out)
        except ValueError:
            raise AuthenticationError(f"{where} did not answer with JSON") from None
        if not isinstance(doc, dict):
            raise AuthenticationError(f"{where} did not answer with a JSON object")
        username, secret = doc.get("Username"), doc.get("Secret")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise AuthenticationError(f"{where} answered without a Username and Secret")
        if not secret:
            return None
        if username == _IDENTITY_TOKEN_USER:
            return Credentials("", "", identity_token=secret)
        return Credentials(username, secret)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.communicate()


def _entry_credentials(entry: Mapping[str, Any], host: str) -> Credentials | None:
    username = entry.get("username")
    password = entry.get("password")
    identity = entry.get("identitytoken") or None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError(
                f"Docker config entry for {host}: 'auth' is not base64 of user:password"
            ) from None
        if ":" not in decoded:
            raise AuthenticationError(
                f"Docker config entry for {host}: 'auth' is not base64 of user:password"
            )
        username, password = decoded.split(":", 1)
    if not isinstance(identity, str):
        identity = None
    if not isinstance(username, str):
        username = ""
    if not isinstance(password, str):
        password = ""
    if not (username or password or identity):
        return None  # `{}`: written by `docker login` when a credsStore holds the secret
    return Credentials(username, password, identity_token=identity)
