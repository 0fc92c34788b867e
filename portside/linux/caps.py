"""Linux capabilities and the prctl knobs a container init turns before execve.

Names map to numbers in :data:`CAPS`; a set of capabilities travels as an ``int``
bitmask (bit *n* = capability *n*). :func:`apply_capabilities` is the whole ordered
sequence a container init runs as root: keep caps across the uid change, shrink the
bounding set, switch groups and ids, then set the thread's sets and the ambient set.
"""

from __future__ import annotations

import ctypes
import errno
import os

from portside.errors import Internal, InvalidArgument, PermissionDenied
from portside.linux._libc import call, libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CAPS",
    "apply_capabilities",
    "capget",
    "caps_to_names",
    "capset",
    "drop_bounding",
    "known_caps",
    "last_cap",
    "parse_caps",
    "set_ambient",
    "set_child_subreaper",
    "set_dumpable",
    "set_keepcaps",
    "set_no_new_privs",
    "set_pdeathsig",
]

#: every capability name of linux/capability.h, by number
CAPS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}
_NAMES = {number: name for name, number in CAPS.items()}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows (cached)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = max(CAPS.values())
    return _last_cap


def known_caps() -> list[str]:
    """Every capability name Portside knows, in number order (for ``features``)."""
    return list(CAPS)


def parse_caps(names: list[str], what: str) -> int:
    """The bitmask of ``names``; names the running kernel lacks are skipped, as runc does.

    ``what`` is the config path named in the error of an unknown name.
    """
    top = last_cap()
    mask = 0
    for name in names:
        number = CAPS.get(name)
        if number is None:
            raise InvalidArgument(f"{what}: unknown capability {name!r}")
        if number <= top:
            mask |= 1 << number
    return mask


def caps_to_names(mask: int) -> list[str]:
    """The names of the capabilities set in ``mask``, in number order."""
    return [_NAMES.get(n, f"CAP_{n}") for n in range(mask.bit_length()) if mask >> n & 1]


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def capget() -> tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) bitmasks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    call("capget", libc.capget(ctypes.byref(header), data))
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's effective, permitted and inheritable sets."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = effective >> shift & 0xFFFFFFFF
        data[i].permitted = permitted >> shift & 0xFFFFFFFF
        data[i].inheritable = inheritable >> shift & 0xFFFFFFFF
    call("capset", libc.capset(ctypes.byref(header), data))


def _prctl(what: str, option: int, arg2: int = 0, arg3: int = 0) -> int:
    ul = ctypes.c_ulong
    return call(what, libc.prctl(ctypes.c_int(option), ul(arg2), ul(arg3), ul(0), ul(0)))


def drop_bounding(keep: int) -> None:
    """Drop from the bounding set every capability up to :func:`last_cap` not in ``keep``."""
    for cap in range(last_cap() + 1):
        if not keep >> cap & 1:
            _prctl(f"drop {_NAMES.get(cap, cap)} from bounding set", PR_CAPBSET_DROP, cap)


def set_ambient(caps: int) -> None:
    """Make ``caps`` the ambient set: clear it, then raise each capability."""
    _prctl("clear ambient set", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(caps.bit_length()):
        if caps >> cap & 1:
            name = _NAMES.get(cap, cap)
            _prctl(f"raise ambient {name}", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def set_keepcaps(on: bool) -> None:
    """Keep (or not) the permitted set across a change of uid away from 0."""
    _prctl("set keepcaps", PR_SET_KEEPCAPS, int(on))


def set_no_new_privs() -> None:
    """Set no_new_privs: execve can never grant privileges again."""
    _prctl("set no_new_privs", PR_SET_NO_NEW_PRIVS, 1)


def set_dumpable(on: bool) -> None:
    """Set the dumpable flag (ptrace access and ownership of /proc/self)."""
    _prctl("set dumpable", PR_SET_DUMPABLE, int(on))


def set_pdeathsig(sig: int) -> None:
    """Get ``sig`` when the parent thread dies (0 to cancel)."""
    _prctl("set pdeathsig", PR_SET_PDEATHSIG, int(sig))


def set_child_subreaper(on: bool) -> None:
    """Adopt orphaned descendants (mark the caller a child subreaper)."""
    _prctl("set child subreaper", PR_SET_CHILD_SUBREAPER, int(on))


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups", "rb") as f:
            return f.read().strip() != b"deny"
    except FileNotFoundError:
        return True


def _step(step: str, exc: OSError) -> Exception:
    msg = f"capabilities: {step}: {os.strerror(exc.errno) if exc.errno else exc}"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(msg)
    if exc.errno == errno.EINVAL:
        return InvalidArgument(msg)
    return Internal(msg)


def apply_capabilities(
    bounding: int,
    effective: int,
    permitted: int,
    inheritable: int,
    ambient: int,
    *,
    uid: int,
    gid: int,
    additional_gids: list[int],
) -> int:
    """Switch the calling (root) process to its container user and capability sets.

    Ambient capabilities that cannot be raised (not in both permitted and
    inheritable) are left out silently, as runc does; the ambient mask actually
    raised is returned so the caller may warn. Errors name the failing step.
    """
    steps: list[tuple[str, Callable[..., object], tuple[object, ...]]] = [
        ("set keepcaps", set_keepcaps, (True,)),
        ("drop bounding set", drop_bounding, (bounding,)),
    ]
    if _setgroups_allowed():
        steps.append((f"setgroups {additional_gids}", os.setgroups, (additional_gids,)))
    steps += [
        (f"setresgid {gid}", os.setresgid, (gid, gid, gid)),
        (f"setresuid {uid}", os.setresuid, (uid, uid, uid)),
        ("clear keepcaps", set_keepcaps, (False,)),
        ("capset", capset, (effective, permitted, inheritable)),
    ]
    for step, fn, args in steps:
        try:
            fn(*args)
        except OSError as exc:
            raise _step(step, exc) from exc
    raisable = ambient & permitted & inheritable
    try:
        set_ambient(raisable)
    except OSError:
        return _ambient_best_effort(raisable)
    return raisable


def _ambient_best_effort(caps: int) -> int:
    """Raise what of ``caps`` the kernel accepts, one by one; return the raised mask."""
    raised = 0
    for cap in range(caps.bit_length()):
        if caps >> cap & 1:
            try:
                _prctl("raise ambient", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
            except OSError:
                continue
            raised |= 1 << cap
    return raised
