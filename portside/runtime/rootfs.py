"""The container's filesystem: mounts, /dev, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace (in the init process), as named
steps the init sequence calls in order:

1. :func:`set_propagation` and :func:`bind_rootfs`
2. :func:`mount_all` (config.mounts, resolved inside the rootfs)
3. :func:`create_devices` (the default devices, linux.devices, /dev links)
4. :func:`pivot` (pivot_root, or MS_MOVE + chroot with ``no_pivot``)
5. :func:`mask_paths`, :func:`readonly_paths`, :func:`finish_root`

Every kernel call goes through :class:`~portside.linux.kernel.Kernel`.
"""

from __future__ import annotations

import os
import stat

from portside.errors import InvalidArgument
from portside.linux import kernel as K
from portside.linux.mountopts import PROPAGATION, MountOptions, parse_mount_options
from portside.runtime.paths import mkdir_all_in_root, open_in_root, secure_join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portside.linux.kernel import Kernel
    from portside.oci.runtime_spec import LinuxDevice, Mount

__all__ = [
    "DEFAULT_DEVICES",
    "MountOptions",
    "bind_rootfs",
    "create_devices",
    "finish_root",
    "mask_paths",
    "mount_all",
    "parse_mount_options",
    "pivot",
    "readonly_paths",
    "set_propagation",
]

#: (path, type, major, minor) of the devices every container gets
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
)

_HOST_FALLBACK = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}

_LOCKED = (
    (os.ST_NOSUID, K.MS_NOSUID),
    (os.ST_NODEV, K.MS_NODEV),
    (os.ST_NOEXEC, K.MS_NOEXEC),
    (os.ST_NOATIME, K.MS_NOATIME),
    (os.ST_NODIRATIME, K.MS_NODIRATIME),
    (os.ST_RELATIME, K.MS_RELATIME),
)


def _locked_flags(path: str) -> int:
    """Flags the kernel will not let a remount clear (in a user namespace)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return sum(flag for bit, flag in _LOCKED if st.f_flag & bit)


def _remount(k: Kernel, path: str, flags: int) -> None:
    try:
        k.mount(None, path, None, flags | K.MS_REMOUNT, None)
    except PermissionError:
        k.mount(None, path, None, flags | K.MS_REMOUNT | _locked_flags(path), None)


# --- step 1 --------------------------------------------------------------------


def set_propagation(k: Kernel, propagation: str | None) -> None:
    """Make every mount of the new namespace private (or as rootfsPropagation says)
    so nothing the container mounts reaches the host."""
    flags = PROPAGATION.get(propagation or "rprivate")
    if flags is None:
        raise InvalidArgument(f"linux.rootfsPropagation: unknown propagation {propagation!r}")
    if not flags & K.MS_REC:
        flags |= K.MS_REC
    if flags & K.MS_SHARED:  # the rootfs's parent must not be shared for pivot_root
        flags = K.MS_SLAVE | K.MS_REC
    k.mount(None, "/", None, flags, None)


def bind_rootfs(k: Kernel, rootfs: str) -> None:
    k.mount(rootfs, rootfs, "bind", K.MS_BIND | K.MS_REC, None)


# --- step 2 --------------------------------------------------------------------


def _prepare_bind_target(rootfs: str, m: Mount, source: str) -> str:
    try:
        is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except FileNotFoundError:
        raise InvalidArgument(f"mount {m.destination}: source {source} does not exist") from None
    if is_dir:
        return mkdir_all_in_root(rootfs, m.destination)
    # a file: resolve the destination first (it may be a symlink to elsewhere in
    # the rootfs), then make its parents and an empty file to mount on
    dest = secure_join(rootfs, m.destination)
    mkdir_all_in_root(rootfs, os.path.dirname(os.path.relpath(dest, rootfs)))
    if not os.path.lexists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    return dest


def _mount_one(
    k: Kernel,
    rootfs: str,
    m: Mount,
    bundle: str,
    special: Callable[[Mount, str], bool] | None,
    *,
    real_root: str | None = None,
) -> None:
    opts = parse_mount_options(m.options)
    fstype = m.type or ("bind" if opts.is_bind else None)
    if fstype == "bind":
        opts.flags |= K.MS_BIND
    if opts.is_bind:
        source = m.source or ""
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        dest = _prepare_bind_target(rootfs, m, source)
    else:
        if fstype is None:
            raise InvalidArgument(f"mount {m.destination}: no type given")
        source = m.source or fstype
        dest = mkdir_all_in_root(rootfs, m.destination)
    fd = open_in_root(rootfs, dest, f"mount {m.destination}", real_root=real_root)
    real_parent = _real_below(real_root, rootfs, os.path.dirname(dest) or dest)
    try:
        _mount_at(
            k,
            m,
            opts=opts,
            fstype=fstype,
            source=source,
            dest=dest,
            fd=fd,
            special=special,
            real_parent=real_parent,
        )
    except OSError as exc:
        detail = f"mount {source} on {m.destination} (type {fstype}, options {','.join(m.options)})"
        raise OSError(exc.errno, f"{detail}: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(fd)


def _real_below(real_root: str | None, rootfs: str, path: str) -> str | None:
    """What ``path`` (resolved inside ``rootfs``, so free of symlinks below it) must
    resolve to, from the rootfs's real path; None when that cannot be told."""
    top = rootfs.rstrip("/")
    if real_root is None or not (path == top or path.startswith(top + "/")):
        return None
    return real_root.rstrip("/") + path[len(top) :]


