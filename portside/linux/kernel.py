"""Typed wrappers over the syscalls Python 3.11 lacks, behind one facade.

:class:`Kernel` is the facade the runtime calls for every namespace and mount
operation. :class:`LinuxKernel` does the real thing; :class:`RecordingKernel` only
records the calls, so the order of steps the runtime takes can be unit-tested
without root (integration tests prove the real thing).
"""

from __future__ import annotations

import ctypes
import os

from portside.linux._libc import call, libc, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CLONE_FLAGS",
    "Kernel",
    "LinuxKernel",
    "RecordingKernel",
]

# namespaces (clone flags)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: OCI namespace type -> clone flag
CLONE_FLAGS = {
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "network": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "mount": CLONE_NEWNS,
    "time": CLONE_NEWTIME,
}

#: OCI namespace type -> the name of its link under /proc/PID/ns
NS_PROC_NAMES = {
    "user": "user",
    "cgroup": "cgroup",
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "mount": "mnt",
    "time": "time",
}

# mount flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

# mount_setattr(2)
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class Kernel:
    """The facade: every call the runtime makes that changes kernel state."""

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        raise NotImplementedError

    def umount2(self, target: str, flags: int) -> None:
        raise NotImplementedError

    def unshare(self, flags: int) -> None:
        raise NotImplementedError

    def setns(self, fd: int, nstype: int) -> None:
        raise NotImplementedError

    def pivot_root(self, new_root: str, put_old: str) -> None:
        raise NotImplementedError

    def sethostname(self, name: str) -> None:
        raise NotImplementedError

    def setdomainname(self, name: str) -> None:
        raise NotImplementedError

    def mount_setattr(self, path: str, flags: int, attr_set: int, attr_clr: int = 0) -> None:
        """Change mount attributes (``MOUNT_ATTR_*``) of ``path``; with
        ``AT_RECURSIVE``, of every mount below it in one call (Linux >= 5.12)."""
        raise NotImplementedError

    def mknod(self, path: str, mode: int, device: int, uid: int = 0, gid: int = 0) -> None:
        """Make a device node owned by ``uid``:``gid`` with exactly ``mode``'s
        permission bits (the umask does not apply)."""
        raise NotImplementedError


class LinuxKernel(Kernel):
    """The real kernel."""

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        ret = libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
        call(f"mount {target}", ret)

    def umount2(self, target: str, flags: int) -> None:
        call(f"umount {target}", libc.umount2(_b(target), flags))

    def unshare(self, flags: int) -> None:
        call(f"unshare {flags:#x}", libc.unshare(flags))

    def setns(self, fd: int, nstype: int) -> None:
        call(f"setns {nstype:#x}", libc.setns(fd, nstype))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        syscall("pivot_root", _b(new_root), _b(put_old))

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        call(f"sethostname {name}", libc.sethostname(raw, len(raw)))

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        call(f"setdomainname {name}", libc.setdomainname(raw, len(raw)))

    def mount_setattr(self, path: str, flags: int, attr_set: int, attr_clr: int = 0) -> None:
        attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)
        at_fdcwd = -100
        syscall(
            "mount_setattr",
            ctypes.c_int(at_fdcwd),
            _b(path),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )

    def mknod(self, path: str, mode: int, device: int, uid: int = 0, gid: int = 0) -> None:
        try:
            os.mknod(path, mode, device)
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode & 0o7777, follow_symlinks=False)
        except OSError as exc:
            raise OSError(exc.errno, f"mknod {path}: {os.strerror(exc.errno or 0)}") from None


class RecordingKernel(Kernel):
    """A fake that records each call as ``(name, args)`` and changes nothing.

    ``fail`` maps a call name to an OSError to raise, to test error paths.
    """

    def __init__(self, fail: dict[str, OSError] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail or {}

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        """The names of the calls made, in order."""
        return [name for name, _ in self.calls]

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self._record("mount", source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int) -> None:
        self._record("umount2", target, flags)

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def setns(self, fd: int, nstype: int) -> None:
        self._record("setns", fd, nstype)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", new_root, put_old)

    def sethostname(self, name: str) -> None:
        self._record("sethostname", name)

    def setdomainname(self, name: str) -> None:
        self._record("setdomainname", name)

    def mount_setattr(self, path: str, flags: int, attr_set: int, attr_clr: int = 0) -> None:
        self._record("mount_setattr", path, flags, attr_set, attr_clr)

    def mknod(self, path: str, mode: int, device: int, uid: int = 0, gid: int = 0) -> None:
        self._record("mknod", path, mode, device, uid, gid)
