"""``docker cp``: stat, tar and untar paths inside a container's root file system.

The Docker Engine API's ``HEAD/GET/PUT /containers/{id}/archive`` on the rootfs as the
host sees it. Paths are resolved as the container would resolve them (symlinks followed,
absolute targets and ``..`` taken relative to the rootfs — :func:`secure_join`), then
every file is opened one component at a time with ``O_NOFOLLOW`` from the rootfs, so a
symlink swapped in by the running container cannot lead outside it.

As Docker: the last component of a path is not followed unless the path ends in ``/``
or ``/.``; a directory is archived under its base name, ``dir/.`` archives its contents;
extraction needs an existing directory, and files written into the container belong to
root unless ``copy_uid_gid``. Archive members with ``..``, absolute names, or a path
through a symlink the same archive made are refused, naming the member.

These functions see one root. :func:`locate` picks it for a container path, as Docker
does by mounting a container's volumes over its rootfs for a copy: a path at or below
the destination of a bind or a volume is found in the host directory behind it (the
innermost such mount), any other in the rootfs. A symlink inside a volume is resolved
within the volume; a tmpfs is not reached (nor is it by Docker's ``cp``).
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
import time

from portside.errors import (
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)
from portside.runtime.paths import secure_join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

__all__ = [
    "HostileArchive",
    "NotADirectory",
    "PathNotFound",
    "copy_tree",
    "extract_into",
    "go_file_mode",
    "locate",
    "stat_path",
    "tar_path",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_MAX_CACHED_DIRS = 128
_BLOCK = 512

# Go's os.FileMode type bits
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
_MODE_DEVICE = 1 << 26
_MODE_NAMED_PIPE = 1 << 25
_MODE_SOCKET = 1 << 24
_MODE_SETUID = 1 << 23
_MODE_SETGID = 1 << 22
_MODE_CHAR_DEVICE = 1 << 21
_MODE_STICKY = 1 << 20


class PathNotFound(NotFound):
    """The path does not exist in the container; ``path`` is the one asked for (the
    engine words Docker's "Could not find the file /x in container <id>")."""

    def __init__(self, path: str) -> None:
        super().__init__(f"could not find the file {path} in container")
        self.path = path


class NotADirectory(InvalidArgument):
    """The path names a non-directory where a directory is needed."""


class HostileArchive(InvalidArgument):
    """An archive member would land outside the extraction directory."""


def go_file_mode(mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode`` (what Docker's path stat header carries)."""
    out = mode & 0o777
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFDIR:
        out |= _MODE_DIR
    elif fmt == stat.S_IFLNK:
        out |= _MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        out |= _MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        out |= _MODE_DEVICE | _MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        out |= _MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        out |= _MODE_SOCKET
    if mode & stat.S_ISUID:
        out |= _MODE_SETUID
    if mode & stat.S_ISGID:
        out |= _MODE_SETGID
    if mode & stat.S_ISVTX:
        out |= _MODE_STICKY
    return out


def _rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


# --- resolving -------------------------------------------------------------------------


def _clean(path: str) -> str:
    """The container path made absolute and clean (``..`` cannot climb above ``/``)."""
    return posixpath.normpath("/" + path).replace("//", "/")


def _follow_last(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path in (".", "")


def _resolve(root: str, path: str) -> str:
    """The host path of container ``path``: all components resolved in-root, the last
    one only when ``path`` ends in ``/`` or ``/.``."""
    clean = _clean(path)
    if clean == "/" or _follow_last(path):
        return secure_join(root, clean)
    parent, base = posixpath.split(clean)
    return os.path.join(secure_join(root, parent), base)


def _open_parent(root: str, host: str) -> tuple[int, str]:
    """An O_NOFOLLOW fd of the directory holding ``host`` (below ``root``), opened one
    component at a time from ``root``, and the base name."""
    rel = os.path.relpath(host, root)
    if rel == "." or rel.startswith(".."):
        raise InvalidArgument(f"{host}: not below the container root {root}")
    parts = rel.split("/")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _lstat_in_root(root: str, host: str) -> os.stat_result:
    if host == root:
        return os.lstat(root)
    fd, base = _open_parent(root, host)
    try:
        return os.stat(base, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _os_error(what: str, exc: OSError) -> PortsideError:
    reason = exc.strerror or str(exc)
    message = f"{what}: {reason[:1].lower()}{reason[1:]}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(message)
    if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return PermissionDenied(message)
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP, errno.ENOTDIR):
        return InvalidArgument(message)
    return Internal(message)


def _stat(root: str, path: str) -> tuple[str, os.stat_result]:
    host = _resolve(root, path)
    try:
        st = _lstat_in_root(root, host)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PathNotFound(path) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a component turned into a symlink under us
            raise PathNotFound(path) from exc
        raise _os_error(f"stat {path}", exc) from exc
    if path.endswith(("/", "/.")) and not stat.S_ISDIR(st.st_mode):
        raise NotADirectory(f"{path}: not a directory")
    return host, st


class Located:
    """Where a container path lives: its ``root`` on the host, the ``path`` below that
    root, the ``name`` the container knows it by (a mount's destination is seen as the
    root of its source), and ``read_only`` when the mount holding it is."""

    __slots__ = ("name", "path", "read_only", "root")

    def __init__(self, root: str, path: str, name: str | None, read_only: bool) -> None:
        self.root = root
        self.path = path
        self.name = name
        self.read_only = read_only


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def locate(rootfs: str, mounts: list[dict[str, Any]], path: str) -> Located:
    """Where container ``path`` lives, given the container's ``Mounts`` (inspect's
    entries: ``Type``, ``Source``, ``Destination``, ``RW``). The path is resolved in the
    rootfs first (a symlink there may lead into a mount), its last component only when
    it ends in ``/`` or ``/.``, as every function here does."""
    root = os.path.realpath(rootfs)
    host = _resolve(root, path)
    resolved = "/" + os.path.relpath(host, root) if host != root else "/"
    best: dict[str, Any] | None = None
    dest = ""
    for m in mounts:
        here = _clean(str(m.get("Destination") or ""))
        if m.get("Type") not in ("bind", "volume") or not m.get("Source") or here == "/":
            continue
        if _under(resolved, here) and len(here) > len(dest):  # the innermost
            best, dest = m, here
    if best is None:
        return Located(rootfs, path, None, False)
    rest = resolved[len(dest) :] or "/"
    if path.endswith("/."):
        rest = rest.rstrip("/") + "/."
    elif path.endswith("/") and rest != "/":
        rest += "/"
    name = posixpath.basename(dest) if rest == "/" and not _follow_last(path) else None
    return Located(str(best["Source"]), rest, name, not best.get("RW", True))


def stat_path(rootfs: str, path: str, *, name: str | None = None) -> dict[str, object]:
    """Docker's ``X-Docker-Container-Path-Stat``: name, size, Go file mode, mtime and,
    for a symlink, its target fully resolved inside the container. ``name``: what
    the container calls the path, when ``rootfs`` is a mount's source (:func:`locate`)."""
    root = os.path.realpath(rootfs)
    _host, st = _stat(root, path)
    clean = _clean(path)
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        resolved = secure_join(root, clean)
        link_target = "/" + os.path.relpath(resolved, root) if resolved != root else "/"
        if link_target == "/.":
            link_target = "/"
    if name is None:
        name = "." if path.endswith("/.") else posixpath.basename(clean) or "/"
    return {
        "name": name,
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": _rfc3339_nano(st.st_mtime_ns),
        "linkTarget": link_target,
    }


# --- tar ---------------------------------------------------------------------------------


def _tarinfo(name: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime_ns / 1e9
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif fmt == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif fmt == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _xattrs(info: tarfile.TarInfo, target: int | str, dir_fd: int | None) -> None:
    try:
        if isinstance(target, int):
            keys = os.listxattr(target)
            values = {k: os.getxattr(target, k) for k in keys}
        else:
            proc = f"/proc/self/fd/{dir_fd}/{target}"
            keys = os.listxattr(proc, follow_symlinks=False)
            values = {k: os.getxattr(proc, k, follow_symlinks=False) for k in keys}
    except OSError:
        return
    for key, value in values.items():
        if key.startswith("trusted.overlay."):
            continue
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")


class _Walker:
    """Emits tar blocks for a tree, opening everything relative to O_NOFOLLOW fds."""

    def __init__(self) -> None:
        self.links: dict[tuple[int, int], str] = {}

    def entry(self, dfd: int, base: str, name: str) -> Iterator[bytes]:
        st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISSOCK(st.st_mode):
            return  # Docker skips sockets
        if stat.S_ISDIR(st.st_mode):
            yield from self.directory(dfd, base, name, st)
            return
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            if key in self.links:
                info = _tarinfo(name, st)
                info.type, info.size, info.linkname = tarfile.LNKTYPE, 0, self.links[key]
                yield _header(info)
                return
            self.links[key] = name
        if stat.S_ISLNK(st.st_mode):
            info = _tarinfo(name, st, os.readlink(base, dir_fd=dfd))
            _xattrs(info, base, dfd)
            yield _header(info)
            return
        if not stat.S_ISREG(st.st_mode):
            info = _tarinfo(name, st)
            _xattrs(info, base, dfd)
            yield _header(info)
            return
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            yield from self.regular(fd, name, st)
        finally:
            os.close(fd)

    def regular(self, fd: int, name: str, st: os.stat_result) -> Iterator[bytes]:
        info = _tarinfo(name, st)
        _xattrs(info, fd, None)
        yield _header(info)
        left = st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:  # truncated while we read: pad, as the header promised
                chunk = bytes(min(left, _CHUNK))
            left -= len(chunk)
            yield chunk
        pad = -st.st_size % _BLOCK
        if pad:
            yield bytes(pad)

    def directory(self, dfd: int, base: str, name: str, st: os.stat_result) -> Iterator[bytes]:
        fd = os.open(base, _DIR_FLAGS, dir_fd=dfd)
        try:
            yield from self.tree(fd, name, st)
        finally:
            os.close(fd)

    def tree(self, fd: int, name: str, st: os.stat_result) -> Iterator[bytes]:
        info = _tarinfo(name.rstrip("/") + "/" if name else "./", st)
        _xattrs(info, fd, None)
        yield _header(info)
        prefix = name.rstrip("/") + "/" if name else ""
        for child in sorted(os.listdir(fd)):
            try:
                yield from self.entry(fd, child, prefix + child)
            except FileNotFoundError:
                continue  # removed by the running container meanwhile


def tar_path(rootfs: str, path: str, *, name: str | None = None) -> Iterator[bytes]:
    """A tar stream of container ``path``: a file as one member named by its base name, a
    directory as members under its base name, ``dir/.`` as the directory's contents.
    ``name``: the base name to use when ``rootfs`` is a mount's source and ``path`` its
    root (:func:`locate`).

    Raises :class:`PathNotFound` before the first chunk when ``path`` does not exist.
    """
    root = os.path.realpath(rootfs)
    host, st = _stat(root, path)
    clean = _clean(path)
    if name is not None:
        return _stream(root, host, name, st, True)  # the root's contents, under name
    contents = path.endswith("/.") or clean == "/" or path in (".", "")
    name = "" if contents else posixpath.basename(clean)
    return _stream(root, host, name, st, contents)


def _stream(root: str, host: str, name: str, st: os.stat_result, contents: bool) -> Iterator[bytes]:
    walker = _Walker()
    try:
        if host == root or contents:
            fd = _open_dir(root, host)
            try:
                yield from walker.tree(fd, name, os.fstat(fd))
            finally:
                os.close(fd)
        else:
            pfd, base = _open_parent(root, host)
            try:
                yield from walker.entry(pfd, base, name)
            finally:
                os.close(pfd)
    except OSError as exc:
        raise _os_error(f"archive {name or host}", exc) from exc
    yield bytes(2 * _BLOCK)


def _open_dir(root: str, host: str) -> int:
    if host == root:
        return os.open(root, _DIR_FLAGS)
    pfd, base = _open_parent(root, host)
    try:
        return os.open(base, _DIR_FLAGS, dir_fd=pfd)
    finally:
        os.close(pfd)


# --- untar ---------------------------------------------------------------------------------


def _member_parts(name: str, member: str | None = None) -> list[str]:
    what = f"archive member {member or name!r}" + (f": hardlink target {name!r}" if member else "")
    if name.startswith("/"):
        raise HostileArchive(f"{what}: absolute path")
    if "\0" in name:
        raise HostileArchive(f"{what}: NUL byte in path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HostileArchive(f"{what}: path leaves the extraction directory")
    return parts


class _Extractor:
    """Places members below the container path ``dest`` of ``root``."""

    def __init__(self, root: str, dest: str, *, no_overwrite: bool, copy_owner: bool) -> None:
        self.root = root
        self.dest = dest  # container path, clean
        self.no_overwrite = no_overwrite
        self.copy_owner = copy_owner
        self.planted: set[str] = set()  # container paths of symlinks this archive made
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self._cache: dict[tuple[str, ...], int] = {}
        self._stale: list[int] = []

    def _container_path(self, parts: list[str]) -> str:
        return posixpath.join(self.dest, *parts) if parts else self.dest

    def _parent_fd(self, member: str, parts: list[str]) -> int:
        """The directory fd for ``parts`` (relative to dest), resolved in-root; missing
        directories are created; a symlink this archive planted is refused."""
        resolved: list[str] = []
        pending = [p for p in self.dest.split("/") if p] + parts
        fd = os.open(self.root, _DIR_FLAGS)
        links = 0
        try:
            while pending:
                part = pending.pop(0)
                if part == "..":
                    resolved = resolved[:-1]
                    os.close(fd)
                    fd = self._walk(resolved)
                    continue
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise HostileArchive(
                            f"archive member {member!r}: {'/' + '/'.join([*resolved, part])} "
                            "is not a directory"
                        ) from exc
                    here = "/" + "/".join([*resolved, part])
                    if here in self.planted:
                        raise HostileArchive(
                            f"archive member {member!r}: path goes through a symlink "
                            f"the archive made ({here})"
                        ) from exc
                    links += 1
                    if links > 40:
                        raise HostileArchive(
                            f"archive member {member!r}: too many levels of symbolic links"
                        ) from exc
                    target = os.readlink(part, dir_fd=fd)
                    if target.startswith("/"):
                        resolved = []
                    pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                    os.close(fd)
                    fd = self._walk(resolved)
                    continue
                os.close(fd)
                fd = nfd
                resolved.append(part)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _walk(self, parts: list[str]) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def place(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _member_parts(member.name)
        if not parts:  # "." or "./": the destination directory itself, left as it is
            return
        try:
            self._create(tf, member, self._dir_fd(member.name, parts[:-1]), parts)
        finally:
            for fd in self._stale:
                os.close(fd)
            self._stale.clear()

    def _dir_fd(self, member: str, parts: list[str]) -> int:
        """:meth:`_parent_fd`, cached (members come directory by directory); owned by
        the cache, which any removal invalidates."""
        key = tuple(parts)
        fd = self._cache.get(key)
        if fd is None:
            if len(self._cache) >= _MAX_CACHED_DIRS:
                self._invalidate()
            fd = self._cache[key] = self._parent_fd(member, parts)
        return fd

    def _invalidate(self) -> None:
        self._stale.extend(self._cache.values())
        self._cache.clear()

    def close(self) -> None:
        self._invalidate()
        for fd in self._stale:
            os.close(fd)
        self._stale.clear()

    def _clear(self, member: tarfile.TarInfo, pfd: int, base: str, path: str) -> bool:
        """Make room for ``member``; True when an existing directory is kept."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and member.isdir():
            return True
        if self.no_overwrite and is_dir != member.isdir():
            if is_dir:
                raise InvalidArgument(
                    f'cannot overwrite directory "{path}" with non-directory "{member.name}"'
                )
            raise InvalidArgument(
                f'cannot overwrite non-directory "{path}" with directory "{member.name}"'
            )
        self._invalidate()
        if is_dir:
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    def _create(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, parts: list[str]
    ) -> None:
        base = parts[-1]
        path = self._container_path(parts)
        kept = self._clear(member, pfd, base, path)
        if member.isdir():
            if not kept:
                os.mkdir(base, 0o700, dir_fd=pfd)
            self.dirs.append((parts, member))
            return
        if member.isreg():
            self._regular(tf, member, pfd, base)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            where = os.path.relpath(os.readlink(f"/proc/self/fd/{pfd}"), self.root)
            self.planted.add(_clean(posixpath.join(where, base)))
        elif member.islnk():
            self._hardlink(member, pfd, base)
            return  # a hardlink shares its target's metadata
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            kind = stat.S_IFIFO if member.isfifo() else kind
            rdev = os.makedev(member.devmajor, member.devminor)
            os.mknod(base, kind | 0o600, rdev, dir_fd=pfd)
        else:
            return  # other types (GNU sparse handled by tarfile as regular, pax globals)
        self._meta(member, pfd, base)

    def _regular(self, tf: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(member)
            if src is not None:
                while chunk := src.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _hardlink(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        target = _member_parts(member.linkname, member.name)
        if not target:
            raise HostileArchive(f"archive member {member.name!r}: hardlink to the directory")
        tfd = self._dir_fd(member.name, target[:-1])
        try:
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise InvalidArgument(
                f"archive member {member.name!r}: hardlink target {member.linkname!r} "
                "does not exist"
            ) from exc

    def _meta(self, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        uid, gid = (member.uid, member.gid) if self.copy_owner else (0, 0)
        try:
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        except PermissionError:
            if os.geteuid() == 0:
                raise  # unprivileged (tests, rootless): files stay ours
        if not member.issym():
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)
        proc = f"/proc/self/fd/{pfd}/{base}"
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr.") or key.startswith("SCHILY.xattr.trusted.ov"):
                continue
            try:
                raw = value.encode("utf-8", "surrogateescape")
                os.setxattr(proc, key[len("SCHILY.xattr.") :], raw, follow_symlinks=False)
            except OSError:
                continue  # best effort, as Docker
        mtime = int(member.mtime * 1e9)
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory metadata last (children changed their mtimes), deepest first."""
        for parts, member in reversed(self.dirs):
            self._meta(member, self._dir_fd(member.name, parts[:-1]), parts[-1])


def extract_into(
    rootfs: str,
    path: str,
    stream: BinaryIO,
    *,
    no_overwrite_dir_non_dir: bool = False,
    copy_uid_gid: bool = False,
) -> None:
    """Extract a tar (plain, gzip, bzip2 or xz) into the existing directory ``path`` of
    the container. Hostile members are refused naming the member; nothing is written
    outside ``rootfs``. Files are owned by 0:0 unless ``copy_uid_gid``."""
    root = os.path.realpath(rootfs)
    host = secure_join(root, _clean(path))
    try:
        st = _lstat_in_root(root, host)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PathNotFound(path) from exc
    except OSError as exc:
        raise _os_error(f"stat {path}", exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectory(f"extraction point is not a directory: {path}")
    dest = "/" + os.path.relpath(host, root) if host != root else "/"
    extractor = _Extractor(
        root, _clean(dest), no_overwrite=no_overwrite_dir_non_dir, copy_owner=copy_uid_gid
    )
    member_name = ""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            for member in tf:
                member_name = member.name
                extractor.place(tf, member)
        extractor.finish()
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid tar archive: {exc}") from exc
    except (EOFError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"invalid tar archive member {member_name!r}: {exc}") from exc
    except OSError as exc:
        raise _os_error(f"extract archive member {member_name!r} into {path}", exc) from exc
    finally:
        extractor.close()


# --- copy between roots --------------------------------------------------------------------


class _ChunkReader:
    """A file-like ``read`` over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if self._pos == len(self._buf):
            self._buf, self._pos = next(self._chunks, b""), 0
        if n < 0 or self._pos + n > len(self._buf):
            parts = [self._buf[self._pos :]]
            have = len(parts[0])
            while n < 0 or have < n:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                parts.append(chunk)
                have += len(chunk)
            self._buf, self._pos = b"".join(parts), 0
        end = len(self._buf) if n < 0 else self._pos + n
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out


def copy_tree(rootfs: str, path: str, dest: str) -> bool:
    """Copy the contents of directory ``path`` of the container into the host directory
    ``dest`` (a volume's ``_data``) through a tar pipe, as Docker does: hardlinks,
    symlinks, special files, owners, modes, times, xattrs (best effort); then the
    directory's own owner, mode and times. :class:`PathNotFound` or
    :class:`NotADirectory` when ``path`` is not a directory of the container."""
    root = os.path.realpath(rootfs)
    host, st = _stat(root, path.rstrip("/") + "/.")
    chunks = _stream(root, host, "", st, True)
    try:
        extract_into(dest, "/", _ChunkReader(chunks), copy_uid_gid=True)  # type: ignore[arg-type]
    finally:
        chunks.close()
    try:
        sfd = _open_dir(root, host)
        try:
            dfd = os.open(dest, _DIR_FLAGS)
            try:
                _copy_dir_meta(sfd, dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
    except OSError as exc:
        raise _os_error(f"copy {path} into {dest}", exc) from exc
    return True


def _copy_dir_meta(sfd: int, dfd: int) -> None:
    st = os.fstat(sfd)
    try:
        os.fchown(dfd, st.st_uid, st.st_gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise
    os.fchmod(dfd, stat.S_IMODE(st.st_mode))
    info = tarfile.TarInfo()
    _xattrs(info, sfd, None)
    for key, value in info.pax_headers.items():
        try:
            os.setxattr(dfd, key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape"))
        except OSError:
            continue
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
