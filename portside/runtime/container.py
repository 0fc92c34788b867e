"""The container lifecycle of the OCI runtime spec, as a plain Python API.

:class:`Runtime` is what both the ``portside-runtime`` CLI and (later) the
daemon's fork server call: create, start, state, kill, delete, plus exec, pause,
resume, ps, update and stats. State lives under ``root`` (one directory per
container); status is observed, never stored (:mod:`portside.runtime.state`).

Guards (youki's ``can_start``/``can_kill``/``can_delete``) make a call in the
wrong state an :class:`~portside.runtime.errors.InvalidState`.
"""

from __future__ import annotations

import _signal as signal  # the enum-free core of :mod:`signal` (import cost)
import os
import time

from portside.errors import InvalidArgument, NotFound, PortsideError
from portside.oci.runtime_spec import State
from portside.runtime.errors import InvalidState
from portside.runtime.state import (
    ContainerState,
    StateStore,
    atomic_write,
    process_start_time,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from typing import Any

    from portside.linux.kernel import Kernel
    from portside.linux.seccomp import BpfProgram
    from portside.oci.runtime_spec import LinuxResources, Process, Spec
    from portside.runtime.cgroups import CgroupManager
    from portside.runtime.init import InitContext
    from portside.runtime.namespaces import NamespacePlan
    from portside.runtime.sync import SyncSocket

__all__ = ["DEFAULT_ROOT", "Runtime"]

DEFAULT_ROOT = "/run/portside-runtime"

CREATED, RUNNING, PAUSED, STOPPED = "created", "running", "paused", "stopped"


def _now() -> str:
    t = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{base}.{int((t % 1) * 1e9):09d}Z"


def _connect_console(path: str) -> socket.socket:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise NotFound(f"--console-socket {path}: {exc.strerror}") from exc
    return sock


class Runtime:
    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        *,
        systemd_cgroup: bool = False,
        kernel: Kernel | None = None,
    ) -> None:
        self.store = StateStore(root)
        self.systemd_cgroup = systemd_cgroup
        self.kernel = kernel

    # --- helpers ---------------------------------------------------------------

    def _cgroup(self, st: ContainerState) -> CgroupManager:
        """The container's cgroup: reopened from the directories recorded at
        create (a relative cgroupsPath depends on the caller's own cgroup)."""
        if st.cgroup:
            from portside.runtime.cgroups import manager_from_json

            return manager_from_json(st.cgroup)
        from portside.runtime.cgroups import open_manager

        return open_manager(st.cgroups_path or None, st.id, systemd=st.systemd_cgroup)

    def load(self, container_id: str) -> ContainerState:
        return self.store.load(container_id)

    def status(self, st: ContainerState) -> str:
        if st.pid <= 0 or process_start_time(st.pid) != st.pid_start:
            return STOPPED
        if _waits_on_fifo(st.pid, self.store.fifo(st.id)):
            return CREATED
        try:
            if self._cgroup(st).frozen():
                return PAUSED
        except (OSError, PortsideError):  # no freezer, or the cgroup is gone
            pass
        return RUNNING

    def oci_state(self, st: ContainerState, status: str | None = None) -> State:
        status = status or self.status(st)
        return State(
            oci_version=st.oci_version,
            id=st.id,
            status=status,
            pid=st.pid if status != STOPPED else 0,
            bundle=st.bundle,
            annotations=dict(st.annotations),
        )

    def state(self, container_id: str) -> dict[str, Any]:
        """runc's ``state`` document: the OCI state plus rootfs, created, owner."""
        st = self.load(container_id)
        oci = self.oci_state(st)
        out: dict[str, Any] = {
            "ociVersion": st.oci_version,
            "id": st.id,
            "pid": oci.pid,
            "status": oci.status,
            "bundle": st.bundle,
            "rootfs": st.rootfs,
            "created": st.created,
            "owner": st.owner,
        }
        if st.annotations:
            out["annotations"] = dict(st.annotations)
        return out

    def list(self) -> list[dict[str, Any]]:
        out = []
        for cid in self.store.ids():
            try:
                out.append(self.state(cid))
            except NotFound:
                continue
        return out

    # --- create ----------------------------------------------------------------

    def _prepare(self, bundle: str) -> tuple[Spec, dict[str, Any], bytes, str, BpfProgram | None]:
        spec, config, raw = _load_config(os.path.join(bundle, "config.json"))
        if spec.process is None:
            raise InvalidArgument("process: a container needs a process to run")
        if spec.root is None:
            raise InvalidArgument("root: a container needs a root filesystem")
        rootfs = spec.root.path
        if not rootfs.startswith("/"):
            rootfs = os.path.join(bundle, rootfs)
        rootfs = os.path.realpath(rootfs)
        if not os.path.isdir(rootfs):
            raise NotFound(f"root.path: rootfs {rootfs} does not exist")
        linux = spec.linux
        seccomp = None
        if linux is not None and linux.seccomp is not None:
            from portside.runtime.seccomp import compile_profile

            seccomp = compile_profile(linux.seccomp)  # a bad profile fails here, with its path
        caps = spec.process.capabilities
        if caps is not None:
            from portside.linux.caps import parse_caps

            for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                parse_caps(getattr(caps, name), f"process.capabilities.{name}")
        return spec, config, raw, rootfs, seccomp

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        stdio: tuple[int, int, int] | None = None,
    ) -> ContainerState:
        """Create the container; its init waits for :meth:`start` before running
        the user's process.

        ``stdio``: fds to become the container's 0, 1 and 2 instead of the caller's
        own; stage 1 then also closes every other fd of the caller it inherited."""
        bundle = os.path.abspath(bundle)
        spec, config, raw_config, rootfs, seccomp = self._prepare(bundle)
        plan, rlimits = _check_process(spec, console_socket)
        statedir, lock = self.store.reserve(container_id)
        st = ContainerState(
            id=container_id,
            bundle=bundle,
            rootfs=rootfs,
            created=_now(),
            owner="",
            annotations=dict(spec.annotations),
            cgroups_path=(spec.linux.cgroups_path if spec.linux else None) or "",
            systemd_cgroup=self.systemd_cgroup,
            oci_version=spec.oci_version,
        )
        st.remember_config(config)
        cleanup: list[Any] = []
        try:
            self._spawn(
                st,
                spec,
                plan,
                seccomp=seccomp,
                rlimits=rlimits,
                statedir=statedir,
                cleanup=cleanup,
                console_socket=console_socket,
                no_pivot=no_pivot,
                preserve_fds=preserve_fds,
                stdio=stdio,
            )
            self.store.save(st, raw_config)  # the config as read: no second serialising
            if pid_file:
                atomic_write(os.path.abspath(pid_file), str(st.pid).encode())
        except BaseException:
            for undo in reversed(cleanup):
                try:
                    undo()
                except (OSError, NotFound):
                    continue
            self.store.remove(container_id)
            raise
        finally:
            os.close(lock)
        return st

    def _spawn(
        self,
        st: ContainerState,
        spec: Spec,
        plan: NamespacePlan,
        *,
        seccomp: BpfProgram | None,
        rlimits: list[tuple[int, int, int]],
        statedir: str,
        cleanup: list[Any],
        console_socket: str | None,
        no_pivot: bool,
        preserve_fds: int,
        stdio: tuple[int, int, int] | None = None,
    ) -> None:
        from portside.runtime import init, namespaces, process
        from portside.runtime.sync import sync_pair

        hooks = spec.hooks
        assert spec.process is not None
        process.preload(
            terminal=bool(spec.process.terminal),
            seccomp=seccomp is not None,
            hooks=hooks is not None and bool(hooks.start_container or hooks.create_container),
        )
        cg = self._make_cgroup(st, spec, cleanup)
        fifo_fd = _make_exec_fifo(statedir, spec)
        console = _connect_console(console_socket) if console_socket else None
        join_fds = namespaces.open_namespace_fds(plan)
        parent, child = sync_pair()
        ctx = init.InitContext(
            spec=spec,
            bundle=st.bundle,
            rootfs=st.rootfs,
            sync=child,
            plan=plan,
            join_fds=join_fds,
            cgroup_enter=cg.enter,
            fifo_fd=fifo_fd,
            console=console,
            seccomp=seccomp,
            rlimits=rlimits,
            no_pivot=no_pivot,
            preserve_fds=preserve_fds,
            kernel=self.kernel,
            stdio=stdio,
        )
        self._fork_children(st, spec, ctx, parent, cleanup=cleanup)

    def _fork_children(
        self,
        st: ContainerState,
        spec: Spec,
        ctx: InitContext,
        parent: SyncSocket,
        *,
        cleanup: list[Any],
    ) -> None:
        """Fork init (through stage 1 when the namespaces need it), close our copies of
        what went to the child, and go through the sync points; on failure the child is
        killed and reaped."""
        from portside.runtime import init

        direct = not ctx.plan.needs_stage1
        try:
            child_pid = init.fork_init(ctx) if direct else init.run_stage1(ctx)
        finally:
            ctx.sync.close()
            if ctx.fifo_fd is not None:
                os.close(ctx.fifo_fd)
            if ctx.console is not None:
                ctx.console.close()
            for _, fd in ctx.join_fds:
                os.close(fd)
        ok = False
        try:
            self._handshake(st, spec, parent, child_pid, direct=direct, cleanup=cleanup)
            ok = True
        finally:
            parent.close()
            if not ok:
                _kill_wait(child_pid)
            elif not direct:
                _reap(child_pid)  # stage 1; a running init is reaped by whoever waits for it

    def _make_cgroup(self, st: ContainerState, spec: Spec, cleanup: list[Any]) -> CgroupManager:
        """Create the container's cgroup with its limits; recorded in the state."""
        from portside.runtime.resources import effective_resources

        cg = self._cgroup(st)
        cg.create()
        cleanup.append(cg.destroy)
        st.cgroup = cg.to_json()
        cg.set(effective_resources(spec))
        return cg

    def _handshake(
        self,
        st: ContainerState,
        spec: Spec,
        parent: Any,
        child_pid: int,
        *,
        direct: bool,
        cleanup: list[Any],
    ) -> None:
        """The parent's side of the sync points; ``child_pid`` is stage 1's PID, or
        init's when init was forked ``direct``ly, without stage 1."""
        msg = parent.expect_any(("userns", "pid"), "create")
        if msg["type"] == "userns":
            linux = spec.linux
            assert linux is not None
            _write_id_maps(child_pid, linux)
            parent.send("maps")
            msg = parent.expect("pid", "create")
        st.pid = child_pid if direct else int(msg["pid"])
        start = process_start_time(st.pid)
        st.pid_start = start or 0
        cleanup.append(lambda: _kill_pid(st.pid, st.pid_start))
        parent.send("go")
        parent.expect("prestart", "create")
        state = self.oci_state(st, "creating")
        hooks = spec.hooks
        if hooks is not None and (hooks.prestart or hooks.create_runtime):
            from portside.runtime.hooks import run_hooks

            run_hooks(hooks.prestart, state, "prestart")
            run_hooks(hooks.create_runtime, state, "createRuntime")
        parent.send("hooks_done", state=state.to_json())
        parent.expect("ready", "create")

    # --- start, kill, delete --------------------------------------------------

    def start(self, container_id: str, *, state: ContainerState | None = None) -> None:
        """Let the created container's init exec the process; ``state``: the
        container's, when the caller has just loaded it."""
        st = state if state is not None else self.load(container_id)
        status = self.status(st)
        if status != CREATED:
            raise InvalidState(container_id, "start", status)
        fifo = self.store.fifo(container_id)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # opening the fifo is what releases init: from here on the container runs,
        # so the fifo goes at once, not after the wait (a caller killed in between
        # would leave a "created" container whose next start waits forever)
        os.unlink(fifo)
        try:
            _wait_fifo(fd, st)
        finally:
            os.close(fd)
        spec_hooks = st.hooks or {}
        if spec_hooks.get("poststart"):
            from portside.oci.runtime_spec import Hooks
            from portside.runtime.hooks import run_hooks

            run_hooks(Hooks.from_json(spec_hooks).poststart, self.oci_state(st), "poststart")

    def kill(self, container_id: str, sig: int, *, all_processes: bool = False) -> None:
        st = self.load(container_id)
        status = self.status(st)
        if status == STOPPED and not all_processes:
            raise InvalidState(container_id, "kill", "not running")
        if all_processes:
            self._cgroup(st).kill_all(sig)
            return
        _signal(st.pid, st.pid_start, sig)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        st = self.load(container_id)
        status = self.status(st)
        if status in (RUNNING, PAUSED) and not force:
            raise InvalidState(container_id, "delete", f"{status} (stop it first, or use --force)")
        cg = self._cgroup(st)
        if status != STOPPED:
            if status == PAUSED:
                cg.thaw()
            _kill_pid(st.pid, st.pid_start)
        if not (st.own_pid_namespace and _destroyed(cg)) and cg.exists():
            if cg.pids():  # leftovers of a dead init (exec'd processes, daemons)
                try:
                    cg.kill_all(signal.SIGKILL)
                except (OSError, NotFound):
                    pass
                _wait_cgroup_empty(cg)
            cg.destroy()
        spec_hooks = st.hooks or {}
        self.store.remove(container_id)
        if spec_hooks.get("poststop"):
            from portside.oci.runtime_spec import Hooks
            from portside.runtime.hooks import run_hooks

            run_hooks(Hooks.from_json(spec_hooks).poststop, self.oci_state(st, STOPPED), "poststop")

    def oom_kill_count(self, container_id: str) -> int:
        """How many of the container's processes the kernel OOM-killed: one control
        file read (0 once its cgroup is gone)."""
        return self._cgroup(self.load(container_id)).oom_kill_count()

    # --- pause, resume, ps, update, stats -------------------------------------

    def pause(self, container_id: str) -> None:
        st = self.load(container_id)
        status = self.status(st)
        if status not in (RUNNING, CREATED):
            raise InvalidState(container_id, "pause", status)
        self._cgroup(st).freeze()

    def resume(self, container_id: str) -> None:
        st = self.load(container_id)
        status = self.status(st)
        if status != PAUSED:
            raise InvalidState(container_id, "resume", status)
        self._cgroup(st).thaw()

    def pids(self, container_id: str) -> list[int]:
        st = self.load(container_id)
        return self._cgroup(st).pids()

    def update(self, container_id: str, resources: LinuxResources) -> None:
        st = self.load(container_id)
        if self.status(st) == STOPPED:
            raise InvalidState(container_id, "update", STOPPED)
        self._cgroup(st).update(resources)

    def stats(self, container_id: str) -> dict[str, Any]:
        """The cgroup statistics; also for a stopped container until it is deleted
        (its cgroup still holds what happened, an OOM kill for one)."""
        st = self.load(container_id)
        cg = self._cgroup(st)
        if self.status(st) == STOPPED and not cg.exists():
            raise InvalidState(container_id, "get stats of", STOPPED)
        data = cg.stats()
        if isinstance(data.get("memory"), dict):
            data["memory"]["oom_kill"] = cg.oom_kill_count()
        return data

    def events(self, container_id: str, interval: float) -> Iterator[dict[str, Any]]:
        """runc's event stream: a ``stats`` event every ``interval`` seconds and an
        ``oom`` event whenever the kernel OOM-kills in the container's cgroup;
        ends when the container stops."""
        st = self.load(container_id)
        cg = self._cgroup(st)
        ooms = cg.oom_kill_count()
        next_stats = time.monotonic()
        while self.status(st) != STOPPED:
            count = cg.oom_kill_count()
            if count > ooms:
                ooms = count
                yield {"type": "oom", "id": container_id}
            if time.monotonic() >= next_stats:
                next_stats += interval
                yield {"type": "stats", "id": container_id, "data": cg.stats()}
            time.sleep(min(0.1, interval))
        if cg.exists() and cg.oom_kill_count() > ooms:
            yield {"type": "oom", "id": container_id}

    # --- exec ----------------------------------------------------------------

    def exec(
        self,
        container_id: str,
        proc: Process,
        *,
        console_socket: str | None = None,
        pid_file: str | None = None,
        preserve_fds: int = 0,
        stdio: tuple[int, int, int] | None = None,
    ) -> int:
        """Start ``proc`` inside the running container; return its host PID.

        ``stdio`` as for :meth:`create`."""
        from portside.runtime.execproc import exec_in

        st = self.load(container_id)
        status = self.status(st)
        if status not in (RUNNING, CREATED):
            raise InvalidState(container_id, "exec in", status)
        pid = exec_in(
            st,
            self._cgroup(st),
            proc,
            config=self.store.config(st),
            console_socket=console_socket,
            preserve_fds=preserve_fds,
            kernel=self.kernel,
            stdio=stdio,
        )
        if pid_file:
            atomic_write(os.path.abspath(pid_file), str(pid).encode())
        return pid


