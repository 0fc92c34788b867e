"""Bad input against a real daemon: unknown image, name conflict, invalid values,
no-op lifecycle calls, clients that vanish mid-stream, stdin closed early, the
daemon SIGKILLed during `docker run`, and a hostile `docker cp` tar. Clear errors,
no leaked threads or fds, and nothing orphaned or written outside the container."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import time
import uuid

import pytest

from portside.testing.daemon import CGROUP_ROOT, Daemon, _UnixHTTP

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]

TICKER = ["sh", "-c", "while true; do echo tick; sleep 0.05; done"]
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


# --- clients -------------------------------------------------------------------------


def api(
    d: Daemon, method: str, path: str, body: object = None, timeout: float = 20
) -> tuple[int, object]:
    """One raw Engine API call: (status, decoded JSON body or bytes)."""
    conn = _UnixHTTP(d.socket, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else raw
    except ValueError:
        return resp.status, raw


def docker(
    d: Daemon, *args: str, check: bool = True, timeout: float = 30, **kw: object
) -> subprocess.CompletedProcess[str]:
    return d.run(["docker"], *args, check=check, timeout=timeout, **kw)


def name() -> str:
    return f"bad-{uuid.uuid4().hex[:8]}"


def run_detached(d: Daemon, cmd: list[str], **config: object) -> str:
    status, body = api(
        d, "POST", f"/containers/create?name={name()}", {"Image": "busybox", "Cmd": cmd, **config}
    )
    assert status == 201, body
    cid = body["Id"]  # type: ignore[index]
    assert api(d, "POST", f"/containers/{cid}/start")[0] == 204
    return cid


def state(d: Daemon, ref: str) -> dict:
    status, body = api(d, "GET", f"/containers/{ref}/json")
    assert status == 200, body
    return body["State"]  # type: ignore[index]


def remove(d: Daemon, ref: str) -> None:
    api(d, "DELETE", f"/containers/{ref}?force=1")


def open_raw(d: Daemon, request: str, want: bytes) -> socket.socket:
    """Send a raw HTTP request and read until ``want`` has arrived."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(d.socket)
    sock.sendall(request.encode())
    got = b""
    while want not in got:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early: {got!r}"
        got += chunk
    return sock


