"""An Engine on temporary roots for integration tests, and the cleanup that leaves no
process, mount, cgroup or monitor behind even when a test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from mount_helpers import mounts_under

from portside.engine.model import EngineConfig, NetworkConfig
from portside.image.snapshots import unmount_all
from portside.testing.network import remove_networks, unique_bridge

CGROUP_ROOT = "/sys/fs/cgroup"


def make_config() -> EngineConfig:
    """Fresh data and exec roots, a unique cgroup parent and default bridge (and so
    nftables table); ip_forward left as it is."""
    base = tempfile.mkdtemp(prefix="ps-eng-")
    tag = os.urandom(4).hex()
    return EngineConfig(
        data_root=os.path.join(base, "data"),
        exec_root=os.path.join(base, "run"),
        cgroup_parent=f"/portside-test-{tag}",
        network=NetworkConfig(bridge=unique_bridge(), ip_forward=False),
    )


def add_busybox(config: EngineConfig) -> str:
    """The busybox image in the config's stores; its ID."""
    from portside.image.base import make_busybox_image
    from portside.image.content import ContentStore
    from portside.image.store import ImageStore

    paths = config.paths
    content = ContentStore(paths.content)
    return str(make_busybox_image(content, ImageStore(paths.images, content)).id)


def _cgroup_dirs(parent: str) -> list[str]:
    out = []
    if not os.path.isdir(CGROUP_ROOT):
        return out
    for hierarchy in os.listdir(CGROUP_ROOT):
        path = os.path.join(CGROUP_ROOT, hierarchy, parent.lstrip("/"))
        if os.path.isdir(path) and not os.path.islink(os.path.join(CGROUP_ROOT, hierarchy)):
            out.append(path)
    return out


def _kill_cgroups(parent: str) -> None:
    """SIGKILL everything below the cgroup parent, then remove its directories."""
    for _ in range(50):
        pids: set[int] = set()
        for top in _cgroup_dirs(parent):
            for root, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    with (
                        contextlib.suppress(OSError),
                        open(os.path.join(root, "cgroup.procs")) as f,
                    ):
                        pids.update(int(x) for x in f.read().split())
        freezer = [d for d in _cgroup_dirs(parent) if "/freezer/" in d]
        for top in freezer:
            for root, _, files in os.walk(top):
                if "freezer.state" in files:
                    with (
                        contextlib.suppress(OSError),
                        open(os.path.join(root, "freezer.state"), "w") as f,
                    ):
                        f.write("THAWED")
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for top in _cgroup_dirs(parent):
        for root, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(root)


def _shutdown_monitor(config: EngineConfig) -> None:
    try:
        from portside.engine.monitor_client import MonitorClient

        MonitorClient(config.exec_root, config.paths.runtime_root).shutdown()
    except Exception:
        pass
    pidfile = os.path.join(config.exec_root, "monitor.pid")
    with contextlib.suppress(OSError, ValueError), open(pidfile) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)


def cleanup(config: EngineConfig) -> None:
    """Kill the containers and the monitor, unmount, remove cgroups and the roots."""
    _kill_cgroups(config.cgroup_parent)
    _shutdown_monitor(config)
    base = os.path.dirname(config.data_root)
    for point in sorted(mounts_under(base), key=len, reverse=True):
        with contextlib.suppress(Exception):
            unmount_all(point, detach=True)
    _kill_cgroups(config.cgroup_parent)
    remove_networks(config.data_root, config.network.bridge, config.network.table)
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def engine_roots() -> Iterator[EngineConfig]:
    config = make_config()
    try:
        yield config
    finally:
        cleanup(config)


def read_stream(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything ``sock`` sends until EOF (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def demux(data: bytes) -> dict[int, bytes]:
    """Docker's framed stream → bytes per stream (1 stdout, 2 stderr)."""
    out: dict[int, bytes] = {1: b"", 2: b""}
    while len(data) >= 8:
        size = int.from_bytes(data[4:8], "big")
        out[data[0]] = out.get(data[0], b"") + data[8 : 8 + size]
        data = data[8 + size :]
    return out


def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
