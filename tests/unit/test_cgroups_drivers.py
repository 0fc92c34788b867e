"""The v1 and v2 drivers on a fake cgroupfs in a temporary directory.

:class:`FakeCgroupfs` stands in for the kernel: ``mkdir`` below its root fills the new
directory with control files (as cgroupfs does), ``rmdir`` empties it first, and v2
directories inherit ``cgroup.controllers`` from the parent's ``subtree_control``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from portside.oci.runtime_spec import parse_resources
from portside.runtime.cgroups import (
    CgroupInternal,
    CgroupInvalid,
    CgroupNotFound,
    CgroupUnavailable,
    _fs,
    devices_bpf,
    freezer,
    manager_from_json,
    open_manager,
)

V1_TEMPLATES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.stat": "nr_periods 3\nnr_throttled 1\nthrottled_time 500\n",
    },
    "cpuacct": {
        "cpuacct.usage": "1000",
        "cpuacct.usage_percpu": "600 400",
        "cpuacct.usage_all": "cpu user system\n0 400 200\n1 300 100\n",
        "cpuacct.stat": "user 10\nsystem 5\n",
    },
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0"},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.usage_in_bytes": "4096",
        "memory.max_usage_in_bytes": "8192",
        "memory.failcnt": "1",
        "memory.stat": "cache 100\nrss 200\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
        "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
    },
    "pids": {"pids.max": "max", "pids.current": "1"},
    "systemd": {},
}

V2_CONTROLLERS = "cpuset cpu io memory pids"
V2_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.stat": "usage_usec 7\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": "8:0 rbytes=5 wios=6\n"},
    "memory": {
        "memory.max": "max",
        "memory.low": "0",
        "memory.high": "max",
        "memory.swap.max": "max",
        "memory.current": "4096",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "memory.stat": "file 50\nanon 60\n",
    },
    "pids": {"pids.max": "max", "pids.current": "2"},
}


class FakeCgroupfs:
    """A cgroupfs stand-in below ``root`` (v1: one directory per hierarchy)."""

    def __init__(self, root: Path, version: int) -> None:
        self.root = root
        self.version = version
        self._mkdir = os.mkdir
        self._rmdir = os.rmdir
        if version == 1:
            for name, files in V1_TEMPLATES.items():
                (root / name).mkdir()
                self._fill(root / name, {**files, "cgroup.procs": "", "tasks": ""})
        else:
            self._fill(
                root,
                {
                    "cgroup.controllers": V2_CONTROLLERS,
                    "cgroup.subtree_control": "",
                    "cgroup.procs": "",
                },
            )

    @staticmethod
    def _fill(directory: Path, files: dict[str, str]) -> None:
        for name, content in files.items():
            (directory / name).write_text(content)

    def _ours(self, path: str | os.PathLike[str]) -> bool:
        return Path(path).is_relative_to(self.root)

    def mkdir(self, path: str | os.PathLike[str], mode: int = 0o777, **kw: object) -> None:
        self._mkdir(path, mode)
        if not self._ours(path):
            return
        new = Path(path)
        if self.version == 1:
            hierarchy = new.relative_to(self.root).parts[0]
            files = dict(V1_TEMPLATES[hierarchy], **{"cgroup.procs": "", "tasks": ""})
            if hierarchy == "cpuset":
                files.update({"cpuset.cpus": "", "cpuset.mems": ""})
        else:
            enabled = [
                c.lstrip("+") for c in (new.parent / "cgroup.subtree_control").read_text().split()
            ]
            files = {
                "cgroup.controllers": " ".join(enabled),
                "cgroup.subtree_control": "",
                "cgroup.procs": "",
                "cgroup.freeze": "0",
                "cgroup.events": "populated 0\nfrozen 0\n",
            }
            for c in enabled:
                files.update(V2_FILES.get(c, {}))
        self._fill(new, files)

    def rmdir(self, path: str | os.PathLike[str], **kw: object) -> None:
        if self._ours(path):
            for entry in Path(path).iterdir():
                if entry.is_dir():
                    raise OSError(39, "Directory not empty")
                entry.unlink()
        self._rmdir(path)


@pytest.fixture
def v1fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    fake = FakeCgroupfs(tmp_path, 1)
    monkeypatch.setattr(os, "mkdir", fake.mkdir)
    monkeypatch.setattr(os, "rmdir", fake.rmdir)
    return fake


@pytest.fixture
def v2fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    fake = FakeCgroupfs(tmp_path, 2)
    monkeypatch.setattr(os, "mkdir", fake.mkdir)
    monkeypatch.setattr(os, "rmdir", fake.rmdir)
    return fake


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every control-file write, as (directory, file, value)."""
    calls: list[tuple[str, str, str]] = []
    real = _fs._write_run

    def write_run(directory: str, name: str, values: list[str]) -> tuple[int, Exception | None]:
        calls.extend((directory, name, value) for value in values)
        return real(directory, name, values)

    monkeypatch.setattr(_fs, "_write_run", write_run)
    return calls


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def read(path: Path) -> str:
    return path.read_text().strip()


