"""Applying an image layer (a tar stream) onto a snapshot directory, and making one.

:func:`apply_layer` unpacks a layer — plain tar, gzip or zstd, told apart by their
magic bytes — in one pass: the stream is decompressed in 1 MiB chunks, hashed for the
diffID (sha256 of the uncompressed tar) and parsed by :mod:`portside.image.tarstream`,
and every member is created relative to directory fds, one path component at a time
with ``O_NOFOLLOW``, so that no symlink is ever followed on the host.

Hostile layers: a member whose path has a ``..`` component, that would be created
through a symlink (planted earlier in the same layer or present in a lower layer), or a
hardlink whose target is any of these, rejects the whole layer with
:class:`HostileLayer` naming the member. A leading ``/`` or ``./`` is normalised away,
as Docker does; symlink *targets* are stored as they are (they are resolved by the
container, inside its root).

Whiteouts: ``.wh.NAME`` becomes an overlayfs whiteout (a 0/0 character device, needs
root) with ``whiteouts="overlay"``, or deletes NAME with ``whiteouts="remove"`` (for
flattening onto a plain directory); ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y``
on its directory, or empties it of everything not unpacked by this layer. Other
``.wh..wh.*`` names (aufs metadata) are ignored. ``trusted.overlay.*`` xattrs in a
layer are dropped: a layer does not get to steer overlayfs.

:func:`make_layer` is the inverse: a deterministic tar of a directory tree.
"""

from __future__ import annotations

import errno
import os
import stat

from portside.errors import (
    AlreadyExists,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)
from portside.image.tarstream import (
    CHR,
    CHUNK,
    DIR,
    FIFO,
    LINK,
    REG,
    SYMLINK,
    CorruptLayer,
    LayerSource,
    TarEntry,
    TarReader,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import BinaryIO

__all__ = [
    "OPAQUE_MARKER",
    "OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "ApplyResult",
    "CorruptLayer",
    "HostileLayer",
    "apply_layer",
    "apply_layer_in_place",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING, _NOT_DIR, _SYMLINK = -1, -2, -3
_MAX_CACHED_DIRS = 256


class HostileLayer(InvalidArgument):
    """A layer member would land outside the snapshot; the whole layer is refused."""


class ApplyResult:
    """What :func:`apply_layer` unpacked: the diffID ("sha256:…"), the size of the
    uncompressed tar stream and the number of members."""

    __slots__ = ("diff_id", "entries", "size")

    def __init__(self, diff_id: str, size: int, entries: int) -> None:
        self.diff_id = diff_id
        self.size = size
        self.entries = entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApplyResult):
            return NotImplemented
        return (self.diff_id, self.size, self.entries) == (other.diff_id, other.size, other.entries)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ApplyResult(diff_id={self.diff_id!r}, size={self.size}, entries={self.entries})"


# --- paths --------------------------------------------------------------------------


def _split(name: str, entry: TarEntry) -> list[str]:
    """The components of a member path, ``/`` and ``.`` dropped; ``..`` is hostile."""
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise HostileLayer(f"layer member {entry.name!r}: path {name!r} leaves the snapshot")
    if "\0" in name:
        raise CorruptLayer(f"layer member {entry.name!r}: NUL byte in path")
    return parts


def _subdir(dfd: int, name: str) -> int:
    """An fd of directory ``name`` in ``dfd``, never through a symlink; or a negative
    code: _MISSING, _NOT_DIR, _SYMLINK."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return _MISSING
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
    st = os.lstat(name, dir_fd=dfd)
    return _SYMLINK if stat.S_ISLNK(st.st_mode) else _NOT_DIR


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _remove_at(dfd: int, name: str) -> None:
    """Remove ``name`` in ``dfd`` (a whole tree if it is a directory), not following
    symlinks; nothing if it does not exist."""
    import shutil

    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def _umask() -> int:
    """The process's umask, read (not set: threads share it) from /proc."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        try:
            head = os.read(fd, 4096)  # "Umask:" is the second line
        finally:
            os.close(fd)
        start = head.index(b"\nUmask:") + 7
        return int(head[start : head.index(b"\n", start)].strip(), 8)
    except (OSError, ValueError):
        return 0o022


class _Lowers:
    """The directory fds of the lower layers, each opened the first time a lookup
    reaches it: most layers never look below, and a chain can be long."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.fds: list[int] = []

    def __iter__(self) -> Iterator[int]:
        for i, path in enumerate(self.paths):
            if i == len(self.fds):
                self.fds.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            yield self.fds[i]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def _copy_data(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes in the kernel (copy_file_range), with a fallback."""
    left = size
    try:
        while left:
            n = os.copy_file_range(src, dst, min(left, 1 << 30))
            if n == 0:
                break
            left -= n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src, size - left, os.SEEK_SET)
    while chunk := os.read(src, CHUNK):
        os.write(dst, chunk)


