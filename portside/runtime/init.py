"""What runs in the container's own processes, from fork to execve.

``create`` forks **stage 1**, which moves itself into the cgroup, joins or
creates the namespaces (the user namespace first, its id maps written by the
parent), then
forks **init** — PID 1 of a new PID namespace — reports init's host PID and
exits. Init then runs the named steps of :data:`INIT_STEPS`, talks to the
parent at the sync points (crun numbers them; we name them), and finally blocks
on the exec fifo until ``start``.

Stage 1 exists for the namespaces that only a process's children enter: a user
namespace (whose maps must be written before the others are made), a joined PID
namespace, a time namespace (``NamespacePlan.needs_stage1``). Without those —
most containers — ``create`` forks init itself (:func:`fork_init`): it makes the
new PID namespace for its own next child, forks, and takes its own back at once;
init does stage 1's work. One fork of a large Python process instead of two:
~3 ms less CPU per container.

Sync points, child → parent (parent → child):

1. ``userns`` (``maps``)       stage 1 made a user namespace; parent wrote its maps
2. ``pid`` (``go``)            init's host PID (known from fork when there is no
                               stage 1); parent lets init begin
3. ``prestart`` (``hooks_done``) mounts are done; parent ran prestart/createRuntime
4. ``ready``                   init waits on the exec fifo; ``create`` returns

Any failure is sent as ``error`` with the step's name and errno.
"""

from __future__ import annotations

import gc
import os

from portside.errors import InvalidArgument
from portside.linux import kernel as K
from portside.runtime import namespaces, process, rootfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

    from portside.linux.kernel import Kernel
    from portside.linux.seccomp import BpfProgram
    from portside.oci.runtime_spec import Mount, Spec
    from portside.runtime.namespaces import NamespacePlan
    from portside.runtime.sync import SyncSocket

__all__ = [
    "INIT_STEPS",
    "InitContext",
    "check_sysctls",
    "fork_init",
    "install_stdio",
    "run_stage1",
]

#: sysctl prefixes that are namespaced, and the namespace each needs
_NAMESPACED_SYSCTLS = (
    ("kernel.msgmax", "ipc"),
    ("kernel.msgmnb", "ipc"),
    ("kernel.msgmni", "ipc"),
    ("kernel.sem", "ipc"),
    ("kernel.shmall", "ipc"),
    ("kernel.shmmax", "ipc"),
    ("kernel.shmmni", "ipc"),
    ("kernel.shm_rmid_forced", "ipc"),
    ("fs.mqueue.", "ipc"),
    ("net.", "network"),
    ("kernel.hostname", "uts"),
    ("kernel.domainname", "uts"),
)


def check_sysctls(sysctl: dict[str, str], plan: NamespacePlan) -> None:
    """Refuse a sysctl that is host-wide, or whose namespace the container shares
    with the host."""
    for key in sysctl:
        norm = key.replace("/", ".")
        ns = next((n for prefix, n in _NAMESPACED_SYSCTLS if norm.startswith(prefix)), None)
        if ns is None:
            raise InvalidArgument(
                f"linux.sysctl: {key} is not namespaced; it would change the host"
            )
        if not plan.has(ns):
            raise InvalidArgument(
                f"linux.sysctl: {key} needs a {ns} namespace of the container's own"
            )


class InitContext:
    """Everything the children need, prepared by the parent before fork."""

    def __init__(
        self,
        *,
        spec: Spec,
        bundle: str,
        rootfs: str,
        sync: SyncSocket,
        plan: NamespacePlan,
        join_fds: list[tuple[str, int]],
        cgroup_enter: Callable[[], None],
        fifo_fd: int | None,
        console: socket.socket | None,
        seccomp: BpfProgram | None,
        rlimits: list[tuple[int, int, int]],
        no_pivot: bool = False,
        preserve_fds: int = 0,
        kernel: Kernel | None = None,
        stdio: tuple[int, int, int] | None = None,
    ) -> None:
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.sync = sync
        self.plan = plan
        self.join_fds = join_fds
        self.cgroup_enter = cgroup_enter
        self.fifo_fd = fifo_fd
        self.console = console
        self.seccomp = seccomp
        self.rlimits = rlimits
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.k = kernel or K.LinuxKernel()
        self.stdio = stdio
        self.step = "start"
        self.exec_path = ""
        self.state: dict[str, Any] = {}
        self.cgroup_paths: dict[str, str] = {}


_FD_CEILING = 1 << 30  # above any RLIMIT_NOFILE: close_range(2) stops at the last open fd


def install_stdio(stdio: tuple[int, int, int], keep: set[int]) -> None:
    """Make ``stdio`` fds 0, 1 and 2 of this (freshly forked) process and close
    every other fd but ``keep``: the caller may be a server holding other
    containers' pipes, which a created container must not keep open."""
    import fcntl

    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in stdio]  # clear of 0..2
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
    low = 3
    for fd in sorted(keep - {0, 1, 2}):  # close_range(2) over the gaps between them
        os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, _FD_CEILING)


