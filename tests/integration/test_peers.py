"""Real engines drive portside-runtime: podman (through conmon) and containerd
(through its runc shim, ``ctr run --runc-binary``).

Each engine gets its own temporary storage and state, no network (podman
``--network none``; ctr's default is the host's, which these containers do not
use), and is torn down afterwards. Skipped with a reason where the engine is not
installed (``sh scripts/install.sh --peers`` installs both).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from portside.testing import unique_id

pytestmark = [pytest.mark.root, pytest.mark.peers]

Run = Callable[..., subprocess.CompletedProcess[str]]


def runtime_binary() -> str:
    exe = shutil.which("portside-runtime", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("portside-runtime is not installed in the venv (run scripts/install.sh)")
    return exe


def _run(
    argv: list[str], timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _in_terminal(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a pty as its stdio (ctr -t insists on one), via script(1)."""
    return _run(["script", "-qec", subprocess.list2cmdline(argv), "/dev/null"], timeout)


def _umount_below(path: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(path + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


# --- podman ---------------------------------------------------------------------


@pytest.fixture
def podman(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: str) -> Iterator[Run]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman/conmon not installed (sh scripts/install.sh --peers)")
    base = str(tmp_path_factory.mktemp("podman"))
    runtime = runtime_binary()
    argv = [
        "podman",
        "--root", f"{base}/root",
        "--runroot", f"{base}/run",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
        "--runtime", runtime,
    ]  # fmt: skip

    def podman_run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([*argv, *args], check=check)

    tar = subprocess.Popen(["tar", "-C", busybox_rootfs, "-c", "."], stdout=subprocess.PIPE)
    subprocess.run([*argv, "import", "-", "localhost/busybox:test"], stdin=tar.stdout,
                   capture_output=True, check=True, timeout=60)  # fmt: skip
    tar.wait()
    try:
        yield podman_run
    finally:
        _run([*argv, "rm", "--all", "--force", "--time", "0"], check=False)
        _run([*argv, "system", "reset", "--force"], check=False)
        _umount_below(base)
        shutil.rmtree(base, ignore_errors=True)


# podman here wants these explicit: the host's NOFILE hard limit (20000) is below
# podman's default, and the runtime lacks CAP_SYS_RESOURCE to raise it
PODMAN_RUN = [
    "run", "--network", "none",
    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=32768:32768",
]  # fmt: skip


def test_podman_runs_a_container(podman: Run) -> None:
    out = podman(*PODMAN_RUN, "--rm", "localhost/busybox:test", "sh", "-c", "echo pid=$$; id -u")
    assert out.stdout.split() == ["pid=1", "uid=0"] or out.stdout.split() == ["pid=1", "0"]


def test_podman_exit_code_and_tty(podman: Run) -> None:
    failed = podman(
        *PODMAN_RUN, "--rm", "localhost/busybox:test", "sh", "-c", "exit 3", check=False
    )
    assert failed.returncode == 3
    tty = podman(*PODMAN_RUN, "--rm", "-t", "localhost/busybox:test", "tty")
    assert tty.stdout.strip() == "/dev/pts/0"


def test_podman_detached_exec_kill_rm(podman: Run) -> None:
    cid = podman(*PODMAN_RUN, "-d", "localhost/busybox:test", "sleep", "1000").stdout.strip()
    exec_out = podman("exec", cid, "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    pid, cmdline = exec_out.stdout.splitlines()
    assert int(pid) > 1
    assert cmdline.strip() == "sleep 1000"
    assert podman("exec", "-t", cid, "tty").stdout.strip().startswith("/dev/pts/")
    assert "Up" in podman("ps", "--format", "{{.Status}}").stdout
    podman("kill", cid)
    podman("wait", cid)
    assert "Exited (137)" in podman("ps", "-a", "--format", "{{.Status}}").stdout
    podman("rm", cid)
    assert podman("ps", "-aq").stdout.strip() == ""


# --- containerd -------------------------------------------------------------------

CONTAINERD_CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
"""


class Ctr:
    """``ctr`` against the fixture's containerd."""

    def __init__(self, sock: str) -> None:
        self.argv = ["ctr", "--address", sock]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([*self.argv, *args], check=check)


@pytest.fixture
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctr]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd not installed (sh scripts/install.sh --peers)")
    base = str(tmp_path_factory.mktemp("ctrd"))
    with open(f"{base}/config.toml", "w") as f:
        f.write(CONTAINERD_CONFIG.format(base=base))
    log = open(f"{base}/containerd.log", "w")  # noqa: SIM115 - closed in the finalizer
    daemon = subprocess.Popen(
        ["containerd", "--config", f"{base}/config.toml"], stdout=log, stderr=log
    )
    sock = f"{base}/containerd.sock"
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if daemon.poll() is not None or time.monotonic() > deadline:
            log.close()
            with open(f"{base}/containerd.log") as f:
                pytest.fail("containerd did not start:\n" + f.read())
        time.sleep(0.05)

    ctr_run = Ctr(sock)
    try:
        yield ctr_run
    finally:
        for task in ctr_run("task", "ls", "-q", check=False).stdout.split():
            ctr_run("task", "kill", "-s", "KILL", task, check=False)
            ctr_run("task", "delete", "--force", task, check=False)
        for container in ctr_run("container", "ls", "-q", check=False).stdout.split():
            ctr_run("container", "delete", container, check=False)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        log.close()
        subprocess.run(["pkill", "-f", f"containerd-shim.*{base}"], check=False)
        _umount_below(base)
        shutil.rmtree(base, ignore_errors=True)


def test_containerd_runs_a_container(ctr: Ctr, bundle: Callable[..., str]) -> None:
    rootfs = os.path.join(bundle(args=["true"]), "rootfs")
    name = unique_id("ctr")
    out = ctr("run", "--rm", "--runc-binary", runtime_binary(), "--rootfs", rootfs, name,
              "sh", "-c", "echo pid=$$")  # fmt: skip
    assert out.stdout.strip() == "pid=1"


def test_containerd_detached_exec_tty_kill_delete(ctr: Ctr, bundle: Callable[..., str]) -> None:
    rootfs = os.path.join(bundle(args=["true"]), "rootfs")
    name = unique_id("ctr")
    ctr("run", "-d", "--runc-binary", runtime_binary(), "--rootfs", rootfs, name, "sleep", "1000")
    assert "RUNNING" in ctr("task", "ls").stdout
    out = ctr("task", "exec", "--exec-id", "e1", name, "sh", "-c", "echo $$")
    assert int(out.stdout.strip()) > 1
    tty = _in_terminal([*ctr.argv, "task", "exec", "-t", "--exec-id", "e2", name, "tty"])
    assert "/dev/pts/" in tty.stdout
    ctr("task", "pause", name)
    assert "PAUSED" in ctr("task", "ls").stdout
    ctr("task", "resume", name)
    ctr("task", "kill", "-s", "KILL", name)
    deadline = time.monotonic() + 10
    while "STOPPED" not in ctr("task", "ls").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "STOPPED" in ctr("task", "ls").stdout
    ctr("task", "delete", name)
    ctr("container", "delete", name)
    assert name not in ctr("container", "ls", "-q").stdout.split()


def test_containerd_tty_run(ctr: Ctr, bundle: Callable[..., str]) -> None:
    rootfs = os.path.join(bundle(args=["true"]), "rootfs")
    argv = [*ctr.argv, "run", "-t", "--rm", "--runc-binary", runtime_binary(),
            "--rootfs", rootfs, unique_id("ctr"), "sh", "-c", "tty; echo tty-ok"]  # fmt: skip
    out = _in_terminal(argv)
    assert "/dev/pts/0" in out.stdout
    assert "tty-ok" in out.stdout