def counts(pid: int) -> tuple[int, int]:
    """(threads, open fds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def settles(pid: int, baseline: tuple[int, int], slack: int = 4, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        threads, fds = counts(pid)
        if threads <= baseline[0] + slack and fds <= baseline[1] + slack:
            return True
        time.sleep(0.1)
    return False


# --- errors --------------------------------------------------------------------------


def test_unknown_image_is_404(daemon: Daemon) -> None:
    status, body = api(daemon, "POST", "/v1.50/containers/create", {"Image": "nosuchimage"})
    assert status == 404
    assert body["message"].startswith("No such image: nosuchimage")  # type: ignore[index]
    proc = docker(daemon, "create", "--pull", "never", "nosuchimage", check=False)
    assert proc.returncode == 1  # docker create's own code (run says 125)
    assert "No such image: nosuchimage" in proc.stderr
    import docker as docker_py

    client = docker_py.DockerClient(base_url=daemon.host)
    try:
        with pytest.raises(docker_py.errors.ImageNotFound):
            client.containers.create("nosuchimage")
    finally:
        client.close()


def test_name_conflict_is_409_with_dockers_text(daemon: Daemon) -> None:
    n = name()
    cid = docker(daemon, "create", "--name", n, "busybox", "true").stdout.strip()
    try:
        status, body = api(daemon, "POST", f"/containers/create?name={n}", {"Image": "busybox"})
        assert status == 409
        assert body["message"] == (  # type: ignore[index]
            f'Conflict. The container name "/{n}" is already in use by container "{cid}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        )
        proc = docker(daemon, "run", "--name", n, "busybox", "true", check=False)
        assert proc.returncode == 125
        assert "is already in use by container" in proc.stderr
    finally:
        remove(daemon, cid)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"HostConfig": {"Memory": 1}}, "Minimum memory limit allowed is 6MB"),
        ({"HostConfig": {"NanoCpus": -1}}, "Range of CPUs is from 0.01 to"),
        ({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "invalid restart policy"),
        (
            {"HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}},
            "maximum retry count cannot be used with restart policy 'always'",
        ),
        ({"HostConfig": {"Sysctls": {"kernel.core_pattern": "|/tmp/x"}}}, "kernel.core_pattern"),
        ({"WorkingDir": "relative/dir"}, "it needs to be an absolute path"),
        ({"WorkingDir": "/proc/self/fd/5"}, "/proc/self/fd"),
        ({"WorkingDir": "/proc/self/../self/fd/5"}, "/proc/self/fd"),
    ],
    ids=["memory", "nanocpus", "restart", "retries", "sysctl", "workdir", "fd", "fd-dotdot"],
)
def test_invalid_values_are_400_and_create_nothing(
    daemon: Daemon, config: dict, message: str
) -> None:
    n = name()
    body = {"Image": "busybox", **config}
    status, body = api(daemon, "POST", f"/containers/create?name={n}", body)
    assert status == 400, body
    assert message in body["message"], body  # type: ignore[index]
    assert api(daemon, "GET", f"/containers/{n}/json")[0] == 404


def test_invalid_cli_values(daemon: Daemon) -> None:
    proc = docker(daemon, "run", "--rm", "-m", "12x", "busybox", "true", check=False)
    assert proc.returncode == 125 and "12x" in proc.stderr
    proc = docker(daemon, "run", "--rm", "--cpus", "-1", "busybox", "true", check=False)
    assert proc.returncode == 125 and "Range of CPUs" in proc.stderr
    proc = docker(daemon, "run", "--rm", "-m", "1", "busybox", "true", check=False)
    assert proc.returncode == 125 and "Minimum memory limit allowed is 6MB" in proc.stderr


def test_rm_running_without_force_is_409_and_keeps_it(daemon: Daemon) -> None:
    cid = run_detached(daemon, ["sleep", "300"])
    try:
        status, body = api(daemon, "DELETE", f"/containers/{cid}")
        assert status == 409
        assert "container is running" in body["message"]  # type: ignore[index]
        proc = docker(daemon, "rm", cid, check=False)
        assert proc.returncode == 1 and "stop the container before removing" in proc.stderr
        st = state(daemon, cid)
        assert st["Running"] is True and os.path.exists(f"/proc/{st['Pid']}")
    finally:
        remove(daemon, cid)


def test_start_running_and_stop_stopped_are_304(daemon: Daemon) -> None:
    cid = run_detached(daemon, ["sleep", "300"])
    try:
        assert api(daemon, "POST", f"/containers/{cid}/start") == (304, b"")
        assert docker(daemon, "start", cid).returncode == 0
        assert api(daemon, "POST", f"/containers/{cid}/stop?t=0")[0] == 204
        assert api(daemon, "POST", f"/containers/{cid}/stop?t=0") == (304, b"")
        assert docker(daemon, "stop", cid).returncode == 0
        assert state(daemon, cid)["Status"] == "exited"
    finally:
        remove(daemon, cid)


# --- clients that vanish -------------------------------------------------------------


def http_head(method: str, path: str, extra: str = "") -> str:
    """The head of a raw HTTP/1.1 request."""
    return f"{method} {path} HTTP/1.1\r\nHost: docker\r\n{extra}\r\n"


UPGRADE = "Connection: Upgrade\r\nUpgrade: tcp\r\n"
ATTACH_ALL = "stream=1&stdin=1&stdout=1&stderr=1"


def _stream_request(kind: str, cid: str) -> tuple[str, bytes]:
    """A streaming request and a byte string its response shows once streaming."""
    if kind == "logs":
        return http_head("GET", f"/v1.50/containers/{cid}/logs?follow=1&stdout=1"), b"tick"
    if kind == "events":
        return http_head("GET", "/v1.50/events"), b"200 OK"
    if kind == "stats":
        return http_head("GET", f"/v1.50/containers/{cid}/stats"), b"memory_stats"
    return http_head("POST", f"/v1.50/containers/{cid}/attach?{ATTACH_ALL}", UPGRADE), b"tick"


def _disconnect_20_times(daemon: Daemon, kind: str, cid: str) -> None:
    """Open the stream 20 times and drop it (half with a reset, half with a FIN)."""
    pid = daemon.proc.pid  # type: ignore[union-attr]
    request, want = _stream_request(kind, cid)
    open_raw(daemon, request, want).close()  # a first one grows the pools
    time.sleep(0.5)
    baseline = counts(pid)
    for i in range(20):
        sock = open_raw(daemon, request, want)
        if i % 2 == 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
        sock.close()
    started = time.monotonic()
    assert daemon.ping()
    assert time.monotonic() - started < 1.0
    assert settles(pid, baseline), f"{kind}: {counts(pid)} vs baseline {baseline}"


@pytest.mark.parametrize("kind", ["logs", "events", "stats", "attach"])
def test_disconnect_mid_stream_leaks_nothing(daemon: Daemon, kind: str) -> None:
    cid = run_detached(daemon, TICKER, OpenStdin=True)
    try:
        _disconnect_20_times(daemon, kind, cid)
        assert state(daemon, cid)["Running"] is True
        assert api(daemon, "POST", f"/containers/{cid}/stop?t=1")[0] == 204
        assert state(daemon, cid)["Running"] is False
    finally:
        remove(daemon, cid)


def test_killed_docker_cli_streams_leak_nothing(daemon: Daemon) -> None:
    cid = run_detached(daemon, TICKER, OpenStdin=True)
    pid = daemon.proc.pid  # type: ignore[union-attr]
    commands = [["logs", "-f", cid], ["stats", cid], ["attach", cid], ["events"]]

    def round_() -> None:
        for args in commands:
            proc = subprocess.Popen(["docker", *args], env=daemon.env(), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                if args[0] == "events":
                    time.sleep(0.3)  # nothing to print: give it time to subscribe
                else:
                    assert proc.stdout is not None and proc.stdout.readline()
            finally:
                proc.kill()
                proc.wait()

    try:
        round_()
        time.sleep(0.5)
        baseline = counts(pid)
        for _ in range(3):
            round_()
        assert daemon.ping()
        assert settles(pid, baseline), f"{counts(pid)} vs baseline {baseline}"
        assert docker(daemon, "stop", "-t", "1", cid).returncode == 0
    finally:
        remove(daemon, cid)


def test_disconnect_from_logs_of_a_silent_container_leaks_nothing(daemon: Daemon) -> None:
    cid = run_detached(daemon, ["sh", "-c", "echo tick; exec sleep 300"])
    try:
        _disconnect_20_times(daemon, "logs", cid)
    finally:
        remove(daemon, cid)


def test_stdin_closed_early(daemon: Daemon) -> None:
    started = time.monotonic()
    proc = docker(daemon, "run", "-i", "--rm", "busybox", "cat", stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout == ""
    assert time.monotonic() - started < 10
    body = {"Image": "busybox", "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": True,
            "AttachStdin": True, "AttachStdout": True}  # fmt: skip
    status, created = api(daemon, "POST", f"/containers/create?name={name()}", body)
    assert status == 201, created
    cid = created["Id"]  # type: ignore[index]
    try:
        attach = http_head("POST", f"/v1.50/containers/{cid}/attach?{ATTACH_ALL}", UPGRADE)
        sock = open_raw(daemon, attach, b"\r\n\r\n")
        assert api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
        sock.sendall(b"hello\n")
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        sock.close()
        assert out == struct.pack(">BxxxL", 1, 6) + b"hello\n"
        status, waited = api(daemon, "POST", f"/containers/{cid}/wait", timeout=10)
        assert waited["StatusCode"] == 0  # type: ignore[index]
    finally:
        remove(daemon, cid)


# --- the daemon SIGKILLed during `docker run` ----------------------------------------


def _cgroup_ids(d: Daemon) -> dict[str, list[int]]:
    """Container cgroups under the daemon's parent (all controllers) → their pids."""
    found: dict[str, list[int]] = {}
    for ctrl in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, ctrl) + d.cgroup_parent
        if not os.path.isdir(base):
            continue
        for entry in os.scandir(base):
            if entry.is_dir():
                with open(os.path.join(entry.path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
                found.setdefault(entry.name, []).extend(pids)
    return found


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _monitor_children(d: Daemon) -> list[int]:
    try:
        with open(os.path.join(d.exec_root, "monitor.pid")) as f:
            monitor = int(f.read().split()[0])
        with open(f"/proc/{monitor}/task/{monitor}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError, IndexError):
        return []


def _stuck_started(d: Daemon, cid: str, pids: list[int]) -> bool:
    """The runtime still has the exec fifo of a container whose init already exec'd
    the user's command: the state a SIGKILL inside ``Runtime.start`` leaves."""
    fifo = os.path.join(d.exec_root, "runtime", cid, "exec.fifo")
    return os.path.exists(fifo) and any(_cmdline(p) == "sleep 300" for p in pids)


def _check_consistent(d: Daemon) -> dict[str, dict]:
    """What `docker ps -a` says matches processes, cgroups, mounts and bundles."""
    status, listed = api(d, "GET", "/containers/json?all=1")
    assert status == 200
    known = {c["Id"]: c for c in listed}  # type: ignore[union-attr]
    cgroups = _cgroup_ids(d)
    for cid, pids in cgroups.items():
        assert cid in known, f"cgroup of a container that does not exist: {cid}"
        if known[cid]["State"] == "created" and pids:
            assert not _stuck_started(d, cid, pids), f"started but shown as created: {cid}"
            # a created container holds only its runtime init, waiting for start
            assert all(_cmdline(p) != "sleep 300" for p in pids), (cid, pids)
        elif pids:
            assert known[cid]["State"] == "running", (known[cid], pids)
    owned = {p for pids in cgroups.values() for p in pids}
    for child in _monitor_children(d):
        assert child in owned, f"orphan under the monitor: {child} {_cmdline(child)}"
    for point in _mounts_under(d.data_root):
        owner = os.path.relpath(point, os.path.join(d.data_root, "containers")).split("/")[0]
        assert owner in known, f"mount without a container: {point}"
    bundles = os.path.join(d.data_root, "containers")
    for entry in os.listdir(bundles) if os.path.isdir(bundles) else []:
        assert entry in known, f"half-made container left on disk: {entry}"
    for cid, c in known.items():
        st = state(d, cid)
        if c["State"] == "running":
            assert st["Pid"] > 0 and os.path.exists(f"/proc/{st['Pid']}"), st
    return known


def _kill_during(d: Daemon, phase: str, delay: float) -> None:
    """SIGKILL the daemon ``delay`` s after sending a create (or, after a create, a
    start); then start it again."""
    body = {"Image": "busybox", "Cmd": ["sleep", "300"]}
    if phase == "create":
        payload = json.dumps(body)
        extra = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        request = http_head("POST", f"/containers/create?name={name()}", extra) + payload
    else:
        status, created = api(d, "POST", f"/containers/create?name={name()}", body)
        assert status == 201, created
        cid = created["Id"]  # type: ignore[index]
        request = http_head("POST", f"/containers/{cid}/start")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(d.socket)
    sock.sendall(request.encode())
    time.sleep(delay)
    d.stop(signal.SIGKILL)
    sock.close()
    d.start()


def _kill_during_docker_run(d: Daemon, delay: float) -> None:
    proc = subprocess.Popen(
        ["docker", "run", "-d", "busybox", "sleep", "300"], env=d.env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(delay)
    d.stop(signal.SIGKILL)
    proc.kill()
    proc.wait()
    d.start()


def test_daemon_sigkilled_during_run_leaves_nothing_orphaned() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Daemon()
    try:
        d.start()
        d.load_busybox()
        attempts = [("create", t) for t in (0.0, 0.003, 0.01, 0.03)]
        attempts += [("start", t) for t in (0.0, 0.001, 0.002, 0.003, 0.005, 0.01)]
        for phase, delay in attempts:
            _kill_during(d, phase, delay)
            _check_consistent(d)
        for delay in (0.12, 0.2, 0.3):
            _kill_during_docker_run(d, delay)
            _check_consistent(d)
        for cid, c in _check_consistent(d).items():
            if c["State"] == "created":  # what is left can still be started
                assert api(d, "POST", f"/containers/{cid}/start", timeout=10)[0] == 204
                assert state(d, cid)["Running"] is True
            assert api(d, "DELETE", f"/containers/{cid}?force=1")[0] == 204
        assert _cgroup_ids(d) == {}
        assert _mounts_under(d.data_root) == []
        assert _monitor_children(d) == []
        assert docker(d, "ps", "-aq").stdout.strip() == ""
    finally:
        d.cleanup()


def test_start_after_a_start_killed_midway_does_not_hang(daemon: Daemon) -> None:
    status, created = api(daemon, "POST", f"/containers/create?name={name()}",
                          {"Image": "busybox", "Cmd": ["sleep", "300"]})  # fmt: skip
    assert status == 201, created
    cid = created["Id"]  # type: ignore[index]
    try:
        # what a daemon SIGKILLed inside Runtime.start did: open the fifo (init goes
        # on to exec the command), then die before unlinking it
        fifo = os.path.join(daemon.exec_root, "runtime", cid, "exec.fifo")
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        deadline = time.monotonic() + 5
        while not any(_cmdline(p) == "sleep 300" for p in _cgroup_ids(daemon).get(cid, [])):
            assert time.monotonic() < deadline, "init did not exec its command"
            time.sleep(0.02)
        try:
            status, _ = api(daemon, "POST", f"/containers/{cid}/start", timeout=5)
        except TimeoutError:
            status = 0
        assert status in (204, 304)
        assert state(daemon, cid)["Running"] is True
    finally:
        with contextlib.suppress(OSError):  # release a start stuck waiting on the fifo
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"0")
            os.close(fd)
        remove(daemon, cid)


# --- hostile archives ----------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _file(path: str, data: bytes = b"pwned\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(path), data


def _symlink(path: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(path)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def _put(d: Daemon, cid: str, data: bytes) -> int:
    conn = _UnixHTTP(d.socket, timeout=20)
    try:
        conn.request("PUT", f"/containers/{cid}/archive?path=/", body=data,
                     headers={"Content-Type": "application/x-tar"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_hostile_cp_tar_is_refused_and_writes_nothing_outside(daemon: Daemon) -> None:
    cid = run_detached(daemon, ["sleep", "300"])
    rootfs = os.path.join(daemon.data_root, "containers", cid, "rootfs")
    sentinel = os.path.join(daemon.dir, f"sentinel-{uuid.uuid4().hex[:8]}")
    os.mkdir(sentinel)
    escape = f"escape-{uuid.uuid4().hex[:8]}"
    # every place ../ chains from the rootfs reach, up to /tmp
    outside = [os.path.join(os.path.dirname(rootfs), *[".."] * k, escape) for k in range(5)]
    try:
        assert _put(daemon, cid, _tar(_file("benign.txt"))) == 200  # the channel works
        assert os.path.isfile(os.path.join(rootfs, "benign.txt"))
        for depth in (2, 3, 4, 5):
            assert _put(daemon, cid, _tar(_file("../" * depth + escape))) >= 400
        hostile = _tar(_symlink("hop", sentinel), _file("hop/pwned"))
        assert _put(daemon, cid, hostile) >= 400
        hostile = _tar(_symlink("hop2", "../" * 6 + sentinel.lstrip("/")), _file("hop2/pwned"))
        proc = subprocess.run(["docker", "cp", "-", f"{cid}:/"], input=hostile, env=daemon.env(),
                              capture_output=True, timeout=30, check=False)  # fmt: skip
        assert proc.returncode != 0, proc.stderr
        assert os.listdir(sentinel) == []
        for path in outside:
            assert not os.path.lexists(os.path.normpath(path)), path
        assert api(daemon, "GET", f"/containers/{cid}/json")[0] == 200
        assert state(daemon, cid)["Running"] is True
        assert not os.path.lexists(os.path.join(rootfs, escape))
    finally:
        for path in outside:
            if os.path.lexists(os.path.normpath(path)):
                os.unlink(os.path.normpath(path))
        remove(daemon, cid)