# --- module helpers -----------------------------------------------------------


def _check_process(
    spec: Spec, console_socket: str | None
) -> tuple[NamespacePlan, list[tuple[int, int, int]]]:
    """Checks of what create would otherwise find out in the child: the namespace
    plan, sysctls, rlimits, personality, terminal. Returns the plan and rlimits."""
    from portside.runtime import init, namespaces, process  # create-only: lazy

    plan = namespaces.plan_namespaces(spec.linux)
    if spec.linux is not None:
        init.check_sysctls(spec.linux.sysctl, plan)
    assert spec.process is not None
    rlimits = process.check_rlimits(spec.process.rlimits)
    process.check_personality(spec.linux.personality if spec.linux else None)
    if spec.process.terminal and not console_socket:
        raise InvalidArgument("process.terminal: needs --console-socket (or use run)")
    return plan, rlimits


def _load_config(path: str) -> tuple[Spec, dict[str, Any], bytes]:
    """:func:`~portside.oci.runtime_spec.load_spec`, also returning the parsed JSON
    and the file's bytes (what the state keeps as its ``config.json``)."""
    from portside.oci import fastjson
    from portside.oci.runtime_spec import SpecError, parse_spec

    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = fastjson.loads(raw)
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such file") from exc
    except fastjson.JSONError as exc:
        raise SpecError(f"{path}: invalid JSON: {exc}") from exc
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    return spec, data, raw