def _mount_at(
    k: Kernel,
    m: Mount,
    *,
    opts: MountOptions,
    fstype: str | None,
    source: str,
    dest: str,
    fd: int,
    special: Callable[[Mount, str], bool] | None,
    real_parent: str | None = None,
) -> None:
    """Mount ``m`` on the checked fd of its destination.

    The fd names what was *under* the mount once it is made, so remounts and
    propagation changes go through a fresh, re-checked fd of the new mount."""
    target = f"/proc/self/fd/{fd}"
    if special is not None and special(m, dest):
        return
    if opts.is_bind:
        k.mount(source, target, None, K.MS_BIND | (opts.flags & K.MS_REC), None)
    else:
        try:
            k.mount(source, target, fstype, opts.flags, opts.data or None)
        except PermissionError:
            # sysfs/mqueue need a net/ipc namespace of our own: bind the host's
            host = _HOST_FALLBACK.get(fstype or "")
            if host is None:
                raise
            k.mount(host, target, None, K.MS_BIND | K.MS_REC, None)
            opts = MountOptions(opts.flags | K.MS_BIND | K.MS_REC, opts.propagation, "")
    extra = opts.flags & ~(K.MS_BIND | K.MS_REC | K.MS_REMOUNT) if opts.is_bind else 0
    if not extra and not opts.propagation:
        return
    mounted = open_in_root(
        os.path.dirname(dest) or dest, dest, f"mount {m.destination}", real_root=real_parent
    )
    try:
        top = f"/proc/self/fd/{mounted}"
        if extra:
            _remount(k, top, K.MS_BIND | extra)
        for prop in opts.propagation:
            k.mount(None, top, None, prop, None)
    finally:
        os.close(mounted)


def mount_all(
    k: Kernel,
    rootfs: str,
    mounts: list[Mount],
    bundle: str,
    special: Callable[[Mount, str], bool] | None = None,
    *,
    real_root: str | None = None,
) -> None:
    """Mount every config.mounts entry, in order, inside ``rootfs``.

    ``special(mount, dest)`` may take over a mount (cgroup) and return True when
    it did; ``dest`` is the destination, resolved and checked inside ``rootfs``.
    ``real_root``: the rootfs's real path, when the caller has resolved it already."""
    if real_root is None:  # once: no mount changes the path to the rootfs
        real_root = os.path.realpath(rootfs)
    for m in mounts:
        _mount_one(k, rootfs, m, bundle, special, real_root=real_root)


# --- step 3 --------------------------------------------------------------------


