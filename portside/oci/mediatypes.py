"""Media types of OCI image-spec 1.1 and Docker image manifest v2 schema 2, with helpers."""

from __future__ import annotations

from portside.errors import InvalidArgument

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_ZSTD",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_PLUGIN_CONFIG",
    "DOCKER_SCHEMA1_MANIFEST",
    "DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "OCI_CONFIG",
    "OCI_DESCRIPTOR",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDIST",
    "OCI_LAYER_NONDIST_GZIP",
    "OCI_LAYER_NONDIST_ZSTD",
    "OCI_LAYER_ZSTD",
    "OCI_LAYOUT_HEADER",
    "OCI_MANIFEST",
    "is_config",
    "is_index",
    "is_layer",
    "is_manifest",
    "is_schema1",
    "layer_compression",
]

# --- OCI image-spec 1.1 ----------------------------------------------------------------

OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
#: the ``oci-layout`` file of an image layout
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
#: non-distributable layers: deprecated by image-spec 1.1, still read
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
#: the empty JSON object ``{}``, config of artifacts that have none
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

# --- Docker image manifest v2 ----------------------------------------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: not in Docker's spec; containerd and BuildKit write it for zstd layers
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#: schema 1 is refused; these exist to recognise it
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

_LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "none",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: "gzip",
}


def is_manifest(media_type: str) -> bool:
    """An image manifest (OCI or Docker schema 2)."""
    return media_type in (OCI_MANIFEST, DOCKER_MANIFEST)


def is_index(media_type: str) -> bool:
    """An index of manifests (OCI image index or Docker manifest list)."""
    return media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)


def is_config(media_type: str) -> bool:
    """An image config (OCI or Docker)."""
    return media_type in (OCI_CONFIG, DOCKER_CONFIG)


def is_schema1(media_type: str) -> bool:
    return media_type in (DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST)


def is_layer(media_type: str) -> bool:
    """A filesystem layer tar, compressed or not, distributable or not."""
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str:
    """``"none"``, ``"gzip"`` or ``"zstd"`` for a layer media type."""
    compression = _LAYER_COMPRESSION.get(media_type)
    if compression is None:
        raise InvalidArgument(f"not a layer media type: {media_type!r}")
    return compression