def _make_exec_fifo(statedir: str, spec: Spec) -> int:
    """The fifo init blocks on until start; an O_PATH fd of it for init to reopen."""
    fifo = os.path.join(statedir, "exec.fifo")
    os.mkfifo(fifo, 0o622)
    os.chmod(fifo, 0o622)  # not the caller's umask: init may be another user
    os.chown(fifo, *_host_root(spec))
    return os.open(fifo, os.O_PATH | os.O_CLOEXEC)


def _host_root(spec: Spec) -> tuple[int, int]:
    """The host uid and gid of the container's root (its user namespace's 0)."""
    linux = spec.linux
    if linux is None or linux.namespace("user") is None:
        return 0, 0
    ids = []
    for maps in (linux.uid_mappings, linux.gid_mappings):
        host = next((m.host_id for m in maps if m.container_id <= 0 < m.container_id + m.size), 0)
        ids.append(host)
    return ids[0], ids[1]


def _write_id_maps(pid: int, linux: Any) -> None:
    for name, maps in (("uid_map", linux.uid_mappings), ("gid_map", linux.gid_mappings)):
        if not maps:
            continue
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as exc:
            raise InvalidArgument(
                f"linux.{name}: writing {text.strip()!r}: {exc.strerror}"
            ) from exc


def _waits_on_fifo(pid: int, fifo: str) -> bool:
    """Whether init is still before its exec fifo: the fifo exists and init holds it
    open (it does until ``start`` releases it; after that its fds are closed on exec).
    A fifo init no longer holds is a start's leftover: the container runs."""
    try:
        target = os.stat(fifo)
    except FileNotFoundError:
        return False
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return True  # cannot tell: trust the fifo, as before
    for fd in fds:
        try:
            st = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if st.st_ino == target.st_ino and st.st_dev == target.st_dev:
            return True
    return False


