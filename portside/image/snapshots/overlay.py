"""The overlayfs snapshotter: a committed snapshot's ``fs`` directory is a layer.

Per snapshot ``<root>/snapshots/<id>/fs`` (and ``work`` for an active one). Mounts,
as containerd's overlay snapshotter makes them:

- no parent: a ``bind`` of ``fs`` (``ro`` for a view);
- a view of a single layer: a read-only ``bind`` of that layer;
- an active snapshot: ``overlay`` with ``upperdir=fs``, ``workdir=work`` and
  ``lowerdir=`` the parent chain, nearest first;
- a view of several layers: ``overlay`` with only ``lowerdir`` (read-only by nature).

Long chains: lowerdir paths are absolute here, which for 100+ layers passes the
page the kernel copies mount options into; :func:`~portside.image.snapshots.mount_all`
then mounts from ``<root>/snapshots`` with relative ``<id>/fs`` entries.
"""

from __future__ import annotations

import errno
import os
import stat

from portside.errors import InvalidArgument, Unavailable
from portside.image.snapshots import (
    ACTIVE,
    Mount,
    SnapshotterBase,
    _remove_tree,
    mount_error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.snapshots.meta import Snapshot
    from portside.linux.kernel import Kernel

__all__ = ["OverlayFeatures", "OverlaySnapshotter", "overlay_features", "overlay_supported"]


class OverlayFeatures:
    """What :func:`overlay_features` found out about overlayfs on a file system."""

    __slots__ = ("index_off", "reason", "supported", "userxattr", "volatile", "whiteout_devices")

    def __init__(
        self,
        supported: bool,
        reason: str = "",
        *,
        index_off: bool = False,
        userxattr: bool = False,
        volatile: bool = False,
        whiteout_devices: bool = False,
    ) -> None:
        self.supported = supported
        self.reason = reason
        self.index_off = index_off
        self.userxattr = userxattr
        self.volatile = volatile
        self.whiteout_devices = whiteout_devices

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"OverlayFeatures({fields})"


def _try_mount(kernel: Kernel, base: str, name: str, extra: str) -> str:
    """Mount an overlay of ``base/lower2:base/lower1`` on a fresh ``base/<name>``
    directory; returns the merged directory (the caller unmounts it)."""
    upper, work, merged = (os.path.join(base, f"{name}-{part}") for part in ("u", "w", "m"))
    for path in (upper, work, merged):
        os.mkdir(path, 0o700)
    data = f"{extra}lowerdir={base}/lower2:{base}/lower1,upperdir={upper},workdir={work}"
    kernel.mount("overlay", merged, "overlay", 0, data)
    return merged


def _probe(kernel: Kernel, base: str) -> OverlayFeatures:
    for name in ("lower1", "lower2", "lower1/dir"):
        os.mkdir(os.path.join(base, name), 0o755)
    for name in ("lower1/file", "lower1/gone", "lower1/dir/inner"):
        with open(os.path.join(base, name), "w") as f:
            f.write(name)
    try:
        merged = _try_mount(kernel, base, "plain", "")
    except OSError as exc:
        return OverlayFeatures(False, f"mount: {os.strerror(exc.errno or 0).lower()}")
    try:
        with open(os.path.join(merged, "file")) as f:
            if f.read() != "lower1/file":
                return OverlayFeatures(False, "a lower file reads wrong through the overlay")
        os.unlink(os.path.join(merged, "gone"))
        os.unlink(os.path.join(merged, "dir", "inner"))
        os.rmdir(os.path.join(merged, "dir"))
        os.mkdir(os.path.join(merged, "dir"))
    finally:
        kernel.umount2(merged, 0)
    st = os.lstat(os.path.join(base, "plain-u", "gone"))
    if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
        return OverlayFeatures(False, "a deletion did not leave a 0/0 whiteout device")
    if os.getxattr(os.path.join(base, "plain-u", "dir"), "trusted.overlay.opaque") != b"y":
        return OverlayFeatures(False, "a recreated directory is not marked opaque")
    features = OverlayFeatures(True)
    features.whiteout_devices = _can_mknod_whiteout(os.path.join(base, "wh"))
    options = (("index=off,", "index_off"), ("userxattr,", "userxattr"), ("volatile,", "volatile"))
    for option, attr in options:
        try:
            kernel.umount2(_try_mount(kernel, base, attr, option), 0)
            setattr(features, attr, True)
        except OSError:
            pass
    if not features.whiteout_devices:
        features.supported = False
        features.reason = "cannot make 0/0 character devices (whiteouts) for layers"
    return features


def _can_mknod_whiteout(path: str) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, 0)
    except OSError:
        return False
    return True


