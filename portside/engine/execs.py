"""Exec instances: ``docker exec`` create/start/inspect/resize, and the probes of
health checks. The monitor forks the process into the container and reports its exit
like a container's (``"exec": true`` events)."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from typing import Any

from portside.engine.lifecycle import Lifecycle
from portside.engine.model import Container, ExecConfig
from portside.errors import Conflict, InvalidArgument, NotFound, PortsideError

__all__ = ["Execs", "read_frames"]

MAX_PROBE_OUTPUT = 4096  # Docker keeps this much of a probe's output


class ExecNotFound(NotFound):
    def __init__(self, exec_id: str) -> None:
        super().__init__(f"No such exec instance: {exec_id}")


def read_frames(sock: socket.socket, deadline: float, limit: int) -> tuple[bytes, bool]:
    """The payload of Docker's framed stream on ``sock`` until EOF or ``deadline``
    (at most ``limit`` bytes kept); whether EOF was reached."""
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return _unframe(buf, limit), False
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        data = sock.recv(65536)
        if not data:
            return _unframe(buf, limit), True
        if len(buf) < 4 * limit:
            buf += data


def _unframe(buf: bytes, limit: int) -> bytes:
    out = bytearray()
    while len(buf) >= 8 and buf[1:4] == b"\0\0\0" and buf[0] in (0, 1, 2):
        size = int.from_bytes(buf[4:8], "big")
        out += buf[8 : 8 + size]
        buf = buf[8 + size :]
    out += buf
    return bytes(out[:limit])


class Execs:
    """The exec instances of every container."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lc = lifecycle
        self._execs: dict[str, ExecConfig] = {e.id: e for e in lifecycle.db.execs()}
        self._done: dict[str, threading.Event] = {}
        self._probes: dict[str, int | None] = {}  # health probes: their exit codes
        self._lock = threading.Lock()
        for e in self._execs.values():  # running execs of a previous engine
            if e.running and (not e.pid or not os.path.exists(f"/proc/{e.pid}")):
                record = None
                try:
                    record = lifecycle.monitor.exit_record(e.id)
                except (OSError, PortsideError):
                    pass
                e.running = False
                e.exit_code = int((record or {}).get("exit_code", 137))
                lifecycle.db.save_exec(e)

    def get(self, exec_id: str) -> ExecConfig:
        with self._lock:
            e = self._execs.get(exec_id)
        if e is None:
            raise ExecNotFound(exec_id)
        return e

    def create(self, c: Container, config: dict[str, Any]) -> dict[str, str]:
        if c.state.status == "paused":
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd:
            raise InvalidArgument("No exec command specified")
        e = ExecConfig(
            id=os.urandom(32).hex(),
            container_id=c.id,
            cmd=[str(x) for x in cmd],
            tty=bool(config.get("Tty")),
            attach_stdin=bool(config.get("AttachStdin")),
            attach_stdout=bool(config.get("AttachStdout", True)),
            attach_stderr=bool(config.get("AttachStderr", True)),
            env=[str(x) for x in config.get("Env") or []],
            user=str(config.get("User") or ""),
            working_dir=str(config.get("WorkingDir") or ""),
            privileged=bool(config.get("Privileged")),
            detach_keys=str(config.get("DetachKeys") or ""),
        )
        self.lc.db.save_exec(e)
        with self._lock:
            self._execs[e.id] = e
        with self.lc.lock(c.id):
            c.exec_ids.append(e.id)
            self.lc.save(c)
        self.lc.publish(c, "exec_create: " + " ".join(e.cmd), execID=e.id)
        return {"Id": e.id}

    def start(self, exec_id: str, *, detach: bool, tty: bool) -> tuple[bool, socket.socket] | None:
        from portside.engine import spec as _spec

        e = self.get(exec_id)
        c = self.lc.containers.get(e.container_id)
        if c is None or c.state.status != "running":
            raise Conflict(f"container {e.container_id} is not running")
        with self._lock:
            if e.running or e.exit_code is not None:
                raise Conflict(f"exec {exec_id} has already been started")
            e.running = True
            self._done[e.id] = threading.Event()
        e.tty = e.tty or tty
        process = _spec.build_exec_process(
            c, e, self.lc.paths.rootfs(c.id), default_ulimits=self.lc.config.default_ulimits or None
        )
        keys = e.detach_keys.encode() if e.detach_keys else None
        try:
            handle = self.lc.monitor.exec(
                c.id,
                e.id,
                process.to_json(),
                tty=e.tty,
                stdin=e.attach_stdin,
                detach=detach,
                detach_keys=keys,
            )
        except BaseException:
            e.running, e.exit_code = False, 126
            self.lc.db.save_exec(e)
            raise
        e.pid = int(handle.pid)
        self.lc.db.save_exec(e)
        self.lc.publish(c, "exec_start: " + " ".join(e.cmd), execID=e.id)
        if detach or handle.sock is None:
            if handle.sock is not None:
                handle.sock.close()
            return None
        return e.tty, handle.sock

    def exited(self, event: dict[str, Any]) -> None:
        """An exec's exit reported by the monitor."""
        exec_id = str(event.get("exec_id") or event.get("id") or "")
        with self._lock:
            e = self._execs.get(exec_id)
            if e is None or not e.running:  # unknown, or already recorded (inspect)
                return
            e.running = False
            done = self._done.pop(exec_id, None)
        e.running, e.exit_code = False, int(event.get("exit_code", 137))
        if e.id in self._probes:
            self._probes[e.id] = e.exit_code
        else:
            self.lc.db.save_exec(e)
            c = self.lc.containers.get(e.container_id)
            if c is not None:
                self.lc.publish(c, "exec_die", execID=e.id, exitCode=str(e.exit_code))
        if done is not None:
            done.set()

    def inspect(self, exec_id: str) -> dict[str, Any]:
        e = self.get(exec_id)
        if e.running:
            # the monitor writes the exit record before it ends the exec's stream; a
            # client that inspects right after EOF may be ahead of the exit event
            try:
                record = self.lc.monitor.exit_record(e.id)
            except (OSError, PortsideError):
                record = None
            if record is not None:
                self.exited(record)
        return {
            "CanRemove": False,
            "ContainerID": e.container_id,
            "DetachKeys": e.detach_keys,
            "ExitCode": e.exit_code,
            "ID": e.id,
            "OpenStderr": e.attach_stderr,
            "OpenStdin": e.attach_stdin,
            "OpenStdout": e.attach_stdout,
            "ProcessConfig": {
                "arguments": e.cmd[1:],
                "entrypoint": e.cmd[0],
                "privileged": e.privileged,
                "tty": e.tty,
                "user": e.user,
            },
            "Running": e.running,
            "Pid": e.pid,
        }

    def resize(self, exec_id: str, height: int, width: int) -> None:
        e = self.get(exec_id)
        if not e.running:
            raise Conflict(f"exec {exec_id} is not running")
        self.lc.monitor.resize(exec_id, height, width)

    def forget_container(self, cid: str) -> None:
        with self._lock:
            for exec_id in [k for k, e in self._execs.items() if e.container_id == cid]:
                del self._execs[exec_id]

    def probe(self, c: Container, cmd: list[str], timeout: float) -> tuple[int, bytes]:
        """Run health check ``cmd`` in ``c``: (exit code, output); -1 on timeout."""
        from portside.engine import spec as _spec

        e = ExecConfig(id=os.urandom(32).hex(), container_id=c.id, cmd=cmd, running=True)
        done = threading.Event()
        with self._lock:
            self._execs[e.id] = e
            self._done[e.id] = done
            self._probes[e.id] = None
        try:
            process = _spec.build_exec_process(
                c,
                e,
                self.lc.paths.rootfs(c.id),
                default_ulimits=self.lc.config.default_ulimits or None,
            )
            handle = self.lc.monitor.exec(
                c.id, e.id, process.to_json(), tty=False, stdin=False, detach=False
            )
            deadline = time.monotonic() + timeout
            output, eof = b"", False
            if handle.sock is not None:
                with handle.sock:
                    output, eof = read_frames(handle.sock, deadline, MAX_PROBE_OUTPUT)
            if not done.wait(max(0.0, deadline - time.monotonic()) + (0.5 if eof else 0)):
                try:
                    os.kill(int(handle.pid), signal.SIGKILL)
                except OSError:
                    pass
                return -1, f"Health check exceeded timeout ({timeout:g}s)".encode()
            code = self._probes.get(e.id)
            return (code if code is not None else -1), output
        except PortsideError as exc:
            return -1, str(exc).encode()[:MAX_PROBE_OUTPUT]
        finally:
            with self._lock:
                self._execs.pop(e.id, None)
                self._done.pop(e.id, None)
                self._probes.pop(e.id, None)
