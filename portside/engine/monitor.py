"""The container monitor and fork server: one process for every container.

``python -m portside.engine.monitor_main --exec-root E --runtime-root R``
(:mod:`portside.engine.monitor_main`) detaches (own session, stdio on /dev/null, log
in ``E/monitor.log``), becomes a child subreaper and serves ``E/monitor.sock`` from a
single-threaded selectors loop.
It creates containers and execs by forking the runtime from itself (the runtime is
imported once), so every container init and exec process becomes its child. It
holds their stdio pipes or pty masters, writes the json-file logs, fans output out
to attached clients, reaps, and records each exit in ``E/monitor/<id>.exit``
(written whole, renamed into place) before announcing it to subscribers. It outlives
the daemon: a restarted daemon finds it, and its containers, still there.

Per container it keeps a few fds and small buffers. The wire protocol is in
:mod:`portside.engine.monitor_proto`, starting a process with its stdio in
:mod:`portside.engine.monitor_spawn`.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import time
import traceback

from portside.engine.logfile import JsonLogWriter, format_time
from portside.engine.monitor_proto import (
    DetachMatcher,
    MessageDecoder,
    ProtocolError,
    encode_error,
    encode_message,
    stream_frame,
    valid_id,
)
from portside.engine.monitor_spawn import (
    close_fd,
    memory_cgroup,
    reset_child,
    spawn_container,
    spawn_exec,
)
from portside.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PortsideError,
    Unavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Monitor", "log"]

#: output buffered for one attached client before it is dropped as too slow
CLIENT_CAP = 4 << 20
#: input buffered for a process's stdin before attached clients are paused
STDIN_CAP = 1 << 20
READ_SIZE = 65536
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
_R, _W = selectors.EVENT_READ, selectors.EVENT_WRITE


def exit_code(status: int) -> int:
    """The exit code Docker reports: the status, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class Proc:
    """A container init or an exec process the monitor is the parent of."""

    __slots__ = (
        "cgroup", "cid", "clients", "forgotten", "has_stdin", "id", "is_exec", "log", "outputs",
        "pid", "registered", "stdin_buf", "stdin_closing", "stdin_fd", "stdin_once", "tty",
    )  # fmt: skip

    def __init__(self, pid_id: str, cid: str, *, is_exec: bool, tty: bool, stdin_once: bool):
        self.id = pid_id
        self.cid = cid
        self.is_exec = is_exec
        self.pid = 0
        self.tty = tty
        self.stdin_once = stdin_once
        self.has_stdin = False  # OpenStdin (an exec: stdin asked for); input is dropped otherwise
        self.stdin_fd = -1  # pipe write end, or the pty master
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.outputs: dict[int, int] = {}  # fd -> stream (the pty master: 1)
        self.log: JsonLogWriter | None = None
        self.clients: list[Conn] = []
        self.registered: dict[int, int] = {}  # fd -> selector events
        self.cgroup: tuple[str, str] | None = None  # a container's ("v1"|"v2", memory dir)
        self.forgotten = False  # forgotten before its exit was reaped: no record then


class Conn:
    """One connection on monitor.sock: control requests, then maybe a stream."""

    __slots__ = (
        "closed", "closing", "decoder", "detach", "events", "fd", "mode", "out", "proc",
        "read_eof", "sock", "stdin", "streams",
    )  # fmt: skip

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder: MessageDecoder | None = MessageDecoder()
        self.out = bytearray()
        self.mode = "control"  # control, stream, subscribe
        self.proc: Proc | None = None
        self.streams: tuple[bool, bool] = (True, True)
        self.stdin = False
        self.detach: DetachMatcher | None = None
        self.read_eof = False
        self.closing = False  # close once ``out`` is flushed
        self.closed = False
        self.events = 0


