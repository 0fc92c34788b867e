"""The container lifecycle: create, start, stop, kill, pause, wait, remove, the exit
path (restart policies, auto-remove) and reconciliation when the engine starts.

:class:`Lifecycle` owns the containers: an in-memory map mirrored in the state store
(:mod:`portside.engine.db`), one lock per container for state changes, and a
condition that waiters (``wait``, ``stop``) sleep on. The monitor (helper B's
``MonitorClient``) creates containers in the runtime and reports exits; the other
runtime calls go directly to :class:`portside.runtime.container.Runtime`.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal as _signal
import threading
import time
from collections.abc import Callable
from typing import Any

from portside.engine import names as _names
from portside.engine.db import CREATING, READY, Store
from portside.engine.etcfiles import write_etc_files
from portside.engine.model import Container, EngineConfig, now_rfc3339
from portside.engine.restart import Backoff, parse_policy
from portside.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    NotModified,
    PortsideError,
    Unavailable,
)
from portside.oci import fastjson
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.runtime.state import ContainerState as RuntimeState

__all__ = ["Lifecycle", "parse_signal"]

RUNNING_STATES = ("running", "paused", "restarting")
DEFAULT_STOP_TIMEOUT = 10
_POLL = 0.5  # how often waiters check the runtime when no exit event came
_MONITOR_CHECK = 1.0  # seconds between checks that the monitor answers


def _mounted(path: str) -> bool:
    """Whether something is mounted on ``path``, a directory of our own whose parent
    is its real parent (``os.path.ismount`` resolves the parent's whole path first)."""
    try:
        return os.lstat(path).st_dev != os.lstat(os.path.dirname(path)).st_dev
    except FileNotFoundError:
        return False


def parse_signal(value: str | int | None, default: int = _signal.SIGTERM) -> int:
    """A signal number from "SIGKILL", "KILL", "9" or 9."""
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    if is_number(text):
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    number = getattr(_signal, text, None)
    if not isinstance(number, int):
        raise InvalidArgument(f"invalid signal: {value}")
    return int(number)


def _parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC3339Nano time (0.0 for Docker's zero time)."""
    if not text or text.startswith("0001-"):
        return 0.0
    base, _, frac = text.rstrip("Z").partition(".")
    parts = (base[:4], base[5:7], base[8:10], base[11:13], base[14:16], base[17:])
    if len(base) == 19 and base[4::3] == "--T::" and is_number("".join(parts)):
        # the form now_rfc3339 writes: datetime is ~20x cheaper than strptime
        y, mo, d, h, mi, sec = (int(p) for p in parts)
        secs = datetime.datetime(y, mo, d, h, mi, sec, tzinfo=datetime.UTC).timestamp()
    else:
        import calendar

        secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs + (float("0." + frac) if frac else 0.0)


class Lifecycle:
    """The containers and their state machine."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        images: Any,
        snapshotter: Any,
        volumes: Any,
        events: Any,
        monitor_factory: Callable[[], Any],
    ) -> None:
        from portside.runtime.container import Runtime

        self.config = config
        self.paths = config.paths
        os.makedirs(os.path.join(self.paths.data_root, "containers"), mode=0o700, exist_ok=True)
        self.db = Store(self.paths.db)
        self.runtime = Runtime(self.paths.runtime_root)
        self.images = images
        self.snapshotter = snapshotter
        self.volumes = volumes
        self.events = events
        self._monitor_factory = monitor_factory
        self._monitor: Any = None
        self._monitor_lock = threading.Lock()
        self._monitor_checked = -_MONITOR_CHECK
        self.containers: dict[str, Container] = {}
        self._locks: dict[str, threading.RLock] = {}
        self.map_lock = threading.RLock()  # the maps and name reservations
        self._changed = threading.Condition()
        self._exits: dict[str, int] = {}  # exits seen per container, for next-exit waits
        self._backoff: dict[str, Backoff] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self.health: Any = None  # set by the engine (health.HealthChecks)
        self.networks: Any = None  # set by the engine (networks.Networks)

    # --- plumbing ---------------------------------------------------------------

    @property
    def monitor(self) -> Any:
        """The monitor client, the monitor spawned if it does not answer (never once
        the lifecycle is closed: a thread of a closed engine must not start one)."""
        with self._monitor_lock:
            if self._closed:
                raise Unavailable("the engine is closed")
            if self._monitor is None:
                self._monitor = self._monitor_factory()
            now = time.monotonic()
            if now - self._monitor_checked > _MONITOR_CHECK:  # a ping costs a connection
                self._monitor.ensure_running()
                self._monitor_checked = now
            return self._monitor

    def lock(self, cid: str) -> threading.RLock:
        with self.map_lock:
            return self._locks.setdefault(cid, threading.RLock())

    def resolve(self, ref: str) -> Container:
        with self.map_lock:
            by_name = {c.name: cid for cid, c in self.containers.items()}
            cid = _names.resolve(ref, self.containers, by_name)
            return self.containers[cid]

    def save(self, c: Container) -> None:
        self.db.save_container(c, READY)

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def publish(self, c: Container, action: str, **extra: str) -> None:
        attrs = {str(k): str(v) for k, v in (c.config.get("Labels") or {}).items()}
        attrs.update(image=c.image, name=c.name, **extra)
        try:
            self.events.publish("container", action, c.id, attrs)
        except PortsideError:
            pass

    # --- create -------------------------------------------------------------------

    def reserve(self, name: str | None, c: Container) -> None:
        """Give ``c`` its name (random when None) and record it as half-made."""
        with self.map_lock:
            taken = {x.name: x.id for x in self.containers.values()}
            if name:
                c.name = _names.validate_name(name)
                if c.name in taken:
                    raise _names.NameConflict(c.name, taken[c.name])
            else:
                c.name = _names.random_name(lambda n: n in taken)
            self.db.insert_container(c, CREATING)
            self.containers[c.id] = c
            self._exits[c.id] = 0

    def build(self, c: Container, image: Any, image_config: dict[str, Any]) -> None:
        """Make everything a reserved container needs on disk and in the runtime."""
        from portside.engine import spec as _spec
        from portside.engine import volumes as _volumes
        from portside.image.unpack import prepare_container_rootfs, unpack

        directory = self.paths.container_dir(c.id)
        rootfs = self.paths.rootfs(c.id)
        os.makedirs(rootfs, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        unpack(image, self.images.content, self.snapshotter)  # layers already there: skipped
        # as durable as the DB row that names it (WAL, synchronous=NORMAL); a layer
        # whose container is gone after a power loss is removed at the next start
        prepare_container_rootfs(image, self.snapshotter, c.id, durable=False)
        self.mount_rootfs(c)
        gateway = self.networks.host_gateway() if self.networks is not None else None
        write_etc_files(directory, c.host_config, c.config, host_gateway=gateway)
        mounts, c.mounts = _volumes.resolve_mounts(
            self.volumes, c.id, c.config, c.host_config, rootfs
        )
        spec = _spec.build_spec(
            c,
            image_config,
            rootfs,
            mounts,
            paths=self.paths,
            cgroup_parent=self.config.cgroup_parent,
            init_path=self.config.init_path,
            namespace_paths=self.namespace_paths(c.host_config),
            default_ulimits=self.config.default_ulimits or None,
        )
        path = os.path.join(directory, "config.json")
        with open(path + ".tmp", "w") as f:
            f.write(fastjson.dumps(spec.to_json()))
        os.replace(path + ".tmp", path)
        self.runtime_create(c)

    def namespace_paths(self, host_config: dict[str, Any]) -> dict[str, str] | None:
        """The /proc/<pid>/ns paths to join for "container:<ref>" modes."""
        out: dict[str, str] = {}
        for key, ns in (("PidMode", "pid"), ("IpcMode", "ipc"), ("NetworkMode", "network")):
            mode = str(host_config.get(key) or "")
            if not mode.startswith("container:"):
                continue
            other = self.resolve(mode.split(":", 1)[1])
            if other.state.status not in ("running", "paused") or not other.state.pid:
                raise Conflict(
                    f"cannot join the {ns} namespace of container {other.id}: it is not running"
                )
            proc_ns = "net" if ns == "network" else ns
            out[ns] = f"/proc/{other.state.pid}/ns/{proc_ns}"
        return out or None

    def mount_rootfs(self, c: Container) -> None:
        """Mount the container's layer, unless it is; a ``--rm`` container's is
        volatile (no syncs: it is thrown away, never trusted after a crash)."""
        from portside.image.snapshots import mount_all

        rootfs = self.paths.rootfs(c.id)
        if not _mounted(rootfs):
            volatile = bool(c.host_config.get("AutoRemove"))
            mount_all(self.snapshotter.mounts(c.id, volatile=volatile), rootfs)

    def runtime_create(self, c: Container) -> int:
        """Create the container in the runtime through the monitor (state "created");
        its init's PID."""
        log = c.host_config.get("LogConfig") or {}
        return self.monitor.create(
            c.id,
            self.paths.container_dir(c.id),
            tty=c.tty,
            open_stdin=bool(c.config.get("OpenStdin")),
            stdin_once=bool(c.config.get("StdinOnce")),
            log_driver=str(log.get("Type") or "json-file"),
            log_opts={str(k): str(v) for k, v in (log.get("Config") or {}).items()},
            log_path=self.paths.log_path(c.id),
        )

    def finish_create(self, c: Container) -> None:
        self.save(c)
        self.publish(c, "create")

    # --- start --------------------------------------------------------------------

    def runtime_status(self, cid: str) -> str:
        """The runtime's status of ``cid``: created running paused stopped, or "missing"."""
        return self._runtime_state(cid)[0]

    def _runtime_state(self, cid: str) -> tuple[str, RuntimeState | None]:
        """The runtime's status of ``cid`` and its state (None when "missing")."""
        try:
            st = self.runtime.load(cid)
        except NotFound:
            return "missing", None
        return str(self.runtime.status(st)), st

    def start(self, c: Container, *, manual: bool = True) -> None:
        """Start ``c`` (caller holds its lock). A stopped runtime container is deleted and
        created again through the monitor first."""
        if c.state.status in ("running", "paused"):
            raise NotModified(f"container {c.id} is already running")
        if c.state.status == "removing":
            raise Conflict(f"container {c.id} is marked for removal and cannot be started")
        self.cancel_timer(c.id)
        if manual:
            c.restart_count = 0
            self._backoff.pop(c.id, None)
        status, created = self._runtime_state(c.id)
        if status != "created":
            created = None
            if status != "missing":
                self.runtime_delete(c.id)
        self.mount_rootfs(c)
        pid = created.pid if created is not None else self.runtime_create(c)
        try:
            self.attach_network(c, pid)
            self.runtime.start(c.id, state=created)
        except PortsideError as exc:
            if self.networks is not None:
                self.networks.release(c)
            c.state.status, c.state.error, c.state.exit_code = "exited", str(exc), 128
            c.state.finished_at = now_rfc3339()
            self.save(c)
            with self._changed:  # its waiters (docker run) see it end
                self._exits[c.id] = self._exits.get(c.id, 0) + 1
                self._changed.notify_all()
            if c.host_config.get("AutoRemove"):  # as dockerd: a --rm container that
                threading.Thread(  # cannot start is removed
                    target=self._auto_remove, args=(c.id,), daemon=True
                ).start()
            raise
        st = c.state
        st.status, st.pid, st.exit_code, st.error, st.oom_killed = "running", pid, 0, "", False
        st.started_at = now_rfc3339()
        c.manually_stopped = False
        self.save(c)
        self.publish(c, "start")
        if self.health is not None:
            self.health.start(c)
        self.notify()

    def attach_network(self, c: Container, pid: int) -> None:
        """The endpoints of created ``c`` (in its init's namespace), saved before the
        runtime starts it; a failure deletes it in the runtime, so that the next start
        gets a fresh namespace."""
        if self.networks is None:
            return
        try:
            self.networks.attach(c, pid)
        except BaseException:
            self.runtime_delete(c.id)
            raise
        if c.networks or c.ports:
            self.save(c)  # a crash from here on: reconcile knows its addresses

    def runtime_delete(self, cid: str, *, gone: bool = False) -> None:
        """Delete ``cid`` in the runtime and its record in the monitor; ``gone``: the
        container is being removed for good, so the monitor's forget is not waited for
        (it may be busy with a create)."""
        try:
            self.runtime.delete(cid, force=True)
        except NotFound:
            pass
        if self._monitor is not None:
            try:
                self._monitor.forget(cid, wait=not gone)
            except (OSError, PortsideError):
                pass

    # --- signals ----------------------------------------------------------------

    def kill(self, c: Container, sig: int) -> None:
        """Send ``sig`` to the init of running ``c`` (caller holds its lock)."""
        if c.state.status not in ("running", "paused"):
            raise Conflict(f"Cannot kill container: {c.id}: container {c.id} is not running")
        if sig in (_signal.SIGKILL, self.stop_signal(c)):
            c.manually_stopped = True  # Docker: a killed container is not restarted
            self.save(c)
        try:
            self.runtime.kill(c.id, sig)
            if c.state.status == "paused":  # a frozen process handles no signal, not even KILL
                self.runtime.resume(c.id)
                c.state.status = "running"
                self.save(c)
        except PortsideError as exc:
            if self.runtime_status(c.id) not in ("stopped", "missing"):
                raise
            del exc  # it exited meanwhile: the exit path records it
        self.publish(c, "kill", signal=str(sig))

    @staticmethod
    def stop_signal(c: Container) -> int:
        return parse_signal(c.config.get("StopSignal"), _signal.SIGTERM)

    def stop(self, c: Container, timeout: int | None, sig: str | None) -> None:
        """Docker's stop: the stop signal, SIGKILL after ``timeout`` seconds (-1: never)."""
        with self.lock(c.id):
            if c.state.status == "restarting":
                self.cancel_timer(c.id)
                c.state.status, c.manually_stopped = "exited", True
                self.save(c)
                self.notify()
                return
            if c.state.status not in ("running", "paused"):
                raise NotModified(f"container {c.id} is not running")
            if timeout is None:
                timeout = c.config.get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
            seen = self._exits.get(c.id, 0)
            self.kill(c, parse_signal(sig, self.stop_signal(c)))
            c.manually_stopped = True
            self.save(c)
        deadline = None if timeout < 0 else time.monotonic() + timeout
        if not self.wait_exit(c, seen, deadline):
            with self.lock(c.id):
                if c.state.status in ("running", "paused"):
                    self.kill(c, _signal.SIGKILL)
            self.wait_exit(c, seen, time.monotonic() + 30)
        self.publish(c, "stop")

    # --- exits --------------------------------------------------------------------

    def wait_exit(self, c: Container, seen: int, deadline: float | None) -> bool:
        """Wait until ``c`` exited more often than ``seen`` times (or was removed).

        The monitor's exit events wake the waiters; asking the runtime (:meth:`sync`)
        is only the fallback for an event that never came, every ``_POLL`` seconds."""
        next_sync = time.monotonic() + _POLL
        while True:
            with self._changed:
                if self._exits.get(c.id, seen + 1) > seen:
                    return True
                if not self._sleep(deadline, next_sync):
                    return False
            if time.monotonic() >= next_sync:
                self.sync(c)
                next_sync = time.monotonic() + _POLL

    def _sleep(self, deadline: float | None, next_sync: float) -> bool:
        """Wait on the condition (held) until a change, ``next_sync`` or ``deadline``;
        False when the deadline has passed."""
        now = time.monotonic()
        left = None if deadline is None else deadline - now
        if left is not None and left <= 0:
            return False
        pause = next_sync - now if left is None else min(left, next_sync - now)
        if pause > 0:
            self._changed.wait(pause)
        return True

    def sync(self, c: Container) -> None:
        """Record an exit the monitor did not report (yet): the runtime says stopped."""
        if c.state.status not in ("running", "paused") or self.runtime_status(c.id) not in (
            "stopped",
            "missing",
        ):
            return
        record = None
        for _ in range(20):  # the monitor writes the record right after reaping
            try:
                record = self.monitor.exit_record(c.id)
            except (OSError, PortsideError):
                record = None
            if record is not None or c.state.status not in ("running", "paused"):
                break
            time.sleep(0.05)
        record = record or {"exit_code": 137, "oom_killed": False, "finished_at": ""}
        self.exited(c.id, record, restart=True)

    def exited(self, cid: str, event: dict[str, Any], *, restart: bool = True) -> None:
        """Record the exit of container ``cid`` (a monitor event or exit record)."""
        c = self.containers.get(cid)
        if c is None:
            return
        auto_remove = False
        with self.lock(cid):
            st = c.state
            pid = int(event.get("pid") or 0)
            if st.status not in ("running", "paused") or (pid and st.pid and pid != st.pid):
                return
            ran_for = time.time() - _parse_time(st.started_at)
            st.exit_code = int(event.get("exit_code", 137))
            st.oom_killed = bool(event.get("oom_killed"))
            st.finished_at = str(event.get("finished_at") or now_rfc3339())
            st.status, st.pid = "exited", 0
            if self.networks is not None:
                self.networks.release(c)
            if self.health is not None:
                self.health.stop(cid)
            if st.oom_killed:
                self.publish(c, "oom")
            self.publish(c, "die", exitCode=str(st.exit_code))
            policy = parse_policy(c.host_config.get("RestartPolicy"))
            if restart and policy.should_restart(st.exit_code, c.restart_count, c.manually_stopped):
                delay = self._backoff.setdefault(cid, Backoff()).next(ran_for)
                st.status = "restarting"
                self.schedule(cid, delay)
            elif c.host_config.get("AutoRemove"):
                auto_remove = True
            self.save(c)
        with self._changed:
            self._exits[cid] = self._exits.get(cid, 0) + 1
            self._changed.notify_all()
        if auto_remove:
            threading.Thread(target=self._auto_remove, args=(cid,), daemon=True).start()

    def _auto_remove(self, cid: str) -> None:
        c = self.containers.get(cid)
        if c is not None:
            try:
                self.remove(c, force=True, volumes=True)
            except PortsideError:
                pass

    def schedule(self, cid: str, delay: float) -> None:
        timer = threading.Timer(delay, self._restart_now, args=(cid,))
        timer.daemon = True
        with self.map_lock:
            self._timers[cid] = timer
        timer.start()

    def cancel_timer(self, cid: str) -> None:
        with self.map_lock:
            timer = self._timers.pop(cid, None)
        if timer is not None:
            timer.cancel()

    def _restart_now(self, cid: str) -> None:
        c = self.containers.get(cid)
        if c is None or self._closed:
            return
        with self.lock(cid):
            with self.map_lock:
                self._timers.pop(cid, None)
            if c.state.status != "restarting":
                return
            c.restart_count += 1
            try:
                self.start(c, manual=False)
            except PortsideError:
                pass  # recorded in State.Error by start
            else:
                self.publish(c, "restart")

    # --- wait and remove ------------------------------------------------------------

    def wait(self, c: Container, condition: str, timeout: float | None) -> dict[str, Any]:
        return self.waiter(c, condition, timeout)()

    def waiter(
        self, c: Container, condition: str, timeout: float | None
    ) -> Callable[[], dict[str, Any]]:
        """Register a wait now and block later: the exits counted from this moment
        (``docker run`` sends wait, then start only once the wait's headers arrive)."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        with self._changed:
            seen = self._exits.get(c.id, 0)
        return lambda: self._wait(c, condition, seen, timeout)

    def _wait(
        self, c: Container, condition: str, seen: int, timeout: float | None
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if condition == "not-running" and c.state.status not in RUNNING_STATES:
            return {"StatusCode": c.state.exit_code, "Error": None}
        if condition in ("not-running", "next-exit"):
            while c.state.status not in ("exited", "dead") or condition == "next-exit":
                if not self.wait_exit(c, seen, deadline):
                    raise Conflict(f"timed out waiting for container {c.id}")
                if c.state.status != "restarting" or condition == "next-exit":
                    break
                with self._changed:
                    seen = self._exits.get(c.id, 0)
            return {"StatusCode": c.state.exit_code, "Error": None}
        next_sync = time.monotonic() + _POLL
        while c.id in self.containers:
            with self._changed:
                if c.id not in self.containers:
                    break
                if not self._sleep(deadline, next_sync):
                    raise Conflict(f"timed out waiting for container {c.id}")
            if c.id in self.containers and time.monotonic() >= next_sync:
                self.sync(c)
                next_sync = time.monotonic() + _POLL
        return {"StatusCode": c.state.exit_code, "Error": None}

    def remove(self, c: Container, *, force: bool, volumes: bool) -> None:
        with self.lock(c.id):
            if c.id not in self.containers:
                raise NotFound(f"No such container: {c.id}")
            if c.state.status in ("running", "paused") and not force:
                raise Conflict(
                    f'cannot remove container "/{c.name}": container is running: stop the'
                    " container before removing or force remove"
                )
            self.cancel_timer(c.id)
            was_running = c.state.status in ("running", "paused")
            c.state.status = "removing"
            self.save(c)
            if self.health is not None:
                self.health.stop(c.id)
            self.teardown(c.id)
            if self.networks is not None:
                self.networks.release(c)
            if was_running:
                c.state.exit_code = 137
                self.publish(c, "die", exitCode="137")
            self.db.delete_container(c.id)
            with self.map_lock:
                self.containers.pop(c.id, None)
                self._backoff.pop(c.id, None)
            if volumes:
                self._remove_anonymous_volumes(c)
            self.publish(c, "destroy")
        with self._changed:
            self._exits[c.id] = self._exits.get(c.id, 0) + 1
            self._changed.notify_all()

    def teardown(self, cid: str) -> None:
        """Delete everything of ``cid`` but its DB row: runtime state (processes, cgroup),
        monitor record, rootfs mount, snapshot, directory."""
        from portside.image.snapshots import SnapshotNotFound, unmount_all

        self.runtime_delete(cid, gone=True)
        rootfs = self.paths.rootfs(cid)
        try:
            unmount_all(rootfs)
        except PortsideError:
            unmount_all(rootfs, detach=True)
        try:
            self.snapshotter.remove(cid, durable=False)  # as prepared: see build
        except SnapshotNotFound:
            pass
        shutil.rmtree(self.paths.container_dir(cid), ignore_errors=True)

    def _remove_anonymous_volumes(self, c: Container) -> None:
        from portside.engine.volumes import ANONYMOUS_LABEL

        for m in c.mounts:
            name = str(m.get("Name") or "")
            if m.get("Type") != "volume" or not name:
                continue
            try:
                if ANONYMOUS_LABEL in (self.volumes.inspect(name).get("Labels") or {}):
                    self.volumes.remove(name, force=False, in_use=self.volume_users)
            except PortsideError:
                pass  # in use by another container, or gone

    def volume_users(self, name: str) -> list[str]:
        """IDs of the containers that mount volume ``name``."""
        with self.map_lock:
            return [
                cid
                for cid, c in self.containers.items()
                if any(m.get("Name") == name for m in c.mounts)
            ]

    # --- reconcile ------------------------------------------------------------------

    def load(self) -> list[Container]:
        """Read the DB at engine start, clean up half-made containers and record exits
        that happened while the engine was down; the containers to restart by policy."""
        rows = list(self.db.containers())
        known = {c.id for _, c in rows}
        base = os.path.join(self.paths.data_root, "containers")
        doomed = {c.id for phase, c in rows if phase == CREATING or c.state.status == "removing"}
        doomed.update(entry for entry in os.listdir(base) if entry not in known)
        if doomed:
            self._settle_monitor()
        for cid in doomed:
            self._discard(cid)
        to_start = []
        for _, c in rows:
            if c.id in doomed:
                continue
            self.containers[c.id] = c
            self._exits[c.id] = 0
            if self._reconcile(c):
                to_start.append(c)
        self._remove_orphan_snapshots()
        return to_start

    def _settle_monitor(self) -> None:
        """Wait until the monitor has finished what it was doing: a create asked for
        by the engine that died may still be running there (it does one thing at a
        time, so a ping is answered after it). One asked for but not yet begun is
        refused, its client being gone."""
        try:
            self.monitor.ping()
        except (OSError, PortsideError):
            pass  # no monitor: nothing in flight

    def _remove_orphan_snapshots(self) -> None:
        """Active snapshots keyed by a container ID no container has (a create or a
        remove killed between its steps)."""
        from portside.image.snapshots import ACTIVE

        for info in self.snapshotter.walk():
            name = info.name
            if info.kind != ACTIVE or len(name) != 64 or name in self.containers:
                continue
            if all(ch in "0123456789abcdef" for ch in name):
                try:
                    self.snapshotter.remove(name)
                except PortsideError:
                    pass

    def _discard(self, cid: str) -> None:
        try:
            self.teardown(cid)
        except (OSError, PortsideError):
            pass
        self.db.delete_container(cid)

    def _reconcile(self, c: Container) -> bool:
        """Bring ``c`` in line with the runtime; whether its policy starts it now."""
        status = self.runtime_status(c.id)
        st = c.state
        if status in ("running", "paused"):
            if st.status in ("running", "paused"):
                st.status = status
                st.pid = self.runtime.load(c.id).pid
                self.save(c)
                if self.health is not None:
                    self.health.start(c)
            else:  # the engine died between the runtime start and the DB write
                st.status, st.pid = status, self.runtime.load(c.id).pid
                st.started_at = st.started_at if st.started_at[:4] != "0001" else now_rfc3339()
                self.save(c)
            return False
        if st.status in ("running", "paused"):
            record = None
            try:
                record = self.monitor.exit_record(c.id)
            except (OSError, PortsideError):
                pass
            event = record or {"exit_code": 137, "finished_at": now_rfc3339()}
            if record is None:
                st.error = "unknown"
            self.exited(c.id, event, restart=False)
        elif st.status == "restarting":
            st.status = "exited"
            self.save(c)
        policy = parse_policy(c.host_config.get("RestartPolicy"))
        started_once = not st.started_at.startswith("0001")
        return (
            started_once
            and st.status == "exited"
            and policy.start_with_daemon(st.exit_code, c.restart_count, c.manually_stopped)
        )

    def close(self) -> None:
        self._closed = True
        with self._monitor_lock:
            pass  # a monitor being started meanwhile is up (and can be stopped) after this
        with self.map_lock:
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        self.db.close()
