"""Build real OCI images in an OCI image layout, and put them into registries.

Images are real: gzip-compressed tar layers holding actual files, a config whose
`rootfs.diff_ids` are the sha256 of the uncompressed tars, image manifests, and (by default)
a multi-arch index. Everything is deterministic for a given `seed` (tar mtime 0, gzip mtime 0,
seeded pseudo-random file content), so the same arguments give the same digests.

Getting them into a registry:
- `seed_registry()` runs `skopeo copy --all --preserve-digests` (the independent reference
  client; what a user would do);
- `push_image()` / `push_blob()` / `push_manifest()` speak the distribution API over a sync
  httpx client, for tests that need precise control (specific bytes, partial images, no
  subprocess).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import random
import re
import shutil
import ssl
import subprocess
import tarfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "REF_NAME_ANNOTATION",
    "BlobInfo",
    "ChallengeAuth",
    "LayoutImage",
    "PlatformImage",
    "SkopeoError",
    "build_image_layout",
    "build_single_image_layout",
    "head_manifest_digest",
    "push_blob",
    "push_image",
    "push_manifest",
    "seed_registry",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# docker-registry 2.8 answers a manifest GET/HEAD without the right Accept with 404 (OCI) or
# a schema1 conversion/400 (Docker v2); always send all of them.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

_MEDIA = {
    "oci": (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
    "docker": (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
}

Flavor = Literal["oci", "docker"]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(obj: Any) -> bytes:
    # Deliberately NOT the compact/canonical form a Python tool would re-serialize to
    # (indent=3 and a trailing newline): a mirror that re-encodes manifests instead of copying
    # bytes verbatim changes the digest, and the tests notice.
    return (json.dumps(obj, indent=3) + "\n").encode()


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PlatformImage:
    """One single-platform image manifest inside a layout."""

    platform: str  # "os/arch[/variant]"
    manifest: BlobInfo
    config: BlobInfo
    layers: tuple[BlobInfo, ...]
    diff_ids: tuple[str, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def blob_digests(self) -> tuple[str, ...]:
        return (self.config.digest, *(layer.digest for layer in self.layers))


@dataclass(frozen=True)
class LayoutImage:
    """A tagged image in an OCI layout: an index over `children`, or a single manifest."""

    path: Path
    tag: str
    top: BlobInfo  # what the tag points to (index, or the manifest for single-platform)
    children: tuple[PlatformImage, ...]
    flavor: Flavor = "oci"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Digest of what the tag resolves to."""
        return self.top.digest

    @property
    def media_type(self) -> str:
        return self.top.media_type

    @property
    def is_index(self) -> bool:
        return self.top.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)

    @property
    def index_digest(self) -> str | None:
        return self.top.digest if self.is_index else None

    @property
    def child_digests(self) -> tuple[str, ...]:
        return tuple(c.digest for c in self.children)

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Every config and layer blob, deduplicated, in a stable order."""
        seen: dict[str, None] = {}
        for c in self.children:
            for d in c.blob_digests:
                seen.setdefault(d, None)
        return tuple(seen)

    @property
    def manifest_digests(self) -> tuple[str, ...]:
        """The index (if any) and every image manifest."""
        return ((self.top.digest,) if self.is_index else ()) + self.child_digests

    @property
    def oci_ref(self) -> str:
        """The skopeo/containers image name: `oci:<path>:<tag>`."""
        return f"oci:{self.path}:{self.tag}"

    def read_blob(self, digest: str) -> bytes:
        return blob_path(self.path, digest).read_bytes()

    @property
    def manifest_bytes(self) -> bytes:
        return self.read_blob(self.top.digest)


def blob_path(layout: Path | str, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return Path(layout) / "blobs" / algo / hexpart


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    p = blob_path(layout, digest)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return digest


def _split_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def _tar_layer(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A deterministic tar: fixed mtime/owner/mode, parent directories first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: dict[str, None] = {}
        for name, _ in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.setdefault("/".join(parts[:i]), None)
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = 0
            tar.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 0
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _layer_files(rng: random.Random, index: int, size: int, label: str) -> list[tuple[str, bytes]]:
    # Random bytes: incompressible, so the compressed blob size tracks `size` (useful for
    # byte-count assertions and benchmarks); plus a small text file so the layer is a
    # believable filesystem diff.
    return [
        (f"opt/ocync/layer{index}.txt", f"ocync conformance layer {index} ({label})\n".encode()),
        (f"opt/ocync/layer{index}.bin", rng.randbytes(size)),
    ]


def _build_platform(
    layout: Path,
    platform: str,
    layer_sizes: Sequence[int],
    seed: int,
    shared_layers: int,
    flavor: Flavor,
    annotations: Mapping[str, str] | None,
) -> PlatformImage:
    _, manifest_mt, config_mt, layer_mt = _MEDIA[flavor]
    plat = _split_platform(platform)
    layers: list[BlobInfo] = []
    diff_ids: list[str] = []
    for i, size in enumerate(layer_sizes):
        # Leading `shared_layers` are identical across platforms (a common base), the rest
        # differ per platform, as in real multi-arch images.
        label = "shared" if i < shared_layers else platform
        rng = random.Random(f"{seed}:{label}:{i}")
        tar_bytes = _tar_layer(_layer_files(rng, i, size, label))
        gz = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
        layers.append(BlobInfo(_write_blob(layout, gz), len(gz), layer_mt))
        diff_ids.append(sha256_digest(tar_bytes))

    config_obj: dict[str, Any] = {
        "created": "1970-01-01T00:00:00Z",
        **plat,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.ocync.seed": str(seed)},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"ocync conformance layer {i}"}
            for i in range(len(layer_sizes))
        ],
    }
    config_bytes = _json_bytes(config_obj)
    config = BlobInfo(_write_blob(layout, config_bytes), len(config_bytes), config_mt)

    manifest_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_mt,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
    if annotations and flavor == "oci":
        manifest_obj["annotations"] = dict(annotations)
    mbytes = _json_bytes(manifest_obj)
    manifest = BlobInfo(_write_blob(layout, mbytes), len(mbytes), manifest_mt)
    return PlatformImage(platform, manifest, config, tuple(layers), tuple(diff_ids))


def _register_tag(layout: Path, top: BlobInfo, tag: str, platform: str | None) -> None:
    """Write oci-layout and add (or replace) `tag` in the layout's index.json."""
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_file = layout / "index.json"
    if index_file.exists():
        index = json.loads(index_file.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index["manifests"] = [
        m
        for m in index.get("manifests", [])
        if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    desc: dict[str, Any] = {
        "mediaType": top.media_type,
        "digest": top.digest,
        "size": top.size,
        "annotations": {REF_NAME_ANNOTATION: tag},
    }
    if platform is not None:
        desc["platform"] = _split_platform(platform)
    index["manifests"].append(desc)
    index_file.write_text(json.dumps(index, indent=2) + "\n")


def build_image_layout(
    path: Path | str,
    *,
    tag: str = "v1",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    layer_sizes: Sequence[int] = (4096, 32768),
    seed: int = 0,
    shared_layers: int = 0,
    flavor: Flavor = "oci",
    annotations: Mapping[str, str] | None = None,
) -> LayoutImage:
    """Build a multi-arch image (an index over one manifest per platform) tagged `tag`.

    `path` may already hold a layout: the tag is added (or replaced) and blobs are shared,
    so several tags/images can live in one layout. `flavor="docker"` builds a Docker v2
    manifest list + schema2 manifests instead of OCI media types.
    """
    layout = Path(path)
    layout.mkdir(parents=True, exist_ok=True)
    index_mt = _MEDIA[flavor][0]
    children = tuple(
        _build_platform(layout, p, layer_sizes, seed, shared_layers, flavor, annotations)
        for p in platforms
    )
    index_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": index_mt,
        "manifests": [
            {
                "mediaType": c.manifest.media_type,
                "digest": c.manifest.digest,
                "size": c.manifest.size,
                "platform": _split_platform(c.platform),
            }
            for c in children
        ],
    }
    if annotations and flavor == "oci":
        index_obj["annotations"] = dict(annotations)
    ibytes = _json_bytes(index_obj)
    top = BlobInfo(_write_blob(layout, ibytes), len(ibytes), index_mt)
    _register_tag(layout, top, tag, None)
    return LayoutImage(layout, tag, top, children, flavor)


def build_single_image_layout(
    path: Path | str,
    *,
    tag: str = "v1",
    platform: str = "linux/amd64",
    layer_sizes: Sequence[int] = (4096, 32768),
    seed: int = 0,
    flavor: Flavor = "oci",
    annotations: Mapping[str, str] | None = None,
) -> LayoutImage:
    """Build a single-platform image: the tag points directly at an image manifest."""
    layout = Path(path)
    layout.mkdir(parents=True, exist_ok=True)
    child = _build_platform(layout, platform, layer_sizes, seed, 0, flavor, annotations)
    _register_tag(layout, child.manifest, tag, platform)
    return LayoutImage(layout, tag, child.manifest, (child,), flavor)


# --------------------------------------------------------------------------------------------
# a minimal registry auth for the helpers below

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


class ChallengeAuth(httpx.Auth):
    """Answer a registry's 401 challenge: Basic, or Bearer via the token realm.

    Deliberately small (test helper, not ocync's auth): remembers the last token and
    re-challenges when the registry refuses it. `username=None` fetches anonymous tokens.
    """

    requires_response_body = True

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self._basic = httpx.BasicAuth(username, password or "") if username is not None else None
        self._token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic" and self._basic is not None:
            yield from self._basic.auth_flow(request)
            return
        if scheme.lower() != "bearer":
            return
        params = dict(_PARAM_RE.findall(rest))
        query = {k: params[k] for k in ("service", "scope") if k in params}
        token_request = httpx.Request("GET", params["realm"], params=query)
        if self._basic is not None:
            token_request = next(self._basic.auth_flow(token_request))
        token_response = yield token_request
        if token_response.status_code != 200:
            return  # surface the original 401 to the caller
        body = token_response.json()
        self._token = body.get("token") or body.get("access_token")
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


# --------------------------------------------------------------------------------------------
# skopeo seeding


class SkopeoError(RuntimeError):
    """skopeo failed; the message has its stderr."""


def seed_registry(
    layout_path: Path | str,
    tag: str,
    registry_host: str,
    repository: str,
    *,
    dest_tag: str | None = None,
    tls_verify: bool = False,
    cert_dir: Path | str | None = None,
    creds: tuple[str, str] | None = None,
    all_platforms: bool = True,
    preserve_digests: bool = True,
    timeout: float = 120.0,
) -> str:
    """Copy `oci:<layout>:<tag>` to `docker://<host>/<repository>:<dest_tag or tag>`.

    Returns the digest the registry reports for the pushed tag (HEAD, full Accept list) and,
    with `preserve_digests`, checks it equals the layout's digest for `tag`.

    `tls_verify=False` is what plain-http registries need (skopeo then also allows http);
    for a TLS registry pass `cert_dir=registry.cert_dir` (and `tls_verify=True`): the
    digest check afterwards uses https exactly when `tls_verify` or `cert_dir` is given.
    """
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise SkopeoError(
            "skopeo is required to seed test registries: `sudo apt-get install -y skopeo` "
            "or `make install`"
        )
    layout = Path(layout_path).resolve()
    media_type = _layout_tag_descriptor(layout, tag).get("mediaType")
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST):
        # skopeo's oci: transport skips index.json entries with Docker media types
        # ("no descriptor found for reference").
        raise SkopeoError(
            f"{layout}:{tag} has Docker media types, which skopeo's oci: transport cannot "
            "read; use push_image() instead"
        )
    dest = f"docker://{registry_host}/{repository}:{dest_tag or tag}"
    cmd = [skopeo, "--insecure-policy", "copy", "--retry-times", "0"]
    if all_platforms:
        cmd.append("--all")
    if preserve_digests:
        cmd.append("--preserve-digests")
    cmd.append(f"--dest-tls-verify={'true' if tls_verify else 'false'}")
    if cert_dir is not None:
        cmd += ["--dest-cert-dir", str(cert_dir)]
    if creds is not None:
        cmd += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    else:
        # Never pick up the developer's ~/.docker or auth.json credentials.
        cmd.append("--dest-no-creds")
    cmd += ["--quiet", f"oci:{layout}:{tag}", dest]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        # Do not leak the password into test output.
        shown = (
            " ".join(cmd).replace(f"{creds[0]}:{creds[1]}", "<creds>") if creds else " ".join(cmd)
        )
        raise SkopeoError(f"{shown} failed ({proc.returncode}):\n{proc.stderr}")

    scheme = "https" if tls_verify or cert_dir is not None else "http"
    verify: Any = tls_verify  # plain http: False also skips loading the certifi bundle
    if cert_dir is not None:
        ca = Path(cert_dir) / "ca.crt"
        verify = ssl.create_default_context(cafile=str(ca)) if ca.exists() else True
    auth = ChallengeAuth(*creds) if creds is not None else ChallengeAuth()
    with httpx.Client(base_url=f"{scheme}://{registry_host}", verify=verify, auth=auth) as c:
        pushed = head_manifest_digest(c, repository, dest_tag or tag)
    if preserve_digests:
        expected = _layout_tag_digest(layout, tag)
        if pushed != expected:
            raise SkopeoError(f"{dest}: registry has {pushed}, layout has {expected}")
    return pushed


