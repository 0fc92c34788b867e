"""Setting up the user's process: the steps shared by container init and exec.

Pure checks (:func:`check_rlimits`, :func:`lookpath`) run early so a bad config
fails ``create`` with a clear message; the ``apply_*`` steps run in the child,
in the order :func:`exec_process` lists, ending in execve.
"""

from __future__ import annotations

import os
import struct

from portside.errors import InvalidArgument, NotFound, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from portside.linux.seccomp import BpfProgram
    from portside.oci.runtime_spec import POSIXRlimit, Process

__all__ = [
    "DEFAULT_PATH",
    "RLIMITS",
    "apply_rlimits",
    "check_rlimits",
    "exec_process",
    "lookpath",
    "reset_signals",
    "setup_terminal",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_INFINITY = (1 << 64) - 1
_CAP_SYS_RESOURCE = 24

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}


def _has_cap(cap: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << cap))
    return False


def check_rlimits(rlimits: list[POSIXRlimit]) -> list[tuple[int, int, int]]:
    """Validate ``process.rlimits`` against this process's limits.

    Returns ``(resource, soft, hard)`` triples. Raising a hard limit above the
    current one needs CAP_SYS_RESOURCE; without it that is a clear error here
    rather than EPERM in the child."""
    import resource

    out: list[tuple[int, int, int]] = []
    can_raise: bool | None = None
    seen: set[str] = set()
    for i, rl in enumerate(rlimits):
        where = f"process.rlimits[{i}]"
        if rl.type not in RLIMITS:
            raise InvalidArgument(f"{where}.type: unknown rlimit {rl.type!r}")
        if rl.type in seen:
            raise InvalidArgument(f"{where}: {rl.type} given twice")
        seen.add(rl.type)
        soft = resource.RLIM_INFINITY if rl.soft >= _INFINITY else rl.soft
        hard = resource.RLIM_INFINITY if rl.hard >= _INFINITY else rl.hard
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            raise InvalidArgument(f"{where}: {rl.type} soft limit {rl.soft} exceeds hard {rl.hard}")
        res = RLIMITS[rl.type]
        _, cur_hard = resource.getrlimit(res)
        above = cur_hard != resource.RLIM_INFINITY and (
            hard == resource.RLIM_INFINITY or hard > cur_hard
        )
        if above:
            if can_raise is None:
                can_raise = _has_cap(_CAP_SYS_RESOURCE)
            if not can_raise:
                raise PermissionDenied(
                    f"{where}: {rl.type} hard limit {rl.hard} is above this host's hard limit "
                    f"{cur_hard} and the runtime lacks CAP_SYS_RESOURCE to raise it"
                )
        out.append((res, soft, hard))
    return out


_PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


def check_personality(personality: dict[str, object] | None) -> int | None:
    """The personality(2) value of ``linux.personality`` (domain LINUX or LINUX32)."""
    if personality is None:
        return None
    domain = personality.get("domain")
    if domain not in _PERSONALITY_DOMAINS:
        raise InvalidArgument(f"linux.personality.domain: unknown domain {domain!r}")
    if personality.get("flags"):
        raise InvalidArgument("linux.personality.flags: no flags are supported yet")
    return _PERSONALITY_DOMAINS[str(domain)]


def apply_personality(value: int | None) -> None:
    if value is None:
        return
    from portside.linux._libc import call, libc

    call(f"personality {value:#x}", libc.personality(value))


def apply_rlimits(limits: list[tuple[int, int, int]]) -> None:
    import resource

    for res, soft, hard in limits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            name = next(n for n, v in RLIMITS.items() if v == res)
            raise PermissionDenied(f"setrlimit {name} {soft}/{hard}: {exc}") from exc


def env_path(env: list[str]) -> str:
    for entry in env:
        if entry.startswith("PATH="):
            return entry[5:]
    return DEFAULT_PATH


def lookpath(cmd: str, env: list[str]) -> str:
    """The executable ``cmd`` names, searched in the process's own $PATH as Go's
    exec.LookPath does (runc's message on failure)."""
    if "/" in cmd:
        if os.path.isfile(cmd) and os.access(cmd, os.X_OK):
            return cmd
        if not os.path.exists(cmd):
            raise NotFound(f'exec: "{cmd}": stat {cmd}: no such file or directory')
        raise PermissionDenied(f'exec: "{cmd}": permission denied')
    for directory in env_path(env).split(":"):
        path = os.path.join(directory or ".", cmd)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise NotFound(f'exec: "{cmd}": executable file not found in $PATH')


