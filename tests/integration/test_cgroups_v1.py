"""The cgroup layer on this host's real cgroup v1 (hybrid) hierarchies.

Every test works in a uniquely named cgroup that a finalizer kills and removes.
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
    CgroupInvalid,
    CgroupManager,
    CgroupUnavailable,
    detect_mode,
    open_manager,
)
from portside.runtime.cgroups.mounts import parse_mountinfo, parse_proc_cgroup

pytestmark = pytest.mark.root

MiB = 1 << 20


def _v1_host() -> bool:
    try:
        return detect_mode() in ("v1", "hybrid")
    except CgroupUnavailable:
        return False


needs_v1 = pytest.mark.skipif(not _v1_host(), reason="needs cgroup v1 controllers")


def _cleanup(mgr: CgroupManager) -> None:
    try:
        if mgr.exists():
            mgr.kill_all(signal.SIGKILL)
            deadline = time.monotonic() + 5
            while mgr.pids() and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        mgr.destroy()


@pytest.fixture
def cgroup() -> Iterator[CgroupManager]:
    mgr = open_manager(f"/portside-test-{uuid.uuid4().hex[:12]}", "test")
    try:
        mgr.create()
        yield mgr
    finally:
        _cleanup(mgr)
    assert not mgr.exists()


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@needs_v1
def test_memory_limits_read_back_and_reorder(cgroup: CgroupManager) -> None:
    mem = cgroup.paths["memory"]
    cgroup.set(parse_resources({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}}))
    assert read(f"{mem}/memory.limit_in_bytes") == str(64 * MiB)
    if not os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        pytest.skip("swap accounting is off: memsw ordering cannot be tested")
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(64 * MiB)
    # raising both: the kernel refuses memory > memsw, so memsw must go first
    cgroup.update(parse_resources({"memory": {"limit": 128 * MiB, "swap": 256 * MiB}}))
    assert read(f"{mem}/memory.limit_in_bytes") == str(128 * MiB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(256 * MiB)
    # lowering both: memory first
    cgroup.update(parse_resources({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}))
    assert read(f"{mem}/memory.limit_in_bytes") == str(32 * MiB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(32 * MiB)


@needs_v1
def test_invalid_value_is_reported_with_file_and_value(cgroup: CgroupManager) -> None:
    with pytest.raises(CgroupInvalid) as info:
        cgroup.set(parse_resources({"cpu": {"shares": 1024, "quota": 500}}))  # < 1 ms
    assert f"write {cgroup.paths['cpu']}/cpu.cfs_quota_us = 500:" in str(info.value)


@needs_v1
def test_relative_path_follows_each_hierarchy() -> None:
    name = f"portside-test-{uuid.uuid4().hex[:12]}"
    mgr = open_manager(name, "test")
    with open("/proc/self/cgroup") as f:
        own = parse_proc_cgroup(f.read())
    with open("/proc/self/mountinfo") as f:
        mounts = {m.mountpoint: m for m in parse_mountinfo(f.read())}
    try:
        mgr.create()
        for key, directory in mgr.paths.items():
            lookup = "" if key == "unified" else key
            top = _mountpoint_of(directory, mounts)
            expected = os.path.normpath(f"{top}/{own.get(lookup, '/')}/{name}")
            assert directory == expected
            assert os.path.isdir(directory)
    finally:
        _cleanup(mgr)
    assert not any(os.path.exists(d) for d in mgr.paths.values())


def _mountpoint_of(directory: str, mounts: dict[str, object]) -> str:
    return max((m for m in mounts if directory.startswith(m + "/")), key=len)


@needs_v1
def test_pids_limit_refuses_forks(cgroup: CgroupManager) -> None:
    cgroup.set(parse_resources({"pids": {"limit": 1}}))
    assert read(f"{cgroup.paths['pids']}/pids.max") == "1"

    def try_fork() -> int:
        try:
            pid = os.fork()
        except BlockingIOError:
            return 0  # EAGAIN: refused, as it should be
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return 1

    assert in_child(cgroup, try_fork) == 0
    cgroup.update(parse_resources({"pids": {"limit": 0}}))  # unlimited again
    assert read(f"{cgroup.paths['pids']}/pids.max") == "max"
    assert in_child(cgroup, try_fork) == 1


@needs_v1
def test_freeze_and_thaw_a_running_process(cgroup: CgroupManager, tmp_path: object) -> None:
    out = f"{tmp_path}/ticks"
    proc = subprocess.Popen(["sh", "-c", f"while :; do echo x >> {out}; sleep 0.01; done"])
    try:
        cgroup.apply(proc.pid)
        time.sleep(0.1)
        cgroup.freeze()
        assert cgroup.frozen()
        assert read(f"{cgroup.paths['freezer']}/freezer.state") == "FROZEN"
        size = os.path.getsize(out)
        time.sleep(0.3)
        assert os.path.getsize(out) == size  # nothing ran while frozen
        cgroup.thaw()
        assert not cgroup.frozen()
        deadline = time.monotonic() + 5
        while os.path.getsize(out) == size and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.getsize(out) > size
    finally:
        proc.kill()
        proc.wait()


@needs_v1
def test_stats_count_the_work_done_inside(cgroup: CgroupManager) -> None:
    def work() -> int:
        data = b"\x01" * (16 * MiB)
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
        return len(data) % 7

    assert in_child(cgroup, work) == (16 * MiB) % 7
    stats = cgroup.stats()
    assert stats["cpu"]["usage"]["total"] > 20_000_000  # ns: most of the 50 ms busy loop
    assert len(stats["cpu"]["usage"]["percpu"]) >= 1
    assert stats["memory"]["usage"]["max"] >= 16 * MiB
    assert stats["pids"]["current"] == 0
    assert cgroup.pids() == []


@needs_v1
def test_oom_kill_is_counted(cgroup: CgroupManager) -> None:
    resources = {"memory": {"limit": 32 * MiB}}
    if os.path.exists(f"{cgroup.paths['memory']}/memory.memsw.limit_in_bytes"):
        resources["memory"]["swap"] = 32 * MiB
    cgroup.set(parse_resources(resources))
    assert cgroup.oom_kill_count() == 0

    def hog() -> int:
        data = b"\x01" * (128 * MiB)
        return len(data) % 3

    assert in_child(cgroup, hog) == -signal.SIGKILL
    assert cgroup.oom_kill_count() == 1


@needs_v1
def test_kill_all(cgroup: CgroupManager) -> None:
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        for p in procs:
            cgroup.apply(p.pid)
        assert cgroup.pids() == sorted(p.pid for p in procs)
        cgroup.kill_all(signal.SIGKILL)
        assert [p.wait(timeout=5) for p in procs] == [-signal.SIGKILL] * 2
        assert not cgroup.frozen()
    finally:
        for p in procs:
            p.kill()
            p.wait()


@needs_v1
def test_device_rules(cgroup: CgroupManager) -> None:
    cgroup.set(
        parse_resources(
            {
                "devices": [
                    {"allow": True, "access": "rwm"},
                    {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                ]
            }
        )
    )

    def probe() -> int:
        fd = os.open("/dev/zero", os.O_RDONLY)
        os.close(fd)
        try:
            os.open("/dev/null", os.O_RDONLY)
        except PermissionError as exc:
            return 0 if exc.errno == errno.EPERM else 2
        return 1

    assert in_child(cgroup, probe) == 0


@needs_v1
def test_destroy_after_the_processes_exited(cgroup: CgroupManager) -> None:
    nested = open_manager(f"{cgroup.path}/nested", "test")
    nested.create()  # (a bare mkdir would leave cpuset.cpus empty: joining fails)
    assert in_child(nested, lambda: 0) == 0
    assert nested.pids() == []
    cgroup.destroy()
    assert not any(os.path.exists(d) for d in cgroup.paths.values())
    cgroup.destroy()  # idempotent


@needs_v1
def test_missing_controller_is_unavailable_only_when_asked(cgroup: CgroupManager) -> None:
    if "hugetlb" in cgroup.paths:
        pytest.skip("this host mounts hugetlb")
    cgroup.set(parse_resources({"pids": {"limit": 10}}))
    with pytest.raises(CgroupUnavailable, match="hugetlb"):
        cgroup.set(parse_resources({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 * MiB}]}))