# --- the applier --------------------------------------------------------------------


class _Applier:
    """Creates members under ``root`` (an fd); owns a cache of directory fds."""

    def __init__(
        self, root: int, lowers: Iterable[int], whiteouts: str, preserve_owner: bool
    ) -> None:
        self.root = root
        self.lowers = lowers
        self.overlay = whiteouts == "overlay"
        self.chown = preserve_owner
        self.dirs: dict[str, int] = {}
        self.dir_meta: dict[str, TarEntry] = {}
        # paths this layer unpacked, for opaque markers in "remove" mode
        self.unpacked: set[str] = set()
        self.mask = _umask()

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def trim(self) -> None:
        """Bound the fd cache; called between members, never inside one."""
        if len(self.dirs) >= _MAX_CACHED_DIRS:
            self.close()

    def forget(self, rel: str) -> None:
        """Drop cached fds of ``rel`` and everything below it (it was removed)."""
        below = rel + "/"
        for key in [k for k in self.dirs if k == rel or k.startswith(below) or not rel]:
            os.close(self.dirs.pop(key))

    # directories

    def dir_fd(self, parts: list[str], entry: TarEntry, create: bool = True) -> int:
        """The fd of directory ``parts`` of this layer, made (as overlayfs would copy
        it up) if missing and ``create``; -1 if missing and not ``create``."""
        rel = "/".join(parts)
        fd = self.dirs.get(rel, -1) if parts else self.root
        if fd >= 0:
            return fd
        depth = len(parts) - 1
        while depth > 0 and "/".join(parts[:depth]) not in self.dirs:
            depth -= 1
        fd = self.dirs["/".join(parts[:depth])] if depth else self.root
        for i in range(depth, len(parts)):
            sub = "/".join(parts[: i + 1])
            nfd = _subdir(fd, parts[i])
            if nfd == _MISSING:
                if not create:
                    return -1
                self._implicit_dir(fd, parts[: i + 1], entry)
                nfd = _subdir(fd, parts[i])
            if nfd == _SYMLINK:
                raise HostileLayer(
                    f"layer member {entry.name!r}: path component {sub!r} is a symlink"
                )
            if nfd < 0:
                if not create:
                    return -1
                raise CorruptLayer(f"layer member {entry.name!r}: {sub!r} is not a directory")
            self.dirs[sub] = fd = nfd
        return fd

    def _implicit_dir(self, pfd: int, parts: list[str], entry: TarEntry) -> None:
        """Make a directory the layer does not list, with the metadata of the same
        directory in a lower layer if there is one."""
        found = self.lower_find(parts, entry)
        if found is not None:
            os.close(found[0])
            st, rel = found[1], "/".join(parts)
            if stat.S_ISLNK(st.st_mode):
                what = f"path component {rel!r} is a symlink in a lower layer"
                raise HostileLayer(f"layer member {entry.name!r}: {what}")
            if stat.S_ISDIR(st.st_mode):
                meta = TarEntry(rel, DIR, mode=stat.S_IMODE(st.st_mode), mtime_ns=st.st_mtime_ns)
                meta.uid, meta.gid = st.st_uid, st.st_gid
                self.dir_meta[rel] = meta
        os.mkdir(parts[-1], 0o755, dir_fd=pfd)

    def lower_find(self, parts: list[str], entry: TarEntry) -> tuple[int, os.stat_result] | None:
        """(fd of the parent directory, lstat) of ``parts`` in the topmost lower layer
        that shows it, as overlayfs looks it up; None if none does. The caller closes
        the fd. A path through a symlink of a lower layer is hostile."""
        for lower in self.lowers:
            found, look_below = self._lookup_lower(lower, parts, entry)
            if found is not None or not look_below:
                return found
        return None

    def _lookup_lower(
        self, lower: int, parts: list[str], entry: TarEntry
    ) -> tuple[tuple[int, os.stat_result] | None, bool]:
        """(what ``lower`` has at ``parts``, whether the layers below it still count)."""
        fd, opaque = lower, False
        try:
            for i, part in enumerate(parts[:-1]):
                nfd = _subdir(fd, part)
                if nfd == _SYMLINK:
                    sub = "/".join(parts[: i + 1])
                    what = f"path component {sub!r} is a symlink in a lower layer"
                    raise HostileLayer(f"layer member {entry.name!r}: {what}")
                if nfd == _MISSING:
                    return None, not opaque
                if nfd == _NOT_DIR:  # a file or whiteout hides the directories below
                    return None, False
                if fd != lower:
                    os.close(fd)
                fd = nfd
                opaque = opaque or (self.overlay and _opaque(fd))
            try:
                st = os.lstat(parts[-1], dir_fd=fd)
            except FileNotFoundError:
                return None, not opaque
            if _is_whiteout(st):
                return None, False
            return (os.dup(fd), st), False
        finally:
            if fd != lower:
                os.close(fd)

    # members

    def apply(self, entry: TarEntry, reader: TarReader) -> None:
        name = entry.name
        parts = name.split("/")
        if "" in parts or "." in parts or ".." in parts or "\0" in name:
            parts = _split(name, entry)
        if not parts:
            if entry.type != DIR:
                raise HostileLayer(
                    f"layer member {entry.name!r}: the snapshot root must be a directory"
                )
            self.dir_meta[""] = entry
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, entry)
            return
        kind = entry.type
        if kind == LINK:
            self._hardlink(parts, entry)
        else:
            pfd = self.dir_fd(parts[:-1], entry)
            if kind == REG:
                self._regular(pfd, parts, entry, reader)
            elif kind == DIR:
                self._directory(pfd, parts, entry)
            elif kind == SYMLINK:
                self._replace(pfd, parts, lambda: os.symlink(entry.linkname, base, dir_fd=pfd))
                self._node_meta(pfd, base, entry, symlink=True)
            else:
                self._special(pfd, parts, entry)
        if not self.overlay:
            self.unpacked.add("/".join(parts))

    def _replace(self, pfd: int, parts: list[str], create: Callable[[], object]) -> None:
        """Run ``create``; if the name exists in this layer, remove it and run it again."""
        try:
            create()
        except FileExistsError:
            self._remove(pfd, parts)
            create()

    def _remove(self, pfd: int, parts: list[str]) -> None:
        _remove_at(pfd, parts[-1])
        self.forget("/".join(parts))

    def _regular(self, pfd: int, parts: list[str], entry: TarEntry, reader: TarReader) -> None:
        base = parts[-1]
        mode = entry.mode
        try:
            fd = os.open(base, _NEW_FILE, mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, parts)
            fd = os.open(base, _NEW_FILE, mode & 0o777, dir_fd=pfd)
        try:
            view = reader.take_all()
            if view is None:
                for view in reader.data():
                    _write_all(fd, view)
            elif view:
                n = os.write(fd, view)
                if n < len(view):  # a signal, or the disk filling up
                    _write_all(fd, view[n:])
            if self.chown:
                os.fchown(fd, entry.uid, entry.gid)
            if mode & 0o7000 or mode & self.mask:
                os.fchmod(fd, mode)
            if entry.xattrs:
                _set_xattrs(fd, entry)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def _directory(self, pfd: int, parts: list[str], entry: TarEntry) -> None:
        try:
            os.mkdir(parts[-1], 0o755, dir_fd=pfd)
        except FileExistsError:
            if _subdir_kind(pfd, parts[-1]) != DIR:
                self._remove(pfd, parts)
                os.mkdir(parts[-1], 0o755, dir_fd=pfd)
        # metadata after the contents: a final pass, see finish()
        self.dir_meta["/".join(parts)] = entry

    def _special(self, pfd: int, parts: list[str], entry: TarEntry) -> None:
        base = parts[-1]
        if entry.type == FIFO:
            fmt, dev = stat.S_IFIFO, 0
        else:
            fmt = stat.S_IFCHR if entry.type == CHR else stat.S_IFBLK
            dev = os.makedev(entry.devmajor, entry.devminor)
        self._replace(pfd, parts, lambda: os.mknod(base, fmt | 0o600, dev, dir_fd=pfd))
        self._node_meta(pfd, base, entry, symlink=False)

    def _node_meta(self, pfd: int, base: str, entry: TarEntry, *, symlink: bool) -> None:
        """Owner, mode, xattrs and times of a non-regular member, by name in ``pfd``."""
        if self.chown:
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        if not symlink:
            os.chmod(base, entry.mode, dir_fd=pfd, follow_symlinks=False)
        if entry.xattrs:
            _set_xattrs(f"/proc/self/fd/{pfd}/{base}", entry)
        os.utime(base, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, parts: list[str], entry: TarEntry) -> None:
        target = _split(entry.linkname, entry)
        if not target:
            raise HostileLayer(f"layer member {entry.name!r}: hardlink to the snapshot root")
        tpfd = self.dir_fd(target[:-1], entry, create=False)
        if tpfd >= 0 and _subdir_kind(tpfd, target[-1]) is None:
            tpfd = -1
        if tpfd < 0:
            self._copy_up(target, entry)
            tpfd = self.dir_fd(target[:-1], entry)
        pfd = self.dir_fd(parts[:-1], entry)
        self._replace(
            pfd,
            parts,
            lambda: os.link(
                target[-1], parts[-1], src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False
            ),
        )

    def _copy_up(self, target: list[str], entry: TarEntry) -> None:
        """Copy a hardlink's target from a lower layer into this one (overlayfs cannot
        link across layers)."""
        found = self.lower_find(target, entry)
        if found is None:
            raise CorruptLayer(
                f"layer member {entry.name!r}: hardlink target {entry.linkname!r} not found"
            )
        lfd, st = found
        try:
            if stat.S_ISDIR(st.st_mode):
                raise CorruptLayer(
                    f"layer member {entry.name!r}: hardlink to directory {entry.linkname!r}"
                )
            tpfd = self.dir_fd(target[:-1], entry)
            _copy_node(lfd, tpfd, target[-1], st, chown=self.chown)
        finally:
            os.close(lfd)

    def _whiteout(self, parts: list[str], entry: TarEntry) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            dfd = self.dir_fd(parts[:-1], entry)
            if self.overlay:
                os.setxattr(dfd, OPAQUE_XATTR, b"y")
            else:
                self._empty_dir(dfd, "/".join(parts[:-1]))
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to do here
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise HostileLayer(f"layer member {entry.name!r}: whiteout of {name!r}")
        hidden = [*parts[:-1], name]
        if self.overlay:
            pfd = self.dir_fd(parts[:-1], entry)
            self._replace(pfd, hidden, lambda: os.mknod(name, stat.S_IFCHR, 0, dir_fd=pfd))
            if self.chown:
                os.chown(name, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
            return
        pfd = self.dir_fd(parts[:-1], entry, create=False)
        if pfd >= 0:
            self._remove(pfd, hidden)

    def _empty_dir(self, dfd: int, rel: str) -> None:
        """Remove what ``rel`` holds that this layer did not unpack ("remove" mode)."""
        for name in os.listdir(dfd):
            child = f"{rel}/{name}" if rel else name
            if child not in self.unpacked:
                _remove_at(dfd, name)
                self.forget(child)
                continue
            sub = _subdir(dfd, name)
            if sub >= 0:
                try:
                    self._empty_dir(sub, child)
                finally:
                    os.close(sub)

    def finish(self) -> None:
        """Directory metadata, deepest last-listed first, once their contents exist."""
        for rel, entry in reversed(self.dir_meta.items()):
            self.trim()
            try:
                fd = self.dir_fd(rel.split("/"), entry, create=False) if rel else self.root
            except HostileLayer:
                continue  # replaced by a symlink later in the layer
            if fd < 0:
                continue  # replaced or removed later in the layer
            if self.chown:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)
            if entry.xattrs:
                _set_xattrs(fd, entry)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))


