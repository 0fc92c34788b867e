"""Unpacking an image's layers into snapshots, after containerd's ``unpacker``.

Each layer becomes a committed snapshot named by its chainID, on top of the
snapshot of the layer below, so a layer two images share (same chainID) is
unpacked once. A layer is applied into an active snapshot under a temporary key:
straight into its directory when the snapshotter exposes one (an overlay upper
directory, with the parents as lower directories for whiteouts and hardlinks; a
bind-mounted vfs copy), else through its mounts in a temporary mount point. The
blob's digest and the layer's diffID are checked before the commit; on any error
the active snapshot is removed, so nothing half-made is left.
:func:`unpack_layer_from` does one layer from any stream: a pull feeds it a blob
while the blob is still downloading.

Durability: layers are committed with ``durable=False`` (a pull's, and
:func:`unpack`'s), not with a sync each; :func:`unpack`, which comes before a
container is made on an image, makes them durable together with one
``Snapshotter.sync`` when one of them still waits for it (see
:mod:`portside.image.snapshots`).
"""

from __future__ import annotations

import hashlib
import os

from portside.errors import PortsideError
from portside.image.layer import apply_layer_in_place
from portside.image.snapshots import (
    ACTIVE,
    COMMITTED,
    UNSYNCED_LABEL,
    SnapshotExists,
    SnapshotNotFound,
    WrongKind,
)
from portside.image.tarstream import CorruptLayer
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from portside.image.content import ContentStore
    from portside.image.snapshots import Mount, Snapshotter
    from portside.image.store_db import Image

__all__ = [
    "EXTRACT_PREFIX",
    "CorruptLayer",
    "extract_alive",
    "extract_owner",
    "prepare_container_rootfs",
    "sweep_extracts",
    "unpack",
    "unpack_layer_from",
]

