"""Portside's default seccomp profile, and Docker's profile format → the OCI record.

The default profile denies by default (EPERM) and allows what an ordinary program
needs, grouped below by purpose. It is applied to every ABI the CPU can run: on
x86_64 the i386 and x32 ABIs get the same filter as the native one, on aarch64 the
32-bit arm ABI does. Beyond an allow-list it:

- answers ``clone3`` with ENOSYS, so libc falls back to ``clone``, whose flags a
  filter can see (clone3 passes them in memory);
- allows ``clone`` and ``unshare`` only without CLONE_NEW* flags (no new namespaces);
- leaves out mount and the new mount API, pivot_root, the keyring (keyctl, add_key,
  request_key), bpf, perf_event_open, userfaultfd, kexec, kernel modules, io_uring
  (a syscall multiplexer seccomp cannot see into) and setns;
- refuses ``socket(AF_VSOCK)`` and ``socket(AF_ALG)`` (host-facing and crypto-API
  attack surface), and ``personality`` outside Linux's ordinary personas;
- answers i386's ``socketcall`` multiplexer with ENOSYS: its arguments are in memory,
  so the socket family filter could not hold there (32-bit programs must use the
  direct socket syscalls, Linux 4.3+; a glibc built for older kernels has no network).

Capability-gated syscalls a default container cannot use anyway (e.g. ``reboot``,
``swapon``, ``settimeofday``) are left out as well: denying them is defence in depth.
"""

from __future__ import annotations

import errno
import functools
import platform

from portside.errors import InvalidArgument
from portside.oci.runtime_spec import LinuxSeccomp, LinuxSeccompArg, LinuxSyscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ALLOWED",
    "BLOCKED",
    "NATIVE_ARCHES",
    "NS_FLAGS",
    "default_profile",
    "from_docker",
    "native_arch",
]

#: ``uname -m`` → (native OCI arch, the other ABIs the kernel runs on that CPU)
NATIVE_ARCHES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "armv7l": ("SCMP_ARCH_ARM",),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}

#: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
#: CLONE_NEWPID | CLONE_NEWNET (Docker's mask); unshare also checks CLONE_NEWTIME (0x80,
#: which in clone's flags is part of the exit signal)
NS_FLAGS = 0x7E020000
_CLONE_NEWTIME = 0x80

_AF_ALG = 38
_AF_VSOCK = 40

