"""docker-registry plus the parts of the OCI distribution spec it lacks, as a small HTTP front.

docker-registry 2.8 has no referrers API (OCI 1.1) and ignores `n` on a tag list, so neither
ocync's referrers lookup nor its tag pagination could be exercised against it.
`ReferrersRegistry(upstream)` listens on 127.0.0.1 (kernel-chosen port) and forwards every
request to `upstream` (a docker-registry 2.8), streaming bodies both ways, except:

- a manifest PUT is read whole (manifests are at most a few MiB). When the registry stored it
  and its JSON names a `subject`, the manifest's descriptor (mediaType, digest, size,
  artifactType — for an image manifest without one, its config's mediaType — and
  annotations) is recorded under (repository, subject digest), and the answer carries
  `OCI-Subject: <subject digest>`: the registry indexed it, no fallback tag is needed;
- `GET`/`HEAD /v2/<name>/referrers/<digest>` is answered from those records as an OCI image
  index, empty for a subject nobody refers to (the API never answers 404), filtered by
  `?artifactType=` with `OCI-Filters-Applied: artifactType`, and 400 for a malformed digest;
- a manifest DELETE by digest that the registry accepted drops that manifest from the
  listings of its repository;
- `GET /v2/<name>/tags/list?n=&last=` is cut into pages from the registry's full list: tags
  in lexical order after `last`, at most `n`, with a `Link: <...>; rel="next"` while more
  remain.

The records live in memory, like the storage of the registry started next to it for a test
run. Requests reach the registry with their own Host header, so the absolute URLs it answers
with (upload `Location`s) point back at whoever asked. The front checks no credentials: it
stands before an open registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["OCI_INDEX", "ReferrersRegistry"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_CHUNK = 1024 * 1024
_MAX_MANIFEST = 4 * 1024 * 1024

_NAME = r"(?P<name>[^?#]+?)"
_MANIFEST_RE = re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[^/]+)$")
_REFERRERS_RE = re.compile(rf"^/v2/{_NAME}/referrers/(?P<digest>[^/]+)$")
_TAGS_RE = re.compile(rf"^/v2/{_NAME}/tags/list$")
_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {"expect"}


class _HasUrl(Protocol):
    @property
    def url(self) -> str: ...


class ReferrersRegistry:
    """The referrers API in front of a registry at `upstream` (a base URL or a `.url` holder).

    Serves from construction until `stop()` (or the end of its `with` block).
    """

    def __init__(self, upstream: str | _HasUrl) -> None:
        base = upstream if isinstance(upstream, str) else upstream.url
        parts = urlsplit(base)
        if parts.scheme != "http" or not parts.netloc:
            raise ValueError(f"upstream must be a plain http base URL, not {base!r}")
        self.upstream = f"http://{parts.netloc}"
        self._upstream_netloc = parts.netloc
        self._lock = threading.Lock()
        # (repository, subject digest) -> referrer digest -> descriptor, in push order.
        self._referrers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.front = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ReferrersRegistry-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> ReferrersRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the index of referrers -------------------------------------------------------------

    def record(self, repository: str, manifest: bytes, media_type: str, digest: str) -> str | None:
        """Index a stored manifest under its subject; returns the subject digest, if any."""
        try:
            doc = json.loads(manifest)
        except ValueError:
            return None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
            return None
        descriptor: dict[str, Any] = {
            "mediaType": doc.get("mediaType") or media_type,
            "digest": digest,
            "size": len(manifest),
        }
        config = doc.get("config")
        artifact_type = doc.get("artifactType")
        if not artifact_type and isinstance(config, dict):
            artifact_type = config.get("mediaType")  # the spec's rule for image manifests
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if doc.get("annotations"):
            descriptor["annotations"] = doc["annotations"]
        with self._lock:
            self._referrers.setdefault((repository, subject["digest"]), {})[digest] = descriptor
        return str(subject["digest"])

    def forget(self, repository: str, digest: str) -> None:
        """A deleted manifest refers to nothing any more."""
        with self._lock:
            for (repo, _), listed in self._referrers.items():
                if repo == repository:
                    listed.pop(digest, None)

    def referrers(
        self, repository: str, subject: str, artifact_types: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests naming `subject`, optionally of these artifact types."""
        with self._lock:
            listed = list(self._referrers.get((repository, subject), {}).values())
        if artifact_types:
            listed = [d for d in listed if d.get("artifactType") in artifact_types]
        return listed


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _upstream: http.client.HTTPConnection | None = None

    @property
    def front(self) -> ReferrersRegistry:
        return self.server.front  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the FaultProxy in front keeps the request log

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def _handle(self) -> None:
        method = self.command.upper()
        path, _, query = self.path.partition("?")
        referrers = _REFERRERS_RE.match(path)
        if referrers and method in ("GET", "HEAD"):
            self._drain()
            self._answer_referrers(referrers["name"], referrers["digest"], query)
            return
        tags = _TAGS_RE.match(path)
        if tags and method == "GET" and query:
            self._drain()
            self._tag_page(tags["name"], parse_qs(query))
            return
        manifest = _MANIFEST_RE.match(path)
        if manifest and method == "PUT":
            self._put_manifest(manifest["name"])
            return
        status = self._forward(method, self._body())
        if manifest and method == "DELETE" and status == 202 and ":" in manifest["ref"]:
            self.front.forget(manifest["name"], manifest["ref"])

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # -- the two requests answered here -----------------------------------------------------

    def _answer_referrers(self, repository: str, digest: str, query: str) -> None:
        if not _DIGEST_RE.match(digest):
            error = {"errors": [{"code": "DIGEST_INVALID", "message": f"bad digest {digest}"}]}
            self._reply(400, json.dumps(error).encode(), {"Content-Type": "application/json"})
            return
        wanted = parse_qs(query).get("artifactType")
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.front.referrers(repository, digest, wanted),
        }
        headers = {"Content-Type": OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        self._reply(200, json.dumps(index).encode(), headers)

    def _tag_page(self, repository: str, query: dict[str, list[str]]) -> None:
        response = self._send("GET", [], 0, path=f"/v2/{repository}/tags/list")
        answer = response.read()
        self._release(response)
        if response.status != 200:
            kept = self._response_headers(response)
            self._reply(response.status, answer, dict(kept))
            return
        doc = json.loads(answer)
        last = (query.get("last") or [""])[0]
        remaining = sorted(tag for tag in doc.get("tags") or [] if tag > last)
        size = int((query.get("n") or [str(len(remaining))])[0])
        page = remaining[:size]
        headers = {"Content-Type": "application/json"}
        if len(remaining) > size and page:
            following = urlencode({"n": size, "last": page[-1]})
            headers["Link"] = f'</v2/{repository}/tags/list?{following}>; rel="next"'
        self._reply(200, json.dumps({"name": doc.get("name"), "tags": page}).encode(), headers)

    def _put_manifest(self, repository: str) -> None:
        body = b"".join(self._body())
        if len(body) > _MAX_MANIFEST:
            self._reply(413, b"", {})
            return
        media_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        response = self._send("PUT", [body], len(body))
        answer = response.read()
        headers = self._response_headers(response)
        if response.status == 201:
            digest = response.getheader("Docker-Content-Digest") or (
                "sha256:" + hashlib.sha256(body).hexdigest()
            )
            subject = self.front.record(repository, body, media_type, digest)
            if subject is not None:
                headers.append(("OCI-Subject", subject))
        headers.append(("Content-Length", str(len(answer))))
        self._write_head(response.status, headers)
        self.wfile.write(answer)
        self._release(response)

    # -- forwarding -------------------------------------------------------------------------

    def _body(self) -> Iterator[bytes]:
        """The request body, de-chunked, in pieces."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                while size > 0:
                    data = self.rfile.read(min(size, _CHUNK))
                    if not data:
                        raise ConnectionError("client closed mid-body")
                    size -= len(data)
                    yield data
                self.rfile.readline(3)
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(remaining, _CHUNK))
            if not data:
                raise ConnectionError("client closed mid-body")
            remaining -= len(data)
            yield data

    def _drain(self) -> None:
        for _ in self._body():
            pass

    def _send(
        self,
        method: str,
        body: Iterator[bytes] | list[bytes],
        length: int | None,
        path: str | None = None,
    ) -> http.client.HTTPResponse:
        """Send this request (or another `path`) upstream with `body` (Content-Length `length`,
        else chunked)."""
        has_body = length != 0 and (
            length is not None
            or "Transfer-Encoding" in self.headers
            or int(self.headers.get("Content-Length") or 0) > 0
        )
        if has_body and length is None and "Content-Length" in self.headers:
            length = int(self.headers["Content-Length"])
        for attempt in (1, 2):
            fresh = self._upstream is None
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(self.front._upstream_netloc)
            conn = self._upstream
            try:
                conn.putrequest(
                    method, path or self.path, skip_host=True, skip_accept_encoding=True
                )
                for key, value in self.headers.items():
                    if key.lower() not in _NOT_FORWARDED and key.lower() != "content-length":
                        conn.putheader(key, value)
                if has_body and length is not None:
                    conn.putheader("Content-Length", str(length))
                elif has_body:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for data in body if has_body else ():
                    conn.send(data if length is not None else b"%x\r\n%s\r\n" % (len(data), data))
                if has_body and length is None:
                    conn.send(b"0\r\n\r\n")
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._upstream = None
                # A kept-alive connection the registry closed meanwhile: retry what we can.
                if attempt == 2 or fresh or has_body:
                    raise
        raise AssertionError("unreachable")

    def _forward(self, method: str, body: Iterator[bytes]) -> int:
        response = self._send(method, body, None)
        headers = self._response_headers(response)
        length = response.getheader("Content-Length")
        no_body = method == "HEAD" or response.status in (204, 304)
        if length is not None:
            headers.append(("Content-Length", length))
        elif not no_body:
            headers.append(("Transfer-Encoding", "chunked"))
        self._write_head(response.status, headers)
        if no_body:
            response.read()
        else:
            while data := response.read1(_CHUNK):
                self.wfile.write(
                    data if length is not None else b"%x\r\n%s\r\n" % (len(data), data)
                )
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
        self._release(response)
        return response.status

    def _release(self, response: http.client.HTTPResponse) -> None:
        # Closing a fully read response frees the kept-alive connection for the next request.
        response.close()
        if response.will_close and self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _response_headers(self, response: http.client.HTTPResponse) -> list[tuple[str, str]]:
        here = f"http://{self.headers.get('Host') or self.front.host}"
        return [
            (key, value.replace(self.front.upstream, here))
            for key, value in response.getheaders()
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length"
        ]

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        head = [*headers.items(), ("Content-Length", str(len(body)))]
        if not any(key.lower() == "docker-distribution-api-version" for key in headers):
            head.append(("Docker-Distribution-Api-Version", "registry/2.0"))
        self._write_head(status, head)
        if self.command.upper() != "HEAD":
            self.wfile.write(body)

    def _write_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
