"""The engine's side of the monitor (:mod:`portside.engine.monitor`).

Every call opens its own connection to ``<exec_root>/monitor.sock``, so one
:class:`MonitorClient` is safe to share between threads. Errors raised in the
monitor come back as the same :mod:`portside.errors` class with the same message.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

from portside.engine.monitor_proto import (
    MAX_MESSAGE,
    ProtocolError,
    decode_error,
    encode_message,
    valid_id,
)
from portside.errors import Internal, InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ExecHandle", "MonitorClient", "Subscription"]

#: how long a control call may take (create runs the runtime's whole create)
CALL_TIMEOUT = 60.0
START_TIMEOUT = 30.0


class ExecHandle:
    """A started exec: its host PID, and its stdio stream unless detached."""

    __slots__ = ("pid", "sock")

    def __init__(self, pid: int, sock: socket.socket | None) -> None:
        self.pid = pid
        self.sock = sock

    def __repr__(self) -> str:
        return f"ExecHandle(pid={self.pid}, sock={self.sock!r})"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Unavailable("monitor: connection closed in the middle of an answer")
        buf += chunk
    return bytes(buf)


def read_message(sock: socket.socket) -> dict[str, Any] | None:
    """The next length-prefixed JSON message; None at a clean end of stream."""
    first = sock.recv(4, socket.MSG_WAITALL)
    if not first:
        return None
    head = first if len(first) == 4 else first + _recv_exact(sock, 4 - len(first))
    (size,) = struct.unpack(">I", head)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"monitor: message length {size} exceeds {MAX_MESSAGE}")
    try:
        msg = json.loads(_recv_exact(sock, size))
    except ValueError as exc:
        raise ProtocolError(f"monitor: answer is not JSON: {exc}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError("monitor: answer is not a JSON object")
    return msg


class Subscription:
    """Exit events as the monitor announces them; connected on creation, so no
    exit after the constructor returns is missed. ``close()`` from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.closed:
            raise StopIteration
        try:
            msg = read_message(self.sock)
        except OSError as exc:
            if self.closed:
                raise StopIteration from None
            raise Unavailable(f"monitor: subscription lost: {exc}") from exc
        except Unavailable:
            msg = None
        if msg is None:
            self.close()
            raise StopIteration
        return msg

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class MonitorClient:
    def __init__(self, exec_root: str, runtime_root: str) -> None:
        self.exec_root = os.path.abspath(exec_root)
        self.runtime_root = os.path.abspath(runtime_root)
        self.sock_path = os.path.join(self.exec_root, "monitor.sock")

    # --- plumbing -------------------------------------------------------------------

    def _connect(self, timeout: float | None = CALL_TIMEOUT) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.sock_path)
        except OSError as exc:
            sock.close()
            raise Unavailable(f"monitor {self.sock_path}: {exc.strerror or exc}") from exc
        return sock

    def _request(self, sock: socket.socket, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request on ``sock`` and return the answer (raising its error)."""
        try:
            sock.sendall(encode_message({"op": op, **fields}))
            answer = read_message(sock)
        except TimeoutError as exc:
            raise Unavailable(f"monitor: no answer to {op} in time") from exc
        except OSError as exc:
            raise Unavailable(f"monitor: {op}: {exc.strerror or exc}") from exc
        if answer is None:
            raise Unavailable(f"monitor: connection closed before the answer to {op}")
        if not answer.get("ok"):
            raise decode_error(answer.get("error") or {})
        return answer

    def _call(self, op: str, timeout: float = CALL_TIMEOUT, **fields: Any) -> dict[str, Any]:
        with self._connect(timeout) as sock:
            return self._request(sock, op, **fields)

    def _stream(self, op: str, **fields: Any) -> tuple[socket.socket, dict[str, Any]]:
        """A request whose connection becomes a stream after the answer."""
        sock = self._connect()
        try:
            answer = self._request(sock, op, **fields)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock, answer

    # --- the API --------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        answer = self._call("ping", timeout=5.0)
        answer.pop("ok", None)
        return answer

    def ensure_running(self) -> None:
        """Start the monitor unless its socket answers; wait until it does."""
        try:
            self.ping()
            return
        except Unavailable:
            pass
        self._spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.ping()
                return
            except Unavailable as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"monitor did not start: {exc}") from exc
                time.sleep(0.02)

    def _spawn(self) -> None:
        import subprocess

        os.makedirs(self.exec_root, mode=0o700, exist_ok=True)
        argv = [sys.executable, "-m", "portside.engine.monitor_main",
                "--exec-root", self.exec_root, "--runtime-root", self.runtime_root]  # fmt: skip
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"monitor: cannot start {sys.executable}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise Unavailable(f"monitor failed to start: {err or proc.returncode}")

    def create(
        self,
        cid: str,
        bundle: str,
        *,
        tty: bool,
        open_stdin: bool,
        stdin_once: bool,
        log_driver: str,
        log_opts: dict[str, str],
        log_path: str,
    ) -> int:
        """Create the container in the runtime (not started); return its init PID."""
        answer = self._call(
            "create", id=cid, bundle=os.path.abspath(bundle), tty=tty, open_stdin=open_stdin,
            stdin_once=stdin_once, log_driver=log_driver, log_opts=dict(log_opts),
            log_path=os.path.abspath(log_path) if log_path else "",
        )  # fmt: skip
        return int(answer["pid"])

    def exec(
        self,
        cid: str,
        exec_id: str,
        process: dict[str, Any],
        *,
        tty: bool,
        stdin: bool,
        detach: bool,
        detach_keys: bytes | None = None,
    ) -> ExecHandle:
        """Start ``process`` (OCI Process JSON) in container ``cid``; unless
        detached, the handle's socket is its stdio stream from the first byte."""
        fields = dict(id=cid, exec_id=exec_id, process=process, tty=tty, stdin=stdin,
                      detach=detach, detach_keys=_keys(detach_keys))  # fmt: skip
        if detach:
            return ExecHandle(int(self._call("exec", **fields)["pid"]), None)
        sock, answer = self._stream("exec", **fields)
        return ExecHandle(int(answer["pid"]), sock)

    def attach(
        self,
        id: str,
        *,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        detach_keys: bytes | None = None,
    ) -> socket.socket:
        """A stdio stream of a container or exec (Docker's framing without a TTY)."""
        sock, _ = self._stream("attach", id=id, stdin=stdin, stdout=stdout, stderr=stderr,
                               detach_keys=_keys(detach_keys))  # fmt: skip
        return sock

    def resize(self, id: str, height: int, width: int) -> None:
        self._call("resize", id=id, height=int(height), width=int(width))

    def subscribe(self) -> Subscription:
        """Exit events: ``{"type": "exit", "id", "exec", "container_id", "pid",
        "exit_code", "oom_killed", "finished_at"}``, from now on."""
        sock, _ = self._stream("subscribe")
        return Subscription(sock)

    def exit_record(self, id: str) -> dict[str, Any] | None:
        """The recorded exit of container or exec ``id``; None if there is none."""
        path = os.path.join(self.exec_root, "monitor", f"{valid_id(id)}.exit")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Internal(f"exit record {path}: {exc.strerror}") from exc
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise Internal(f"exit record {path}: not JSON: {exc}") from exc
        return record if isinstance(record, dict) else None

    def forget(self, id: str, *, wait: bool = True) -> None:
        """Drop the exit record of ``id`` (and of a container's execs). With
        ``wait=False`` the request is only sent: the monitor handles it when it gets
        to it (for a container removed for good, whose ID nothing will reuse)."""
        if wait:
            self._call("forget", id=id)
            return
        with self._connect(5.0) as sock:
            try:
                sock.sendall(encode_message({"op": "forget", "id": id}))
            except OSError as exc:
                raise Unavailable(f"monitor: forget: {exc.strerror or exc}") from exc

    def shutdown(self) -> None:
        """Stop the monitor (tests); running containers keep running. A no-op when
        it is not running."""
        try:
            self._call("shutdown", timeout=10.0)
        except Unavailable:
            return
        pid_path = os.path.join(self.exec_root, "monitor.pid")
        deadline = time.monotonic() + 10.0
        while os.path.exists(pid_path) and time.monotonic() < deadline:
            time.sleep(0.01)


def _keys(keys: bytes | None) -> str | None:
    if keys is None:
        return None
    if not isinstance(keys, bytes):
        raise InvalidArgument(f"detach keys must be bytes, not {type(keys).__name__}")
    return keys.hex()
