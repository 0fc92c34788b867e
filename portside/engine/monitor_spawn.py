"""How the monitor starts a process: the fork-server half of :mod:`portside.engine.monitor`.

:func:`spawn_container` and :func:`spawn_exec` run ``Runtime.create`` and
``Runtime.exec`` in the monitor's own process (the runtime forks from it), with
stdio the monitor keeps the other end of: pipes (or /dev/null when nobody will
read them), or a console socket on which the runtime sends the pty master. On
failure nothing is left behind: no fds, no half-created container, no zombie.
:func:`reset_child` is the at-fork hook that gives a forked child the default
signal dispositions back.
"""

from __future__ import annotations

import os
import signal
import socket

from portside.engine.logfile import JsonLogWriter
from portside.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.engine.monitor import Proc
    from portside.runtime.container import Runtime

__all__ = [
    "Stdio",
    "close_fd",
    "daemonize",
    "kill",
    "lock_exec_root",
    "memory_cgroup",
    "nonblock",
    "reap_quietly",
    "reset_child",
    "spawn_container",
    "spawn_exec",
]


def nonblock(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


def close_fd(fd: int) -> None:
    """Close ``fd`` if it is one (>= 0), ignoring errors."""
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def spawn_container(
    runtime: Runtime, proc: Proc, req: dict[str, Any], console_path: str | None
) -> None:
    """``Runtime.create`` with stdio of ours: the container is created, not started.

    ``console_path`` is where to listen for the pty master (a TTY only)."""
    driver = str(req.get("log_driver") or "json-file")
    if driver not in ("json-file", "none"):
        raise InvalidArgument(f"log driver {driver!r} is not supported (json-file, none)")
    bundle = str(req.get("bundle") or "")
    stdio = Stdio(console_path, tty=proc.tty, stdin=bool(req.get("open_stdin")), output=True)
    created = False
    try:
        if driver == "json-file":
            opts = {str(k): str(v) for k, v in (req.get("log_opts") or {}).items()}
            proc.log = JsonLogWriter(str(req.get("log_path") or ""), opts)
        st = runtime.create(proc.id, bundle, console_socket=stdio.console_path, stdio=stdio.child)
        created = True
        proc.pid, proc.cgroup = st.pid, memory_cgroup(st.cgroup)
        stdio.finish(proc)
    except BaseException:
        stdio.abort()
        if proc.log is not None:
            proc.log.close()
        if created:
            runtime.delete(proc.id, force=True)
            reap_quietly(proc.pid)
        raise
    finally:
        stdio.close_child()


def spawn_exec(
    runtime: Runtime,
    proc: Proc,
    req: dict[str, Any],
    console_path: str | None,
    *,
    attached: bool,
) -> None:
    """``Runtime.exec`` with stdio of ours (/dev/null when nobody will read it)."""
    from portside.oci.runtime_spec import Process

    raw = req.get("process")
    if not isinstance(raw, dict):
        raise InvalidArgument("exec: process must be a JSON object")
    spec = Process.from_json({**raw, "terminal": proc.tty}, "process")
    stdin = attached and bool(req.get("stdin"))
    stdio = Stdio(console_path, tty=proc.tty, stdin=stdin, output=attached)
    try:
        proc.pid = runtime.exec(
            proc.cid, spec, console_socket=stdio.console_path, stdio=stdio.child
        )
        stdio.finish(proc)
    except BaseException:
        stdio.abort()
        if proc.pid:
            kill(proc.pid)
            reap_quietly(proc.pid)
        raise
    finally:
        stdio.close_child()


def memory_cgroup(recorded: dict[str, Any] | None) -> tuple[str, str] | None:
    """("v1" or "v2", directory) of the memory controller in a cgroup the runtime
    recorded (``CgroupManager.to_json()``): where its OOM kills are counted. Kept per
    container instead of the whole record, which is a few KiB."""
    dirs = (recorded or {}).get("dirs")
    if not isinstance(dirs, dict):
        return None
    if recorded.get("mode") == "v2":  # type: ignore[union-attr]
        return ("v2", str(dirs[""])) if "" in dirs else None
    return ("v1", str(dirs["memory"])) if "memory" in dirs else None


def reap_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class Stdio:
    """The fds of a new process: pipes (or /dev/null), or a console socket on
    which the runtime sends the pty master."""

    def __init__(self, console_path: str | None, *, tty: bool, stdin: bool, output: bool) -> None:
        self.parent: dict[str, int] = {}
        self.opened: list[int] = []
        self.listener: socket.socket | None = None
        self.console_path: str | None = None
        try:
            null = self._open(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            if tty:
                if console_path is None:
                    raise InvalidArgument("console: a tty needs a console socket path")
                self._listen(console_path)
                self.child = (null, null, null)
                return
            fds = [null, null, null]
            if stdin:
                fds[0], self.parent["stdin"] = self._pipe()
            if output:
                self.parent["stdout"], fds[1] = self._pipe()
                self.parent["stderr"], fds[2] = self._pipe()
            self.child = (fds[0], fds[1], fds[2])
        except BaseException:
            self.abort()
            raise

    def _open(self, fd: int) -> int:
        self.opened.append(fd)
        return fd

    def _pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.opened += (r, w)
        return r, w

    def _listen(self, path: str) -> None:
        try:
            os.unlink(path)  # left by a monitor killed in the middle of a create
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener = sock
        sock.bind(path)
        self.console_path = path
        sock.listen(1)

    def finish(self, proc: Proc) -> None:
        """Hand the parent's ends to ``proc`` (receiving the pty master first)."""
        if self.listener is not None:
            self.listener.settimeout(5.0)
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(5.0)
                _, fds, _, _ = socket.recv_fds(conn, 1024, 4)
            if not fds:
                raise InvalidArgument("console: no pty master received")
            for extra in fds[1:]:
                close_fd(extra)
            master = nonblock(fds[0])
            proc.stdin_fd = master
            proc.outputs[master] = 1
            self._close_listener()
            return
        if "stdin" in self.parent:
            proc.stdin_fd = nonblock(self.parent["stdin"])
        if "stdout" in self.parent:
            proc.outputs[nonblock(self.parent["stdout"])] = 1
            proc.outputs[nonblock(self.parent["stderr"])] = 2
        kept = set(self.parent.values())
        self.opened = [fd for fd in self.opened if fd not in kept]

    def close_child(self) -> None:
        """Close what only the process needed (after it has its copies)."""
        for fd in self.opened:
            close_fd(fd)
        self.opened = []
        self._close_listener()

    def abort(self) -> None:
        for fd in self.parent.values():
            if fd not in self.opened:
                self.opened.append(fd)
        self.parent = {}
        self.close_child()

    def _close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.console_path is not None:
            try:
                os.unlink(self.console_path)
            except FileNotFoundError:
                pass
            self.console_path = None


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reset_child() -> None:
    """In a child forked for a container: no monitor signal plumbing, and the
    default dispositions Python changed (SIGPIPE, SIGXFSZ are ignored by it)."""
    import gc

    gc.disable()  # no collection may close a monitor fd number the child reuses
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
                signal.SIGXFSZ):  # fmt: skip
        signal.signal(sig, signal.SIG_DFL)


# --- the monitor process itself ---------------------------------------------------------


def daemonize(exec_root: str) -> None:
    """Become the detached monitor: new session, stdio /dev/null, log file."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(
        os.path.join(exec_root, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(logfd, 2)
    close_fd(null)
    close_fd(logfd)
    os.chdir("/")
    os.umask(0o022)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a few fds per container


def lock_exec_root(exec_root: str) -> int | None:
    """The monitor's lock on ``exec_root``; None when another monitor holds it."""
    import fcntl

    fd = os.open(os.path.join(exec_root, "monitor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