def _fork(ctx: InitContext, body: Callable[[InitContext], None]) -> int:
    """Run ``body`` in a forked child, which never returns into the caller's stack;
    the child's PID."""
    pid = os.fork()
    if pid:
        return pid
    # a collection here would write to every tracked object of the parent's heap,
    # copying those pages; the child allocates little before it execs
    gc.disable()
    try:
        body(ctx)
    except BaseException as exc:  # crosses to the parent as (errno, step, message)
        try:
            ctx.sync.send_error(ctx.step, exc)
        finally:
            os._exit(1)
    os._exit(0)


# --- stage 1 -------------------------------------------------------------------


def _enter(ctx: InitContext, unshare_flags: int) -> None:
    """Stage 1's work: stdio, the cgroup, then the namespaces."""
    from portside.linux import caps
    from portside.runtime.cgroupfs import own_cgroups

    if ctx.stdio is not None:
        ctx.step = "stdio"
        keep = {ctx.sync.fileno(), *(fd for _, fd in ctx.join_fds)}
        keep.update(range(3, 3 + ctx.preserve_fds))
        if ctx.fifo_fd is not None:
            keep.add(ctx.fifo_fd)
        if ctx.console is not None:
            keep.add(ctx.console.fileno())
        install_stdio(ctx.stdio, keep)
    ctx.step = "dumpable"
    caps.set_dumpable(False)
    # first, while we still see the host's cgroup files as their owner; we are
    # single-threaded, so moving this thread moves the process
    ctx.step = "cgroup"
    ctx.cgroup_enter()
    if any(m.type in ("cgroup", "cgroup2") for m in ctx.spec.mounts):  # for _cgroup_mount
        with open("/proc/self/cgroup") as f:
            ctx.cgroup_paths = own_cgroups(f.read())
    ctx.step = "join namespaces"
    namespaces.join(ctx.k, ctx.join_fds)
    if ctx.plan.creates("user"):
        ctx.step = "user namespace"
        namespaces.unshare_user(ctx.k)
        ctx.sync.send("userns")
        ctx.sync.expect("maps", ctx.step)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    ctx.step = "unshare"
    if unshare_flags:
        ctx.k.unshare(unshare_flags)
    linux = ctx.spec.linux
    if linux is not None and linux.time_offsets:
        ctx.step = "time offsets"
        _write_time_offsets(linux.time_offsets)


def _stage1(ctx: InitContext) -> None:
    _enter(ctx, ctx.plan.unshare_flags)
    ctx.step = "fork init"
    ctx.sync.send("pid", pid=_fork(ctx, _init))


def _init_alone(ctx: InitContext) -> None:
    """Init forked by the runtime itself: stage 1's work first, in init."""
    _enter(ctx, ctx.plan.unshare_flags & ~K.CLONE_NEWPID)  # the fork made that one
    ctx.sync.send("pid", pid=0)  # the parent has it from fork
    _init(ctx)


def _write_time_offsets(offsets: dict[str, object]) -> None:
    lines = []
    for clock, name in (("monotonic", "monotonic"), ("boottime", "boottime")):
        entry = offsets.get(clock)
        if isinstance(entry, dict):
            lines.append(f"{name} {entry.get('secs', 0)} {entry.get('nanosecs', 0)}")
    with open("/proc/self/timens_offsets", "w") as f:
        f.write("\n".join(lines) + "\n")


def run_stage1(ctx: InitContext) -> int:
    """Fork stage 1; return its PID (the parent keeps going)."""
    return _fork(ctx, _stage1)


def fork_init(ctx: InitContext) -> int:
    """Fork init itself, in a new PID namespace when the plan makes one; return
    its PID. The caller's PID namespace for children is set back before this
    returns (it is per thread, so other threads never see the new one)."""
    if not ctx.plan.creates("pid"):
        return _fork(ctx, _init_alone)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ctx.k.unshare(K.CLONE_NEWPID)
        try:
            return _fork(ctx, _init_alone)
        finally:
            ctx.k.setns(own, K.CLONE_NEWPID)
    finally:
        os.close(own)


# --- init ----------------------------------------------------------------------


def _step_begin(ctx: InitContext) -> None:
    ctx.sync.expect("go", "init")
    os.setsid()
    if ctx.plan.creates("network"):
        from portside.linux.netdev import interface_up

        interface_up("lo")


def _cgroup_mount(ctx: InitContext, m: Mount, target: str) -> bool:
    """Mount the container's own cgroups at a ``cgroup`` mount: on v1 a tmpfs
    with each hierarchy's container directory bound into it."""
    if (m.type or "") not in ("cgroup", "cgroup2"):
        return False
    from portside.runtime.cgroupfs import mount_cgroups

    mount_cgroups(
        ctx.k, target, m.options, ctx.cgroup_paths, new_cgroupns=ctx.plan.creates("cgroup")
    )
    return True


