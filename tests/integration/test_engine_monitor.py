"""The container monitor on the real kernel: create through it, start with the
runtime, output in the log and through attach, stdin, exec, exits recorded,
clients that vanish, a failed create, a slow client, rotation."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portside.engine.logfile import read_logs
from portside.engine.monitor_client import MonitorClient
from portside.engine.monitor_proto import StreamDecoder, encode_message
from portside.errors import InvalidArgument, NotFound, PortsideError
from portside.oci._json import SpecError
from portside.runtime.container import Runtime
from portside.runtime.errors import ChildError
from portside.testing import unique_id
from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import cgroup_dirs, start_time, wait_for

pytestmark = pytest.mark.root

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 100 & wait"]


class Env:
    """A monitor in temporary roots, and every container made through it."""

    def __init__(self, root: str, bundle: BundleFactory) -> None:
        self.root = root
        self.exec_root = os.path.join(root, "exec")
        self.runtime_root = os.path.join(root, "rt")
        self.client = MonitorClient(self.exec_root, self.runtime_root)
        self.runtime = Runtime(self.runtime_root)
        self.make_bundle = bundle
        self.ids: list[str] = []
        self.pids: dict[int, int | None] = {}

    def bundle(self, cid: str, args: list[str], *, terminal: bool = False, memory: int = 0) -> str:
        def mutate(spec: dict[str, Any]) -> None:
            spec["linux"]["cgroupsPath"] = f"/portside/{cid}"
            if memory:
                resources = spec["linux"].setdefault("resources", {})
                resources["memory"] = {"limit": memory, "swap": memory}

        return self.make_bundle(args=args, terminal=terminal, mutate=mutate)

    def create(self, args: list[str], *, tty: bool = False, open_stdin: bool = False,
               stdin_once: bool = False, log_opts: dict[str, str] | None = None,
               log_driver: str = "json-file", memory: int = 0) -> str:  # fmt: skip
        cid = unique_id("mon")
        self.ids.append(cid)
        path = self.bundle(cid, args, terminal=tty, memory=memory)
        pid = self.client.create(
            cid, path, tty=tty, open_stdin=open_stdin, stdin_once=stdin_once,
            log_driver=log_driver, log_opts=log_opts or {}, log_path=self.log(cid),
        )  # fmt: skip
        self.pids[pid] = start_time(pid)
        return cid

    def log(self, cid: str) -> str:
        return os.path.join(self.root, f"{cid}-json.log")

    def monitor_pid(self) -> int:
        with open(os.path.join(self.exec_root, "monitor.pid")) as f:
            return int(f.read())

    def close(self) -> None:
        problems = []
        for cid in self.ids:
            try:
                self.runtime.delete(cid, force=True)
            except NotFound:
                pass
            except PortsideError as exc:
                problems.append(f"delete {cid}: {exc}")
        pid = None
        try:
            pid = self.monitor_pid()
        except (OSError, ValueError):
            pass
        self.client.shutdown()
        if pid is not None:
            try:
                wait_for("the monitor to stop", lambda: start_time(pid) is None, 5.0)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                problems.append(f"monitor {pid} did not stop")
        problems += [f"cgroup {d}" for cid in self.ids for d in cgroup_dirs(cid)]
        try:
            wait_for("container processes to exit", lambda: not self.live(), 5.0)
        except AssertionError:
            problems += [f"process {p}" for p in self.live()]
        assert not problems, "left behind: " + "; ".join(problems)

    def live(self) -> list[int]:
        return [p for p, start in self.pids.items() if start and start_time(p) == start]


@pytest.fixture
def env(bundle: BundleFactory) -> Iterator[Env]:
    root = tempfile.mkdtemp(prefix="psm-", dir="/tmp")
    e = Env(root, bundle)
    e.client.ensure_running()
    try:
        yield e
    finally:
        e.close()
        subprocess.run(["rm", "-rf", root], check=False)


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def demux(data: bytes) -> tuple[bytes, bytes]:
    out = {1: b"", 2: b""}
    for stream, payload in StreamDecoder().feed(data):
        out[stream] += payload
    return out[1], out[2]


def next_exit(sub: Any, pid_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    for event in sub:
        if event["id"] == pid_id:
            return dict(event)
        assert time.monotonic() < deadline, f"no exit event of {pid_id}"
    raise AssertionError(f"subscription ended before the exit of {pid_id}")


def test_output_in_log_and_attach_with_stdin(env: Env) -> None:
    sub = env.client.subscribe()
    cid = env.create(["sh", "-c", "echo hello; echo oops >&2; cat; exit 3"],
                     open_stdin=True, stdin_once=True)  # fmt: skip
    sock = env.client.attach(cid, stdin=True, stdout=True, stderr=True)
    env.runtime.start(cid)
    sock.sendall(b"round trip\n")
    sock.shutdown(socket.SHUT_WR)  # stdin_once: closes cat's stdin
    out, err = demux(read_all(sock))
    assert (out, err) == (b"hello\nround trip\n", b"oops\n")
    event = next_exit(sub, cid)
    sub.close()
    assert (event["exit_code"], event["exec"], event["oom_killed"]) == (3, False, False)
    record = env.client.exit_record(cid)
    assert record is not None and record["exit_code"] == 3
    assert record["finished_at"].endswith("Z")
    with open(env.log(cid)) as f:
        lines = [json.loads(line) for line in f]
    assert sorted((e["stream"], e["log"]) for e in lines) == [
        ("stderr", "oops\n"), ("stdout", "hello\n"), ("stdout", "round trip\n"),
    ]  # fmt: skip
    assert list(read_logs(env.log(cid), stderr=False)) == [(1, b"hello\n"), (1, b"round trip\n")]


def test_tty_attach_resize_and_detach_keys(env: Env) -> None:
    script = "read a; stty size; echo got $a; read b; echo got $b"
    cid = env.create(["sh", "-c", script], tty=True, open_stdin=True)
    env.client.resize(cid, 33, 111)
    sock = env.client.attach(cid, stdin=True, stdout=True, stderr=True)
    env.runtime.start(cid)
    sock.sendall(b"one\n")
    got = b""
    sock.settimeout(10)
    while b"got one" not in got:
        got += sock.recv(4096)
    sock.sendall(b"\x10\x11")  # ctrl-p ctrl-q: ends this attach only
    got += read_all(sock)
    assert b"33 111" in got
    assert env.runtime.status(env.runtime.load(cid)) == "running"
    again = env.client.attach(cid, stdin=True, stdout=True, stderr=False)
    again.sendall(b"two\n")
    assert b"got two" in read_all(again)
    record = None
    wait_for("the exit record", lambda: env.client.exit_record(cid) is not None)
    record = env.client.exit_record(cid)
    assert record is not None and record["exit_code"] == 0
    with open(env.log(cid)) as f:
        logged = "".join(json.loads(line)["log"] for line in f)
    assert "got one" in logged and "got two" in logged


def test_exec_stream_stdin_and_exit(env: Env) -> None:
    cid = env.create(STOPPABLE)
    env.runtime.start(cid)
    sub = env.client.subscribe()
    proc = {"args": ["sh", "-c", "echo out; echo err >&2; exit 5"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}  # fmt: skip
    handle = env.client.exec(cid, "exec1", proc, tty=False, stdin=False, detach=False)
    assert handle.sock is not None and handle.pid > 0
    assert demux(read_all(handle.sock)) == (b"out\n", b"err\n")
    event = next_exit(sub, "exec1")
    assert (event["exec"], event["container_id"], event["exit_code"]) == (True, cid, 5)
    cat = {**proc, "args": ["cat"]}
    handle = env.client.exec(cid, "exec2", cat, tty=False, stdin=True, detach=False)
    assert handle.sock is not None
    handle.sock.sendall(b"via exec\n")
    handle.sock.shutdown(socket.SHUT_WR)
    assert demux(read_all(handle.sock)) == (b"via exec\n", b"")
    assert next_exit(sub, "exec2")["exit_code"] == 0
    detached = env.client.exec(cid, "exec3", {**proc, "args": ["sh", "-c", "exit 2"]},
                               tty=False, stdin=False, detach=True)  # fmt: skip
    assert detached.sock is None
    assert next_exit(sub, "exec3")["exit_code"] == 2
    with open(env.log(cid)) as f:
        assert f.read() == ""  # exec output is not the container's log
    env.runtime.kill(cid, signal.SIGKILL)
    assert next_exit(sub, cid)["exit_code"] == 137
    sub.close()
    env.client.forget(cid)
    assert env.client.exit_record(cid) is None
    assert env.client.exit_record("exec1") is None  # the container's execs go with it


CLIENT = textwrap.dedent(
    """
    import os, sys
    from portside.engine.monitor_client import MonitorClient
    from portside.runtime.container import Runtime
    exec_root, runtime_root, cid, bundle, log = sys.argv[1:]
    c = MonitorClient(exec_root, runtime_root)
    c.ensure_running()
    c.create(cid, bundle, tty=False, open_stdin=False, stdin_once=False,
             log_driver="json-file", log_opts={}, log_path=log)
    Runtime(runtime_root).start(cid)
    sock = c.attach(cid, stdin=False, stdout=True, stderr=True)
    sub = c.subscribe()
    print("ready", flush=True)
    sock.recv(1)
    """
)


def test_client_killed_and_reconnected(env: Env) -> None:
    monitor = env.monitor_pid()
    cids, procs = [], []
    for args in (["sh", "-c", "echo started; sleep 0.5; exit 7"], STOPPABLE):
        cid = unique_id("mon")
        env.ids.append(cid)
        argv = [sys.executable, "-c", CLIENT, env.exec_root, env.runtime_root, cid,
                env.bundle(cid, args), env.log(cid)]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd="/work/main")
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        env.pids[env.runtime.load(cid).pid] = start_time(env.runtime.load(cid).pid)
        proc.send_signal(signal.SIGKILL)  # the engine side dies mid-attach, mid-subscribe
        proc.wait()
        cids.append(cid)
        procs.append(proc)
    short, long = cids
    wait_for("the exit while no client was there", lambda: env.client.exit_record(short), 5)
    assert env.client.exit_record(short)["exit_code"] == 7  # type: ignore[index]
    assert env.client.ping()["pid"] == monitor
    env.client.ensure_running()  # finds the same monitor
    assert env.monitor_pid() == monitor and env.client.ping()["containers"] == 1
    sub = env.client.subscribe()
    sock = env.client.attach(long, stdin=False, stdout=True, stderr=True)
    env.runtime.kill(long, signal.SIGTERM)
    assert read_all(sock) == b""
    assert next_exit(sub, long)["exit_code"] == 0
    sub.close()
    assert list(read_logs(env.log(short))) == [(1, b"started\n")]
    assert env.client.ping()["clients"] == 1  # only this ping: the dead ones were dropped


def _fds(pid: int) -> list[str]:
    return sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))


def _children(pid: int) -> str:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().strip()


def test_failed_create_leaves_nothing(env: Env) -> None:
    monitor = env.monitor_pid()
    env.client.ping()
    time.sleep(0.05)
    before = _fds(monitor)
    for tty in (False, True):
        with pytest.raises(ChildError, match="executable file not found"):
            env.create(["no-such-binary"], tty=tty, open_stdin=True)
    with pytest.raises(SpecError, match=r"/nonexistent/config\.json: no such file"):
        env.client.create("monmissing", "/nonexistent", tty=False, open_stdin=False,
                          stdin_once=False, log_driver="none", log_opts={},
                          log_path="")  # fmt: skip
    # the monitor closes a finished ping connection once it sees its end
    wait_for("the monitor's fds to be as before", lambda: _fds(monitor) == before, 2.0)
    assert _children(monitor) == ""
    assert [d for cid in env.ids for d in cgroup_dirs(cid)] == []
    assert env.client.ping()["containers"] == 0


def test_a_create_whose_client_is_gone_is_not_made(env: Env) -> None:
    # an engine killed right after asking: the next engine discards the container, so
    # the monitor must not make it behind that engine's back
    monitor = env.monitor_pid()
    cid = unique_id("mon")
    env.ids.append(cid)
    request = {"op": "create", "id": cid, "bundle": env.bundle(cid, STOPPABLE), "tty": False,
               "open_stdin": False, "stdin_once": False, "log_driver": "none", "log_opts": {},
               "log_path": ""}  # fmt: skip
    os.kill(monitor, signal.SIGSTOP)  # it reads the request only once the client is gone
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.path.join(env.exec_root, "monitor.sock"))
            s.sendall(encode_message(request))
    finally:
        os.kill(monitor, signal.SIGCONT)
    assert env.client.ping()["containers"] == 0
    assert env.client.ping()["pid"] == monitor
    with pytest.raises(NotFound):
        env.runtime.load(cid)
    assert cgroup_dirs(cid) == []


def test_slow_client_is_dropped_not_the_container(env: Env) -> None:
    script = "head -c 12000000 /dev/zero | tr '\\0' x; echo; echo done"
    cid = env.create(["sh", "-c", script], log_opts={"max-size": "1m", "max-file": "2"})
    lazy = env.client.attach(cid, stdin=False, stdout=True, stderr=True)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    env.runtime.start(cid)
    wait_for("the exit record", lambda: env.client.exit_record(cid) is not None, 20)
    assert env.client.exit_record(cid)["exit_code"] == 0  # type: ignore[index]
    received = read_all(lazy)
    assert 0 < len(received) < 12_000_000  # cut off: it never read
    assert os.path.exists(env.log(cid) + ".1") and not os.path.exists(env.log(cid) + ".2")
    assert os.path.getsize(env.log(cid)) < (1 << 20) + 20000
    tail = list(read_logs(env.log(cid), tail=2))
    assert tail[-1] == (1, b"done\n")


def test_tty_exec_and_log_driver_none(env: Env) -> None:
    cid = env.create(STOPPABLE, log_driver="none")
    env.runtime.start(cid)
    proc = {"args": ["sh", "-c", "read x; stty size; echo got $x; exit 4"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}  # fmt: skip
    sub = env.client.subscribe()
    handle = env.client.exec(cid, "tty1", proc, tty=True, stdin=True, detach=False)
    assert handle.sock is not None
    env.client.resize("tty1", 12, 34)
    handle.sock.sendall(b"hi\n")
    out = read_all(handle.sock)
    assert b"12 34" in out and b"got hi" in out and not out.startswith(b"\x01\x00")
    assert next_exit(sub, "tty1")["exit_code"] == 4
    sub.close()
    assert not os.path.exists(env.log(cid))


def test_garbage_on_the_socket_is_answered_and_survived(env: Env) -> None:
    monitor = env.monitor_pid()
    for junk in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x01{"):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.path.join(env.exec_root, "monitor.sock"))
            s.sendall(junk)
            s.settimeout(5)
            answer = s.recv(65536)
            assert b'"ok":false' in answer or answer == b"", answer
    with pytest.raises(InvalidArgument, match="unknown monitor operation"):
        env.client._call("nonsense")
    with pytest.raises(NotFound):
        env.client.attach("nosuchthing", stdin=False, stdout=True, stderr=True)
    assert env.client.ping()["pid"] == monitor


def test_oom_kill_is_recorded(env: Env) -> None:
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived"
    cid = env.create(["sh", "-c", hog], memory=16 << 20)
    sub = env.client.subscribe()
    env.runtime.start(cid)
    event = next_exit(sub, cid, timeout=30)
    sub.close()
    assert (event["exit_code"], event["oom_killed"]) == (137, True)
    assert env.client.exit_record(cid)["oom_killed"] is True  # type: ignore[index]


def test_a_created_container_holds_no_other_containers_fds(env: Env) -> None:
    reader = env.create(["cat"], open_stdin=True, stdin_once=True)
    waiting = env.create(["true"])  # forked while the monitor held cat's stdin pipe
    init = env.runtime.load(waiting).pid

    def targets() -> list[str]:
        return [os.readlink(f"/proc/{init}/fd/{fd}") for fd in os.listdir(f"/proc/{init}/fd")]

    # its sync socket goes right after create returns; no client or listener socket stays
    wait_for("init's fds", lambda: not [t for t in targets() if t.startswith("socket:")], 2.0)
    assert sum(t.startswith("pipe:") for t in targets()) <= 3  # its own stdio only
    sock = env.client.attach(reader, stdin=True, stdout=True, stderr=True)
    env.runtime.start(reader)
    sock.sendall(b"x\n")
    sock.shutdown(socket.SHUT_WR)
    assert demux(read_all(sock)) == (b"x\n", b"")  # cat saw end of file
    wait_for("cat's exit record", lambda: env.client.exit_record(reader) is not None)


def test_forgotten_before_reaped_leaves_no_record(env: Env) -> None:
    """A container deleted and forgotten while its init was still alive: its exit is
    announced, but no record is left behind (it would outlive the container)."""
    sub = env.client.subscribe()
    cid = env.create(["sleep", "100"])
    env.runtime.start(cid)
    env.runtime.kill(cid, signal.SIGSTOP)  # alive until the delete kills it
    env.client.forget(cid)
    env.runtime.delete(cid, force=True)
    assert next_exit(sub, cid)["exit_code"] == 137
    sub.close()
    assert env.client.exit_record(cid) is None
    assert not os.path.exists(os.path.join(env.client.exec_root, "monitor", f"{cid}.exit"))
