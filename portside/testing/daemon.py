"""A real ``portside daemon`` for end-to-end tests and benchmarks: its own data
root, exec root, socket and cgroup parent, the busybox image loaded, and
everything it started (monitor, containers, mounts, cgroups) gone afterwards,
even on failure."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence

from portside.testing.baseimage import write_busybox_archive
from portside.testing.network import remove_networks, unique_bridge

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CGROUP_ROOT = "/sys/fs/cgroup"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Daemon:
    """One daemon process; ``host`` is its ``unix://`` address."""

    def __init__(self, prefix: str = "pse2e-", extra_args: Sequence[str] = ()) -> None:
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.dir, "d.sock")
        self.host = f"unix://{self.socket}"
        self.cgroup_parent = f"/portside-test-{uuid.uuid4().hex[:8]}"
        self.bridge = unique_bridge()  # never the host's portside0; its own nftables table
        self.nft_table = "portside_" + self.bridge
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.proc: subprocess.Popen[bytes] | None = None

    # --- the process -------------------------------------------------------------

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "portside.cli.main", "daemon",
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "-H", self.host,
            "--pidfile", os.path.join(self.dir, "daemon.pid"),
            "--cgroup-parent", self.cgroup_parent,
            "--bridge", self.bridge,
            "--ip-forward=false",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer within {timeout}s: {self.log()}")

    def ping(self) -> bool:
        try:
            conn = _UnixHTTP(self.socket, timeout=2)
            conn.request("GET", "/_ping")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def env(self) -> dict[str, str]:
        """An environment for docker/portside CLIs that points at this daemon."""
        env = dict(os.environ)
        env.update(DOCKER_HOST=self.host, PORTSIDE_HOST=self.host, DOCKER_CONFIG=self.dir)
        env.pop("DOCKER_TLS_VERIFY", None)
        return env

    def run(
        self,
        prog: list[str],
        *args: str,
        check: bool = True,
        timeout: float = 60,
        **kw: object,
    ) -> subprocess.CompletedProcess[str]:
        """Run a client (``["docker"]``, the portside CLI...) against this daemon; with
        ``check``, a failure raises with its stderr and the daemon's log."""
        kw.setdefault("capture_output", True)
        proc = subprocess.run(  # type: ignore[call-overload]
            [*prog, *args], env=self.env(), text=True, timeout=timeout, check=False, **kw
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join([*prog, *args])} exited {proc.returncode}: {proc.stderr}\n{self.log()}"
            )
        return proc

    def load_busybox(self) -> None:
        archive = os.path.join(self.dir, "busybox.tar")
        if not os.path.exists(archive):
            write_busybox_archive(archive)
        conn = _UnixHTTP(self.socket, timeout=60)
        with open(archive, "rb") as f:
            body = f.read()
        conn.request("POST", "/images/load?quiet=1", body=body,
                     headers={"Content-Type": "application/x-tar"})  # fmt: skip
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        conn.close()
        if resp.status != 200 or "busybox" not in text:
            raise RuntimeError(f"load failed: {resp.status} {text}")

    # --- cleanup -------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the daemon, the monitor and every container; unmount; remove cgroups,
        bridges, the nftables table and the directory."""
        self.stop(signal.SIGKILL if self.proc is not None else signal.SIGTERM)
        runtime_root = os.path.join(self.exec_root, "runtime")
        stop_monitors(self.exec_root)
        _kill_runtime_containers(runtime_root)
        _unmount_under(self.dir)
        _remove_cgroups(self.cgroup_parent)
        remove_networks(self.data_root, self.bridge, self.nft_table)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_monitors(exec_root: str) -> None:
    """Shut down the monitor of ``exec_root``, and kill one that was still starting
    (no socket yet, so it could not be asked) when its daemon was stopped."""
    from portside.engine.monitor_client import MonitorClient

    with contextlib.suppress(Exception):
        MonitorClient(exec_root, os.path.join(exec_root, "runtime")).shutdown()
    marker = f"--exec-root\0{exec_root}\0".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"portside.engine.monitor" in cmdline and marker in cmdline:
                os.kill(int(entry), signal.SIGKILL)


def _kill_runtime_containers(runtime_root: str) -> None:
    if not os.path.isdir(runtime_root):
        return
    from portside.runtime.container import Runtime

    rt = Runtime(runtime_root)
    for cid in rt.store.ids():
        with contextlib.suppress(Exception):
            rt.delete(cid, force=True)


def _unmount_under(root: str) -> None:
    from portside.image.snapshots import unmount_all

    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(root + "/")), key=len, reverse=True):
        with contextlib.suppress(Exception):
            unmount_all(point, detach=True)


def _remove_cgroups(parent: str) -> None:
    for ctrl in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, ctrl) + parent
        if not os.path.isdir(base):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


@contextlib.contextmanager
def running_daemon(*, busybox: bool = True, extra_args: Sequence[str] = ()) -> Iterator[Daemon]:
    """A started daemon (``extra_args`` added to its command line), cleaned up after."""
    daemon = Daemon(extra_args=extra_args)
    try:
        daemon.start()
        if busybox:
            daemon.load_busybox()
        yield daemon
    finally:
        daemon.cleanup()
