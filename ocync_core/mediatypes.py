"""Media types ocync must recognise, and the two questions it asks of them.

Only the *kind* of a manifest (index or image) changes what ocync does with it; every other
media type (artifacts, Helm charts, signatures) is copied verbatim, so nothing here is a
whitelist.
"""

from __future__ import annotations

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1_MEDIA_TYPES",
    "IMAGE_MANIFEST_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_EMPTY_JSON",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "is_image_manifest",
    "is_index",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY_JSON = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Schema 1 manifests are signed over a re-serialised form and long deprecated; ocync refuses
# them rather than copy something it cannot verify.
DOCKER_SCHEMA1_MEDIA_TYPES: frozenset[str] = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

# Sent on every manifest GET/HEAD: a registry that is not told we accept an index may answer
# with a converted single-platform manifest, which would break byte-for-byte mirroring.
MANIFEST_ACCEPT: tuple[str, ...] = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

INDEX_MEDIA_TYPES: frozenset[str] = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES: frozenset[str] = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


def _bare(media_type: str) -> str:
    """Media types compare case-insensitively and without `; parameters`."""
    return media_type.split(";", 1)[0].strip().lower()


def is_index(media_type: str) -> bool:
    """True for the OCI image index and the Docker manifest list."""
    return _bare(media_type) in INDEX_MEDIA_TYPES


def is_image_manifest(media_type: str) -> bool:
    """True for the OCI image manifest and the Docker v2 schema 2 manifest."""
    return _bare(media_type) in IMAGE_MANIFEST_MEDIA_TYPES
