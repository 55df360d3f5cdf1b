"""Manifest models that keep the exact bytes they were parsed from.

A manifest's identity is the digest of its bytes, so ocync never re-serialises one: the models
are for reading fields (which blobs, which children), and `raw` is what gets pushed. The only
document ocync writes itself is a platform-filtered index (`build_index`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ocync_core import mediatypes
from ocync_core.digest import Digest
from ocync_core.errors import BadInput, InvalidDigest, ManifestError

__all__ = [
    "MAX_MANIFEST_SIZE",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "Manifest",
    "Platform",
    "build_index",
    "parse_manifest",
]

# The limit registries themselves apply (distribution, ECR, GAR); anything larger is hostile.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_PLATFORM_PART = re.compile(r"[A-Za-z0-9._-]+")


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy, so a frozen model cannot be changed behind its back."""
    return MappingProxyType(dict(mapping))


def _optional_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return value


def _string_map(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    value = doc.get(key)
    if value is None:
        return _frozen({})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where}: {key} must be an object of strings")
    return _frozen(value)


def _string_list(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: {key} must be an array of strings")
    return tuple(value)


@dataclass(frozen=True)
class Platform:
    """The platform an index child runs on; `linux/arm64/v8` on the command line."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/architecture[/variant]`, as given by a user."""
        parts = text.split("/")
        if not 2 <= len(parts) <= 3 or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
            raise BadInput(
                f"platform {text[:100]!r} must be os/architecture[/variant], "
                "e.g. linux/amd64 or linux/arm64/v8"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, doc: Any, where: str = "platform") -> Platform:
        """Read a descriptor's `platform` object; ManifestError naming `where` if malformed."""
        if not isinstance(doc, dict):
            raise ManifestError(f"{where}: must be an object")
        os_, arch = doc.get("os"), doc.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise ManifestError(f"{where}: os and architecture must be strings")
        return cls(
            os_,
            arch,
            _optional_str(doc, "variant", where),
            _optional_str(doc, "os.version", where),
            _string_list(doc, "os.features", where),
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, other: Platform) -> bool:
        """Same os and architecture; the variant only counts when both sides name one."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not (self.variant and other.variant) or self.variant == other.variant


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest, size, and what the referrer says about it."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def __hash__(self) -> int:
        # Annotations are left out (a mapping is not hashable); equal descriptors still hash equal.
        return hash((self.media_type, self.digest, self.size, self.platform, self.artifact_type))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "") -> Descriptor:
        """Read a descriptor object; the error names `where` (e.g. `manifest layers[2]`)."""
        where = where or "descriptor"
        if not isinstance(doc, dict):
            raise ManifestError(f"{where}: must be an object, got {type(doc).__name__}")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestError(f"{where}: mediaType must be a non-empty string")
        digest_text = doc.get("digest")
        if not isinstance(digest_text, str):
            raise ManifestError(f"{where}: digest must be a string")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        size = doc.get("size")
        if type(size) is not int or size < 0:
            raise ManifestError(f"{where}: size must be a non-negative integer, got {size!r:.40}")
        platform_doc = doc.get("platform")
        platform = None
        if platform_doc is not None:
            platform = Platform.from_json(platform_doc, f"{where} platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=platform,
            annotations=_string_map(doc, "annotations", where),
            artifact_type=_optional_str(doc, "artifactType", where),
            urls=_string_list(doc, "urls", where),
        )


@dataclass(frozen=True)
class ImageManifest:
    """One image (or artifact): a config blob and layers. `raw` is the only thing pushed."""

    raw: bytes
    media_type: str
    digest: Digest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Every blob the manifest needs in the target before it can be pushed."""
        return (self.config, *self.layers)

    @property
    def is_index(self) -> bool:
        return False


@dataclass(frozen=True)
class ImageIndex:
    """A list of manifests (multi-platform image, artifact set). `raw` is the only thing pushed."""

    raw: bytes
    media_type: str
    digest: Digest
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen(self.annotations))

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def is_index(self) -> bool:
        return True


Manifest = ImageManifest | ImageIndex


def _kind(media_type: str | None) -> str | None:
    if media_type is None:
        return None
    if mediatypes.is_index(media_type):
        return "index"
    if mediatypes.is_image_manifest(media_type):
        return "image manifest"
    return None


