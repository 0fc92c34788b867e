"""Consistency check of the image store against its content store."""

from __future__ import annotations

import hashlib

from portside.errors import InvalidArgument
from portside.image.content_common import BlobNotFound, hash_fd
from portside.image.store import MAX_MANIFEST
from portside.oci.digest import Digest
from portside.oci.image_spec import Manifest, parse_image_config, parse_manifest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.store import ImageStore
    from portside.image.store_db import Image

__all__ = ["check"]


def check(store: ImageStore, *, verify_layers: bool = False) -> list[str]:
    """See :meth:`ImageStore.check`."""
    problems: list[str] = []
    for image in sorted(store.images(), key=lambda i: i.id):
        _check_config(image, problems)
        _check_manifest(store, image, problems)
        for i in range(len(image.layers)):
            _check_layer(store, image, i, verify_layers, problems)
    for table in ("tags", "repo_digests"):
        rows = store.db.read(
            f"SELECT name, image_id FROM {table} WHERE image_id NOT IN (SELECT id FROM images)"
        )
        problems.extend(f"{name} points at missing image {image_id}" for name, image_id in rows)
    rows = store.db.read(
        "SELECT DISTINCT image_id FROM layers WHERE image_id NOT IN (SELECT id FROM images)"
    )
    problems.extend(f"layers recorded for missing image {r[0]}" for r in rows)
    return problems


def _check_config(image: Image, problems: list[str]) -> None:
    if Digest.of(image.config) != image.id:
        problems.append(f"image {image.id}: its recorded config does not hash to its id")
        return
    try:
        config = parse_image_config(image.config)
    except InvalidArgument as exc:
        problems.append(f"image {image.id}: invalid config: {exc}")
        return
    if [str(d) for d in config.rootfs.diff_ids] != image.diff_ids:
        problems.append(f"image {image.id}: config rootfs.diff_ids differ from its layers")


def _read(store: ImageStore, image: Image, digest: str, what: str, problems: list[str]) -> bytes:
    try:
        data = store.content.read(digest, max_size=MAX_MANIFEST)
    except BlobNotFound:
        problems.append(f"image {image.id}: {what} blob {digest} is missing")
        return b""
    except InvalidArgument as exc:
        problems.append(f"image {image.id}: {what} blob {digest}: {exc}")
        return b""
    if Digest.of(data, Digest(digest).algorithm) != digest:
        problems.append(f"image {image.id}: {what} blob {digest} does not match its digest")
        return b""
    return data


def _check_manifest(store: ImageStore, image: Image, problems: list[str]) -> None:
    config = _read(store, image, image.id, "config", problems)
    if config and config != image.config:
        problems.append(f"image {image.id}: config blob differs from the recorded config")
    raw = _read(store, image, image.manifest_digest, "manifest", problems)
    if not raw:
        return
    try:
        manifest = parse_manifest(raw, image.media_type)
    except InvalidArgument as exc:
        problems.append(f"image {image.id}: manifest {image.manifest_digest}: {exc}")
        return
    if not isinstance(manifest, Manifest):
        problems.append(f"image {image.id}: manifest {image.manifest_digest} is an index")
        return
    if manifest.config.digest != image.id:
        problems.append(
            f"image {image.id}: manifest {image.manifest_digest} names config"
            f" {manifest.config.digest}"
        )
    if [str(d.digest) for d in manifest.layers] != [la.digest for la in image.layers]:
        problems.append(
            f"image {image.id}: manifest {image.manifest_digest} lists other layers than recorded"
        )


def _check_layer(
    store: ImageStore, image: Image, index: int, verify: bool, problems: list[str]
) -> None:
    layer = image.layers[index]
    where = f"image {image.id}: layer {index} blob {layer.digest}"
    try:
        info = store.content.info(layer.digest)
    except BlobNotFound:
        problems.append(f"{where} is missing")
        return
    if info.size != layer.size:
        problems.append(f"{where} is {info.size} bytes, recorded {layer.size}")
        return
    if verify:
        alg = Digest(layer.digest).algorithm
        h = hashlib.new(alg)
        with store.content.open(layer.digest) as f:
            hash_fd(f.fileno(), h)
        if f"{alg}:{h.hexdigest()}" != layer.digest:
            problems.append(f"{where} does not match its digest")