_READ = 1 << 20
#: the key of an unpack's active snapshot: ``extract-<pid>-<12 hex> <chainID>``
EXTRACT_PREFIX = "extract-"


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
    are skipped. A corrupt blob raises :class:`CorruptLayer`. The layers are durable
    when it returns: one sync at the end, when a layer was unpacked here or is still
    waiting for the sync of another unpack."""
    if not image.layers:
        raise WrongKind(f"image {image.id} has no layers to unpack")
    parent: str | None = None
    unsynced = False
    for index, layer in enumerate(image.layers):
        labels = _committed_labels(snapshotter, layer.chain_id)
        if labels is None:
            _unpack_layer(image, index, content, snapshotter, parent)
            unsynced = True
        elif UNSYNCED_LABEL in labels:
            unsynced = True
        parent = layer.chain_id
    top = image.layers[-1].chain_id
    if unsynced:
        snapshotter.sync([top])
    return top


def prepare_container_rootfs(
    image: Image, snapshotter: Snapshotter, key: str, *, durable: bool = True
) -> list[Mount]:
    """An active snapshot ``key`` on the top layer of ``image`` (unpacked first with
    :func:`unpack`), and the mounts that show it."""
    if not image.layers:
        raise WrongKind(f"image {image.id} has no layers")
    return snapshotter.prepare(key, parent=image.layers[-1].chain_id, durable=durable)


def _committed_labels(snapshotter: Snapshotter, key: str) -> dict[str, str] | None:
    """The labels of committed snapshot ``key``; None if there is none."""
    try:
        info = snapshotter.stat(key)
    except SnapshotNotFound:
        return None
    if info.kind != COMMITTED:
        raise WrongKind(f"snapshot {key!r} is {info.kind}, expected a committed layer")
    return info.labels


def _unpack_layer(
    image: Image,
    index: int,
    content: ContentStore,
    snapshotter: Snapshotter,
    parent: str | None,
) -> None:
    layer = image.layers[index]
    try:
        with content.open(layer.digest) as blob:
            reader = _HashingReader(blob)

            def verify() -> None:
                digest = reader.digest()
                if digest != layer.digest:
                    raise CorruptLayer(f"blob digest is {digest}")

            unpack_layer_from(
                reader,
                snapshotter,
                parent,
                layer.chain_id,
                layer.diff_id,
                verify=verify,
                durable=False,
            )
    except CorruptLayer as exc:
        what = f"layer {index} ({layer.digest}) of image {image.id}"
        raise CorruptLayer(f"unpacking {what}: {exc}") from exc


def unpack_layer_from(
    stream: BinaryIO | _HashingReader,
    snapshotter: Snapshotter,
    parent: str | None,
    chain_id: str,
    diff_id: str,
    *,
    verify: Callable[[], None] | None = None,
    durable: bool = True,
) -> bool:
    """Unpack the layer read from ``stream`` (a plain, gzip or zstd tar, read to its
    end) as the committed snapshot ``chain_id`` on ``parent``.

    The layer is applied into an active snapshot under an extract key (see
    :func:`sweep_extracts`), its diffID checked against ``diff_id``, then
    ``verify()`` runs (raise there to refuse the layer, e.g. when the blob's digest
    did not check out) and the snapshot is committed. On any error the active
    snapshot is removed. Returns False when another unpack committed ``chain_id``
    first (nothing is left of this one). Not ``durable``: the snapshot waits for a
    ``snapshotter.sync`` (see the module doc)."""
    tmp_key = f"{EXTRACT_PREFIX}{os.getpid()}-{os.urandom(6).hex()} {chain_id}"
    direct = getattr(snapshotter, "prepare_direct", None)  # overlay: no work dir, no mounts
    if direct is not None:
        target: list[Mount] | tuple[str, list[str], str] = direct(tmp_key, parent, durable=durable)
    else:
        target = snapshotter.prepare(tmp_key, parent=parent, durable=durable)
    try:
        _apply(stream, target, diff_id)
        if verify is not None:
            verify()
        try:
            snapshotter.commit(chain_id, tmp_key, durable=durable)
        except SnapshotExists:  # unpacked meanwhile by someone else
            snapshotter.remove(tmp_key)
            return False
        return True
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
    if not all(d.startswith("/") for d in [upper[0], *lowers]):
        return None
    return upper[0], lowers, "overlay"


def _apply(
    stream: BinaryIO | _HashingReader,
    target: list[Mount] | tuple[str, list[str], str],
    diff_id: str,
) -> None:
    """Apply the layer into ``target``: the mounts of the active snapshot, or the
    (directory, lower directories, whiteout mode) to apply into directly."""
    direct = target if isinstance(target, tuple) else _direct_dir(target)
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
    assert isinstance(target, list)
    import tempfile

    from portside.image.snapshots import mount_all, unmount_all

    where = tempfile.mkdtemp(prefix="portside-unpack-")
    try:
        mount_all(target, where)
        try:
            apply_layer_in_place(
                stream,  # type: ignore[arg-type]
                where,
                whiteouts="remove",
                expected_diff_id=diff_id,
            )
        finally:
            unmount_all(where)
    finally:
        os.rmdir(where)


# --- crash leftovers ------------------------------------------------------------------


def extract_owner(key: str) -> int | None:
    """The pid in an unpack's snapshot key (``extract-<pid>-<hex> <chainID>``); None
    for any other key."""
    if not key.startswith(EXTRACT_PREFIX):
        return None
    pid, sep, rest = key[len(EXTRACT_PREFIX) :].partition("-")
    if not sep or not is_number(pid) or " " not in rest:
        return None
    return int(pid)


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # cannot tell: take it as alive
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):  # a zombie unpacks nothing any more
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def extract_alive(key: str, created: float) -> bool:
    """Whether the unpack that made snapshot ``key`` (created at ``created``) may
    still be running: its pid exists and started before the snapshot (a pid reused
    after a reboot or wrap-around started later)."""
    pid = extract_owner(key)
    if pid is None:
        return True
    started = _started(pid)
    return started is not None and started <= created + 1.0


def sweep_extracts(snapshotter: Snapshotter) -> list[str]:
    """Remove the active snapshots of unpacks that died before finishing (a crash
    between ``prepare`` and ``commit``); returns their keys. Run it at startup: an
    unpack whose process still lives is left alone."""
    removed = []
    for info in snapshotter.walk(kind=ACTIVE):
        if extract_owner(info.name) is None or extract_alive(info.name, info.created):
            continue
        try:
            snapshotter.remove(info.name)
        except SnapshotNotFound:  # swept by another process meanwhile
            continue
        removed.append(info.name)
    return removed
