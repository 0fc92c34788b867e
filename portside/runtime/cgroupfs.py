"""The container's view of /sys/fs/cgroup.

On cgroup v1 (and hybrid) a tmpfs with one directory per hierarchy, each a bind
mount of the container's own cgroup in that hierarchy, so the container sees its
limits and nothing of its siblings. On v2 a cgroup2 mount when the container has
a cgroup namespace of its own, else a bind of its cgroup directory.

Runs in init before pivot_root, after stage 1 joined the cgroups, so
/proc/self/cgroup names the container's own paths.
"""

from __future__ import annotations

import os

from portside.linux import kernel as K
from portside.runtime.rootfs import parse_mount_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.linux.kernel import Kernel

__all__ = ["cgroup_mounts", "mount_cgroups", "own_cgroups"]


def cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every cgroup mount in a mountinfo."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        fstype, _source, superopts = [*right.split(), "", "", ""][:3]
        if fstype in ("cgroup", "cgroup2") and len(fields) >= 5:
            out.append((fields[4], fstype, superopts))
    return out


def own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """Controller list (as in /proc/self/cgroup, '' for v2) -> path of ours."""
    out = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


_NOT_CONTROLLERS = {
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "nsdelegate",
    "memory_recursiveprot",
    "favordynmods",
    "memory_localevents",
}


def _hierarchy_key(superopts: str) -> set[str]:
    """The controllers (and name=) of a v1 hierarchy, from its super options."""
    return {
        o
        for o in superopts.split(",")
        if o not in _NOT_CONTROLLERS and ("=" not in o or o.startswith("name="))
    }


def mount_cgroups(
    k: Kernel, target: str, options: list[str], ours: dict[str, str], *, new_cgroupns: bool
) -> None:
    """``ours`` is :func:`own_cgroups` as read before the cgroup namespace was made."""
    opts = parse_mount_options(options)
    readonly = bool(opts.flags & K.MS_RDONLY)
    base = opts.flags & (K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC)
    with open("/proc/self/mountinfo") as f:
        mounts = cgroup_mounts(f.read())
    v1 = [(mp, so) for mp, t, so in mounts if t == "cgroup"]
    if not v1:  # unified
        if new_cgroupns:
            k.mount("cgroup2", target, "cgroup2", base | (K.MS_RDONLY if readonly else 0), None)
        else:
            v2 = next(mp for mp, t, _ in mounts if t == "cgroup2")
            k.mount(v2 + ours.get("", "/"), target, None, K.MS_BIND | K.MS_REC, None)
            if readonly:
                k.mount(None, target, None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | base, None)
        return
    k.mount("tmpfs", target, "tmpfs", base, "mode=755")
    for mountpoint, superopts in v1:
        if not mountpoint.startswith("/sys/fs/cgroup/"):
            continue
        keys = _hierarchy_key(superopts)
        path = next((p for ctrl, p in ours.items() if ctrl and set(ctrl.split(",")) == keys), None)
        if path is None:
            continue
        dest = os.path.join(target, os.path.basename(mountpoint))
        os.mkdir(dest, 0o755)
        k.mount(mountpoint + path, dest, None, K.MS_BIND | K.MS_REC, None)
    if readonly:
        _readonly_tree(k, target, base)


def _readonly_tree(k: Kernel, target: str, base: int) -> None:
    """Make the tmpfs at ``target`` and every bind below it read-only: one
    recursive mount_setattr, or a remount each where the kernel lacks it."""
    attrs = K.MOUNT_ATTR_RDONLY
    for flag, attr in (
        (K.MS_NOSUID, K.MOUNT_ATTR_NOSUID),
        (K.MS_NODEV, K.MOUNT_ATTR_NODEV),
        (K.MS_NOEXEC, K.MOUNT_ATTR_NOEXEC),
    ):
        if base & flag:
            attrs |= attr
    try:
        k.mount_setattr(target, K.AT_RECURSIVE, attrs)
        return
    except OSError as exc:
        if exc.errno != 38:  # ENOSYS: an older kernel
            raise
    for name in sorted(os.listdir(target)):
        dest = os.path.join(target, name)
        k.mount(None, dest, None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | base, None)
    k.mount(None, target, None, K.MS_REMOUNT | K.MS_RDONLY | base, "mode=755")