def _layout_tag_descriptor(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get(REF_NAME_ANNOTATION) == tag:
            return dict(m)
    raise KeyError(f"tag {tag!r} not in {layout}/index.json")


def _layout_tag_digest(layout: Path, tag: str) -> str:
    return str(_layout_tag_descriptor(layout, tag)["digest"])


# --------------------------------------------------------------------------------------------
# direct pushes over httpx


@contextlib.contextmanager
def _as_client(target: httpx.Client | str) -> Iterator[httpx.Client]:
    if isinstance(target, httpx.Client):
        yield target
    else:
        with httpx.Client(base_url=target, timeout=30.0) as c:
            yield c


def head_manifest_digest(target: httpx.Client | str, repository: str, reference: str) -> str:
    """`Docker-Content-Digest` of a manifest HEAD sent with the full Accept list."""
    with _as_client(target) as c:
        r = c.head(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"]


def push_blob(
    target: httpx.Client | str,
    repository: str,
    data: bytes,
    *,
    digest: str | None = None,
) -> str:
    """Monolithic upload (POST then PUT ?digest=) and return the digest.

    `target` is an httpx.Client with `base_url` (e.g. `RegistryProcess.client()`) or a base URL.
    `digest` may be given deliberately wrong to provoke DIGEST_INVALID.
    The body goes on the PUT, not the POST: docker-registry 2.8 ignores a body on the POST.
    """
    digest = digest or sha256_digest(data)
    with _as_client(target) as c:
        r = c.post(f"/v2/{repository}/blobs/uploads/")
        if r.status_code != 202:
            raise httpx.HTTPStatusError(
                f"blob upload POST -> {r.status_code}: {r.text}", request=r.request, response=r
            )
        location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        r = c.put(
            f"{location}{sep}digest={digest}",
            content=data,
            # docker-registry 2.8 rejects a blob PUT without this Content-Type (400).
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code != 201:
            raise httpx.HTTPStatusError(
                f"blob upload PUT -> {r.status_code}: {r.text}", request=r.request, response=r
            )
        return r.headers.get("Docker-Content-Digest", digest)


def push_manifest(
    target: httpx.Client | str,
    repository: str,
    reference: str,
    body: bytes,
    media_type: str | None = None,
) -> str:
    """PUT a manifest (bytes verbatim) by tag or digest; return the registry's digest.

    `media_type` defaults to the manifest's own `mediaType` field.
    """
    if media_type is None:
        media_type = json.loads(body).get("mediaType")
        if not media_type:
            raise ValueError("manifest has no mediaType; pass media_type=")
    with _as_client(target) as c:
        r = c.put(
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if r.status_code != 201:
            raise httpx.HTTPStatusError(
                f"manifest PUT -> {r.status_code}: {r.text}", request=r.request, response=r
            )
        return r.headers.get("Docker-Content-Digest", sha256_digest(body))


def push_image(
    target: httpx.Client | str,
    repository: str,
    image: LayoutImage,
    *,
    tag: str | None = None,
) -> str:
    """Push every blob and manifest of `image` over HTTP (no skopeo); tag it; return digest.

    Children are pushed by digest before the index because the registry verifies that an
    index's children (and a manifest's blobs) exist.
    """
    with _as_client(target) as c:
        for d in image.blob_digests:
            r = c.head(f"/v2/{repository}/blobs/{d}")
            if r.status_code != 200:
                push_blob(c, repository, image.read_blob(d), digest=d)
        if image.is_index:
            for child in image.children:
                push_manifest(
                    c,
                    repository,
                    child.digest,
                    image.read_blob(child.digest),
                    child.manifest.media_type,
                )
        return push_manifest(
            c, repository, tag or image.tag, image.manifest_bytes, image.top.media_type
        )
