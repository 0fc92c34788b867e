"""Docker's ``User`` and ``GroupAdd`` → numeric ids, read from the container's own files.

``user`` is ``name``, ``uid``, ``name:group``, ``uid:gid`` (any mix); numeric ids need
no passwd or group entry, names do. Like Docker (libcontainer's ``GetExecUser``), a
user given by name or found in /etc/passwd gets its primary group and home from
there and, when no group is given, the supplementary groups /etc/group lists it in.
/etc/passwd and /etc/group are looked up inside the rootfs, symlinks resolved as if
the rootfs were ``/`` so that a hostile image cannot point them at the host's files.
"""

from __future__ import annotations

import errno
import os
import stat

from portside.errors import InvalidArgument
from portside.runtime.paths import secure_join as in_root  # the runtime's in-root walk
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ExecUser", "in_root", "lookup_user", "resolve_user"]

_MAX_ID = (1 << 31) - 1
_MAX_FILE = 4 * 1024 * 1024  # a passwd or group file larger than this is not read


class ExecUser:
    """The ids and home directory a process runs with."""

    __slots__ = ("additional_gids", "gid", "home", "uid")

    def __init__(self, uid: int, gid: int, additional_gids: list[int], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.home = home

    def __repr__(self) -> str:
        return f"ExecUser({self.uid}, {self.gid}, {self.additional_gids}, {self.home!r})"


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    """The colon-separated entries of a passwd-style file in the rootfs ([] if missing)."""
    host = in_root(rootfs, path)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return []
        raise InvalidArgument(f"{path} in the container: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = f.read(_MAX_FILE)
    out = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def _number(text: str) -> int | None:
    """``text`` as an id, None when it is not a number; out of range is an error."""
    if not is_number(text):
        return None
    value = int(text)
    if value > _MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}: {text}")
    return value


def _field_int(entry: list[str], index: int) -> int | None:
    try:
        return int(entry[index])
    except (IndexError, ValueError):
        return None


def _find_user(passwd: list[list[str]], spec: str) -> tuple[str, int, int, str] | None:
    """(name, uid, gid, home) of the passwd entry matching a name or a uid."""
    for entry in passwd:
        uid, gid = _field_int(entry, 2), _field_int(entry, 3)
        if uid is None or gid is None:
            continue
        if entry[0] == spec or str(uid) == spec:
            home = entry[5] if len(entry) > 5 else "/"
            return entry[0], uid, gid, home or "/"
    return None


def _find_group(groups: list[list[str]], spec: str) -> int | None:
    for entry in groups:
        gid = _field_int(entry, 2)
        if gid is not None and (entry[0] == spec or str(gid) == spec):
            return gid
    return None


def _member_of(groups: list[list[str]], name: str) -> list[int]:
    out = []
    for entry in groups:
        gid = _field_int(entry, 2)
        members = entry[3].split(",") if len(entry) > 3 else []
        if gid is not None and name in members and gid not in out:
            out.append(gid)
    return out


def lookup_user(rootfs: str, user: str, group_add: Iterable[str] = ()) -> ExecUser:
    """The :class:`ExecUser` for Docker's ``User`` (``""`` is root) and ``GroupAdd``."""
    user_part, _, group_part = (user or "").partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    uid, gid, home, name = 0, 0, "/", ""
    if user_part:
        found = _find_user(passwd, user_part)
        if found is not None:
            name, uid, gid, home = found
        else:
            number = _number(user_part)
            if number is None:
                raise InvalidArgument(
                    f"unable to find user {user_part}: no matching entries in passwd file"
                )
            uid = number
    else:
        found = _find_user(passwd, "0")
        if found is not None:
            name, uid, gid, home = found
    groups = _read_db(rootfs, "/etc/group") if (group_part or name or group_add) else []
    additional: list[int] = []
    if group_part:
        number = _find_group(groups, group_part)
        if number is None:
            number = _number(group_part)
            if number is None:
                raise InvalidArgument(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
        gid = number
    elif name:
        additional = _member_of(groups, name)
    for extra in group_add:
        number = _find_group(groups, extra)
        if number is None:
            number = _number(extra)
            if number is None:
                raise InvalidArgument(
                    f"unable to find group {extra}: no matching entries in group file"
                )
        if number not in additional:
            additional.append(number)
    return ExecUser(uid, gid, additional, home)


def resolve_user(
    rootfs: str, user: str, group_add: Iterable[str] = ()
) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) of Docker's ``User`` and ``GroupAdd`` in ``rootfs``."""
    found = lookup_user(rootfs, user, group_add)
    return found.uid, found.gid, found.additional_gids
