"""Path resolution that cannot be led out of a root by symlinks or ``..``.

:func:`secure_join` resolves a path as the container would see it — symlinks are
followed, but absolute targets and ``..`` are taken relative to ``root`` — the way
filepath-securejoin does for runc. :func:`open_in_root` then opens the result with
``O_PATH|O_NOFOLLOW`` and checks through /proc that the file really is inside
``root``, so a symlink swapped in between cannot redirect a mount.
"""

from __future__ import annotations

import os
import stat

from portside.errors import InvalidArgument, PermissionDenied

__all__ = ["mkdir_all_in_root", "open_in_root", "secure_join"]

_MAX_SYMLINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """``root`` joined with ``unsafe``, every symlink resolved inside ``root``.

    Components that do not exist are appended as they are. The result is always
    ``root`` itself or a path below it.
    """
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise InvalidArgument(f"{unsafe}: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        target_parts = [p for p in target.split("/") if p not in ("", ".")]
        pending = target_parts + pending
    return os.path.join(root, *resolved) if resolved else root


def _check_inside(fd: int, root: str, what: str) -> None:
    real = os.readlink(f"/proc/self/fd/{fd}")
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise PermissionDenied(f"{what}: resolves to {real}, outside the container root {root}")


def open_in_root(root: str, path: str, what: str, *, real_root: str | None = None) -> int:
    """An O_PATH fd of ``path`` (already resolved by :func:`secure_join`), checked to
    be inside ``root``. Mount onto ``/proc/self/fd/N`` of it.

    ``real_root``: ``os.path.realpath(root)`` when the caller already has it (a
    loop over many mounts resolves the root once, not once per mount)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _check_inside(fd, real_root or os.path.realpath(root), what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mkdir_all_in_root(root: str, unsafe: str, mode: int = 0o755) -> str:
    """Create every missing directory of ``unsafe`` inside ``root``; return the
    resolved path. Refuses to create through an existing non-directory."""
    path = secure_join(root, unsafe)
    try:  # the common case: it exists already (one lstat instead of one per level)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return path
    except (FileNotFoundError, NotADirectoryError):
        pass
    rel = os.path.relpath(path, root)
    current = root
    if rel == ".":
        return path
    for part in rel.split("/"):
        current = os.path.join(current, part)
        try:
            os.mkdir(current, mode)
        except FileExistsError:
            st = os.lstat(current)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(
                    f"{unsafe}: {current} exists and is not a directory"
                ) from None
    return path