def _step_mounts(ctx: InitContext) -> None:
    linux = ctx.spec.linux
    rootfs.set_propagation(ctx.k, linux.rootfs_propagation if linux else None)
    rootfs.bind_rootfs(ctx.k, ctx.rootfs)
    rootfs.mount_all(
        ctx.k,
        ctx.rootfs,
        ctx.spec.mounts,
        ctx.bundle,
        lambda m, t: _cgroup_mount(ctx, m, t),
        real_root=ctx.rootfs,  # create resolved it
    )
    dev_bound = any(
        m.destination.rstrip("/") == "/dev" and ("bind" in m.options or "rbind" in m.options)
        for m in ctx.spec.mounts
    )
    if not dev_bound:
        rootfs.create_devices(
            ctx.k, ctx.rootfs, linux.devices if linux else [], in_userns=ctx.plan.has("user")
        )


def _step_prestart(ctx: InitContext) -> None:
    ctx.sync.send("prestart")
    msg = ctx.sync.expect("hooks_done", "prestart hooks")
    ctx.state = msg["state"]
    hooks = ctx.spec.hooks
    if hooks is not None and hooks.create_container:
        from portside.oci.runtime_spec import State
        from portside.runtime.hooks import run_hooks

        run_hooks(hooks.create_container, State.from_json(ctx.state), "createContainer")


def _step_pivot(ctx: InitContext) -> None:
    rootfs.pivot(ctx.k, ctx.rootfs, no_pivot=ctx.no_pivot)


def _step_identity(ctx: InitContext) -> None:
    spec = ctx.spec
    if spec.hostname is not None:
        if not ctx.plan.has("uts"):
            raise InvalidArgument("hostname: needs a uts namespace of the container's own")
        ctx.k.sethostname(spec.hostname)
    if spec.domainname is not None:
        if not ctx.plan.has("uts"):
            raise InvalidArgument("domainname: needs a uts namespace of the container's own")
        ctx.k.setdomainname(spec.domainname)
    if spec.linux is not None:
        for key, value in spec.linux.sysctl.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, "w") as f:
                f.write(value)


def _step_protect(ctx: InitContext) -> None:
    linux = ctx.spec.linux
    if linux is not None:
        rootfs.mask_paths(ctx.k, linux.masked_paths)
        rootfs.readonly_paths(ctx.k, linux.readonly_paths)
    root = ctx.spec.root
    rootfs.finish_root(
        ctx.k, bool(root and root.readonly), linux.rootfs_propagation if linux else None
    )


def _step_process(ctx: InitContext) -> None:
    proc = ctx.spec.process
    assert proc is not None  # checked by create
    process.apply_rlimits(ctx.rlimits)
    linux = ctx.spec.linux
    process.apply_personality(process.check_personality(linux.personality if linux else None))
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    if ctx.console is not None:
        process.setup_terminal(ctx.console, proc, mount_console=True)
    process.check_cwd(proc.cwd)
    if not proc.args:
        raise InvalidArgument("process.args: empty")
    ctx.exec_path = process.lookpath(proc.args[0], proc.env)


def _step_ready(ctx: InitContext) -> None:
    ctx.sync.send("ready")


#: init's steps, in order; each is named in errors and can be timed on its own
INIT_STEPS: list[tuple[str, Callable[[InitContext], None]]] = [
    ("begin", _step_begin),
    ("mounts", _step_mounts),
    ("prestart", _step_prestart),
    ("pivot_root", _step_pivot),
    ("hostname and sysctl", _step_identity),
    ("masked and readonly paths", _step_protect),
    ("process setup", _step_process),
    ("ready", _step_ready),
]


def _init(ctx: InitContext) -> None:
    for name, step in INIT_STEPS:
        ctx.step = name
        step(ctx)
    # create has returned: errors from here on go to the container's stderr
    ctx.sync.close()
    try:
        _wait_start(ctx)
        proc = ctx.spec.process
        assert proc is not None
        process.exec_process(proc, ctx.exec_path, ctx.seccomp, preserve_fds=ctx.preserve_fds)
    except BaseException as exc:
        os.write(2, f"portside-runtime: {ctx.step}: {exc}\n".encode())
        os._exit(127)


def _wait_start(ctx: InitContext) -> None:
    ctx.step = "wait for start"
    if ctx.fifo_fd is not None:
        import _signal  # builtin: importable after pivot_root

        fd = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        # the open returning is the start: a starter that died before reading our
        # byte still started us (exec_process gives SIGPIPE its default back)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        try:
            os.write(fd, b"0")
        except BrokenPipeError:
            pass
        os.close(fd)
        os.close(ctx.fifo_fd)
    hooks = ctx.spec.hooks
    if hooks is not None and hooks.start_container:
        from portside.oci.runtime_spec import State
        from portside.runtime.hooks import run_hooks

        ctx.step = "startContainer hooks"
        state = State.from_json({**ctx.state, "status": "created"})
        run_hooks(hooks.start_container, state, "startContainer")
    ctx.step = "exec"
