"""Docker stats JSON from fake cgroup v1 and v2 trees (``portside.engine.stats``), and
the docker CLI's CPU and memory formulas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine.stats import (
    cgroup_paths_for,
    cpu_percent,
    memory_usage,
    parse_blkio,
    parse_io_stat,
    read_stats,
    system_cpu_usage,
)
from portside.runtime.state import ContainerState, StateStore

PROC_STAT = """cpu  100 5 50 1000 10 1 2 7 0 0
cpu0 50 2 25 500 5 0 1 0 0 0
cpu1 50 3 25 500 5 1 1 0 0 0
intr 1234
ctxt 99
"""
# (100+5+50+1000+10+1+2) ticks of 10 ms
SYSTEM_NS = 1168 * 10_000_000
GIB = 1 << 30


def _write(directory: Path, files: dict[str, str]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return str(directory)


@pytest.fixture
def v1(tmp_path: Path) -> dict[str, str]:
    cpu = {"cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 4500\n"}
    acct = {
        "cpuacct.usage": "3000000000\n",
        "cpuacct.usage_percpu": "1000000000 2000000000 \n",
        "cpuacct.stat": "user 120\nsystem 30\n",
    }
    memory = {
        "memory.usage_in_bytes": "10485760\n",
        "memory.max_usage_in_bytes": "20971520\n",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.failcnt": "2\n",
        "memory.stat": "cache 4096\nrss 8192\ninactive_file 100\ntotal_inactive_file 1048576\n"
        "total_rss 8192\n",
    }
    blkio = {
        "blkio.io_service_bytes_recursive": "",  # not CFQ: the throttle files count
        "blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n"
        "8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
        "blkio.throttle.io_serviced": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        "blkio.sectors_recursive": "8:0 24\n",
    }
    pids = {"pids.current": "3\n", "pids.max": "max\n"}
    return {
        "cpu": _write(tmp_path / "cpu", cpu),
        "cpuacct": _write(tmp_path / "cpuacct", acct),
        "memory": _write(tmp_path / "memory", memory),
        "blkio": _write(tmp_path / "blkio", blkio),
        "pids": _write(tmp_path / "pids", pids),
        "devices": str(tmp_path / "devices"),
    }


@pytest.fixture
def v2(tmp_path: Path) -> dict[str, str]:
    files = {
        "cpu.stat": "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n"
        "nr_periods 7\nnr_throttled 1\nthrottled_usec 250\n",
        "memory.current": "10485760\n",
        "memory.max": "268435456\n",
        "memory.stat": "anon 8192\nfile 4096\ninactive_file 1048576\n",
        "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        "pids.current": "2\n",
        "pids.max": "100\n",
    }
    return {"": _write(tmp_path / "v2", files)}


def _stats(paths: dict[str, str], **kw: object) -> dict:
    args: dict = {"pids": None, "previous": None, "name": "web", "cid": "c" * 64}
    args.update(kw)
    return read_stats(paths, proc_stat=PROC_STAT, machine_memory=4 * GIB, **args)


def test_v1_sample(v1: dict[str, str]) -> None:
    s = _stats(v1)
    assert list(s) == [
        "read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
        "cpu_stats", "precpu_stats", "memory_stats", "name", "id",
    ]  # fmt: skip
    assert s["name"] == "/web" and s["id"] == "c" * 64
    assert s["preread"] == "0001-01-01T00:00:00Z" and s["read"].endswith("Z")
    assert s["pids_stats"] == {"current": 3}
    cpu = s["cpu_stats"]
    assert cpu["cpu_usage"] == {
        "total_usage": 3_000_000_000,
        "percpu_usage": [1_000_000_000, 2_000_000_000],
        "usage_in_kernelmode": 300_000_000,
        "usage_in_usermode": 1_200_000_000,
    }
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 3, "throttled_time": 4500}
    assert (cpu["system_cpu_usage"], cpu["online_cpus"]) == (SYSTEM_NS, 2)
    mem = s["memory_stats"]
    assert (mem["usage"], mem["max_usage"], mem["failcnt"]) == (10485760, 20971520, 2)
    assert mem["limit"] == 4 * GIB  # unlimited: the machine's memory, as dockerd
    assert mem["stats"]["cache"] == 4096 and mem["stats"]["total_inactive_file"] == 1048576
    assert mem["stats"]["pgfault"] == 0  # every v1 key is there
    blkio = s["blkio_stats"]
    assert blkio["io_service_bytes_recursive"][:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 8192},
    ]
    assert len(blkio["io_service_bytes_recursive"]) == 6  # no "Total" line
    assert [e["value"] for e in blkio["io_serviced_recursive"]] == [1, 2]
    assert blkio["sectors_recursive"] == [{"major": 8, "minor": 0, "op": "", "value": 24}]
    assert blkio["io_queue_recursive"] is None


def test_v2_sample(v2: dict[str, str]) -> None:
    s = _stats(v2, name="/db")
    assert s["name"] == "/db"
    assert s["pids_stats"] == {"current": 2, "limit": 100}
    assert s["cpu_stats"]["cpu_usage"] == {
        "total_usage": 3_000_000_000,
        "usage_in_kernelmode": 1_000_000_000,
        "usage_in_usermode": 2_000_000_000,
    }
    assert s["cpu_stats"]["throttling_data"]["throttled_time"] == 250_000
    mem = s["memory_stats"]
    assert (mem["usage"], mem["limit"], mem["failcnt"]) == (10485760, 268435456, 1)
    assert mem["stats"] == {"anon": 8192, "file": 4096, "inactive_file": 1048576}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 8192},
    ]
    assert memory_usage(s) == (10485760 - 1048576, 268435456)


def test_previous_sample_becomes_precpu(v1: dict[str, str]) -> None:
    first = _stats(v1)
    second = _stats(v1, previous=first)
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]


def test_gone_cgroup_gives_empty_stats(tmp_path: Path) -> None:
    gone = {k: str(tmp_path / k / "x") for k in ("cpu", "cpuacct", "memory", "blkio", "pids")}
    s = _stats(gone, pids=[])
    assert s["memory_stats"] == {} and s["pids_stats"] == {}
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert all(v is None for v in s["blkio_stats"].values())
    assert _stats({"": str(tmp_path / "nothing")}, pids=[1, 2])["pids_stats"] == {"current": 2}


def test_cpu_percent_is_the_clis_formula() -> None:
    stats = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000_000},
            "system_cpu_usage": 120_000_000_000,
            "online_cpus": 4,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 1_000_000_000},
            "system_cpu_usage": 100_000_000_000,
        },
    }
    # 2 s of container CPU over 20 s of all CPUs' time, times 4 CPUs
    assert cpu_percent(stats) == pytest.approx(40.0)
    stats["cpu_stats"]["online_cpus"] = 0
    stats["cpu_stats"]["cpu_usage"]["percpu_usage"] = [1, 2]
    assert cpu_percent(stats) == pytest.approx(20.0)
    stats["precpu_stats"]["system_cpu_usage"] = 120_000_000_000
    assert cpu_percent(stats) == 0.0
    assert cpu_percent({}) == 0.0


def test_memory_usage_v1_subtracts_total_inactive_file(v1: dict[str, str]) -> None:
    assert memory_usage(_stats(v1)) == (10485760 - 1048576, 4 * GIB)
    assert memory_usage({"memory_stats": {"usage": 10, "stats": {"inactive_file": 50}}}) == (10, 0)
    assert memory_usage({}) == (0, 0)


def test_system_cpu_usage_from_proc_stat() -> None:
    assert system_cpu_usage(PROC_STAT) == (SYSTEM_NS, 2)
    total, cpus = system_cpu_usage()
    assert (
        total > 0
        and cpus
        == len([line for line in Path("/proc/stat").read_text().splitlines() if line[:3] == "cpu"])
        - 1
    )


def test_cgroup_paths_for_reads_the_runtime_state(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    dirs = {"memory": "/sys/fs/cgroup/memory/portside/x1", "cpu": "/sys/fs/cgroup/cpu/portside/x1"}
    os.makedirs(store.dir("x1"))
    store.save(ContainerState(id="x1", cgroup={"mode": "v1", "path": "/portside/x1", "dirs": dirs}))
    assert cgroup_paths_for(str(tmp_path), "x1") == dirs
    os.makedirs(store.dir("x2"))
    store.save(ContainerState(id="x2", cgroups_path="/portside/x2"))
    fallback = cgroup_paths_for(str(tmp_path), "x2")
    assert fallback and all(p.endswith("/portside/x2") for p in fallback.values())


_dev = st.tuples(st.integers(0, 4095), st.integers(0, 1 << 20))


@given(
    st.lists(
        st.tuples(_dev, st.sampled_from(["Read", "Write", "Sync", ""]), st.integers(0, 1 << 62))
    )
)
def test_parse_blkio_round_trip(entries: list[tuple[tuple[int, int], str, int]]) -> None:
    lines = [f"{a}:{b} {op} {v}".replace("  ", " ") for (a, b), op, v in entries]
    text = "\n".join([*lines, "Total 5"]) + "\n"
    parsed = parse_blkio(text)
    assert [(e["major"], e["minor"]) for e in parsed] == [d for d, _, _ in entries]
    assert [(e["op"], e["value"]) for e in parsed] == [(op, v) for _, op, v in entries]


@given(st.lists(st.tuples(_dev, st.integers(0, 1 << 62), st.integers(0, 1 << 62))))
def test_parse_io_stat(entries: list[tuple[tuple[int, int], int, int]]) -> None:
    text = "".join(f"{a}:{b} rbytes={r} wbytes={w} rios=1 wios=1\n" for (a, b), r, w in entries)
    values = [e["value"] for e in parse_io_stat(text)]
    assert values == [v for _, r, w in entries for v in (r, w)]
