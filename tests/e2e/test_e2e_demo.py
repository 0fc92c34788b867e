"""The README's main job, as CI sees it: daemon, load, run through the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.root
def test_demo_runs_a_container_through_the_daemon() -> None:
    proc = subprocess.run([sys.executable, "-m", "portside.testing.demo"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Loaded image: busybox:latest" in lines
    assert "pid: 1" in lines
    assert "interfaces: eth0 lo " in lines  # the default bridge network
    hostname = next(line.split(": ", 1)[1] for line in lines if line.startswith("hostname: "))
    assert len(hostname) == 12
    int(hostname, 16)  # the short container ID
