"""Parsing OCI/fstab mount options into mount(2) flags, propagation changes and
file system data: one table for the runtime's mounts and the snapshotter's."""

from __future__ import annotations

from portside.linux import kernel as K

__all__ = ["FLAGS", "PROPAGATION", "MountOptions", "parse_mount_options"]

# option -> (clear, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, K.MS_SYNCHRONOUS),
    "atime": (True, K.MS_NOATIME),
    "bind": (False, K.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, K.MS_NODEV),
    "diratime": (True, K.MS_NODIRATIME),
    "dirsync": (False, K.MS_DIRSYNC),
    "exec": (True, K.MS_NOEXEC),
    "lazytime": (False, K.MS_LAZYTIME),
    "mand": (False, K.MS_MANDLOCK),
    "noatime": (False, K.MS_NOATIME),
    "nodev": (False, K.MS_NODEV),
    "nodiratime": (False, K.MS_NODIRATIME),
    "noexec": (False, K.MS_NOEXEC),
    "nolazytime": (True, K.MS_LAZYTIME),
    "nomand": (True, K.MS_MANDLOCK),
    "norelatime": (True, K.MS_RELATIME),
    "nostrictatime": (True, K.MS_STRICTATIME),
    "nosuid": (False, K.MS_NOSUID),
    "nosymfollow": (False, K.MS_NOSYMFOLLOW),
    "rbind": (False, K.MS_BIND | K.MS_REC),
    "relatime": (False, K.MS_RELATIME),
    "remount": (False, K.MS_REMOUNT),
    "ro": (False, K.MS_RDONLY),
    "rw": (True, K.MS_RDONLY),
    "strictatime": (False, K.MS_STRICTATIME),
    "suid": (True, K.MS_NOSUID),
    "symfollow": (True, K.MS_NOSYMFOLLOW),
    "sync": (False, K.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": K.MS_PRIVATE,
    "rprivate": K.MS_PRIVATE | K.MS_REC,
    "shared": K.MS_SHARED,
    "rshared": K.MS_SHARED | K.MS_REC,
    "slave": K.MS_SLAVE,
    "rslave": K.MS_SLAVE | K.MS_REC,
    "unbindable": K.MS_UNBINDABLE,
    "runbindable": K.MS_UNBINDABLE | K.MS_REC,
}

#: options we accept and ignore (idmapped mounts and tmpcopyup are not supported yet)
IGNORED = {"tmpcopyup", "idmap", "ridmap", "copyup"}


class MountOptions:
    """The parsed options of one mount."""

    __slots__ = ("data", "flags", "propagation")

    def __init__(self, flags: int, propagation: list[int], data: str) -> None:
        self.flags = flags
        self.propagation = propagation
        self.data = data

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & K.MS_BIND)

    def __repr__(self) -> str:
        return (
            f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, "
            f"data={self.data!r})"
        )


def parse_mount_options(options: list[str]) -> MountOptions:
    """Split OCI mount options into mount(2) flags, propagation changes and fs data."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in FLAGS:
            clear, flag = FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in IGNORED:
            continue
        else:
            data.append(opt)
    return MountOptions(flags, propagation, ",".join(data))
