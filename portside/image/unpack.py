"""Unpacking an image's layers into snapshots, after containerd's ``unpacker``.

Each layer becomes a committed snapshot named by its chainID, on top of the
snapshot of the layer below, so a layer two images share (same chainID) is
unpacked once. A layer is applied into an active snapshot under a temporary key:
straight into its directory when the snapshotter exposes one (an overlay upper
directory, with the parents as lower directories for whiteouts and hardlinks; a
bind-mounted vfs copy), else through its mounts in a temporary mount point. The
blob's digest and the layer's diffID are checked before the commit; on any error
the active snapshot is removed, so nothing half-made is left.
"""

from __future__ import annotations

import hashlib
import os

from portside.errors import PortsideError
from portside.image.layer import apply_layer_in_place
from portside.image.snapshots import COMMITTED, SnapshotExists, SnapshotNotFound, WrongKind
from portside.image.tarstream import CorruptLayer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from portside.image.content import ContentStore
    from portside.image.snapshots import Mount, Snapshotter
    from portside.image.store_db import Image

__all__ = ["CorruptLayer", "prepare_container_rootfs", "unpack"]

_READ = 1 << 20


class _HashingReader:
    """A blob's file object that hashes what is read from it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def digest(self) -> str:
        """``sha256:…`` of the whole blob (the rest is read first)."""
        while data := self.read(_READ):
            del data
        return "sha256:" + self._hash.hexdigest()


def unpack(image: Image, content: ContentStore, snapshotter: Snapshotter) -> str:
    """Unpack the layers of ``image`` from ``content`` into ``snapshotter``; returns
    the top chainID (the parent for a container's rootfs). Layers already committed
    are skipped. A corrupt blob raises :class:`CorruptLayer`."""
    if not image.layers:
        raise WrongKind(f"image {image.id} has no layers to unpack")
    parent: str | None = None
    for index, layer in enumerate(image.layers):
        if not _committed(snapshotter, layer.chain_id):
            _unpack_layer(image, index, content, snapshotter, parent)
        parent = layer.chain_id
    return image.layers[-1].chain_id


def prepare_container_rootfs(image: Image, snapshotter: Snapshotter, key: str) -> list[Mount]:
    """An active snapshot ``key`` on the top layer of ``image`` (unpacked first with
    :func:`unpack`), and the mounts that show it."""
    if not image.layers:
        raise WrongKind(f"image {image.id} has no layers")
    return snapshotter.prepare(key, parent=image.layers[-1].chain_id)


def _committed(snapshotter: Snapshotter, key: str) -> bool:
    try:
        info = snapshotter.stat(key)
    except SnapshotNotFound:
        return False
    if info.kind != COMMITTED:
        raise WrongKind(f"snapshot {key!r} is {info.kind}, expected a committed layer")
    return True


def _unpack_layer(
    image: Image,
    index: int,
    content: ContentStore,
    snapshotter: Snapshotter,
    parent: str | None,
) -> None:
    layer = image.layers[index]
    tmp_key = f"extract-{os.getpid()}-{os.urandom(6).hex()} {layer.chain_id}"
    mounts = snapshotter.prepare(tmp_key, parent=parent)
    try:
        try:
            with content.open(layer.digest) as blob:
                reader = _HashingReader(blob)
                _apply(reader, mounts, layer.diff_id)
                digest = reader.digest()
            if digest != layer.digest:
                raise CorruptLayer(f"blob digest is {digest}")
        except CorruptLayer as exc:
            what = f"layer {index} ({layer.digest}) of image {image.id}"
            raise CorruptLayer(f"unpacking {what}: {exc}") from exc
        try:
            snapshotter.commit(layer.chain_id, tmp_key)
        except SnapshotExists:  # unpacked meanwhile by someone else
            snapshotter.remove(tmp_key)
    except BaseException:
        _remove_quietly(snapshotter, tmp_key)
        raise


def _remove_quietly(snapshotter: Snapshotter, key: str) -> None:
    try:
        snapshotter.remove(key)
    except SnapshotNotFound:
        pass
    except PortsideError:  # the original error matters more; cleanup() gets the rest
        pass


def _direct_dir(mounts: list[Mount]) -> tuple[str, list[str], str] | None:
    """(directory, lower directories, whiteout mode) to apply into without mounting,
    for the shapes the overlay and vfs snapshotters give; None for any other."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "bind" and "rw" in m.options:
        return m.source, [], "remove"
    if m.type != "overlay":
        return None
    upper = [o[len("upperdir=") :] for o in m.options if o.startswith("upperdir=")]
    lower = [o[len("lowerdir=") :] for o in m.options if o.startswith("lowerdir=")]
    if len(upper) != 1 or len(lower) != 1:
        return None
    lowers = lower[0].split(":")
    if not all(os.path.isabs(d) for d in [upper[0], *lowers]):
        return None
    return upper[0], lowers, "overlay"


def _apply(stream: _HashingReader, mounts: list[Mount], diff_id: str) -> None:
    direct = _direct_dir(mounts)
    if direct is not None:
        directory, lowers, whiteouts = direct
        apply_layer_in_place(
            stream,  # type: ignore[arg-type]
            directory,
            lower_dirs=lowers,
            whiteouts=whiteouts,
            expected_diff_id=diff_id,
        )
        return
    import tempfile

    from portside.image.snapshots import mount_all, unmount_all

    target = tempfile.mkdtemp(prefix="portside-unpack-")
    try:
        mount_all(mounts, target)
        try:
            apply_layer_in_place(
                stream,  # type: ignore[arg-type]
                target,
                whiteouts="remove",
                expected_diff_id=diff_id,
            )
        finally:
            unmount_all(target)
    finally:
        os.rmdir(target)