class Monitor:
    def __init__(self, exec_root: str, runtime_root: str) -> None:
        # the fork server's point: the runtime is imported once, here, not per container
        from portside.runtime import execproc, init, process  # noqa: F401
        from portside.runtime.container import Runtime

        self.exec_root = exec_root
        self.state_dir = os.path.join(exec_root, "monitor")
        self.runtime = Runtime(runtime_root)
        self.sel = selectors.DefaultSelector()
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.by_fd: dict[int, Proc] = {}
        self.conns: dict[int, Conn] = {}
        self.subscribers: list[Conn] = []
        self.stopping = False
        self.counter = 0
        self.listener: socket.socket | None = None
        self.wake_r = -1
        self.exec_records: dict[str, set[str]] = {}  # container ID -> IDs of its exec records
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._index_records()

    # --- setup --------------------------------------------------------------------

    def listen(self) -> None:
        path = os.path.join(self.exec_root, "monitor.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock.fileno(), _R, self._on_accept)

    def install_signals(self) -> None:
        """SIGCHLD wakes the loop through a pipe; forked children get default
        dispositions back (and no wakeup fd) before they run runtime code."""
        r, w = os.pipe()
        for fd in (r, w):
            os.set_blocking(fd, False)
        self.wake_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(r, _R, self._on_wakeup)
        os.register_at_fork(after_in_child=reset_child)

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        log(f"monitor {os.getpid()} serving {self.exec_root}")
        self.reap()  # exits that happened before we listened for them
        while not self.stopping:
            try:
                ready = self.sel.select(1.0)
            except InterruptedError:
                continue
            for key, mask in ready:
                try:
                    key.data(key.fd, mask)
                except Exception:  # one bad event must never stop the monitor
                    log(f"error handling fd {key.fd}:\n{traceback.format_exc()}")
        log("monitor stopping")
        self.close()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            for name in ("monitor.sock", "monitor.pid"):
                try:
                    os.unlink(os.path.join(self.exec_root, name))
                except FileNotFoundError:
                    pass
        for conn in list(self.conns.values()):
            self._drop(conn)
        for proc in list(self.procs.values()):
            if proc.log is not None:
                proc.log.close()

    # --- fd registration ------------------------------------------------------------

    def _set_events(self, fd: int, events: int, handler: Any) -> int:
        """Register, modify or unregister ``fd``; returns the events now set."""
        key = self.sel.get_map().get(fd)
        if key is None:
            if events:
                self.sel.register(fd, events, handler)
        elif not events:
            self.sel.unregister(fd)
        elif key.events != events:
            self.sel.modify(fd, events, handler)
        return events

    def _conn_events(self, conn: Conn) -> None:
        if conn.closed:
            return
        events = _W if conn.out else 0
        paused = conn.proc is not None and conn.stdin and len(conn.proc.stdin_buf) > STDIN_CAP
        if not conn.read_eof and not paused:
            events |= _R
        conn.events = self._set_events(conn.fd, events, self._on_conn)

    def _proc_events(self, proc: Proc) -> None:
        wanted: dict[int, int] = {fd: _R for fd in proc.outputs}
        if proc.stdin_fd >= 0 and proc.stdin_buf:
            wanted[proc.stdin_fd] = wanted.get(proc.stdin_fd, 0) | _W
        for fd in set(proc.registered) | set(wanted):
            events = self._set_events(fd, wanted.get(fd, 0), self._on_proc_fd)
            if events:
                proc.registered[fd] = events
                self.by_fd[fd] = proc
            else:
                proc.registered.pop(fd, None)
                self.by_fd.pop(fd, None)

    # --- connections ----------------------------------------------------------------

    def _on_accept(self, _fd: int, _mask: int) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving
                log(f"accept: {exc}")
                return
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[conn.fd] = conn
            self._conn_events(conn)

    def _on_conn(self, fd: int, mask: int) -> None:
        conn = self.conns.get(fd)
        if conn is None or conn.closed:
            return
        if mask & _W:
            self._flush(conn)
        if mask & _R and not conn.closed:
            self._conn_read(conn)

    def _conn_read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if conn.mode == "control":
            if not data:
                self._drop(conn)
                return
            assert conn.decoder is not None
            try:
                requests = conn.decoder.feed(data)
            except ProtocolError as exc:
                self._reply_error(conn, exc)
                self._finish(conn)
                return
            for req in requests:
                self._dispatch(conn, req)
                if conn.mode != "control":
                    break
            return
        if conn.mode == "subscribe":
            if not data:
                self._drop(conn)
            return
        self._stream_input(conn, data)

    def _stream_input(self, conn: Conn, data: bytes) -> None:
        """Bytes from an attached client: the process's stdin (Docker's rules)."""
        proc = conn.proc
        if proc is None:
            if not data:
                self._drop(conn)
            return
        if not data:
            conn.read_eof = True
            if conn.stdin and proc.stdin_once and not proc.tty:
                proc.stdin_closing = True
                self._flush_stdin(proc)
            elif conn.stdin:
                self._finish(conn)  # the client's stdin ended: so does this attach
            self._conn_events(conn)
            return
        if not conn.stdin or proc.stdin_fd < 0 or proc.stdin_closing:
            return
        detached = False
        if conn.detach is not None:
            data, detached = conn.detach.feed(data)
        proc.stdin_buf += data
        self._flush_stdin(proc)
        if detached:
            self._drop(conn)

    def _send(self, conn: Conn, data: bytes) -> None:
        if conn.closed or conn.closing:
            return
        if not conn.out:
            try:
                n = conn.sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                self._drop(conn)
                return
            data = data[n:]
            if not data:
                return
        conn.out += data
        if len(conn.out) > CLIENT_CAP:
            log(f"dropping a client of {conn.proc.id if conn.proc else '-'}: too slow")
            self._drop(conn)
            return
        self._conn_events(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except BlockingIOError:
                break
            except OSError:
                self._drop(conn)
                return
            del conn.out[:n]
        if not conn.out and conn.closing:
            self._drop(conn)
            return
        self._conn_events(conn)

    def _finish(self, conn: Conn) -> None:
        """Close ``conn`` once what is buffered for it has been sent."""
        conn.closing = True
        if not conn.out:
            self._drop(conn)

    def _drop(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._set_events(conn.fd, 0, None)
        self.conns.pop(conn.fd, None)
        if conn.proc is not None and conn in conn.proc.clients:
            conn.proc.clients.remove(conn)
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        conn.sock.close()

    def _reply(self, conn: Conn, **fields: Any) -> None:
        self._send(conn, encode_message({"ok": True, **fields}))

    def _reply_error(self, conn: Conn, exc: BaseException) -> None:
        self._send(conn, encode_message({"ok": False, "error": encode_error(exc)}))

    def _dispatch(self, conn: Conn, req: dict[str, Any]) -> None:
        op = str(req.get("op", ""))
        handler = getattr(self, f"op_{op}", None) if op.isidentifier() else None
        try:
            if handler is None:
                raise InvalidArgument(f"unknown monitor operation {op!r}")
            handler(conn, req)
        except PortsideError as exc:
            self._reply_error(conn, exc)
        except Exception as exc:  # a fault of ours: answered, logged, survived
            log(f"op {op}: {traceback.format_exc()}")
            self._reply_error(conn, exc)

    # --- operations -----------------------------------------------------------------

    def op_ping(self, conn: Conn, _req: dict[str, Any]) -> None:
        containers = sum(1 for p in self.procs.values() if not p.is_exec)
        self._reply(
            conn,
            pid=os.getpid(),
            containers=containers,
            execs=len(self.procs) - containers,
            clients=len(self.conns),
        )

    def op_shutdown(self, conn: Conn, _req: dict[str, Any]) -> None:
        self._reply(conn)
        self._flush(conn)
        self.stopping = True

    def op_create(self, conn: Conn, req: dict[str, Any]) -> None:
        cid = valid_id(req.get("id"))
        if _hung_up(conn.sock):
            # its engine died after asking: the next engine discards the half-made
            # container, and must not find this create finishing behind its back
            raise Unavailable(f"the client asking to create {cid} is gone: not creating it")
        self.reap()  # the runtime counts a zombie as stopped: it may be re-created already
        if cid in self.procs:
            raise AlreadyExists(f"container {cid} is already being monitored")
        self._remove_record(cid)
        proc = Proc(
            cid,
            cid,
            is_exec=False,
            tty=bool(req.get("tty")),
            stdin_once=bool(req.get("stdin_once")),
        )
        proc.has_stdin = bool(req.get("open_stdin"))
        spawn_container(self.runtime, proc, req, self._console_for(proc))
        self._adopt(proc)
        self._reply(conn, pid=proc.pid)

    def op_exec(self, conn: Conn, req: dict[str, Any]) -> None:
        exec_id = valid_id(req.get("exec_id"))
        cid = valid_id(req.get("id"))
        if exec_id in self.procs:
            raise AlreadyExists(f"exec {exec_id} is already running")
        detach = bool(req.get("detach"))
        proc = Proc(exec_id, cid, is_exec=True, tty=bool(req.get("tty")), stdin_once=True)
        proc.has_stdin = not detach and bool(req.get("stdin"))
        spawn_exec(self.runtime, proc, req, self._console_for(proc), attached=not detach)
        self._adopt(proc)
        self._reply(conn, pid=proc.pid)
        if not detach:
            self._attach(conn, proc, stdin=bool(req.get("stdin")), streams=(True, True),
                         keys=req.get("detach_keys"))  # fmt: skip

    def op_attach(self, conn: Conn, req: dict[str, Any]) -> None:
        pid_id = valid_id(req.get("id"))
        proc = self.procs.get(pid_id)
        if proc is None:
            if not os.path.exists(self._record_path(pid_id)):
                raise NotFound(f"no process {pid_id} in the monitor")
            self._reply(conn)  # it has exited: an empty stream
            self._finish(conn)
            return
        self._reply(conn)
        streams = (bool(req.get("stdout")), bool(req.get("stderr")))
        self._attach(conn, proc, stdin=bool(req.get("stdin")), streams=streams,
                     keys=req.get("detach_keys"))  # fmt: skip

    def _attach(
        self, conn: Conn, proc: Proc, *, stdin: bool, streams: tuple[bool, bool], keys: Any
    ) -> None:
        conn.mode, conn.decoder, conn.proc = "stream", None, proc
        conn.streams, conn.stdin = streams, stdin and proc.has_stdin
        if proc.tty and conn.stdin:
            keys_b = bytes.fromhex(keys) if isinstance(keys, str) else DEFAULT_DETACH_KEYS
            conn.detach = DetachMatcher(keys_b)
        proc.clients.append(conn)
        self._conn_events(conn)

    def op_resize(self, conn: Conn, req: dict[str, Any]) -> None:
        import fcntl
        import struct
        import termios

        proc = self.procs.get(valid_id(req.get("id")))
        if proc is None:
            raise NotFound(f"no process {req.get('id')} in the monitor")
        height, width = int(req.get("height", 0)), int(req.get("width", 0))
        if not (0 <= height < 65536 and 0 <= width < 65536):
            raise InvalidArgument(f"invalid tty size {height}x{width}")
        if proc.tty and proc.stdin_fd >= 0:
            fcntl.ioctl(proc.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        self._reply(conn)

    def op_forget(self, conn: Conn, req: dict[str, Any]) -> None:
        pid_id = valid_id(req.get("id"))
        self._remove_record(pid_id)
        for exec_id in self.exec_records.pop(pid_id, ()):
            self._remove_record(exec_id)
        for proc in self.procs.values():  # killed by the delete, not reaped yet
            if proc.id == pid_id or (proc.is_exec and proc.cid == pid_id):
                proc.forgotten = True
        self._reply(conn)

    def _index_records(self) -> None:
        """Which exec records belong to which container (records of an earlier
        monitor included), so that ``forget`` need not read them all."""
        for name in os.listdir(self.state_dir):
            if not name.endswith(".exit"):
                continue
            try:
                with open(os.path.join(self.state_dir, name), "rb") as f:
                    record = json.loads(f.read())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("exec"):
                cid = str(record.get("container_id"))
                self.exec_records.setdefault(cid, set()).add(name[: -len(".exit")])

    def op_subscribe(self, conn: Conn, _req: dict[str, Any]) -> None:
        self._reply(conn)
        conn.mode, conn.decoder = "subscribe", None
        self.subscribers.append(conn)

    # --- processes ------------------------------------------------------------------

    def _adopt(self, proc: Proc) -> None:
        self.procs[proc.id] = proc
        self.by_pid[proc.pid] = proc
        self._proc_events(proc)

    def _on_proc_fd(self, fd: int, mask: int) -> None:
        proc = self.by_fd.get(fd)
        if proc is None:
            return
        if mask & _W and fd == proc.stdin_fd:
            self._flush_stdin(proc)
        if mask & _R and fd in proc.outputs:
            self._read_output(proc, fd)

    def _read_output(self, proc: Proc, fd: int) -> bool:
        """Read one chunk of ``fd``; False when there was nothing (or no more)."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a pty whose slave side is all closed
                log(f"reading output of {proc.id}: {exc}")
            data = b""
        if not data:
            self._close_output(proc, fd)
            return False
        self._deliver(proc, proc.outputs[fd], data)
        return True

    def _deliver(self, proc: Proc, stream: int, data: bytes) -> None:
        if proc.log is not None:
            try:
                proc.log.write(stream, data)
            except OSError as exc:
                log(f"log of {proc.id}: {exc}")
        if not proc.clients:
            return
        framed = data if proc.tty else stream_frame(stream, data)
        for conn in list(proc.clients):
            if proc.tty:
                if conn.streams[0] or conn.streams[1]:
                    self._send(conn, framed)
            elif conn.streams[stream - 1]:
                self._send(conn, framed)

    def _close_output(self, proc: Proc, fd: int) -> None:
        proc.outputs.pop(fd, None)
        if fd == proc.stdin_fd:  # the pty master: keep it for input and resize
            self._proc_events(proc)
            return
        self._proc_events(proc)
        close_fd(fd)

    def _flush_stdin(self, proc: Proc) -> None:
        was_full = len(proc.stdin_buf) > STDIN_CAP
        fd = proc.stdin_fd
        while fd >= 0 and proc.stdin_buf:
            try:
                n = os.write(fd, proc.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # the process closed its stdin
                proc.stdin_buf.clear()
                break
            del proc.stdin_buf[:n]
        if proc.stdin_closing and not proc.stdin_buf and fd >= 0 and not proc.tty:
            proc.stdin_fd = -1
            self._proc_events(proc)
            close_fd(fd)
        else:
            self._proc_events(proc)
        if was_full and len(proc.stdin_buf) <= STDIN_CAP:
            for conn in proc.clients:
                self._conn_events(conn)

    def _on_wakeup(self, fd: int, _mask: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is not None:
                self._exited(proc, status)

    def _exited(self, proc: Proc, status: int) -> None:
        code = exit_code(status)
        finished = format_time(time.time_ns())
        oom = False if proc.is_exec else self._oom_killed(proc)
        for fd in list(proc.outputs):  # what it wrote before exiting
            for _ in range(64):
                if not self._read_output(proc, fd) or fd not in proc.outputs:
                    break
        fds = set(proc.outputs) | ({proc.stdin_fd} - {-1})
        proc.outputs.clear()
        proc.stdin_fd = -1
        self._proc_events(proc)  # unregistered before closed: the numbers get reused
        for fd in fds:
            close_fd(fd)
        if proc.log is not None:
            try:
                proc.log.close()
            except OSError as exc:
                log(f"log of {proc.id}: {exc}")
        record = {
            "id": proc.id,
            "pid": proc.pid,
            "exit_code": code,
            "oom_killed": oom,
            "finished_at": finished,
            "exec": proc.is_exec,
            "container_id": proc.cid,
        }
        try:
            if not proc.forgotten:
                self._write_record(record)
        except OSError as exc:
            log(f"exit record of {proc.id}: {exc}")
        if self.procs.get(proc.id) is proc:
            del self.procs[proc.id]
        for conn in list(proc.clients):
            self._finish(conn)
        event = encode_message({"type": "exit", **record})
        for conn in list(self.subscribers):
            self._send(conn, event)

    def _oom_killed(self, proc: Proc) -> bool:
        """Whether the kernel OOM-killed in the container's cgroup: one file read (this
        is on every container's exit path), in the cgroup its create recorded."""
        from portside.runtime.cgroups import memory

        try:
            where = proc.cgroup or memory_cgroup(self.runtime.load(proc.cid).cgroup)
            if where is None:
                return False
            mode, directory = where
            count = memory.v2_oom_kills if mode == "v2" else memory.v1_oom_kills
            return bool(count(directory))
        except (PortsideError, OSError):
            return False

    # --- exit records ---------------------------------------------------------------

    def _record_path(self, pid_id: str) -> str:
        return os.path.join(self.state_dir, f"{pid_id}.exit")

    def _write_record(self, record: dict[str, Any]) -> None:
        """Write the record whole or not at all (renamed into place). No fsync: the
        record must survive the monitor or the daemon being killed, which the page
        cache does; a host crash takes the containers down with it, and the exec root
        (/run) with them."""
        path = self._record_path(record["id"])
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if record.get("exec"):
            self.exec_records.setdefault(str(record.get("container_id")), set()).add(record["id"])

    def _remove_record(self, pid_id: str) -> None:
        try:
            os.unlink(self._record_path(pid_id))
        except FileNotFoundError:
            pass

    def _console_for(self, proc: Proc) -> str | None:
        """A fresh console socket path for a TTY process, else None."""
        if not proc.tty:
            return None
        self.counter += 1
        return os.path.join(self.state_dir, f".console-{self.counter}.sock")


# --- logging and process setup ---------------------------------------------------------


def _hung_up(sock: socket.socket) -> bool:
    """Whether the peer of ``sock`` has closed it (nothing more to read, then EOF)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def log(message: str) -> None:
    """A line to the monitor's log (its stderr: monitor.log once daemonized)."""
    line = f"{format_time(time.time_ns())} [{os.getpid()}] {message.rstrip()}\n"
    try:
        os.write(2, line.encode(errors="replace"))
    except OSError:
        pass