FULL = {
    "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432, "swappiness": 10},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1", "mems": "0"},
    "pids": {"limit": 64},
    "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3},
    ],
}


# --- v1 ---------------------------------------------------------------------------------


def test_v1_open_and_paths(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager(None, "abc", root=str(v1fs.root), mountinfo="")
    assert mgr.mode == "v1"
    assert mgr.path == "/portside/abc"
    assert mgr.paths["memory"] == f"{v1fs.root}/memory/portside/abc"
    assert mgr.paths["name=systemd"] == f"{v1fs.root}/systemd/portside/abc"
    assert not mgr.exists()


def test_v1_create_copies_cpuset_into_new_dirs(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/a/b", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    mgr.create()  # idempotent
    for level in ("a", "a/b"):
        assert read(v1fs.root / "cpuset" / level / "cpuset.cpus") == "0-1"
        assert read(v1fs.root / "cpuset" / level / "cpuset.mems") == "0"
    assert all(os.path.isdir(d) for d in mgr.paths.values())
    assert mgr.exists()


def test_v1_set_writes_every_controller(
    v1fs: FakeCgroupfs, recorded: list[tuple[str, str, str]]
) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    recorded.clear()
    mgr.set(parse_resources(FULL))
    d = {k: Path(v) for k, v in mgr.paths.items()}
    assert read(d["memory"] / "memory.limit_in_bytes") == "67108864"
    assert read(d["memory"] / "memory.memsw.limit_in_bytes") == "134217728"
    assert read(d["memory"] / "memory.soft_limit_in_bytes") == "33554432"
    assert read(d["memory"] / "memory.swappiness") == "10"
    assert read(d["cpu"] / "cpu.shares") == "512"
    assert read(d["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert read(d["cpuset"] / "cpuset.cpus") == "1"
    assert read(d["pids"] / "pids.max") == "64"
    assert read(d["blkio"] / "blkio.throttle.read_bps_device") == "8:0 1048576"
    devices = [(n, v) for (_dir, n, v) in recorded if n.startswith("devices.")]
    assert devices == [("devices.deny", "a"), ("devices.allow", "c 1:3 rwm")]
    # memory was lowered from "unlimited": limit first, then memsw
    order = [n for (_d, n, _v) in recorded if n.startswith("memory.") and "limit" in n]
    assert order[:2] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    assert recorded[0][1] == "cpuset.cpus"  # runc's controller order


def test_v1_update_skips_devices(v1fs: FakeCgroupfs, recorded: list[tuple[str, str, str]]) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    recorded.clear()
    mgr.update(parse_resources(FULL))
    assert not [n for (_d, n, _v) in recorded if n.startswith("devices.")]
    assert [n for (_d, n, _v) in recorded if n == "pids.max"] == ["pids.max"]


@pytest.mark.parametrize(
    ("resources", "match"),
    [
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}, "hugetlb"),
        ({"blockIO": {"weight": 500}}, "blkio.weight"),
        ({"unified": {"memory.high": "1"}}, "cgroup v2"),
        ({"network": {"classID": 1}}, "net_cls"),
    ],
)
def test_v1_missing_controller_only_when_asked(
    v1fs: FakeCgroupfs, resources: dict[str, object], match: str
) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    mgr.set(parse_resources({"pids": {"limit": 5}}))  # fine: pids is there
    with pytest.raises(CgroupUnavailable, match=match):
        mgr.set(parse_resources({**resources, "pids": {"limit": 9}}))
    assert read(Path(mgr.paths["pids"]) / "pids.max") == "5"  # nothing written


def test_v1_bfq_weight(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    (Path(mgr.paths["blkio"]) / "blkio.bfq.weight").write_text("100")
    mgr.set(parse_resources({"blockIO": {"weight": 300}}))
    assert read(Path(mgr.paths["blkio"]) / "blkio.bfq.weight") == "300"


def test_v1_write_errors_name_file_and_value(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    with pytest.raises(CgroupNotFound, match="does not exist"):
        mgr.set(parse_resources({"pids": {"limit": 5}}))
    mgr.create()
    target = Path(mgr.paths["pids"]) / "pids.max"
    target.unlink()
    target.mkdir()
    with pytest.raises(CgroupInternal) as info:
        mgr.set(parse_resources({"pids": {"limit": 5}}))
    assert str(info.value) == f"write {target} = 5: Is a directory"
    target.rmdir()
    with pytest.raises(CgroupUnavailable, match=r"pids\.max = 5: no such control file"):
        mgr.set(parse_resources({"pids": {"limit": 5}}))


def test_v1_apply_and_pids(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    mgr.apply(0)
    for d in mgr.paths.values():
        assert read(Path(d) / "cgroup.procs") == str(os.getpid())
    child = Path(mgr.paths["memory"]) / "sub"
    child.mkdir()
    (child / "cgroup.procs").write_text("70\n12\n")
    (Path(mgr.paths["pids"]) / "cgroup.procs").write_text("12\n5\n")
    assert mgr.pids() == sorted({os.getpid(), 5, 12, 70})


def test_v1_freeze_thaw(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    assert not mgr.frozen()
    mgr.freeze()
    assert mgr.frozen()
    mgr.thaw()
    assert read(Path(mgr.paths["freezer"]) / "freezer.state") == "THAWED"


def test_v1_stats_and_oom(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    stats = mgr.stats()
    json.dumps(stats)
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert stats["cpu"]["usage"] == {
        "total": 1000,
        "percpu": [600, 400],
        "percpu_kernel": [200, 100],
        "percpu_user": [400, 300],
        "kernel": 5 * tick,
        "user": 10 * tick,
    }
    assert stats["cpu"]["throttling"] == {
        "periods": 3,
        "throttledPeriods": 1,
        "throttledTime": 500,
    }
    assert stats["memory"]["usage"] == {
        "limit": 9223372036854771712,
        "usage": 4096,
        "max": 8192,
        "failcnt": 1,
    }
    assert stats["memory"]["cache"] == 100
    assert stats["memory"]["raw"] == {"cache": 100, "rss": 200}
    assert stats["pids"] == {"current": 1, "limit": 0}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 10},
        {"major": 8, "minor": 0, "op": "Write", "value": 20},
    ]
    assert mgr.oom_kill_count() == 2


def test_v1_destroy_removes_only_the_cgroup(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/p/c", "abc", root=str(v1fs.root), mountinfo="")
    sibling = open_manager("/p/c2", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    sibling.create()
    nested = Path(mgr.paths["memory"]) / "x" / "y"
    nested.mkdir(parents=True)
    mgr.destroy()
    assert not mgr.exists()
    assert sibling.exists()
    assert (v1fs.root / "memory" / "p").is_dir()
    mgr.destroy()  # idempotent


def test_v1_json_round_trip(v1fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    data = json.loads(json.dumps(mgr.to_json()))
    again = manager_from_json(data)
    assert again.paths == mgr.paths and again.path == mgr.path and again.mode == mgr.mode
    assert open_manager("/c", "abc", root=str(v1fs.root), mountinfo="").paths == mgr.paths
    with pytest.raises(CgroupInvalid):
        manager_from_json({**data, "dirs": {"memory": "relative"}})
    with pytest.raises(CgroupInvalid):
        manager_from_json({"mode": "v1"})


def test_v1_relative_path_per_hierarchy(v1fs: FakeCgroupfs) -> None:
    own = "4:memory:/process_api/h\n8:pids:/\n"
    mgr = open_manager("x", "abc", root=str(v1fs.root), mountinfo="", self_cgroup=own)
    assert mgr.path == "x"
    assert mgr.paths["memory"] == f"{v1fs.root}/memory/process_api/h/x"
    assert mgr.paths["pids"] == f"{v1fs.root}/pids/x"


def test_v1_from_an_injected_mount_table(tmp_path: Path) -> None:
    (tmp_path / "mem").mkdir()
    table = f"35 31 0:32 /nested {tmp_path}/mem rw - cgroup cgroup rw,memory\n"
    mgr = open_manager(
        "x", "abc", root=str(tmp_path), mountinfo=table, self_cgroup="4:memory:/nested/me\n"
    )
    assert mgr.mode == "v1"
    assert mgr.paths == {"memory": f"{tmp_path}/mem/me/x"}


def test_kill_all_freezes_signals_thaws(
    v1fs: FakeCgroupfs, sleeper: subprocess.Popen[bytes], recorded: list[tuple[str, str, str]]
) -> None:
    mgr = open_manager("/c", "abc", root=str(v1fs.root), mountinfo="")
    mgr.create()
    (Path(mgr.paths["pids"]) / "cgroup.procs").write_text(f"{sleeper.pid}\n{os.getpid()}\n")
    mgr.kill_all(signal.SIGTERM)
    assert sleeper.wait(timeout=5) == -signal.SIGTERM  # and we did not signal ourselves
    states = [v for (_d, n, v) in recorded if n == "freezer.state"]
    assert states == ["FROZEN", "THAWED"]


def test_write_all_defers_einval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def write_run(directory: str, name: str, values: list[str]) -> tuple[int, Exception | None]:
        calls.append((name, values))
        if name == "cpu.cfs_period_us" and len(calls) == 1:
            return 0, CgroupInvalid("write: Invalid argument")
        return len(values), None

    monkeypatch.setattr(_fs, "_write_run", write_run)
    writes = [("cpu.cfs_period_us", "1000"), ("cpu.cfs_quota_us", "500")]
    _fs.write_all("/x", writes, deferrable=["cpu.cfs_period_us"])
    assert calls == [
        ("cpu.cfs_period_us", ["1000"]),
        ("cpu.cfs_quota_us", ["500"]),
        ("cpu.cfs_period_us", ["1000"]),
    ]
    calls.clear()
    with pytest.raises(CgroupInvalid):
        _fs.write_all("/x", writes)


def test_write_all_defers_only_the_failed_write_of_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def write_run(directory: str, name: str, values: list[str]) -> tuple[int, Exception | None]:
        calls.append((name, values))
        if len(calls) == 1:  # the second value of the first run fails
            return 1, CgroupInvalid("write: Invalid argument")
        return len(values), None

    monkeypatch.setattr(_fs, "_write_run", write_run)
    writes = [("a", "1"), ("a", "2"), ("a", "3"), ("b", "4")]
    _fs.write_all("/x", writes, deferrable=["a"])
    assert calls == [("a", ["1", "2", "3"]), ("a", ["3"]), ("b", ["4"]), ("a", ["2"])]


def test_consecutive_writes_share_one_open(tmp_path: Path) -> None:
    for name in ("devices.allow", "devices.deny"):
        (tmp_path / name).write_text("old")
    writes = [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 1:5 rwm"),
        ("devices.deny", "c 1:5 w"),
    ]
    _fs.write_all(str(tmp_path), writes)
    # one open (truncating once) per run of writes, each value its own write
    assert (tmp_path / "devices.allow").read_text() == "c 1:3 rwmc 1:5 rwm"
    assert (tmp_path / "devices.deny").read_text() == "c 1:5 w"


def test_a_failed_write_names_its_value(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable, match=r"write .*/devices.allow = c 1:3 rwm"):
        _fs.write_all(str(tmp_path), [("devices.allow", "c 1:3 rwm"), ("devices.allow", "x")])


# --- v2 ---------------------------------------------------------------------------------


def test_v2_create_enables_controllers(v2fs: FakeCgroupfs) -> None:
    mgr = open_manager("/a/b", "abc", root=str(v2fs.root), mountinfo="")
    assert mgr.mode == "v2" and mgr.paths == {"": f"{v2fs.root}/a/b"}
    mgr.create()
    expected = "+cpuset +cpu +io +memory +pids"
    assert read(v2fs.root / "cgroup.subtree_control") == expected
    assert read(v2fs.root / "a" / "cgroup.subtree_control") == expected
    assert read(v2fs.root / "a" / "b" / "cgroup.subtree_control") == ""  # not the leaf
    assert read(v2fs.root / "a" / "b" / "cgroup.controllers") == V2_CONTROLLERS


def test_v2_set(
    v2fs: FakeCgroupfs, recorded: list[tuple[str, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed: list[tuple[str, int]] = []
    monkeypatch.setattr(devices_bpf, "install", lambda d, rules: installed.append((d, len(rules))))
    mgr = open_manager("/c", "abc", root=str(v2fs.root), mountinfo="")
    mgr.create()
    resources = parse_resources(
        {
            **FULL,
            "blockIO": {
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 5}],
            },
            "unified": {"memory.high": "50000000"},
        }
    )
    mgr.set(resources)
    d = Path(mgr.paths[""])
    assert read(d / "memory.max") == "67108864"
    assert read(d / "memory.swap.max") == "67108864"
    assert read(d / "memory.low") == "33554432"
    assert read(d / "memory.high") == "50000000"
    assert read(d / "cpu.weight") == "20"
    assert read(d / "cpu.max") == "50000 100000"
    assert read(d / "cpuset.cpus") == "1"
    assert read(d / "pids.max") == "64"
    assert read(d / "io.max") == "8:0 rbps=100 wiops=5"
    assert installed == [(str(d), 2)]
    mgr.update(resources)
    assert len(installed) == 1  # update leaves the device program alone


def test_v2_controller_not_enabled(v2fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v2fs.root), mountinfo="")
    mgr.create()
    (Path(mgr.paths[""]) / "cgroup.controllers").write_text("cpu memory")
    with pytest.raises(CgroupUnavailable, match="pids controller is not enabled"):
        mgr.set(parse_resources({"memory": {"limit": 1000000}, "pids": {"limit": 3}}))
    assert read(Path(mgr.paths[""]) / "memory.max") == "max"  # nothing written
    with pytest.raises(CgroupUnavailable, match="unified"):
        mgr.set(parse_resources({"unified": {"rdma.max": "x"}}))


def test_v2_freeze(v2fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v2fs.root), mountinfo="")
    mgr.create()
    d = Path(mgr.paths[""])
    with pytest.raises(CgroupInternal, match="not frozen"):
        freezer.v2_freeze(str(d), timeout=0.05)
    assert read(d / "cgroup.freeze") == "0"  # thawed again
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    mgr.freeze()
    assert mgr.frozen()
    mgr.thaw()
    assert not mgr.frozen()


def test_v2_kill_all(v2fs: FakeCgroupfs, sleeper: subprocess.Popen[bytes]) -> None:
    mgr = open_manager("/c", "abc", root=str(v2fs.root), mountinfo="")
    mgr.create()
    d = Path(mgr.paths[""])
    (d / "cgroup.procs").write_text(f"{sleeper.pid}\n")
    (d / "cgroup.kill").write_text("0")
    mgr.kill_all(signal.SIGKILL)  # the kernel's cgroup.kill does it
    assert read(d / "cgroup.kill") == "1"
    assert sleeper.poll() is None
    (d / "cgroup.events").write_text("frozen 1\n")
    mgr.kill_all(signal.SIGTERM)
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert read(d / "cgroup.freeze") == "0"


def test_v2_stats(v2fs: FakeCgroupfs) -> None:
    mgr = open_manager("/c", "abc", root=str(v2fs.root), mountinfo="")
    mgr.create()
    stats = mgr.stats()
    json.dumps(stats)
    assert stats["cpu"]["usage"]["total"] == 7000
    assert stats["memory"]["usage"] == {
        "limit": (1 << 64) - 1,
        "usage": 4096,
        "max": 0,
        "failcnt": 3,
    }
    assert stats["memory"]["cache"] == 50
    assert stats["pids"] == {"current": 2, "limit": 0}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 5}
    ]
    assert mgr.oom_kill_count() == 1
    mgr.destroy()
    assert not mgr.exists()