def _wait_fifo(fd: int, st: ContainerState) -> None:
    """Read init's byte from the exec fifo; fail if init dies first."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if poller.poll(100):
            data = os.read(fd, 1)
            if data:
                return
        if process_start_time(st.pid) != st.pid_start:
            raise InvalidState(st.id, "start", "stopped (its init exited before start)")
        time.sleep(0.001)


def _signal(pid: int, start: int, sig: int) -> None:
    """Signal ``pid`` through a pidfd after checking it is still our process."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if process_start_time(pid) != start:
            return
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return
    finally:
        os.close(fd)


def _kill_pid(pid: int, start: int) -> None:
    _signal(pid, start, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_start_time(pid) == start and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.002)


def _destroyed(cg: CgroupManager) -> bool:
    """Remove the cgroup of a container whose init is dead, without first reading
    its process lists: with a PID namespace of its own, init's death killed every
    process in it (the kernel reaps them all before init becomes a zombie). False
    when a directory is still busy (someone else put a process there): the caller
    then takes the slow path."""
    from portside.runtime.cgroups import CgroupError

    try:
        cg.destroy(attempts=1)
    except CgroupError:
        return False
    return True


def _wait_cgroup_empty(cg: CgroupManager, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cg.pids():
            return
        time.sleep(0.005)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_wait(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