def _subdir_kind(dfd: int, name: str) -> str | None:
    """DIR if ``name`` is a real directory, "" for anything else, None if missing."""
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None
    return DIR if stat.S_ISDIR(st.st_mode) else ""


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _set_xattrs(target: int | str, entry: TarEntry) -> None:
    for key, value in (entry.xattrs or {}).items():
        if key.startswith("trusted.overlay."):
            continue
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                continue  # the file system has no xattrs of that namespace
            raise OSError(exc.errno, f"set xattr {key}: {_strerror(exc)}") from exc


def _copy_node(lfd: int, dfd: int, name: str, st: os.stat_result, *, chown: bool) -> None:
    """Copy the non-directory ``name`` of ``lfd`` into ``dfd``, metadata included."""
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=lfd), name, dir_fd=dfd)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=lfd)
        try:
            dst = os.open(name, _NEW_FILE, 0o600, dir_fd=dfd)
            try:
                _copy_data(src, dst, st.st_size)
                if chown:
                    os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, mode)
                for key in os.listxattr(src):
                    if not key.startswith("trusted.overlay."):
                        os.setxattr(dst, key, os.getxattr(src, key))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return
    else:
        os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dfd)
        os.chmod(name, mode, dir_fd=dfd, follow_symlinks=False)
    if chown:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


