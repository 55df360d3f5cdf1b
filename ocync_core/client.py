"""The OCI Distribution client for one registry, over httpx under trio.

Every request goes through `_send`: authorize for the request's scopes, pass the registry's
concurrency gate, send, and on a 401 learn the challenge and retry once. Blobs stream through
`BlobReader`, which hashes on the fly and holds back the final chunk until the digest checks
out, so a consumer (an upload) never receives the complete bytes of a corrupt blob.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Container, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import trio

from ocync_core import __version__, mediatypes
from ocync_core.auth.scopes import repository_scope
from ocync_core.digest import Digest
from ocync_core.errors import (
    BadInput,
    DigestMismatch,
    ManifestError,
    RegistryError,
    TransferError,
)
from ocync_core.http_transport import RegistryTransport
from ocync_core.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageIndex,
    Manifest,
    parse_manifest,
)
from ocync_core.policies import Action, MountMode, Scopes, UploadMode
from ocync_core.registry import RegistrySettings
from ocync_core.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    describe_request,
    is_certificate_error,
    parse_retry_after,
    with_retries,
)
from ocync_core.throttle import RegistryThrottle

if TYPE_CHECKING:
    from ocync_core.plugins import Plugins
    from ocync_core.policies import (
        AuthProvider,
        ExistenceChecker,
        MountPolicy,
        ReadPolicy,
        RepositoryPreparer,
        UploadStrategy,
    )

__all__ = [
    "BlobReader",
    "ManifestHead",
    "MountResult",
    "ReferrersListing",
    "RegistryClient",
    "fallback_tag",
    "is_fallback_tag",
]

log = logging.getLogger(__name__)

_OCTET = {"Content-Type": "application/octet-stream"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MANIFEST_ACCEPT = {"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)}
# Statuses that mean "the HTTPS attempt reached nothing that speaks TLS": fall back to HTTP.
_FALLBACK_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, ssl.SSLError)


@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells without transferring the manifest."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class MountResult:
    """The answer to a mount request: mounted, or an upload session to use instead."""

    mounted: bool
    session: str | None = None


class BlobReader:
    """Streams a blob's bytes, verifying size and digest as they pass.

    The last chunk is released only after the whole blob hashed to its digest: a streaming
    upload fed by `chunks()` is therefore never completed with corrupt content.
    """

    def __init__(self, response: httpx.Response, digest: Digest, size: int | None) -> None:
        self._response = response
        self.digest = digest
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        verifier = self.digest.verifier()
        held: bytes | None = None
        body = _body(self._response).__aiter__()
        while True:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                break
            except httpx.TransportError as exc:
                # Name the blob and where it broke: "ReadError: " alone tells nobody anything.
                source = self._response.request.url.copy_with(query=None)
                raise TransferError(
                    f"blob {self.digest} from {source}: the download broke after "
                    f"{verifier.size} bytes ({type(exc).__name__}: {_describe(exc)})"
                ) from exc
            if not chunk:
                continue
            verifier.update(chunk)
            if self.size is not None and verifier.size > self.size:
                raise DigestMismatch(self.digest, f"more than {self.size} bytes")
            if held is not None:
                yield held
            held = chunk
        if self.size is not None and verifier.size != self.size:
            raise TransferError(
                f"blob {self.digest}: got {verifier.size} bytes, expected {self.size}"
            )
        verifier.verify()
        if held is not None:
            yield held


class RegistryClient:
    """Speaks the OCI Distribution API to one registry."""

    def __init__(self, registry: RegistrySettings, plugins: Plugins) -> None:
        self.settings = registry  # as given, before the plugins filled in the kind
        self.registry = plugins.resolve(registry)
        self.plugins = plugins
        self.http = httpx.AsyncClient(
            transport=RegistryTransport(
                ssl_context=_ssl_context(self.registry),
                max_connections=self.registry.max_concurrent,
            ),
            timeout=httpx.Timeout(
                connect=self.registry.connect_timeout,
                read=self.registry.timeout,
                write=self.registry.timeout,
                pool=None,
            ),
            follow_redirects=False,
            # Blobs and manifests are content-addressed: the bytes must arrive exactly as stored,
            # so no compressing proxy or CDN may re-encode them on the way.
            headers={"User-Agent": f"ocync/{__version__}", "Accept-Encoding": "identity"},
        )
        self.auth: AuthProvider = plugins.auth_provider(self.registry, self.http)
        self.mount_policy: MountPolicy = plugins.mount_policy(self.registry)
        self.upload_strategy: UploadStrategy = plugins.upload_strategy(self.registry)
        self.read_policy: ReadPolicy = plugins.read_policy(self.registry)
        self._existence: ExistenceChecker | None = None
        self._probe_refused = False
        self._preparer: RepositoryPreparer | None = None
        self._preparer_known = False
        self.throttle = RegistryThrottle(
            plugins.throttle_policy(self.registry), self.registry.max_concurrent
        )
        self.retry_policy = RetryPolicy()
        self._base: str | None = None
        self._base_lock = trio.Lock()
        # Learnt from the first referrers request, unless the plugin knows the API is missing.
        self._referrers_api: bool | None = None if self.read_policy.referrers_api else False

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def repository_preparer(self) -> RepositoryPreparer | None:
        """The plugin's repository preparer for this registry, made once (it may hold an SDK
        session whose credential resolution should not be repeated per repository)."""
        if not self._preparer_known:
            self._preparer = self.plugins.repository_preparer(self.registry)
            self._preparer_known = True
        return self._preparer

    @property
    def existence_checker(self) -> ExistenceChecker:
        if self._existence is None:
            self._existence = self.plugins.existence_checker(self.registry, self)
        return self._existence

    # -- connection -------------------------------------------------------------------------

    async def base_url(self) -> str:
        """The base URL that answers `/v2/`, found once (HTTPS first, HTTP for loopback)."""
        async with self._base_lock:
            if self._base is None:
                self._base = await self._probe()
            return self._base

    async def _probe(self) -> str:
        candidates = self.registry.base_urls()
        last: Exception | None = None
        for index, base in enumerate(candidates):
            has_fallback = index + 1 < len(candidates)
            try:
                response = await self._ping(base)
            except (*_FALLBACK_ERRORS, httpx.ConnectTimeout) as exc:
                last = exc
                # A certificate the server presented but we cannot trust means the server
                # speaks TLS: falling back to HTTP would only hide the real problem.
                if has_fallback and not is_certificate_error(exc):
                    log.debug(
                        "%s: %s unreachable (%s), trying next", self.registry.label, base, exc
                    )
                    continue
                break
            if response.status_code == 401:
                await self.auth.challenged(response, frozenset())
            elif response.status_code >= 400 and response.status_code != 404:
                raise RegistryError.from_response(response, what=f"ping {self.registry.label}")
            return base
        hint = ""
        if last is not None and is_certificate_error(last):
            hint = "; give the registry's CA certificate with ca_file (--src/--dest-ca-file)"
        raise TransferError(
            f"registry {self.registry.label}: cannot connect to {base} ({_describe(last)}){hint}"
        )

    async def _ping(self, base: str) -> httpx.Response:
        """GET /v2/, retrying 429 and 5xx answers (a registry that is starting, or busy)."""
        policy = self.retry_policy
        for attempt in range(1, policy.attempts + 1):
            response = await self.http.get(f"{base}/v2/")
            if response.status_code not in RETRYABLE_STATUSES or attempt == policy.attempts:
                return response
            wait = policy.delay(
                attempt,
                parse_retry_after(response.headers.get("Retry-After"), now_wall=time.time()),
            )
            log.info("ping %s answered %d; again in %.1fs", base, response.status_code, wait)
            await trio.sleep(wait)
        raise AssertionError("unreachable")

    async def ping(self) -> str:
        """Reach the registry and learn its auth challenge; returns the base URL used."""
        return await self.base_url()

    # -- the request core -----------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: Scopes,
        *,
        action: Action,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        stream: bool = False,
        replayable: bool = True,
    ) -> httpx.Response:
        """Send one request through the throttle, with authorization and retries.

        429, 408, 5xx and connection errors are retried with backoff (honouring Retry-After);
        a 401 re-authorizes once. A streamed body cannot be sent twice: such a request is
        tried once, and the caller restarts the whole operation (a new upload session).
        """

        async def attempt() -> httpx.Response:
            return await self._authorized(
                method, url, scopes, action, headers, content, stream, replayable
            )

        if not replayable:
            return await attempt()
        return await with_retries(
            attempt, policy=self.retry_policy, describe=describe_request(method, url)
        )

    async def _authorized(
        self,
        method: str,
        url: str | httpx.URL,
        scopes: Scopes,
        action: Action,
        headers: Mapping[str, str] | None,
        content: bytes | AsyncIterator[bytes] | None,
        stream: bool,
        replayable: bool,
    ) -> httpx.Response:
        for attempt in (1, 2):
            request = self.http.build_request(method, url, headers=headers, content=content)
            await self.auth.authorize(request, scopes)
            response = await self._throttled(request, action, stream)
            if response.status_code != 401 or attempt == 2 or not replayable:
                return response
            await response.aread()
            if not await self.auth.challenged(response, scopes):
                return response
            await response.aclose()
        raise AssertionError("unreachable")

    async def _throttled(
        self, request: httpx.Request, action: Action, stream: bool
    ) -> httpx.Response:
        """Hold a throttle slot for the whole exchange: until a streamed body is closed."""
        stack = AsyncExitStack()
        ticket = await stack.enter_async_context(self.throttle.slot(action))
        try:
            response = await self.http.send(request, stream=stream)
        except BaseException:
            await stack.aclose()
            raise
        ticket.observe(response)
        if not stream:
            await stack.aclose()
            return response
        close_body = response.aclose

        async def aclose() -> None:
            try:
                await close_body()
            finally:
                await stack.aclose()

        response.aclose = aclose  # type: ignore[method-assign]
        return response

    async def _url(self, repository: str, tail: str) -> str:
        return f"{await self.base_url()}/v2/{repository}/{tail}"

    @staticmethod
    async def _fail(response: httpx.Response, what: str) -> RegistryError:
        await response.aread()
        error = RegistryError.from_response(response, what=what)
        if response.status_code in (401, 403):
            log.debug("%s refused: %s", what, error)
        return error

    # -- manifests ------------------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        """HEAD a manifest by tag or digest; None when the registry does not have it."""
        url = await self._url(repository, f"manifests/{reference}")
        response = await self._send(
            "HEAD", url, _pull(repository), action=Action.MANIFEST_HEAD, headers=_MANIFEST_ACCEPT
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise await self._fail(response, f"HEAD manifest {repository}:{reference}")
        header = response.headers.get("Docker-Content-Digest")
        if not header:
            # Without the digest header a HEAD is useless for comparison; fetch instead.
            manifest = await self.get_manifest(repository, reference)
            return ManifestHead(manifest.digest, manifest.media_type, len(manifest.raw))
        return ManifestHead(
            Digest.parse(header),
            _bare_type(response.headers.get("Content-Type", "")),
            int(response.headers.get("Content-Length", "0") or 0),
        )

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """GET a manifest, keeping its exact bytes and checking them against every digest given."""
        what = f"manifest {repository}@{reference}"
        url = await self._url(repository, f"manifests/{reference}")
        response = await self._send(
            "GET",
            url,
            _pull(repository),
            action=Action.MANIFEST_GET,
            headers=_MANIFEST_ACCEPT,
            stream=True,
        )
        try:
            if response.status_code != 200:
                raise await self._fail(response, f"GET {what}")
            body = bytearray()
            async for chunk in _body(response):
                body.extend(chunk)
                if len(body) > MAX_MANIFEST_SIZE:
                    raise ManifestError(f"{what} is larger than {MAX_MANIFEST_SIZE} bytes")
        finally:
            await response.aclose()
        raw = bytes(body)
        manifest = parse_manifest(raw, response.headers.get("Content-Type"), what=what)
        if ":" in reference:  # tags never contain ':', so this is a digest
            expected = Digest.parse(reference)
            actual = Digest.of(raw, expected.algorithm)
            if actual != expected:
                raise DigestMismatch(expected, actual, what="manifest")
        header = response.headers.get("Docker-Content-Digest")
        if header:
            claimed = Digest.parse(header)
            if Digest.of(raw, claimed.algorithm) != claimed:
                raise DigestMismatch(claimed, Digest.of(raw, claimed.algorithm), "manifest")
        return manifest

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> Digest:
        """PUT a manifest's exact bytes under a tag or its digest."""
        url = await self._url(repository, f"manifests/{reference}")
        response = await self._send(
            "PUT",
            url,
            _push(repository),
            action=Action.MANIFEST_PUT,
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
        )
        await response.aread()
        if response.status_code not in (200, 201, 202):
            raise RegistryError.from_response(
                response, what=f"PUT manifest {repository}:{reference}"
            )
        header = response.headers.get("Docker-Content-Digest")
        if header and Digest.parse(header) != manifest.digest:
            raise DigestMismatch(manifest.digest, header, what="pushed manifest")
        return manifest.digest

    # -- blobs --------------------------------------------------------------------------------

    async def blob_exists(self, repository: str, digest: Digest) -> int | None:
        """HEAD a blob: its size when present, None when absent."""
        url = await self._url(repository, f"blobs/{digest}")
        response = await self._send("HEAD", url, _pull(repository), action=Action.BLOB_HEAD)
        if response.status_code == 404:
            return None
        if response.status_code in _REDIRECTS and response.headers.get("Location"):
            # Registries on object storage redirect blob HEADs too: present, size over there.
            # The redirect target is another host, so it gets no credentials of ours.
            response = await self.http.head(response.url.join(response.headers["Location"]))
            if response.status_code >= 400:
                return 0  # the registry vouched for it; the storage may refuse HEAD
        if response.status_code != 200:
            raise await self._fail(response, f"HEAD blob {repository}@{digest}")
        return int(response.headers.get("Content-Length", "0") or 0)

    @property
    def probes_existence_by_mount(self) -> bool:
        """Whether a self-mount probe replaces the existence check (see `MountPolicy`)."""
        return (
            self.mount_policy.probe_existence
            and not self._probe_refused
            and bool(getattr(self.existence_checker, "per_blob_requests", False))
        )

    def probe_refused(self, error: RegistryError) -> None:
        """The registry refused a self-mount probe: check existence the plain way from now on."""
        if not self._probe_refused:
            log.info(
                "%s refused a mount from a repository into itself (%s); checking blobs by HEAD",
                self.registry.label,
                error,
            )
        self._probe_refused = True

    async def blobs_exist(self, repository: str, digests: Iterable[Digest]) -> dict[Digest, bool]:
        """Which of these blobs the repository holds, through the plugin's existence checker."""
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}
        return await self.existence_checker.exists(repository, wanted)

    @asynccontextmanager
    async def open_blob(
        self, repository: str, digest: Digest, size: int | None = None
    ) -> AsyncIterator[BlobReader]:
        """Open a blob for streaming; redirects (to a CDN) are followed without our credentials."""
        url: str | httpx.URL = await self._url(repository, f"blobs/{digest}")
        response = await self._send(
            "GET", url, _pull(repository), action=Action.BLOB_GET, stream=True
        )
        for _ in range(5):
            if response.status_code not in _REDIRECTS:
                break
            location = response.headers.get("Location", "")
            await response.aclose()
            url = response.url.join(location)
            # A redirect target is another host: it gets no Authorization header of ours.
            response = await self.http.send(self.http.build_request("GET", url), stream=True)
        try:
            if response.status_code != 200:
                raise await self._fail(response, f"GET blob {repository}@{digest}")
            if size is None and "Content-Length" in response.headers and not _encoded(response):
                size = int(response.headers["Content-Length"])
            yield BlobReader(response, digest, size)
        finally:
            await response.aclose()

    async def mount_blob(self, repository: str, digest: Digest, from_repo: str) -> MountResult:
        """Ask the registry to mount a blob from another repository of the same registry."""
        mode = self.mount_policy.mode
        if mode is MountMode.NEVER:
            return MountResult(False)
        base = await self._url(repository, "blobs/uploads/")
        params = {"mount": str(digest)}
        scopes = _push(repository)
        if mode is MountMode.WITH_FROM:
            params["from"] = from_repo
            scopes = scopes | _pull(from_repo)
        url = httpx.URL(base).copy_merge_params(params)
        response = await self._send("POST", url, scopes, action=Action.MOUNT)
        await response.aread()
        if response.status_code == 201:
            return MountResult(True)
        if response.status_code == 202 and response.headers.get("Location"):
            return MountResult(False, str(response.url.join(response.headers["Location"])))
        if response.status_code in self.mount_policy.not_mounted_statuses:
            return MountResult(False)
        raise RegistryError.from_response(response, what=f"mount {digest} into {repository}")

    async def start_upload(self, repository: str) -> str:
        """Open an upload session; returns its absolute location."""
        url = await self._url(repository, "blobs/uploads/")
        response = await self._send("POST", url, _push(repository), action=Action.UPLOAD_START)
        await response.aread()
        if response.status_code != 202 or not response.headers.get("Location"):
            raise RegistryError.from_response(response, what=f"start upload to {repository}")
        return str(response.url.join(response.headers["Location"]))

    async def upload_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        chunks: AsyncIterator[bytes],
        *,
        session: str | None = None,
    ) -> None:
        """Upload a blob from a stream of chunks, in the registry's upload strategy."""
        location = session or await self.start_upload(repository)
        strategy = self.upload_strategy
        scopes = _push(repository)
        what = f"upload blob {digest} to {repository}"
        if strategy.mode is UploadMode.POST_PUT:
            url = httpx.URL(location).copy_merge_params({"digest": str(digest)})
            headers = {**_OCTET, "Content-Length": str(size)}
            response = await self._send(
                "PUT",
                url,
                scopes,
                action=Action.UPLOAD_FINISH,
                headers=headers,
                content=chunks,
                replayable=False,
            )
        else:
            limit = strategy.max_chunk if strategy.mode is UploadMode.CHUNKED else None
            location = await self._patch_chunks(location, scopes, chunks, limit, what)
            url = httpx.URL(location).copy_merge_params({"digest": str(digest)})
            response = await self._send(
                "PUT", url, scopes, action=Action.UPLOAD_FINISH, headers={**_OCTET}, content=b""
            )
        await response.aread()
        if response.status_code != 201:
            raise RegistryError.from_response(response, what=what)

    async def _patch_chunks(
        self,
        location: str,
        scopes: Scopes,
        chunks: AsyncIterator[bytes],
        limit: int | None,
        what: str,
    ) -> str:
        """PATCH the stream: in one request (limit None), or in chunks of at most `limit`."""
        if limit is None:
            response = await self._send(
                "PATCH",
                location,
                scopes,
                action=Action.UPLOAD_CHUNK,
                headers=_OCTET,
                content=chunks,
                replayable=False,
            )
            return await self._next_location(response, location, what)
        offset = 0
        async for piece in _rechunk(chunks, limit):
            headers = {
                **_OCTET,
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                "Content-Length": str(len(piece)),
            }
            response = await self._send(
                "PATCH",
                location,
                scopes,
                action=Action.UPLOAD_CHUNK,
                headers=headers,
                content=piece,
            )
            location = await self._next_location(response, location, what)
            offset += len(piece)
        return location

    @staticmethod
    async def _next_location(response: httpx.Response, current: str, what: str) -> str:
        await response.aread()
        if response.status_code != 202:
            raise RegistryError.from_response(response, what=what)
        return str(response.url.join(response.headers.get("Location", current)))

    # -- tags and referrers -------------------------------------------------------------------

    async def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """Every tag of a repository, following `Link` pagination."""
        url: str | httpx.URL = await self._url(repository, "tags/list")
        if page_size:
            url = httpx.URL(url).copy_merge_params({"n": str(page_size)})
        tags: list[str] = []
        seen: set[str] = set()
        while True:
            seen.add(str(url))
            response = await self._send("GET", url, _pull(repository), action=Action.TAG_LIST)
            await response.aread()
            if response.status_code != 200:
                raise RegistryError.from_response(response, what=f"list tags of {repository}")
            try:
                page = response.json().get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise TransferError(f"list tags of {repository}: malformed JSON ({exc})") from exc
            tags.extend(str(tag) for tag in page)
            following = response.links.get("next", {}).get("url")
            if not following:
                return tags
            try:
                url = response.url.join(following)
            except httpx.InvalidURL as exc:
                raise TransferError(
                    f"list tags of {repository}: the registry's Link header names no URL "
                    f"({_show_briefly(following)}: {exc})"
                ) from exc
            here = response.url
            if (url.scheme, url.host, url.port) != (here.scheme, here.host, here.port):
                # Pages of a tag list never live elsewhere: a registry that says so is broken
                # or hostile, and its "next page" could be any server.
                log.warning(
                    "list tags of %s: not following a Link to another server (%s)",
                    repository,
                    _show_briefly(str(url)),
                )
                return tags
            if str(url) in seen:  # a registry whose links loop must not keep us forever
                raise TransferError(
                    f"list tags of {repository}: the Link header leads back to a page already "
                    f"read ({_show_briefly(str(url))})"
                )

    async def referrers(self, repository: str, digest: Digest) -> list[Descriptor]:
        """Manifests whose `subject` is `digest`: the referrers API, else the fallback tag."""
        return (await self.referrers_listing(repository, digest)).descriptors

    async def referrers_listing(
        self, repository: str, digest: Digest, *, known_tags: Container[str] | None = None
    ) -> ReferrersListing:
        """The referrers of `digest`, and whether they came from the API or the fallback tag.

        `known_tags`: the repository's tags as just listed, when the caller has them; the
        fallback tag is then looked for there rather than asked for with a HEAD.
        """
        if self._referrers_api is not False:
            url = await self._url(repository, f"referrers/{digest}")
            response = await self._send(
                "GET",
                url,
                _pull(repository),
                action=Action.REFERRERS,
                headers={"Accept": mediatypes.OCI_INDEX},
            )
            await response.aread()
            content_type = _bare_type(response.headers.get("Content-Type", ""))
            if response.status_code == 200 and content_type in (mediatypes.OCI_INDEX, ""):
                self._referrers_api = True
                index = parse_manifest(response.content, mediatypes.OCI_INDEX, what="referrers")
                return ReferrersListing(list(getattr(index, "manifests", ())), via_api=True)
            if response.status_code not in (200, 404, 400, 405):
                raise RegistryError.from_response(
                    response, what=f"referrers of {repository}@{digest}"
                )
            # A registry with the API answers 200 (an empty index) for an unknown subject, so
            # anything else means it has none: ask once per run, then go to the fallback tag.
            self._referrers_api = False
        index = await self._fallback_index(repository, digest, known_tags)
        if index is None:
            return ReferrersListing([], via_api=False)
        return ReferrersListing(list(index.manifests), via_api=False, fallback_index=index)

    async def _fallback_index(
        self, repository: str, digest: Digest, known_tags: Container[str] | None
    ) -> ImageIndex | None:
        tag = fallback_tag(digest)
        if known_tags is None:
            if await self.head_manifest(repository, tag) is None:
                return None
        elif tag not in known_tags:
            return None
        try:
            index = await self.get_manifest(repository, tag)
        except RegistryError as error:
            if error.status == 404:  # removed since the tags were listed
                return None
            raise
        # Some registries resolve the fallback tag to the subject itself: that is no referrer.
        if index.digest == digest or not isinstance(index, ImageIndex):
            return None
        return index


