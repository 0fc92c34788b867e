"""The changes of a read-write layer: as a list (``docker diff``) and as a layer tar.

Two ways to find them:

- ``mode="overlay"``: ``upper`` is an overlayfs upper directory, holding only what
  changed. An entry there is added (``A``) or, when the lower layers have that path,
  changed (``C``); a 0/0 character device is a deletion (``D``); an opaque directory
  (``trusted.overlay.opaque=y``) deletes every lower entry it does not hold again.
- ``mode="tree"``: ``upper`` is a complete tree (the vfs snapshotter's copy),
  compared with the lower one by type, mode, owner, size, mtime, device number and
  link target.

``lower`` is the stack the upper directory was made on, nearest first: directories,
or the :class:`~portside.image.snapshots.Mount` list of a view of the parent (bind
sources, overlay ``upperdir`` and ``lowerdir`` entries). Whiteouts and opaque
directories inside the lower layers are honoured, as overlayfs would.

:func:`changes` lists them as ``docker diff`` prints them: every parent of a changed
path is itself a ``C`` (or ``A``), sorted by path. :func:`write_diff` writes the
layer: PAX tar, entries in path order, ``.wh.NAME`` for a deletion and
``DIR/.wh..wh..opq`` after an opaque directory, owner, mode, mtime (whole seconds,
as Docker writes them), xattrs (``SCHILY.xattr.*``; not ``trusted.overlay.*`` nor
``security.selinux``), devices and hardlinks within the layer preserved.

Not handled: overlayfs ``redirect_dir`` and ``metacopy`` uppers (both off by default;
the snapshotter does not turn them on).
"""

from __future__ import annotations

import os
import stat

from portside.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Sequence
    from typing import BinaryIO

    from portside.image.snapshots import Mount

__all__ = [
    "ADD",
    "DELETE",
    "MODIFY",
    "Change",
    "changes",
    "lower_dirs",
    "split_mounts",
    "write_diff",
]

ADD = "A"
MODIFY = "C"
DELETE = "D"

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_SKIPPED_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")

Stat = os.stat_result


class Change:
    """One changed path: ``kind`` is ``A``, ``C`` or ``D``; ``path`` starts with ``/``."""

    __slots__ = ("kind", "path")

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return (self.kind, self.path) == (other.kind, other.path)

    def __hash__(self) -> int:
        return hash((self.kind, self.path))

    def __repr__(self) -> str:
        return f"Change({self.kind!r}, {self.path!r})"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def lower_dirs(lower: Sequence[str | Mount]) -> list[str]:
    """The directories of a lower stack given as directories and/or mounts."""
    dirs: list[str] = []
    for item in lower:
        if isinstance(item, str):
            dirs.append(item)
        elif item.type == "overlay":
            options = dict(o.split("=", 1) for o in item.options if "=" in o)
            if "upperdir" in options:
                dirs.append(options["upperdir"])
            dirs.extend(d for d in options.get("lowerdir", "").split(":") if d)
        else:
            dirs.append(item.source)
    return dirs


def split_mounts(mounts: Sequence[Mount]) -> tuple[list[str], str]:
    """(lower directories, upper directory) of an active overlay snapshot's mounts."""
    if len(mounts) == 1:
        m = mounts[0]
        options = dict(o.split("=", 1) for o in m.options if "=" in o)
        if m.type == "overlay" and "upperdir" in options:
            return [d for d in options.get("lowerdir", "").split(":") if d], options["upperdir"]
        if m.type == "bind" and "ro" not in m.options:
            return [], m.source
    raise InvalidArgument(f"not the mounts of an active snapshot: {list(mounts)!r}")


def _is_whiteout(st: Stat) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


class _Lower:
    """The merged, read-only view of a stack of layer directories (nearest first)."""

    def __init__(self, dirs: list[str]) -> None:
        self.dirs = dirs

    @staticmethod
    def _in_layer(layer: str, rel: str) -> tuple[Stat | None, bool]:
        """(stat of ``rel`` in ``layer`` or None, whether layers below are hidden)."""
        if not rel:
            return os.lstat(layer), False
        path, opaque = layer, False
        parts = rel.split("/")
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, opaque
            if i == len(parts) - 1:
                return st, False
            if not stat.S_ISDIR(st.st_mode):
                return None, True  # a file or whiteout here hides what is below it
            opaque = opaque or _is_opaque(path)
        return None, opaque  # pragma: no cover - the loop returns

    def lookup(self, rel: str) -> tuple[str, Stat] | None:
        """(path, stat) of ``rel`` in the merged view, or None."""
        for layer in self.dirs:
            st, hidden = self._in_layer(layer, rel)
            if st is not None:
                return None if _is_whiteout(st) else (os.path.join(layer, rel), st)
            if hidden:
                return None
        return None

    def listdir(self, rel: str) -> dict[str, tuple[str, Stat]]:
        """The merged entries of directory ``rel``: name -> (path, stat)."""
        found: dict[str, tuple[str, Stat]] = {}
        hidden: set[str] = set()
        for layer in self.dirs:
            st, below_hidden = self._in_layer(layer, rel)
            if st is None:
                if below_hidden:
                    break
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            path = os.path.join(layer, rel) if rel else layer
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name in found or entry.name in hidden:
                        continue
                    est = entry.stat(follow_symlinks=False)
                    if _is_whiteout(est):
                        hidden.add(entry.name)
                    else:
                        found[entry.name] = (entry.path, est)
            if _is_opaque(path):
                break
        return found