# --- the public entry points --------------------------------------------------------


def _strerror(exc: OSError) -> str:
    """The reason of ``exc``, lowercase as our messages are."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def _os_error(entry: TarEntry, exc: OSError) -> PortsideError:
    what = f"apply layer member {entry.name!r}: {_strerror(exc)}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(what)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(what)
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EMLINK):
        return InvalidArgument(what)
    return Internal(what)


def _check_mode(whiteouts: str) -> None:
    if whiteouts not in ("overlay", "remove"):
        raise InvalidArgument(f"whiteouts must be 'overlay' or 'remove', not {whiteouts!r}")


def apply_layer_in_place(
    stream: BinaryIO,
    directory: str,
    *,
    lower_dirs: Sequence[str] = (),
    whiteouts: str = "overlay",
    preserve_owner: bool = True,
    expected_diff_id: str | None = None,
) -> ApplyResult:
    """Unpack a layer into the existing ``directory``, with no atomicity: on error it is
    left half-applied and the caller (which made it as a staging directory) removes it.

    ``lower_dirs`` are the layers below, topmost first (overlayfs ``lowerdir`` order):
    symlinks in them are refused as path components, and hardlinks to their files are
    copied up. The digest is checked before directory metadata is set.
    """
    _check_mode(whiteouts)
    root = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    lowers = _Lowers(lower_dirs)
    applier = _Applier(root, lowers, whiteouts, preserve_owner)
    source: LayerSource | None = None
    try:
        source = LayerSource(stream)
        reader = TarReader(source.read)
        count = 0
        for entry in reader:
            count += 1
            applier.trim()
            try:
                applier.apply(entry, reader)
            except OSError as exc:
                raise _os_error(entry, exc) from exc
            except ValueError as exc:  # a NUL byte in a link target
                raise CorruptLayer(f"layer member {entry.name!r}: {exc}") from exc
        reader.drain()
        diff_id = source.diff_id()
        if expected_diff_id is not None and diff_id != expected_diff_id:
            raise CorruptLayer(f"layer diffID {diff_id} does not match {expected_diff_id}")
        try:
            applier.finish()
        except OSError as exc:
            raise Internal(f"set directory metadata in {directory}: {_strerror(exc)}") from exc
        return ApplyResult(diff_id, source.size, count)
    finally:
        if source is not None:
            source.close()
        applier.close()
        lowers.close()
        os.close(root)


def apply_layer(
    stream: BinaryIO,
    dest: str,
    *,
    lower_dirs: Sequence[str] = (),
    whiteouts: str = "overlay",
    preserve_owner: bool = True,
    expected_diff_id: str | None = None,
) -> ApplyResult:
    """Unpack a layer into ``dest``, which must not exist, atomically.

    The layer is applied into a sibling staging directory ``dest + ".tmp-<random>"``,
    which is renamed to ``dest`` (RENAME_NOREPLACE) only when every member applied and
    the diffID matched ``expected_diff_id`` (if given); on any error the staging
    directory is removed, so no half-applied snapshot is ever visible. See
    :func:`apply_layer_in_place` for the other arguments.
    """
    _check_mode(whiteouts)
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise AlreadyExists(f"{dest}: already exists")
    staging = f"{dest}.tmp-{os.urandom(6).hex()}"
    try:
        os.mkdir(staging, 0o755)
    except FileNotFoundError as exc:
        raise NotFound(f"{os.path.dirname(dest)}: no such directory") from exc
    except OSError as exc:
        raise _os_error(TarEntry(staging), exc) from exc
    try:
        result = apply_layer_in_place(
            stream,
            staging,
            lower_dirs=lower_dirs,
            whiteouts=whiteouts,
            preserve_owner=preserve_owner,
            expected_diff_id=expected_diff_id,
        )
        _rename_noreplace(staging, dest)
    except BaseException:
        _remove_tree(staging)
        raise
    return result


def _rename_noreplace(src: str, dst: str) -> None:
    from portside.linux._libc import call, libc

    at_fdcwd, rename_noreplace = -100, 1
    try:
        call(
            f"rename {src}",
            libc.renameat2(
                at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace
            ),
        )
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise AlreadyExists(f"{dst}: already exists") from exc
        if exc.errno in (errno.ENOSYS, errno.EINVAL):  # no renameat2 on this file system
            os.rename(src, dst)
            return
        raise Internal(f"rename {src} to {dst}: {_strerror(exc)}") from exc


def _remove_tree(path: str) -> None:
    """Remove a staging tree, even where the layer made directories read-only."""
    import shutil

    def retry(func: object, failed: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            func(failed)  # type: ignore[operator]
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