def _node(
    k: Kernel,
    rootfs: str,
    path: str,
    kind: str,
    *,
    major: int,
    minor: int,
    mode: int,
    uid: int,
    gid: int,
    bind: bool,
    made: set[str],
) -> None:
    dest = secure_join(rootfs, path)
    parent = os.path.dirname(path)
    if parent not in made:  # /dev once for all its nodes, not once per node
        mkdir_all_in_root(rootfs, parent)
        made.add(parent)
    if os.path.lexists(dest):
        os.unlink(dest)
    if bind:  # mknod is refused in a user namespace: bind the host's node instead
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
        k.mount(path, dest, "bind", K.MS_BIND, None)
        return
    type_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    if kind not in type_bits:
        raise InvalidArgument(f"linux.devices: {path}: unknown device type {kind!r}")
    k.mknod(dest, type_bits[kind] | (mode & 0o7777), os.makedev(major, minor), uid, gid)


def create_devices(k: Kernel, rootfs: str, devices: list[LinuxDevice], *, in_userns: bool) -> None:
    """The default devices, then linux.devices, then /dev's standard links."""
    made: set[str] = set()  # directories made (in our own mount namespace's /dev)
    for path, kind, major, minor in DEFAULT_DEVICES:
        _node(
            k,
            rootfs,
            path,
            kind,
            major=major,
            minor=minor,
            mode=0o666,
            uid=0,
            gid=0,
            bind=in_userns,
            made=made,
        )
    for i, dev in enumerate(devices):
        if not dev.path.startswith("/dev/"):
            raise InvalidArgument(f"linux.devices[{i}].path: {dev.path!r} is not under /dev")
        if dev.type != "p" and (dev.major is None or dev.minor is None):
            raise InvalidArgument(f"linux.devices[{i}]: {dev.path} needs major and minor")
        mode = 0o666 if dev.file_mode is None else dev.file_mode
        _node(
            k,
            rootfs,
            dev.path,
            dev.type,
            major=dev.major or 0,
            minor=dev.minor or 0,
            mode=mode,
            uid=dev.uid or 0,
            gid=dev.gid or 0,
            bind=in_userns,
            made=made,
        )
    links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for target, link in links:
        dest = secure_join(rootfs, link)
        if not os.path.lexists(dest):
            os.symlink(target, dest)
    ptmx = secure_join(rootfs, "/dev/ptmx")
    if os.path.isdir(secure_join(rootfs, "/dev/pts")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


# --- step 4 --------------------------------------------------------------------


def pivot(k: Kernel, rootfs: str, *, no_pivot: bool = False) -> None:
    """Make ``rootfs`` the root; the old root is detached and gone."""
    if no_pivot:
        os.chdir(rootfs)
        k.mount(rootfs, "/", None, K.MS_MOVE, None)
        os.chroot(".")
        os.chdir("/")
        return
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        k.pivot_root(".", ".")
        os.fchdir(old_root)
        k.mount(None, ".", None, K.MS_SLAVE | K.MS_REC, None)
        k.umount2(".", K.MNT_DETACH)
    finally:
        os.close(old_root)
        os.close(new_root)
    os.chdir("/")


# --- step 5 (after pivot: paths are the container's) ----------------------------


def mask_paths(k: Kernel, paths: list[str]) -> None:
    """Hide each path: /dev/null over files, an empty read-only tmpfs over dirs."""
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            k.mount("tmpfs", path, "tmpfs", K.MS_RDONLY, None)
        else:
            k.mount("/dev/null", path, None, K.MS_BIND, None)


def readonly_paths(k: Kernel, paths: list[str]) -> None:
    for path in paths:
        if not os.path.lexists(path):
            continue
        k.mount(path, path, None, K.MS_BIND | K.MS_REC, None)
        _remount(k, path, K.MS_BIND | K.MS_RDONLY | K.MS_REC)


def finish_root(k: Kernel, readonly: bool, propagation: str | None) -> None:
    """Make / read-only when asked, and apply a shared rootfsPropagation."""
    if readonly:
        _remount(k, "/", K.MS_BIND | K.MS_RDONLY)
    if propagation in ("shared", "rshared"):
        k.mount(None, "/", None, PROPAGATION[propagation], None)