def overlay_features(root: str, kernel: Kernel | None = None) -> OverlayFeatures:
    """Try overlayfs for real in a scratch directory under ``root`` (the file
    system the layers will live on): a mount with two lower layers, a whiteout and
    an opaque directory, a 0/0 device made directly (as layers need), and whether the
    ``index=off``, ``userxattr`` and ``volatile`` options are accepted. Never raises for a missing
    feature: ``supported`` and ``reason`` tell."""
    import tempfile

    if kernel is None:
        from portside.linux.kernel import LinuxKernel

        kernel = LinuxKernel()
    try:
        base = tempfile.mkdtemp(prefix=".overlay-check-", dir=root)
    except OSError as exc:
        raise mount_error(exc, f"checking overlayfs in {root}") from exc
    try:
        return _probe(kernel, base)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return OverlayFeatures(False, f"{reason.lower()} while checking overlayfs in {root}")
    finally:
        for name in os.listdir(base):
            if name.endswith("-m"):
                try:
                    kernel.umount2(os.path.join(base, name), 2)  # MNT_DETACH
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
        _remove_tree(base)


def overlay_supported(root: str) -> bool:
    """Whether the overlay snapshotter can work in ``root`` (see :func:`overlay_features`)."""
    return overlay_features(root).supported


class OverlaySnapshotter(SnapshotterBase):
    """Snapshots as overlayfs layers; see the module docstring."""

    driver = "overlay"
    quick_populate = True  # two mkdirs

    def __init__(self, root: str, *, features: OverlayFeatures | None = None) -> None:
        if any(c in os.path.abspath(root) for c in ",:"):
            raise InvalidArgument(f"overlay snapshotter root {root!r} must not contain ',' or ':'")
        super().__init__(root)
        self.features = features if features is not None else overlay_features(self.root)
        if not self.features.supported:
            raise Unavailable(f"overlayfs does not work in {self.root}: {self.features.reason}")

    def _populate(self, path: str, snap: Snapshot) -> None:
        os.mkdir(os.path.join(path, "fs"), 0o755)
        if snap.kind == ACTIVE:
            os.mkdir(os.path.join(path, "work"), 0o711)

    def _populate_direct(self, path: str, snap: Snapshot) -> None:
        os.mkdir(os.path.join(path, "fs"), 0o755)  # no work: made if it is ever mounted

    def prepare_direct(
        self, key: str, parent: str | None = None, *, durable: bool = True
    ) -> tuple[str, list[str], str]:
        """:meth:`prepare` for an unpack, which writes into the snapshot's directory
        and never mounts it: (that directory, the lower layers' directories topmost
        first, the whiteout mode to apply with). No ``work`` directory and no mount
        options are made (a pull prepares one snapshot per layer, on chains hundreds
        deep); :meth:`mounts` still gives the snapshot's mounts, if it is asked."""
        snap = self._create_in_transaction(
            ACTIVE, key, parent, {}, durable=durable, populate=self._populate_direct
        )
        if not snap.parent_ids:
            return self.fs_dir(snap.id), [], "remove"  # what its bind mount gives
        return self.fs_dir(snap.id), [self.fs_dir(p) for p in snap.parent_ids], "overlay"

    def _mounts(self, snap: Snapshot, *, volatile: bool = False) -> list[Mount]:
        writable = snap.kind == ACTIVE
        if not snap.parent_ids:
            return [Mount("bind", self.fs_dir(snap.id), ["rw" if writable else "ro", "rbind"])]
        if not writable and len(snap.parent_ids) == 1:
            return [Mount("bind", self.fs_dir(snap.parent_ids[0]), ["ro", "rbind"])]
        options = ["index=off"] if self.features.index_off else []
        if writable:
            work = os.path.join(self.snapshot_dir(snap.id), "work")
            try:  # prepare_direct made none
                os.mkdir(work, 0o711)
            except FileExistsError:
                pass
            options += [f"workdir={work}", f"upperdir={self.fs_dir(snap.id)}"]
        options.append("lowerdir=" + ":".join(self.fs_dir(p) for p in snap.parent_ids))
        if writable and volatile and self.features.volatile:
            # Linux 5.10: no sync at umount, where overlayfs otherwise syncs the whole
            # upper file system, and fsync inside a no-op. A volatile mount leaves
            # work/incompat/ behind, which makes any later mount of it refuse (the layer
            # is not to be trusted after a crash). Its owner throws it away after one
            # life (run --rm); mounted again first (create --rm, a reboot, then start:
            # nothing has run in it yet), the mark is cleared.
            _remove_tree(os.path.join(work, "work", "incompat"))
            options.append("volatile")
        return [Mount("overlay", "overlay", options)]