#: the personas personality(2) may set: PER_LINUX, PER_LINUX32, UNAME26 (and with
#: PER_LINUX32), and 0xffffffff, which only queries
_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: unconditionally allowed, by purpose (names a libseccomp or an ABI lacks are skipped)
# fmt: off
ALLOWED: dict[str, tuple[str, ...]] = {
    "files": (
        "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
        "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
        "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
        "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs",
        "fstatfs64", "fsync", "ftruncate", "ftruncate64", "getcwd", "getdents", "getdents64",
        "lchown", "lchown32", "link", "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir",
        "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat", "openat2", "pread64",
        "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile",
        "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask",
        "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "futimesat",
        "vmsplice", "write", "writev", "chroot", "arm_fadvise64_64", "arm_sync_file_range",
        "sync_file_range2",
    ),
    "xattrs": (
        "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
        "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
    ),
    "notify and polling": (
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "inotify_add_watch",
        "inotify_init", "inotify_init1", "inotify_rm_watch", "poll", "ppoll", "ppoll_time64",
        "pselect6", "pselect6_time64", "select", "_newselect", "signalfd", "signalfd4",
        "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
        "timerfd_settime64", "ioctl", "pipe", "pipe2",
    ),
    "memory": (
        "brk", "madvise", "membarrier", "memfd_create", "mincore", "mlock", "mlock2", "mlockall",
        "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages", "get_mempolicy",
        "map_shadow_stack", "cachestat", "process_mrelease", "cacheflush", "set_tls", "arch_prctl",
        "modify_ldt", "get_thread_area", "set_thread_area", "breakpoint", "riscv_flush_icache",
    ),
    "processes": (
        "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork", "getegid",
        "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
        "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32",
        "getresuid", "getresuid32", "getrlimit", "ugetrlimit", "getrusage", "getsid", "gettid",
        "getuid", "getuid32", "ioprio_get", "ioprio_set", "kill", "tkill", "tgkill", "pidfd_getfd",
        "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "ptrace", "process_vm_readv",
        "process_vm_writev", "kcmp", "sched_getaffinity", "sched_getattr", "sched_getparam",
        "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "setfsgid",
        "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
        "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
        "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid", "setuid",
        "setuid32", "set_robust_list", "get_robust_list", "set_tid_address", "rseq", "seccomp",
        "times", "uname", "olduname", "wait4", "waitid", "waitpid", "sethostname", "setdomainname",
        "restart_syscall", "sysinfo", "getcpu", "nice", "getrandom", "landlock_add_rule",
        "landlock_create_ruleset", "landlock_restrict_self",
    ),
    "signals": (
        "alarm", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
        "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
        "rt_tgsigqueueinfo", "sigaction", "sigaltstack", "signal", "sigpending", "sigprocmask",
        "sigreturn", "sigsuspend",
    ),
    "time": (
        "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
        "clock_nanosleep", "clock_nanosleep_time64", "gettimeofday", "getitimer", "setitimer",
        "nanosleep", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_gettime64", "timer_settime", "timer_settime64",
    ),
    "threads and ipc": (
        "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "ipc",
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
        "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
        "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
        "shmget",
    ),
    "aio": (
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "io_setup", "io_submit",
    ),
    "network": (
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg",
        "sendmsg", "sendto", "setsockopt", "shutdown", "socketpair",
    ),
}

#: denied outright, named so that tests (and readers) can check they stay out
BLOCKED: tuple[str, ...] = (
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "setns", "socketcall", "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff",
    "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl",
    "lookup_dcookie", "iopl", "ioperm", "vm86", "vm86old", "uselib", "fanotify_init",
)
# fmt: on


def native_arch() -> str:
    """The OCI arch name of this machine, e.g. ``SCMP_ARCH_X86_64``."""
    arches = NATIVE_ARCHES.get(platform.machine())
    if arches is None:
        raise InvalidArgument(f"seccomp: no default profile for {platform.machine()}")
    return arches[0]


def _arg(index: int, value: int, op: str, value_two: int | None = None) -> LinuxSeccompArg:
    """One argument test; for SCMP_CMP_MASKED_EQ ``value`` is the mask and ``value_two``
    the value (``arg & value == value_two``), as in libseccomp and Docker's profiles."""
    return LinuxSeccompArg(index=index, value=value, value_two=value_two, op=op)


def _rule(
    names: list[str],
    *args: LinuxSeccompArg,
    action: str = "SCMP_ACT_ALLOW",
    errno_ret: int | None = None,
) -> LinuxSyscall:
    return LinuxSyscall(names=names, action=action, errno_ret=errno_ret, args=list(args))


def _clone_flags_arg() -> int:
    """clone's flags are its first argument, but the second on s390."""
    return 1 if platform.machine().startswith("s390") else 0


