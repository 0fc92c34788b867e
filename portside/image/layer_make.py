"""Making a layer: a directory (or an overlay upper directory) as a layer tar.

The inverse of :mod:`portside.image.layer`, for commit, export and tests.
"""

from __future__ import annotations

import os
import stat

from portside.errors import FailedPrecondition, Internal, InvalidArgument, NotFound
from portside.image.layer import (
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    _is_whiteout,
    _strerror,
)
from portside.image.tarstream import (
    BLK,
    BLOCK,
    CHR,
    CHUNK,
    DIR,
    FIFO,
    LINK,
    REG,
    SYMLINK,
    LayerWriter,
    TarEntry,
    encode_header,
    end_of_archive,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["make_layer"]


def _header_for(path: str, name: str, st: os.stat_result) -> TarEntry:
    mode = st.st_mode
    entry = TarEntry(
        name,
        REG,
        mode=stat.S_IMODE(mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
    )
    if stat.S_ISDIR(mode):
        entry.type, entry.name = DIR, name + "/"
    elif stat.S_ISLNK(mode):
        entry.type, entry.linkname = SYMLINK, os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        entry.type = CHR if stat.S_ISCHR(mode) else BLK
        entry.devmajor, entry.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        entry.type = FIFO
    elif stat.S_ISREG(mode):
        entry.size = st.st_size
    else:
        raise InvalidArgument(f"{path}: cannot archive a socket")
    xattrs = {}
    for key in os.listxattr(path, follow_symlinks=False):
        if not key.startswith("trusted.overlay.") and key != "security.selinux":
            xattrs[key] = os.getxattr(path, key, follow_symlinks=False)
    entry.xattrs = xattrs or None
    return entry


def _write_file(sink: LayerWriter, path: str, size: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        left = size
        while left:
            chunk = os.read(fd, min(left, CHUNK))
            if not chunk:
                raise FailedPrecondition(f"{path}: file shrank while it was archived")
            sink.write(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    sink.write(bytes(-size % BLOCK))


def _walk(
    sink: LayerWriter, top: str, prefix: str, overlay: bool, links: dict[tuple[int, int], str]
) -> None:
    """Archive the children of ``top`` (named ``prefix + name``), sorted by bytes."""
    for name in sorted(os.listdir(top), key=os.fsencode):
        path = os.path.join(top, name)
        st = os.lstat(path)
        rel = prefix + name
        if overlay and _is_whiteout(st):
            whiteout = TarEntry(prefix + WHITEOUT_PREFIX + name, REG, mode=0o600)
            whiteout.uid, whiteout.gid, whiteout.mtime_ns = st.st_uid, st.st_gid, st.st_mtime_ns
            sink.write(encode_header(whiteout))
            continue
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first = links.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                link = TarEntry(rel, LINK, linkname=first, uid=st.st_uid, gid=st.st_gid)
                link.mode, link.mtime_ns = stat.S_IMODE(st.st_mode), st.st_mtime_ns
                sink.write(encode_header(link))
                continue
        entry = _header_for(path, rel, st)
        sink.write(encode_header(entry))
        if entry.type == REG:
            _write_file(sink, path, entry.size)
        elif entry.type == DIR:
            if overlay and _opaque_path(path):
                marker = TarEntry(rel + "/" + OPAQUE_MARKER, REG, mode=entry.mode)
                marker.uid, marker.gid, marker.mtime_ns = entry.uid, entry.gid, entry.mtime_ns
                sink.write(encode_header(marker))
            _walk(sink, path, rel + "/", overlay, links)


def _opaque_path(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def make_layer(
    src_dir: str, out: BinaryIO, *, compression: str = "none", whiteouts: str = "none"
) -> tuple[str, str, int]:
    """Write ``src_dir`` as a layer tar to ``out``; return (diffID, digest, size) of what
    was written (digest and size of the compressed blob; digest == diffID uncompressed).

    Deterministic: members sorted by name bytes, ustar headers with PAX extensions only
    where needed, owners and modes kept, mtimes in whole seconds, uname/gname empty,
    hardlinks as links to the first name, xattrs as ``SCHILY.xattr.*`` (but not
    ``trusted.overlay.*`` or ``security.selinux``). The top directory itself is not a
    member. ``whiteouts="overlay"`` turns overlayfs whiteouts (0/0 char devices and
    opaque directories) back into ``.wh.`` entries, for an overlay upper directory.
    """
    if whiteouts not in ("none", "overlay"):
        raise InvalidArgument(f"whiteouts must be 'none' or 'overlay', not {whiteouts!r}")
    sink = LayerWriter(out, compression)
    try:
        _walk(sink, src_dir, "", whiteouts == "overlay", {})
    except FileNotFoundError as exc:
        raise NotFound(f"{exc.filename}: no such file or directory") from exc
    except OSError as exc:
        raise Internal(f"archive {exc.filename or src_dir}: {_strerror(exc)}") from exc
    sink.write(end_of_archive())
    return sink.close()
