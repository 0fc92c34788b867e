"""The one place that loads libc through ctypes.

Everything in :mod:`portside.linux` that Python's ``os`` lacks calls libc here, and
turns a -1 return into :class:`OSError` carrying errno and the path or value that
failed, so that errors read like ``mount /proc: Operation not permitted``.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["SYSCALLS", "call", "libc", "release_free_memory", "syscall"]

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

_ARCH = os.uname().machine

#: syscall numbers libc has no wrapper for (or whose wrapper is too new), by arch
SYSCALLS: dict[str, int] = {
    "x86_64": {
        "pivot_root": 155,
        "pidfd_send_signal": 424,
        "pidfd_open": 434,
        "openat2": 437,
        "bpf": 321,
        "seccomp": 317,
        "mount_setattr": 442,
    },
    "aarch64": {
        "pivot_root": 41,
        "pidfd_send_signal": 424,
        "pidfd_open": 434,
        "openat2": 437,
        "bpf": 280,
        "seccomp": 277,
        "mount_setattr": 442,
    },
}.get(_ARCH, {})


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def call(what: str, ret: int) -> int:
    """Return ``ret``, or raise OSError(errno, "<what>: <strerror>") when it is -1."""
    if ret == -1:
        _raise(what)
    return ret


def syscall(name: str, *args: object) -> int:
    """Invoke a raw syscall by name; raise OSError on failure."""
    try:
        nr = SYSCALLS[name]
    except KeyError:
        raise OSError(38, f"{name}: no syscall number known for {_ARCH}") from None
    return call(name, libc.syscall(nr, *args))


def release_free_memory() -> None:
    """Give the C heap's free pages back to the kernel (glibc's ``malloc_trim``; nothing
    where libc has none): after a burst of small allocations, such as libseccomp
    building a filter, that would otherwise stay in the process's resident set."""
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
