"""``exec``: a new process inside a running container.

Like create, two forks: stage 1 joins the container's cgroup and namespaces (the
user namespace first) and forks the process, so that it lands inside the PID
namespace; it applies the same process settings as init (rlimits, terminal,
cwd, user, capabilities, no_new_privs, the container's seccomp profile) and
execs. Its end of the sync socket is close-on-exec: end-of-file tells the parent
exec succeeded.
"""

from __future__ import annotations

import os

from portside.linux import kernel as K
from portside.runtime import process
from portside.runtime.errors import ChildError
from portside.runtime.sync import sync_pair

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from portside.linux.kernel import Kernel
    from portside.linux.seccomp import BpfProgram
    from portside.oci.runtime_spec import Process
    from portside.runtime.cgroups import CgroupManager
    from portside.runtime.state import ContainerState
    from portside.runtime.sync import SyncSocket

__all__ = ["container_namespaces", "exec_in"]

_ORDER = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")


def container_namespaces(pid: int) -> list[tuple[str, int]]:
    """Open each namespace of ``pid`` that differs from ours, the user one first."""
    fds: list[tuple[str, int]] = []
    for ns_type in _ORDER:
        name = K.NS_PROC_NAMES[ns_type]
        try:
            if os.stat(f"/proc/{pid}/ns/{name}").st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds.append((ns_type, os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue  # a namespace type this kernel lacks (time)
    return fds


class _Exec:
    def __init__(
        self,
        proc: Process,
        *,
        sync: SyncSocket,
        fds: list[tuple[str, int]],
        cgroup: CgroupManager,
        seccomp: BpfProgram | None,
        console: socket.socket | None,
        rlimits: list[tuple[int, int, int]],
        preserve_fds: int,
        kernel: Kernel,
        stdio: tuple[int, int, int] | None = None,
    ) -> None:
        self.proc = proc
        self.sync = sync
        self.fds = fds
        self.cgroup = cgroup
        self.seccomp = seccomp
        self.console = console
        self.rlimits = rlimits
        self.preserve_fds = preserve_fds
        self.k = kernel
        self.stdio = stdio
        self.step = "start"

    def run(self, body: str) -> None:
        try:
            getattr(self, body)()
        except BaseException as exc:
            try:
                self.sync.send_error(self.step, exc)
            finally:
                os._exit(1)
        os._exit(0)

    def stage1(self) -> None:
        from portside.linux import caps

        if self.stdio is not None:
            from portside.runtime.init import install_stdio

            self.step = "stdio"
            keep = {self.sync.fileno(), *(fd for _, fd in self.fds)}
            keep.update(range(3, 3 + self.preserve_fds))
            if self.console is not None:
                keep.add(self.console.fileno())
            install_stdio(self.stdio, keep)
        self.step = "dumpable"
        caps.set_dumpable(False)
        self.step = "cgroup"
        self.cgroup.enter()
        self.step = "join namespaces"
        for ns_type, fd in self.fds:
            self.k.setns(fd, K.CLONE_FLAGS[ns_type])
            os.close(fd)
        self.step = "fork"
        pid = os.fork()
        if pid == 0:
            self.run("stage2")
        self.sync.send("pid", pid=pid)

    def stage2(self) -> None:
        self.sync.expect("go", "exec")
        self.step = "setsid"
        os.setsid()
        self.step = "rlimits"
        process.apply_rlimits(self.rlimits)
        if self.console is not None:
            self.step = "terminal"
            process.setup_terminal(self.console, self.proc, mount_console=False)
        self.step = "cwd"
        process.check_cwd(self.proc.cwd)
        self.step = "exec"
        if not self.proc.args:
            raise ValueError("process.args: empty")
        path = process.lookpath(self.proc.args[0], self.proc.env)
        process.exec_process(self.proc, path, self.seccomp, preserve_fds=self.preserve_fds)


def exec_in(
    st: ContainerState,
    cgroup: CgroupManager,
    proc: Process,
    *,
    config: dict[str, Any],
    console_socket: str | None = None,
    preserve_fds: int = 0,
    kernel: Kernel | None = None,
    stdio: tuple[int, int, int] | None = None,
) -> int:
    from portside.oci.runtime_spec import LinuxSeccomp
    from portside.runtime.container import _connect_console

    rlimits = process.check_rlimits(proc.rlimits)
    linux = config.get("linux") or {}
    seccomp = None
    if linux.get("seccomp"):
        from portside.runtime.seccomp import compile_profile

        seccomp = compile_profile(LinuxSeccomp.from_json(linux["seccomp"], "linux.seccomp"))
    process.preload(terminal=bool(proc.terminal), seccomp=seccomp is not None, hooks=False)
    console = _connect_console(console_socket) if console_socket and proc.terminal else None
    fds = container_namespaces(st.pid)
    parent, child = sync_pair()
    ex = _Exec(
        proc,
        sync=child,
        fds=fds,
        cgroup=cgroup,
        seccomp=seccomp,
        console=console,
        rlimits=rlimits,
        preserve_fds=preserve_fds,
        kernel=kernel or K.LinuxKernel(),
        stdio=stdio,
    )
    try:
        stage1 = os.fork()
        if stage1 == 0:
            ex.run("stage1")
    finally:
        child.close()
        for _, fd in fds:
            os.close(fd)
        if console is not None:
            console.close()
    try:
        msg = parent.expect("pid", "exec")
        pid = int(msg["pid"])
        parent.send("go")
        end, _ = parent.recv()  # EOF: exec happened; an error is raised by recv
        if end is not None:
            raise ChildError("exec", f"unexpected message {end.get('type')!r}")
    finally:
        parent.close()
        try:
            os.waitpid(stage1, 0)
        except ChildProcessError:
            pass
    return pid
