"""The v2 driver and the eBPF device filter on a real cgroup2 hierarchy.

On a hybrid host the cgroup2 mount (/sys/fs/cgroup/unified) has no controllers, but
the core files (freeze, kill, procs) work and device programs attach to any cgroup2
directory. A process in such a directory is also in the v1 devices root, which
allows everything, so only the program decides.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from cgroup_helpers import in_child

from portside.oci.runtime_spec import parse_resources
from portside.runtime.cgroups import (
    CgroupManager,
    CgroupPermission,
    CgroupUnavailable,
    detect_mode,
    open_manager,
)
from portside.runtime.cgroups.devices_bpf import _attached

pytestmark = pytest.mark.root


def _cgroup2_root() -> str | None:
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            if detect_mode(root=root) == "v2":
                return root
        except (CgroupUnavailable, OSError):
            continue
    return None


ROOT = _cgroup2_root()
needs_v2 = pytest.mark.skipif(ROOT is None, reason="no cgroup2 hierarchy mounted")


@pytest.fixture
def cgroup() -> Iterator[CgroupManager]:
    assert ROOT is not None
    mgr = open_manager(f"/portside-test-{uuid.uuid4().hex[:12]}", "test", root=ROOT)
    try:
        mgr.create()
        yield mgr
    finally:
        try:
            if mgr.exists():
                mgr.kill_all(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while mgr.pids() and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            mgr.destroy()
    assert not mgr.exists()


def open_null() -> int:
    """0: /dev/null refused with EPERM while /dev/zero opens; 1: allowed; 2: other."""
    os.close(os.open("/dev/zero", os.O_RDONLY))
    try:
        os.close(os.open("/dev/null", os.O_RDWR))
    except PermissionError as exc:
        return 0 if exc.errno == errno.EPERM else 2
    return 1


def set_devices(mgr: CgroupManager, rules: list[dict[str, object]]) -> None:
    try:
        mgr.set(parse_resources({"devices": rules}))
    except (CgroupPermission, CgroupUnavailable) as exc:
        pytest.skip(f"the kernel refuses cgroup device programs: {exc}")


def attached(mgr: CgroupManager) -> list[int]:
    fd = os.open(mgr.paths[""], os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _attached(fd, mgr.paths[""])
    finally:
        os.close(fd)


DENY_NULL = [
    {"allow": True, "access": "rwm"},
    {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"},
]


@needs_v2
def test_bpf_program_denies_a_device(cgroup: CgroupManager) -> None:
    assert in_child(cgroup, open_null) == 1  # no program yet
    set_devices(cgroup, DENY_NULL)
    assert len(attached(cgroup)) == 1
    assert in_child(cgroup, open_null) == 0


@needs_v2
def test_bpf_allow_list_mode(cgroup: CgroupManager) -> None:
    set_devices(
        cgroup,
        [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},  # /dev/zero
        ],
    )
    assert in_child(cgroup, open_null) == 0


@needs_v2
def test_bpf_program_is_replaced(cgroup: CgroupManager) -> None:
    set_devices(cgroup, DENY_NULL)
    first = attached(cgroup)
    set_devices(cgroup, [{"allow": True, "access": "rwm"}])
    now = attached(cgroup)
    assert len(now) == 1 and now != first  # the old program was detached
    assert in_child(cgroup, open_null) == 1


@needs_v2
def test_v2_freeze_thaw_kill(cgroup: CgroupManager) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cgroup.apply(proc.pid)
        assert cgroup.pids() == [proc.pid]
        cgroup.freeze()
        assert cgroup.frozen()
        with open(f"{cgroup.paths['']}/cgroup.events") as f:
            assert "frozen 1" in f.read().splitlines()
        cgroup.thaw()
        assert not cgroup.frozen()
        cgroup.kill_all(signal.SIGKILL)
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


@needs_v2
def test_v2_limits_need_the_controller(cgroup: CgroupManager) -> None:
    with open(f"{cgroup.paths['']}/cgroup.controllers") as f:
        if "pids" in f.read().split():
            pytest.skip("this cgroup2 has the pids controller")
    with pytest.raises(CgroupUnavailable, match="pids controller is not enabled"):
        cgroup.set(parse_resources({"pids": {"limit": 5}}))
