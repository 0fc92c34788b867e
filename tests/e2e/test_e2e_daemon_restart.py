"""Containers outlive the daemon: SIGKILL it, start it again, and they are still
there; an exit that happened while it was down is recorded with its code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from portside.testing.daemon import Daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]


def docker(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return d.run(["docker"], *args, check=check)


def test_live_containers_survive_sigkill_of_the_daemon() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = Daemon()
    try:
        d.start()
        d.load_busybox()
        docker(d, "run", "-d", "--name", "alive", "busybox", "sh", "-c",
               "while true; do echo tick; sleep 0.2; done")  # fmt: skip
        docker(d, "run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 7")
        pid = docker(d, "inspect", "--format", "{{.State.Pid}}", "alive").stdout.strip()
        d.stop(signal.SIGKILL)
        time.sleep(2)  # "short" exits while no daemon runs
        assert os.path.exists(f"/proc/{pid}")
        d.start()
        state = docker(d, "inspect", "--format", "{{.State.Status}} {{.State.Pid}}", "alive")
        assert state.stdout.split() == ["running", pid]
        assert docker(d, "exec", "alive", "echo", "still").stdout == "still\n"
        assert "tick" in docker(d, "logs", "--tail", "1", "alive").stdout
        short = docker(d, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "short")
        assert short.stdout.split() == ["exited", "7"]
        docker(d, "stop", "-t", "1", "alive")
        assert docker(d, "ps", "-q").stdout.strip() == ""
        d.stop(signal.SIGTERM)
        d.start()  # a clean restart finds the same state
        names = docker(d, "ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert sorted(names) == ["alive", "short"]
    finally:
        d.cleanup()
