"""An Amazon ECR (private) emulator: moto for the control plane, a real registry for the data.

Pieces (all on 127.0.0.1, kernel-chosen ports):

- **moto** (`ThreadedMotoServer`, port 0) holds repositories (tag mutability), images and IAM/STS.
- **Control plane** (`control_endpoint`): a thin HTTP proxy in front of moto. It counts calls by
  action (`X-Amz-Target` for ECR, `Action=` for query-protocol services such as STS), and
  answers itself what moto gets wrong or cannot know:
  `GetAuthorizationToken` (the data plane's *current* password, `expiresAt` now + 12 h; moto's is
  in 2015), `BatchCheckLayerAvailability` (from the registry's real blob state, at most 100
  digests per call), `GetAccountSetting`/`PutAccountSetting` for `BLOB_MOUNTING` (moto has
  none). Everything else (CreateRepository, DescribeRepositories, PutImage, DescribeImages,
  PutImageTagMutability, STS AssumeRole, ...) goes to moto.
- **Data plane** (`endpoint`): docker-registry 2.8 with htpasswd user `AWS`, behind a proxy that
  does what ECR does and docker-registry does not: Basic auth with the current token only (no
  `/v2/token`: 404, counted), repositories must exist in moto (`NAME_UNKNOWN`), immutable tags
  follow moto's `imageTagMutability` (`TAG_INVALID`), `BLOB_MOUNTING` off turns a mount POST
  into a plain upload start (202), per-action throttling (429), and every successful manifest
  PUT mirrored into moto with the real digest so DescribeImages agrees.

Only the stdlib is imported at module level: boto3, moto and the registry are imported on
`start()`. The `ecr_emulator` pytest fixture is defined when pytest is importable.

moto keeps its state per *process* (all `ThreadedMotoServer`s share the backends): the first
emulator started while no other is running resets moto, so tests start from nothing.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ocync_conformance.proxy import (
    _BLOB_RE,
    _MANIFEST_RE,
    _TAGS_RE,
    _UPLOAD_SESSION_RE,
    _UPLOAD_START_RE,
    classify,
)
from ocync_conformance.proxy import _HOP_BY_HOP as _PROXY_HOP_BY_HOP

if TYPE_CHECKING:
    from ocync_conformance.registry_process import RegistryProcess

__all__ = [
    "ECR_ACTIONS",
    "DataRequest",
    "EcrEmulator",
    "data_action",
    "ecr_emulator",
]

ECR_ACTIONS = frozenset(
    {
        "PutImage",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "BatchCheckLayerAvailability",
        "GetDownloadUrlForLayer",
        "BatchGetImage",
        "GetAuthorizationToken",
    }
)

TOKEN_LIFETIME = 12 * 3600
MAX_LAYER_DIGESTS = 100
_ECR_TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
_AMZ_JSON = "application/x-amz-json-1.1"
_CHUNK = 1024 * 1024

# The emulator re-frames bodies itself, so their framing headers are not copied either.
_HOP_BY_HOP = _PROXY_HOP_BY_HOP | {"content-length", "expect"}


def data_action(method: str, path: str) -> tuple[str, str | None, str | None]:
    """(ECR action, repository, reference) of a data-plane request.

    Actions are ECR API names where one applies (manifest PUT -> PutImage, GET/HEAD ->
    BatchGetImage; blob GET/HEAD -> GetDownloadUrlForLayer; upload POST (mount or not) ->
    InitiateLayerUpload, PATCH -> UploadLayerPart, PUT -> CompleteLayerUpload), else
    "Ping" (/v2/), "Token" (/v2/token), "ListImages" (tags/list) or "Other".
    """
    method = method.upper()
    if path in ("/v2", "/v2/"):
        return "Ping", None, None
    if path.rstrip("/") in ("/v2/token", "/token", "/v2/auth"):
        return "Token", None, None
    if m := _MANIFEST_RE.match(path):
        act = {"PUT": "PutImage", "GET": "BatchGetImage", "HEAD": "BatchGetImage"}.get(
            method, "Other"
        )
        return act, m["name"], unquote(m["ref"])
    if m := _UPLOAD_START_RE.match(path):
        return ("InitiateLayerUpload" if method == "POST" else "Other"), m["name"], None
    if m := _UPLOAD_SESSION_RE.match(path):
        act = {"PATCH": "UploadLayerPart", "PUT": "CompleteLayerUpload"}.get(method, "Other")
        return act, m["name"], None
    if m := _BLOB_RE.match(path):
        act = "GetDownloadUrlForLayer" if method in ("GET", "HEAD") else "Other"
        return act, m["name"], None
    if m := _TAGS_RE.match(path):
        return "ListImages", m["name"], None
    return "Other", None, None


@dataclass(frozen=True)
class DataRequest:
    """One data-plane request. `kind` is the finer HTTP shape (e.g. "blob_head", "mount")."""

    started: float
    method: str
    path: str
    status: int
    action: str
    kind: str
    auth_scheme: str | None  # "Basic", "Bearer" or None
    repository: str | None = None
    note: str | None = None  # what the emulator did itself (e.g. "mount stripped", "throttled")


def _kind(method: str, target: str) -> str:
    return str(classify(method, target))


def _registry_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class _RateLimiter:
    """Per-action token buckets, as AWS enforces API rate quotas: `rate` tokens a second and a
    bucket of one second's worth, so a steady client at the rate is never refused while a
    burst above it is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, float] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # action -> (tokens, last refill)
        self.throttled: Counter[str] = Counter()

    def set(self, action: str, per_second: float | None) -> None:
        with self._lock:
            if per_second is None:
                self._limits.pop(action, None)
                self._buckets.pop(action, None)
            else:
                self._limits[action] = per_second
                self._buckets[action] = (per_second, time.monotonic())

    def admit(self, action: str) -> bool:
        now = time.monotonic()
        with self._lock:
            rate = self._limits.get(action)
            if rate is None:
                return True
            tokens, last = self._buckets[action]
            tokens = min(rate, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[action] = (tokens, now)
                self.throttled[action] += 1
                return False
            self._buckets[action] = (tokens - 1.0, now)
            return True


# --------------------------------------------------------------------------------------------
# shared HTTP bits


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    emulator: EcrEmulator


class _BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command.upper() != "HEAD":
            self.wfile.write(body)


def _forward(
    netloc: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(netloc, timeout=60)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    sent_host = False
    for k, v in headers:
        lk = k.lower()
        if lk in _HOP_BY_HOP:
            continue
        if lk == "host":
            sent_host = True
        conn.putheader(k, v)
    if not sent_host:
        conn.putheader("Host", netloc)
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    resp = conn.getresponse()
    resp._ocync_conn = conn  # type: ignore[attr-defined]  # closed with the response
    return resp


# --------------------------------------------------------------------------------------------
# control plane


class _ControlHandler(_BaseHandler):
    def _handle(self) -> None:
        emu = self.server.emulator
        body = self._read_body()
        target = self.headers.get("X-Amz-Target") or ""
        action = ""
        if target.startswith(_ECR_TARGET_PREFIX):
            action = target[len(_ECR_TARGET_PREFIX) :]
        elif target:
            action = target.rpartition(".")[2]
        else:
            with contextlib.suppress(Exception):
                form = parse_qs(body.decode() or urlsplit(self.path).query)
                action = form.get("Action", [""])[0]
        action = action or "Unknown"
        emu._count_api(action)
        if not emu._limiter.admit(action):
            err = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            self._reply(400, json.dumps(err).encode(), _AMZ_JSON)
            return
        if target.startswith(_ECR_TARGET_PREFIX):
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                params = {}
            own = emu._control_answer(action, params)
            if own is not None:
                status, payload = own
                self._reply(status, json.dumps(payload).encode(), _AMZ_JSON)
                return
        try:
            resp = _forward(emu._moto_netloc, self.command, self.path, self.headers.items(), body)
        except OSError as e:
            self._reply(502, json.dumps({"message": f"moto: {e}"}).encode())
            return
        data = resp.read()
        resp.close()
        resp._ocync_conn.close()  # type: ignore[attr-defined]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command.upper() != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


# --------------------------------------------------------------------------------------------
# data plane


class _DataHandler(_BaseHandler):
    def _handle(self) -> None:
        emu = self.server.emulator
        method = self.command.upper()
        target = self.path
        path, _, query = target.partition("?")
        action, repo, ref = data_action(method, path)
        kind = _kind(method, target)
        authz = self.headers.get("Authorization") or ""
        scheme = authz.split(" ", 1)[0] if authz else None
        status = 0
        note: str | None = None
        started = time.monotonic()
        emu._request_started()
        try:
            body = self._read_body()
            reply = self._precheck(emu, action, kind, authz, repo, ref)
            if reply is not None:
                status, code, message, note, hdrs = reply
                self._reply(status, _registry_error(code, message), headers=hdrs)
                return
            if kind == "mount" and not emu.blob_mounting:
                params = [
                    (k, v)
                    for k, v in (p.partition("=")[::2] for p in query.split("&") if p)
                    if k not in ("mount", "from")
                ]
                target = path + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
                note = "mount stripped (BLOB_MOUNTING disabled)"
            status = self._relay(emu, method, target, body, action, repo, ref)
        finally:
            emu._log_data(
                DataRequest(
                    started=started,
                    method=method,
                    path=self.path,
                    status=status,
                    action=action,
                    kind=kind,
                    auth_scheme=scheme,
                    repository=repo,
                    note=note,
                )
            )

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    def _precheck(
        self,
        emu: EcrEmulator,
        action: str,
        kind: str,
        authz: str,
        repo: str | None,
        ref: str | None,
    ) -> tuple[int, str, str, str, dict[str, str]] | None:
        if action == "Token":
            return 404, "NOT_FOUND", "404 page not found", "no token endpoint on ECR", {}
        if not emu._authorized(authz):
            challenge = {
                "WWW-Authenticate": f'Basic realm="https://{emu.host}/",service="ecr.amazonaws.com"'
            }
            if authz:
                msg = "Your authorization token has expired. Reauthenticate and try again."
                return 401, "DENIED", msg, "bad or expired token", challenge
            return 401, "UNAUTHORIZED", "Not Authorized", "no credentials", challenge
        if action in ECR_ACTIONS and not emu._limiter.admit(action):
            return 429, "TOOMANYREQUESTS", "Rate exceeded", "throttled", {}
        if repo is not None and action in ("PutImage", "InitiateLayerUpload"):
            mutability = emu._repo_mutability(repo)
            if mutability is None:
                msg = (
                    f"The repository with name '{repo}' does not exist in the registry "
                    f"with id '{emu.account_id}'"
                )
                return 404, "NAME_UNKNOWN", msg, "repository unknown to moto", {}
            if (
                action == "PutImage"
                and ref is not None
                and not ref.startswith("sha256:")
                and mutability == "IMMUTABLE"
                and emu._registry_has_manifest(repo, ref)
            ):
                msg = (
                    f"The image tag '{ref}' already exists in the '{repo}' repository and "
                    "cannot be overwritten because the repository is immutable."
                )
                return 400, "TAG_INVALID", msg, "immutable tag", {}
        return None

    def _relay(
        self,
        emu: EcrEmulator,
        method: str,
        target: str,
        body: bytes,
        action: str,
        repo: str | None,
        ref: str | None,
    ) -> int:
        reg = emu._registry_netloc
        try:
            resp = _forward(reg, method, target, self.headers.items(), body)
        except OSError as e:
            self._reply(502, _registry_error("UNAVAILABLE", f"upstream: {e}"))
            return 502
        try:
            if action == "PutImage" and resp.status == 201 and repo is not None:
                digest = resp.getheader("Docker-Content-Digest")
                media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                emu._mirror_manifest(repo, ref, body, media_type, digest)
            self.send_response(resp.status)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in _HOP_BY_HOP or lk in ("server", "date"):
                    continue
                if lk in ("location", "link"):
                    v = v.replace(f"http://{reg}", emu.endpoint)
                self.send_header(k, v)
            no_body = method == "HEAD" or resp.status in (204, 304)
            if length is not None:
                self.send_header("Content-Length", length)
            elif not no_body:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                resp.read()
                return resp.status
            while chunk := resp.read1(_CHUNK):
                if length is None:
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
            return resp.status
        finally:
            resp.close()
            resp._ocync_conn.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# the emulator


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


def _start_http(handler: type[BaseHTTPRequestHandler], emu: EcrEmulator) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    server.emulator = emu
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


class EcrEmulator:
    """Amazon ECR (private) on localhost. Use as a context manager, or `start()`/`stop()`.

    `host` is the registry identity for ocync configs; `endpoint` the data plane (the
    registry's `endpoint:` setting); `env()` points the AWS SDK's ECR and STS clients at
    `control_endpoint`.
    """

    account_id = "123456789012"  # moto's default account
    region = "us-east-1"

    _alive = 0
    _alive_lock = threading.Lock()

    def __init__(self, *, workdir: Path | str | None = None, blob_mounting: bool = False) -> None:
        self.host = f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com"
        self.endpoint = ""
        self.control_endpoint = ""
        self.blob_mounting = blob_mounting
        self.api_calls: Counter[str] = Counter()
        self.data_log: list[DataRequest] = []
        self.password = secrets.token_urlsafe(24)
        self.token_expires_at = 0.0
        self.rotations = 0
        self.mirror_errors: list[str] = []
        self._workdir = workdir
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._limiter = _RateLimiter()
        self._moto: Any = None
        self._moto_netloc = ""
        self._ecr: Any = None  # boto3 client straight to moto (not counted)
        self._registry: RegistryProcess | None = None
        self._registry_netloc = ""
        self._servers: list[_Server] = []
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> EcrEmulator:
        if self._started:
            return self
        import boto3
        from moto import server as moto_server
        from moto.server import ThreadedMotoServer

        from ocync_conformance.registry_process import RegistryProcess

        self._started = True
        try:
            # moto's request handler logs every request to stderr whatever `verbose` says.
            moto_server.MotoRequestHandler.log_request = _quiet  # type: ignore[method-assign]
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self._moto_netloc = f"{host}:{port}"
            with EcrEmulator._alive_lock:
                first = EcrEmulator._alive == 0
                EcrEmulator._alive += 1
            if first:  # moto's backends are per process: start clean
                conn = http.client.HTTPConnection(self._moto_netloc, timeout=10)
                conn.request("POST", "/moto-api/reset")
                conn.getresponse().read()
                conn.close()
            self._ecr = boto3.client(
                "ecr",
                region_name=self.region,
                endpoint_url=f"http://{self._moto_netloc}",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            kwargs: dict[str, Any] = {"username": "AWS", "password": self.password}
            if self._workdir is not None:
                kwargs["workdir"] = self._workdir
            self._registry = RegistryProcess(**kwargs)
            self._registry_netloc = f"127.0.0.1:{self._registry.port}"
            control = _start_http(_ControlHandler, self)
            self._servers.append(control)
            self.control_endpoint = f"http://127.0.0.1:{control.server_address[1]}"
            data = _start_http(_DataHandler, self)
            self._servers.append(data)
            self.endpoint = f"http://127.0.0.1:{data.server_address[1]}"
            self.token_expires_at = time.time() + TOKEN_LIFETIME
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers.clear()
        if self._registry is not None:
            self._registry.stop()
            self._registry = None
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
            with EcrEmulator._alive_lock:
                EcrEmulator._alive -= 1

    def __enter__(self) -> EcrEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EcrEmulator {self.host} data={self.endpoint} control={self.control_endpoint}>"

    # -- configuration ----------------------------------------------------------------------

    @property
    def registry(self) -> RegistryProcess:
        """The docker-registry behind the data plane (direct access bypasses every check)."""
        assert self._registry is not None, "start() first"
        return self._registry

    @property
    def ecr(self) -> Any:
        """A boto3 ECR client talking to moto directly (calls are not counted)."""
        return self._ecr

    def env(self) -> dict[str, str]:
        """Environment for an AWS SDK (ocync's ECR plugin) to use this emulator."""
        return {
            "AWS_ENDPOINT_URL_ECR": self.control_endpoint,
            "AWS_ENDPOINT_URL_STS": self.control_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_repository(self, name: str, *, immutable: bool = False) -> None:
        self._ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE" if immutable else "MUTABLE",
        )

    def set_blob_mounting(self, enabled: bool) -> None:
        self.blob_mounting = enabled

    def rotate_token(self) -> str:
        """A new password; the old one stops working at the data plane immediately."""
        password = secrets.token_urlsafe(24)
        with self._lock:
            self.password = password
            self.token_expires_at = time.time() + TOKEN_LIFETIME
            self.rotations += 1
        self.registry.set_password(password)
        return password

    def token(self) -> str:
        """The current authorization token (what GetAuthorizationToken returns)."""
        return base64.b64encode(f"AWS:{self.password}".encode()).decode()

    def throttle(self, action: str, per_second: float | None) -> None:
        """Over `per_second` requests of this ECR action in any second: data plane 429
        (`TOOMANYREQUESTS`), control plane 400 `ThrottlingException`. None removes it."""
        self._limiter.set(action, per_second)

    # -- counting ---------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no data-plane request is in flight (a client has its response slightly
        before the emulator has logged it). True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def data_count(self, action: str, status: int | None = None) -> int:
        """Data-plane requests of this ECR action (or `kind`, e.g. "blob_head", "mount"),
        after waiting (up to 2 s) for requests in flight to be logged."""
        self.wait_idle(2.0)
        with self._lock:
            return sum(
                1
                for r in self.data_log
                if (r.action == action or r.kind == action)
                and (status is None or r.status == status)
            )

    @property
    def throttled(self) -> Counter[str]:
        """Throttled requests by action (both planes)."""
        return self._limiter.throttled

    def reset_counts(self) -> None:
        with self._lock:
            self.api_calls.clear()
            self.data_log.clear()

    def _count_api(self, action: str) -> None:
        with self._lock:
            self.api_calls[action] += 1

    def _request_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _log_data(self, rec: DataRequest) -> None:
        with self._idle:
            self.data_log.append(rec)
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    # -- internals --------------------------------------------------------------------------

    def _authorized(self, authz: str) -> bool:
        scheme, _, cred = authz.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, pw = base64.b64decode(cred.strip()).decode().partition(":")
        except ValueError:
            return False
        with self._lock:
            return user == "AWS" and pw == self.password

    def _registry_auth(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self.token()}"}

    def _registry_head(self, path: str, accept: str | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self._registry_netloc, timeout=30)
        headers = self._registry_auth()
        if accept:
            headers["Accept"] = accept
        conn.request("HEAD", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp

    def _registry_has_manifest(self, repo: str, ref: str) -> bool:
        accept = ", ".join(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        return self._registry_head(f"/v2/{repo}/manifests/{ref}", accept).status == 200

    def _repo_mutability(self, repo: str) -> str | None:
        try:
            out = self._ecr.describe_repositories(repositoryNames=[repo])
        except self._ecr.exceptions.RepositoryNotFoundException:
            return None
        return str(out["repositories"][0].get("imageTagMutability", "MUTABLE"))

    def _mirror_manifest(
        self, repo: str, ref: str | None, body: bytes, media_type: str, digest: str | None
    ) -> None:
        kwargs: dict[str, Any] = {
            "repositoryName": repo,
            "imageManifest": body.decode(),
        }
        if media_type:
            kwargs["imageManifestMediaType"] = media_type
        if digest:
            kwargs["imageDigest"] = digest
        if ref is not None and not ref.startswith("sha256:"):
            kwargs["imageTag"] = ref
        try:
            self._ecr.put_image(**kwargs)
        except Exception as e:  # already there (same tag+digest) or moto disagreeing
            code = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
            if code != "ImageAlreadyExistsException":
                self.mirror_errors.append(f"{repo}:{ref}: {code}: {e}")

    def _control_answer(
        self, action: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        if action == "GetAuthorizationToken":
            with self._lock:
                token, expires = self.token(), self.token_expires_at
            data = {"authorizationToken": token, "expiresAt": expires}
            data["proxyEndpoint"] = f"https://{self.host}"
            return 200, {"authorizationData": [data]}
        if action == "BatchCheckLayerAvailability":
            return self._batch_check(params)
        if action in ("GetAccountSetting", "PutAccountSetting"):
            name = params.get("name", "")
            if name != "BLOB_MOUNTING":
                return 400, {
                    "__type": "InvalidParameterException",
                    "message": f"Unsupported account setting: {name}",
                }
            if action == "PutAccountSetting":
                self.blob_mounting = str(params.get("value", "")).upper() == "ENABLED"
            return 200, {"name": name, "value": "ENABLED" if self.blob_mounting else "DISABLED"}
        return None

    def _batch_check(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        repo = params.get("repositoryName", "")
        digests = params.get("layerDigests") or []
        if not digests or len(digests) > MAX_LAYER_DIGESTS:
            return 400, {
                "__type": "InvalidParameterException",
                "message": (
                    "1 validation error detected: Value at 'layerDigests' failed to satisfy "
                    f"constraint: Member must have length between 1 and {MAX_LAYER_DIGESTS}"
                ),
            }
        if self._repo_mutability(repo) is None:
            return 400, {
                "__type": "RepositoryNotFoundException",
                "message": (
                    f"The repository with name '{repo}' does not exist in the registry with "
                    f"id '{self.account_id}'"
                ),
            }
        layers, failures = [], []
        for d in digests:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", d):
                failures.append(
                    {
                        "layerDigest": d,
                        "failureCode": "InvalidLayerDigest",
                        "failureReason": "Invalid layer digest",
                    }
                )
                continue
            resp = self._registry_head(f"/v2/{repo}/blobs/{d}")
            if resp.status == 200:
                layers.append(
                    {
                        "layerDigest": d,
                        "layerAvailability": "AVAILABLE",
                        "layerSize": int(resp.getheader("Content-Length") or 0),
                    }
                )
            else:
                failures.append(
                    {
                        "layerDigest": d,
                        "failureCode": "MissingLayerDigest",
                        "failureReason": "Could not find the layer digest",
                    }
                )
        return 200, {"layers": layers, "failures": failures}


# --------------------------------------------------------------------------------------------
# pytest fixture (only when pytest is importable; export it from the kit's pytest plugin)

try:
    import pytest
except ImportError:  # pragma: no cover - the emulator works without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def ecr_emulator(
        registry_binary: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[EcrEmulator]:
        """A running EcrEmulator (moto + docker-registry + proxies); stopped afterwards.

        Skips (via `registry_binary`) when docker-registry is missing; skips when moto or
        boto3 are not installed.
        """
        pytest.importorskip("boto3")
        pytest.importorskip("moto.server")
        emu = EcrEmulator(workdir=tmp_path_factory.mktemp("ecr-emulator"))
        emu.start()
        try:
            yield emu
        finally:
            emu.stop()
else:  # pragma: no cover
    ecr_emulator = None  # type: ignore[assignment]