def setup_terminal(console: socket.socket, proc: Process, *, mount_console: bool) -> None:
    """Open a pty in the container's devpts, send the master over the console
    socket (one message "/dev/ptmx" + the fd, as runc), and make the slave the
    controlling terminal and stdio of the calling session leader."""
    import fcntl
    import socket
    import termios

    master, slave = os.openpty()
    try:
        if proc.console_size is not None:
            size = struct.pack("HHHH", proc.console_size.height, proc.console_size.width, 0, 0)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        user = proc.user
        if user is not None:
            os.fchown(slave, user.uid, -1)
        socket.send_fds(console, [b"/dev/ptmx"], [master])
    finally:
        os.close(master)
    console.close()
    if mount_console:
        from portside.linux.kernel import MS_BIND, LinuxKernel

        name = os.ttyname(slave)
        if not os.path.lexists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        LinuxKernel().mount(name, "/dev/console", None, MS_BIND, None)
    # the caller is already a session leader (init and exec call setsid first)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _close_extra_fds(preserve_fds: int) -> None:
    """Mark every fd past stdio and the preserved ones close-on-exec."""
    keep = 3 + preserve_fds
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                continue  # the listing's own fd, already closed
    for fd in range(3, keep):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            continue


def _env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in env:
        key, sep, value = entry.partition("=")
        if sep:
            out[key] = value
    return out


def exec_process(
    proc: Process,
    path: str,
    seccomp: BpfProgram | None,
    *,
    preserve_fds: int = 0,
) -> None:
    """The last steps: default signals, then in runc's order fds, seccomp (early if
    it needs CAP_SYS_ADMIN), user and capabilities, no_new_privs, seccomp (late), execve."""
    from portside.linux import caps

    reset_signals()
    _close_extra_fds(preserve_fds)
    nnp = bool(proc.no_new_privileges)
    if seccomp is not None and not nnp:
        seccomp.load()
    c = proc.capabilities
    user = proc.user
    uid, gid = (user.uid, user.gid) if user is not None else (0, 0)
    groups = list(user.additional_gids) if user is not None else []
    if c is not None:
        caps.apply_capabilities(
            caps.parse_caps(c.bounding, "process.capabilities.bounding"),
            caps.parse_caps(c.effective, "process.capabilities.effective"),
            caps.parse_caps(c.permitted, "process.capabilities.permitted"),
            caps.parse_caps(c.inheritable, "process.capabilities.inheritable"),
            caps.parse_caps(c.ambient, "process.capabilities.ambient"),
            uid=uid,
            gid=gid,
            additional_gids=groups,
        )
    else:
        _set_user(uid, gid, groups)
    if nnp:
        caps.set_no_new_privs()
    os.umask(user.umask if user is not None and user.umask is not None else 0o022)
    if seccomp is not None and nnp:
        seccomp.load()
    os.execve(path, proc.args, _env_dict(proc.env))


def reset_signals() -> None:
    """Give back the default dispositions Python changed at startup: it ignores
    SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across execve (a
    container's `yes | head -1` would never end). Before seccomp, which may deny
    rt_sigaction."""
    import _signal  # the enum-free core of :mod:`signal` (import cost)

    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)


def _set_user(uid: int, gid: int, groups: list[int]) -> None:
    with open("/proc/self/setgroups") as f:
        allowed = f.read().strip() != "deny"
    if allowed:
        os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def preload(*, terminal: bool, seccomp: bool, hooks: bool) -> None:
    """Import what the child needs after it enters the container's mount
    namespace, where the host's Python library is out of sight."""
    import fcntl
    import resource  # noqa: F401  (apply_rlimits)

    from portside.linux import caps, netdev  # noqa: F401
    from portside.runtime import cgroupfs  # noqa: F401

    if terminal:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import termios  # noqa: F401
    if seccomp:
        from portside.linux import seccomp as _seccomp  # noqa: F401
    if hooks:
        from portside.runtime import hooks as _hooks  # noqa: F401


def check_cwd(cwd: str) -> None:
    """chdir to ``cwd`` and check the result is inside the container's root: a
    leaked host directory fd shows as "(unreachable)" (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise NotFound(f"process.cwd: chdir {cwd}: {exc.strerror}") from exc
    try:
        here = os.getcwd()
    except FileNotFoundError:
        here = "(unreachable)"
    if not here.startswith("/"):
        raise PermissionDenied(f"process.cwd: {cwd} is outside the container root")