def fallback_tag(digest: Digest) -> str:
    """The referrers fallback tag schema: `sha256-<hex>`."""
    return f"{digest.algorithm}-{digest.hex}"


_FALLBACK_TAG = re.compile(r"(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})")


def is_fallback_tag(tag: str) -> bool:
    """True for `sha256-<hex>` tags: referrers indexes, synced with their subject, not as tags."""
    return _FALLBACK_TAG.fullmatch(tag) is not None


@dataclass(frozen=True)
class ReferrersListing:
    descriptors: list[Descriptor]
    via_api: bool
    fallback_index: ImageIndex | None = None


def _encoded(response: httpx.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")


def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response's bytes as stored: raw, unless a server encoded them despite our Accept."""
    return response.aiter_bytes() if _encoded(response) else response.aiter_raw()


def _ssl_context(registry: RegistrySettings) -> Callable[[], ssl.SSLContext]:
    """What makes the registry's TLS context when its first TLS connection needs it.

    Settings are checked (and a `ca_file` loaded) now, so a bad one fails before any request.
    """
    verify = _tls_context(registry)
    if verify is True:
        return _default_ssl_context
    context = httpx.create_ssl_context(verify=verify)
    return lambda: context


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds: every registry with the default TLS
    # settings shares one context (an SSLContext is safe to share between connections).
    return httpx.create_ssl_context()


def _tls_context(registry: RegistrySettings) -> ssl.SSLContext | bool:
    if not registry.tls_verify:
        log.warning("registry %s: TLS certificates are NOT verified", registry.label)
        return False
    if registry.ca_file:
        try:
            return ssl.create_default_context(cafile=registry.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise BadInput(
                f"registry {registry.label}: cannot load ca_file {registry.ca_file!r} ({exc})"
            ) from exc
    return True


def _show_briefly(text: str, limit: int = 120) -> str:
    """Registry-supplied text for a message: escaped, and cut short."""
    shown = repr(text[:limit])
    return shown + "…" if len(text) > limit else shown


def _describe(error: BaseException | None) -> str:
    """The most telling message in an exception chain (httpx often wraps an empty one)."""
    seen, text = error, ""
    while seen is not None:
        text = str(seen) or text
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {seen.verify_message or seen}"
        seen = seen.__cause__ or seen.__context__
    return text or (type(error).__name__ if error else "unknown error")


def _pull(repository: str) -> Scopes:
    return frozenset({repository_scope(repository, "pull")})


def _push(repository: str) -> Scopes:
    return frozenset({repository_scope(repository, "pull", "push")})


def _bare_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


async def _rechunk(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Regroup a stream into pieces of exactly `limit` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= limit:
            yield bytes(buffer[:limit])
            del buffer[:limit]
    if buffer:
        yield bytes(buffer)