class _Result:
    """What a walk found: rel path -> kind, plus what the tar needs to know."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.opaque: set[str] = set()  # directories to mark opaque in the tar
        self.implied: set[str] = set()  # deletions an opaque marker already says


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _scan(path: str) -> dict[str, Stat]:
    with os.scandir(path) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


def _walk_overlay(lower: _Lower, upper: str) -> _Result:
    res = _Result()
    stack = [""]
    while stack:
        rel = stack.pop()
        entries = _scan(os.path.join(upper, rel) if rel else upper)
        for name, st in entries.items():
            p = _join(rel, name)
            old = lower.lookup(p)
            if _is_whiteout(st):
                if old is not None:
                    res.kinds[p] = DELETE
                continue
            res.kinds[p] = MODIFY if old is not None else ADD
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
                if _is_opaque(os.path.join(upper, p)):
                    res.opaque.add(p)
        if rel in res.opaque:
            for name in lower.listdir(rel):
                if name not in entries:
                    res.kinds[_join(rel, name)] = DELETE
                    res.implied.add(_join(rel, name))
    return res


def _differs(new: Stat, new_path: str, old: Stat, old_path: str) -> bool:
    if stat.S_IFMT(new.st_mode) != stat.S_IFMT(old.st_mode):
        return True
    if (new.st_mode, new.st_uid, new.st_gid) != (old.st_mode, old.st_uid, old.st_gid):
        return True
    if new.st_mtime_ns != old.st_mtime_ns:
        return True
    if stat.S_ISDIR(new.st_mode):
        return False
    if new.st_size != old.st_size or new.st_rdev != old.st_rdev:
        return True
    return stat.S_ISLNK(new.st_mode) and os.readlink(new_path) != os.readlink(old_path)


def _walk_tree(lower: _Lower, upper: str) -> _Result:
    res = _Result()
    stack = [("", False)]  # (rel, everything below is new)
    while stack:
        rel, added = stack.pop()
        path = os.path.join(upper, rel) if rel else upper
        entries = _scan(path)
        old = {} if added else lower.listdir(rel)
        for name in old.keys() - entries.keys():
            res.kinds[_join(rel, name)] = DELETE
        for name, st in entries.items():
            p = _join(rel, name)
            was = old.get(name)
            is_dir = stat.S_ISDIR(st.st_mode)
            if was is None:
                res.kinds[p] = ADD
            elif _differs(st, os.path.join(path, name), was[1], was[0]):
                res.kinds[p] = MODIFY
            if is_dir:
                was_dir = was is not None and stat.S_ISDIR(was[1].st_mode)
                stack.append((p, not was_dir))
    return res


def _walk(lower: Sequence[str | Mount], upper: str, mode: str) -> _Result:
    if mode not in ("overlay", "tree"):
        raise InvalidArgument(f"invalid diff mode {mode!r}: want overlay or tree")
    if not os.path.isdir(upper):
        raise NotFound(f"upper directory {upper} does not exist")
    view = _Lower(lower_dirs(lower))
    res = _walk_overlay(view, upper) if mode == "overlay" else _walk_tree(view, upper)
    for p in list(res.kinds):
        parent = p.rpartition("/")[0]
        while parent and parent not in res.kinds:
            res.kinds[parent] = MODIFY
            parent = parent.rpartition("/")[0]
    return res


def changes(lower: Sequence[str | Mount], upper: str, *, mode: str = "overlay") -> list[Change]:
    """The changes ``upper`` makes to ``lower``, as ``docker diff`` lists them."""
    res = _walk(lower, upper, mode)
    return [Change(res.kinds[p], "/" + p) for p in sorted(res.kinds)]


class _HashingSink:
    """A write-only file that hashes and counts what passes to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        import hashlib

        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def write_diff(
    lower: Sequence[str | Mount], upper: str, out: BinaryIO, *, mode: str = "overlay"
) -> tuple[str, int]:
    """Write the layer tar of :func:`changes` to ``out``; returns (diffID, size)."""
    import tarfile

    res = _walk(lower, upper, mode)
    sink = _HashingSink(out)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel in sorted(res.kinds):
            if res.kinds[rel] == DELETE:
                if rel not in res.implied:
                    head, _, base = rel.rpartition("/")
                    tar.addfile(_marker(_join(head, WHITEOUT_PREFIX + base)))
                continue
            _add(tar, os.path.join(upper, rel), rel)
            if rel in res.opaque:
                tar.addfile(_marker(_join(rel, OPAQUE_MARKER)))
    return "sha256:" + sink.hash.hexdigest(), sink.size


def _marker(name: str) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.mode = 0
    info.mtime = 0
    return info


def _add(tar: tarfile.TarFile, path: str, rel: str) -> None:
    info = tar.gettarinfo(path, arcname=rel)
    if info is None:  # a socket: layers do not carry them
        return
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    if not info.issym():
        for name in sorted(_xattrs(path)):
            value = os.getxattr(path, name, follow_symlinks=False)
            info.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


def _xattrs(path: str) -> list[str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    return [n for n in names if not n.startswith(_SKIPPED_XATTRS)]