def _conditional_rules() -> list[LinuxSyscall]:
    """The rules that look at arguments (each rule's args are ANDed, rules ORed)."""
    masked = "SCMP_CMP_MASKED_EQ"
    rules = [
        # clone(flags, ...) on x86 and arm: no namespace flags
        _rule(["clone"], _arg(_clone_flags_arg(), NS_FLAGS, masked, 0)),
        _rule(["unshare"], _arg(0, NS_FLAGS | _CLONE_NEWTIME, masked, 0)),
        _rule(["clone3"], action="SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS),
        # socket(domain, ...): every family but AF_ALG (38) and AF_VSOCK (40)
        _rule(["socket"], _arg(0, _AF_ALG, "SCMP_CMP_LT")),
        _rule(["socket"], _arg(0, _AF_ALG + 1, "SCMP_CMP_EQ")),
        _rule(["socket"], _arg(0, _AF_VSOCK, "SCMP_CMP_GT")),
        # i386's socketcall(2) carries socket's arguments in memory, out of a filter's
        # sight (libseccomp would let socketcall(SYS_SOCKET) through whatever the family):
        # answer ENOSYS so that 32-bit code uses the direct, filtered socket syscalls
        _rule(["socketcall"], action="SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS),
    ]
    rules.extend(_rule(["personality"], _arg(0, p, "SCMP_CMP_EQ")) for p in _PERSONAS)
    return rules


def default_profile() -> LinuxSeccomp:
    """Portside's default profile for this machine's ABIs (a fresh record per call)."""
    arches = NATIVE_ARCHES.get(platform.machine(), ())
    return LinuxSeccomp(
        default_action="SCMP_ACT_ERRNO",
        default_errno_ret=errno.EPERM,
        architectures=list(arches),
        syscalls=[_rule(list(_allowed_names())), *_conditional_rules()],
    )


@functools.cache
def _allowed_names() -> tuple[str, ...]:
    return tuple(sorted({name for group in ALLOWED.values() for name in group}))


# --- Docker's profile format ------------------------------------------------------


def _profile_arches(profile: dict[str, Any]) -> list[str]:
    arches = profile.get("architectures") or []
    arch_map = profile.get("archMap") or []
    if arches and arch_map:
        raise InvalidArgument(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    if arches:
        return [str(a) for a in arches]
    native = native_arch() if arch_map else ""
    for entry in arch_map:
        if isinstance(entry, dict) and entry.get("architecture") == native:
            return [native, *[str(s) for s in entry.get("subArchitectures") or []]]
    return []


def _applies(call: dict[str, Any], caps: list[str], arch: str) -> bool:
    """Docker's ``includes``/``excludes``: by capability (bounding set) and Go arch name."""
    inc = call.get("includes") or {}
    exc = call.get("excludes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return not any(c in caps for c in exc.get("caps") or [])


#: ``uname -m`` → Go's GOARCH, the names Docker's includes/excludes use
_GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "i686": "386",
}


def from_docker(profile: Any, capabilities: list[str]) -> LinuxSeccomp:
    """A seccomp profile in Docker's JSON format → :class:`LinuxSeccomp`.

    ``capabilities`` is the container's bounding set, which the profile's
    ``includes.caps``/``excludes.caps`` test. Errors are InvalidArgument.
    """
    if not isinstance(profile, dict):
        raise InvalidArgument("seccomp profile: expected a JSON object")
    arch = _GO_ARCH.get(platform.machine(), platform.machine())
    syscalls = []
    for i, call in enumerate(profile.get("syscalls") or []):
        if not isinstance(call, dict):
            raise InvalidArgument(f"seccomp profile: syscalls[{i}]: expected an object")
        if call.get("name") and call.get("names"):
            raise InvalidArgument(
                "'name' and 'names' were specified in the seccomp profile, "
                "use either 'name' or 'names'"
            )
        if not _applies(call, capabilities, arch):
            continue
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        entry = {"names": names, "action": call.get("action"), "args": call.get("args") or []}
        if call.get("errnoRet") is not None:
            entry["errnoRet"] = call["errnoRet"]
        syscalls.append(entry)
    doc: dict[str, Any] = {
        "defaultAction": profile.get("defaultAction") or "",
        "architectures": _profile_arches(profile),
        "flags": profile.get("flags") or [],
        "syscalls": syscalls,
    }
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            doc[key] = profile[key]
    if not doc["defaultAction"]:
        raise InvalidArgument("seccomp profile: defaultAction is required")
    try:
        return LinuxSeccomp.from_json(doc)
    except InvalidArgument as exc:
        raise InvalidArgument(f"seccomp profile: {exc}") from exc
