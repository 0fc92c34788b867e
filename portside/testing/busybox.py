"""A minimal root filesystem made of Debian's statically linked busybox (``busybox-static``).

Every applet is a hard link to ``/bin/busybox`` (a symbolic link where the filesystem
refuses hard links), so building one takes a few milliseconds and about 2 MB.
"""

from __future__ import annotations

import os
import shutil
import struct

from portside.errors import AlreadyExists, InvalidArgument, Unavailable

__all__ = [
    "DEFAULT_BUSYBOX",
    "INSTALL_HINT",
    "BusyboxUnavailable",
    "busybox_available",
    "is_static_elf",
    "make_busybox_rootfs",
]

DEFAULT_BUSYBOX = "/bin/busybox"
INSTALL_HINT = "apt-get install busybox-static"

_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root")
_DIRS_MORE = ("home", "var/run")

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\nnobody:x:65534:\n"
_HOSTNAME = "portside\n"

_PT_INTERP = 3


class BusyboxUnavailable(Unavailable):
    """No statically linked busybox on this host."""


def is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter (``PT_INTERP``).

    Raises :class:`InvalidArgument` when the file is not ELF, ``OSError`` when unreadable.
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2):
            raise InvalidArgument(f"{path}: not an ELF file")
        fmt = ("<" if ident[5] == 1 else ">") + ("HHIQQQIHHH" if ident[4] == 2 else "HHIIIIIHHH")
        header = f.read(struct.calcsize(fmt))
        if len(header) < struct.calcsize(fmt):
            raise InvalidArgument(f"{path}: truncated ELF header")
        fields = struct.unpack(fmt, header)
        phoff, phentsize, phnum = fields[4], fields[8], fields[9]
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    if len(table) < phentsize * phnum or phentsize < 4:
        raise InvalidArgument(f"{path}: truncated ELF program header table")
    for i in range(phnum):
        (p_type,) = struct.unpack_from(fmt[0] + "I", table, i * phentsize)
        if p_type == _PT_INTERP:
            return False
    return True


def _check_busybox(busybox: str) -> None:
    try:
        static = is_static_elf(busybox)
    except FileNotFoundError as exc:
        raise BusyboxUnavailable(f"{busybox}: no such file ({INSTALL_HINT})") from exc
    except OSError as exc:
        raise BusyboxUnavailable(f"{busybox}: cannot read: {exc.strerror}") from exc
    except InvalidArgument as exc:
        raise BusyboxUnavailable(f"{exc} ({INSTALL_HINT})") from exc
    if not static:
        raise BusyboxUnavailable(
            f"{busybox}: dynamically linked (has an ELF interpreter); {INSTALL_HINT}"
        )


def busybox_available(busybox: str = DEFAULT_BUSYBOX) -> bool:
    """True if ``busybox`` exists and is statically linked."""
    try:
        _check_busybox(busybox)
    except BusyboxUnavailable:
        return False
    return True


def _applets(busybox: str) -> list[str]:
    """The applet paths relative to the root, e.g. ``usr/bin/wc`` (``busybox --list-full``)."""
    import subprocess

    try:
        out = subprocess.run(
            [busybox, "--list-full"], capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BusyboxUnavailable(f"{busybox} --list-full failed: {exc}") from exc
    paths = []
    for line in out.decode().splitlines():
        rel = os.path.normpath(line.strip().lstrip("/"))
        if rel and not rel.startswith("..") and rel != "bin/busybox":
            paths.append(rel)
    return paths


def _prepare_dest(dest: str) -> None:
    try:
        os.makedirs(dest, exist_ok=True)
    except FileExistsError as exc:
        raise AlreadyExists(f"{dest}: exists and is not a directory") from exc
    if os.listdir(dest):
        raise AlreadyExists(f"{dest}: directory is not empty")
    os.chmod(dest, 0o755)


def _link_applets(root: str, applets: list[str]) -> None:
    target = os.path.join(root, "bin", "busybox")
    for rel in applets:
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
        if os.path.lexists(path):
            continue
        try:
            os.link(target, path)
        except OSError:
            os.symlink("/bin/busybox", path)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def make_busybox_rootfs(dest: str, *, busybox: str | None = None) -> str:
    """Build a busybox root filesystem in ``dest`` (created, or empty) and return its path.

    ``busybox`` defaults to Debian's ``/bin/busybox``, which must be statically linked:
    :class:`BusyboxUnavailable` says to install ``busybox-static`` otherwise.
    """
    busybox = busybox or DEFAULT_BUSYBOX
    _check_busybox(busybox)
    applets = _applets(busybox)
    root = os.path.abspath(dest)
    _prepare_dest(root)
    for d in _DIRS + _DIRS_MORE:
        os.makedirs(os.path.join(root, d), mode=0o755, exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)
    shutil.copyfile(busybox, os.path.join(root, "bin", "busybox"))
    os.chmod(os.path.join(root, "bin", "busybox"), 0o755)
    _link_applets(root, applets)
    etc = os.path.join(root, "etc")
    _write(os.path.join(etc, "passwd"), _PASSWD)
    _write(os.path.join(etc, "group"), _GROUP)
    _write(os.path.join(etc, "hostname"), _HOSTNAME)
    return root
