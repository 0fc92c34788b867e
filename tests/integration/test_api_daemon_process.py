"""``python -m portside.api.daemon`` with the real Engine: listens, answers the real docker
CLI, refuses a second daemon on its socket, cleans up on SIGTERM."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portside.testing.daemon import stop_monitors
from portside.testing.network import remove_networks

pytestmark = pytest.mark.root
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@dataclass
class Proc:
    dir: str
    sock: str
    pidfile: str
    proc: subprocess.Popen[bytes]


def _argv(d: str, sock: str, pidfile: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "portside.api.daemon",
        "--data-root",
        f"{d}/data",
        "--exec-root",
        f"{d}/run",
        "-H",
        f"unix://{sock}",
        "--pidfile",
        pidfile,
        "--bridge",  # a bridge (and nftables table) of its own, never the host's portside0
        _bridge(d),
        "--ip-forward=false",
    ]


def _bridge(d: str) -> str:
    return "pst" + hashlib.sha256(d.encode()).hexdigest()[:8]


def _get(sock_path: str, path: str) -> tuple[int, bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock_path)
    conn = http.client.HTTPConnection("x")
    conn.sock = s
    conn.request("GET", path)
    resp = conn.getresponse()
    try:
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def daemon() -> Iterator[Proc]:
    d = tempfile.mkdtemp(prefix="psapid-", dir="/tmp")
    sock, pidfile = f"{d}/d.sock", f"{d}/d.pid"
    with open(f"{d}/log", "wb") as log:
        proc = subprocess.Popen(_argv(d, sock, pidfile), stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                if _get(sock, "/_ping")[0] == 200:
                    break
            assert proc.poll() is None, Path(f"{d}/log").read_text()
            assert time.monotonic() < deadline, "daemon did not answer"
            time.sleep(0.05)
        yield Proc(d, sock, pidfile, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_monitors(f"{d}/run")
        remove_networks(f"{d}/data", _bridge(d), "portside_" + _bridge(d))
        shutil.rmtree(d, ignore_errors=True)


def test_serves_real_engine(daemon: Proc) -> None:
    assert stat.S_IMODE(os.stat(daemon.sock).st_mode) == 0o660
    assert int(Path(daemon.pidfile).read_text()) == daemon.proc.pid
    status, body = _get(daemon.sock, "/v1.50/version")
    assert status == 200 and json.loads(body)["ApiVersion"] == "1.50"
    status, body = _get(daemon.sock, "/v1.50/containers/nosuch/json")
    assert status == 404 and "nosuch" in json.loads(body)["message"]


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="needs the docker CLI")
def test_docker_cli_against_real_engine(daemon: Proc) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": daemon.dir,
        "DOCKER_HOST": f"unix://{daemon.sock}",
    }

    def docker(*args: str) -> str:
        r = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert docker("version", "--format", "{{.Server.APIVersion}}") == "1.50\n"
    assert "Server Version" in docker("info")
    assert docker("ps", "-aq") == ""
    docker("volume", "create", "apitest")
    assert "apitest" in docker("volume", "ls", "-q")
    docker("volume", "rm", "apitest")


def test_second_daemon_refused_and_sigterm_cleans_up(daemon: Proc) -> None:
    other = subprocess.run(
        _argv(daemon.dir, daemon.sock, f"{daemon.dir}/other.pid"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert other.returncode == 1
    assert f"another daemon is already listening on {daemon.sock}" in other.stderr
    same_pid = subprocess.run(
        _argv(daemon.dir, f"{daemon.dir}/x.sock", daemon.pidfile),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert same_pid.returncode == 1 and "pid file found" in same_pid.stderr
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    assert not os.path.exists(daemon.sock)
    assert not os.path.exists(daemon.pidfile)
