"""Foreground ``run`` and ``exec``: the runtime stays as the process's parent.

The runtime becomes a child subreaper, so the container's process (whose real
parent, stage 1, exits at once) is re-parented to it; it forwards signals,
copies the terminal when it owns one, reaps, and exits with the process's
status (128+N for a signal, like runc).
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of :mod:`signal` (import cost)
import os
import sys

from portside.errors import InvalidArgument
from portside.oci import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.runtime.cli import Flags
    from portside.runtime.container import Runtime

__all__ = ["exec_command", "run_container", "wait_process"]

_FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class _Console:
    """A console socket of our own: the container's pty master arrives here and
    is copied to and from our stdio."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "console.sock")
        import socket

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.master = -1

    def receive(self) -> None:
        import socket

        conn, _ = self.listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        self.listener.close()
        os.unlink(self.path)
        if not fds:
            raise InvalidArgument("console: no pty master received")
        self.master = fds[0]
        self.resize()

    def resize(self) -> None:
        import fcntl
        import termios

        if self.master >= 0 and os.isatty(0):
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)


def _copy_until_exit(console: _Console, pid: int) -> int:
    """Copy stdin -> pty and pty -> stdout until ``pid`` exits."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    try:
        inputs = [console.master, 0]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                _drain(console.master)
                return _exit_code(status)
            ready, _, _ = select.select(inputs, [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if fd == 0:
                    if data:
                        os.write(console.master, data)
                    else:
                        inputs.remove(0)
                elif data:
                    os.write(1, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _drain(fd: int) -> None:
    import select

    while select.select([fd], [], [], 0)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(1, data)


def wait_process(pid: int, console: _Console | None = None) -> int:
    """Forward signals to ``pid``, reap it (and any orphans), return its exit code."""

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGWINCH and console is not None:
            console.resize()
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    if console is not None:
        return _copy_until_exit(console, pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            return _exit_code(status)


def _set_subreaper() -> None:
    from portside.linux.caps import set_child_subreaper

    set_child_subreaper(True)


def run_container(
    rt: Runtime,
    cid: str,
    bundle: str,
    *,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    preserve_fds: int,
    detach: bool,
    keep: bool,
    subreaper: bool,
) -> int:
    """runc run: create + start, then (unless detached) wait and delete."""
    from portside.oci.runtime_spec import load_spec

    spec = load_spec(os.path.join(bundle, "config.json"))
    terminal = bool(spec.process and spec.process.terminal)
    console: _Console | None = None
    if terminal and not console_socket:
        if detach:
            raise InvalidArgument(
                "cannot allocate tty if portside-runtime will detach without setting console socket"
            )
        console = _Console(_tempdir(rt.store.root))
        console_socket = console.path
    if subreaper and not detach:
        _set_subreaper()
    st = rt.create(
        cid,
        bundle,
        console_socket=console_socket,
        pid_file=pid_file,
        no_pivot=no_pivot,
        preserve_fds=preserve_fds,
    )
    try:
        if console is not None:
            console.receive()
            os.rmdir(os.path.dirname(console.path))
        rt.start(cid)
    except BaseException:
        rt.delete(cid, force=True)
        raise
    if detach:
        return 0
    code = wait_process(st.pid, console)
    if not keep:
        rt.delete(cid, force=True)
    return code


def _tempdir(root: str) -> str:
    import tempfile

    os.makedirs(root, mode=0o711, exist_ok=True)
    return tempfile.mkdtemp(prefix=".console-", dir=root)


def exec_process_spec(rt: Runtime, cid: str, flags: Flags, args: list[str]) -> dict[str, Any]:
    """The process JSON that ``exec``'s flags describe, based on the container's
    own process (as runc's newProcess)."""
    if flags.get("process"):
        path = flags.get("process")
        try:
            with open(path) as f:
                return dict(fastjson.loads(f.read()))
        except (OSError, fastjson.JSONError) as exc:
            raise InvalidArgument(f"--process {path}: {exc}") from exc
    if not args:
        raise InvalidArgument('"exec" requires a command when --process is not given')
    base = dict(rt.store.config(rt.load(cid)).get("process") or {})
    proc: dict[str, Any] = {
        "args": list(args),
        "env": list(base.get("env") or []) + flags.lists.get("env", []),
        "cwd": flags.get("cwd") or base.get("cwd", "/"),
        "terminal": bool(flags.get("tty")),
        "user": dict(base.get("user") or {"uid": 0, "gid": 0}),
    }
    for key in ("capabilities", "rlimits", "noNewPrivileges", "apparmorProfile"):
        if key in base:
            proc[key] = base[key]
    if flags.get("user"):
        uid, _, gid = flags.get("user").partition(":")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if flags.lists.get("additional-gids"):
        proc["user"]["additionalGids"] = [int(g) for g in flags.lists["additional-gids"]]
    if flags.get("no-new-privs"):
        proc["noNewPrivileges"] = True
    extra = flags.lists.get("cap", [])
    if extra:
        caps = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for kind in ("bounding", "effective", "permitted", "ambient"):
            caps[kind] = sorted(set(caps.get(kind, [])) | set(extra))
        proc["capabilities"] = caps
    return proc


def exec_command(rt: Runtime, cid: str, flags: Flags, args: list[str]) -> int:
    from portside.oci.runtime_spec import Process

    proc = Process.from_json(exec_process_spec(rt, cid, flags, args), "process")
    detach = bool(flags.get("detach"))
    console_socket = flags.get("console-socket")
    console: _Console | None = None
    if proc.terminal and not console_socket:
        if detach:
            raise InvalidArgument("cannot allocate tty when detached without --console-socket")
        console = _Console(_tempdir(rt.store.root))
        console_socket = console.path
    if not detach:
        _set_subreaper()
    pid = rt.exec(
        cid,
        proc,
        console_socket=console_socket,
        pid_file=flags.get("pid-file"),
        preserve_fds=flags.int("preserve-fds"),
    )
    if console is not None:
        console.receive()
        os.rmdir(os.path.dirname(console.path))
    if detach:
        return 0
    sys.stdout.flush()
    return wait_process(pid, console)