def _load(raw: bytes, what: str) -> dict[str, Any]:
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(
            f"{what} is {len(raw)} bytes, larger than the {MAX_MANIFEST_SIZE} byte limit"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ManifestError(f"{what} is not valid UTF-8 JSON: {str(exc)[:200]}") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


def _media_type(doc: Mapping[str, Any], content_type: str | None, what: str) -> str | None:
    """The document's mediaType wins; the Content-Type may only agree with it."""
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"{what}: mediaType must be a string")
    header = content_type.split(";", 1)[0].strip() if content_type else None
    header = header or None
    for media_type in (declared, header):
        if media_type and media_type.lower() in mediatypes.DOCKER_SCHEMA1_MEDIA_TYPES:
            raise ManifestError(f"{what}: Docker schema 1 manifests are not supported")
    declared_kind, header_kind = _kind(declared), _kind(header)
    if declared_kind and header_kind and declared_kind != header_kind:
        raise ManifestError(
            f"{what}: mediaType {declared!r} ({declared_kind}) contradicts "
            f"Content-Type {header!r} ({header_kind})"
        )
    return declared or header


def parse_manifest(
    raw: bytes, content_type: str | None = None, *, what: str = "manifest"
) -> Manifest:
    """Parse an image manifest or index, keeping `raw` and its digest exactly.

    Unknown media types are kept as given and classified by shape (`manifests` → index,
    `config`/`layers` → image manifest); only when neither the document nor the Content-Type
    names a media type is the OCI one assumed.
    """
    raw = bytes(raw)
    doc = _load(raw, what)
    schema = doc.get("schemaVersion")
    if type(schema) is int and schema == 1:
        raise ManifestError(f"{what}: Docker schema 1 manifests are not supported")
    if schema is not None and not (type(schema) is int and schema == 2):
        raise ManifestError(f"{what}: schemaVersion must be 2, got {schema!r:.40}")
    media_type = _media_type(doc, content_type, what)
    kind = _kind(media_type)
    if kind is None:
        if "manifests" in doc:
            kind = "index"
        elif "config" in doc or "layers" in doc:
            kind = "image manifest"
        else:
            raise ManifestError(
                f"{what}: media type {media_type!r} is unknown and the document has neither "
                "'manifests' nor 'config'/'layers'"
            )
    subject = doc.get("subject")
    common: dict[str, Any] = {
        "raw": raw,
        "digest": Digest.of(raw),
        "subject": None if subject is None else Descriptor.from_json(subject, f"{what} subject"),
        "artifact_type": _optional_str(doc, "artifactType", what),
        "annotations": _string_map(doc, "annotations", what),
    }
    if kind == "index":
        children = _array(doc, "manifests", what, required=True)
        return ImageIndex(
            media_type=media_type or mediatypes.OCI_INDEX,
            manifests=tuple(
                Descriptor.from_json(d, f"{what} manifests[{i}]") for i, d in enumerate(children)
            ),
            **common,
        )
    if "config" not in doc:
        raise ManifestError(f"{what}: image manifest has no config")
    layers = _array(doc, "layers", what, required=False)
    return ImageManifest(
        media_type=media_type or mediatypes.OCI_MANIFEST,
        config=Descriptor.from_json(doc["config"], f"{what} config"),
        layers=tuple(Descriptor.from_json(d, f"{what} layers[{i}]") for i, d in enumerate(layers)),
        **common,
    )


def _array(doc: Mapping[str, Any], key: str, what: str, *, required: bool) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{what}: {key} must be an array")
    return value


def build_index(source: ImageIndex, keep: Sequence[Descriptor]) -> bytes:
    """A copy of `source` listing only the children in `keep` (used for platform filtering).

    Everything else (key order, mediaType, schemaVersion, annotations, and each kept child's
    JSON object with its unknown fields) is carried over from the source document; children
    stay in source order. The result is new content with a new digest, by necessity.
    """
    doc = json.loads(source.raw)
    missing = [d for d in keep if d not in source.manifests]
    if missing:
        raise ManifestError(
            f"index {source.digest}: cannot keep {missing[0].digest}, which it does not list"
        )
    kept = [
        child
        for descriptor, child in zip(source.manifests, doc["manifests"], strict=True)
        if descriptor in keep
    ]
    doc["manifests"] = kept
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
