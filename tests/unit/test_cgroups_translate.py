"""Table tests of the pure OCI-resources-to-control-file translations of the cgroup layer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.oci.runtime_spec import (
    LinuxBlockIO,
    LinuxCPU,
    LinuxHugepageLimit,
    LinuxMemory,
    LinuxPids,
    LinuxThrottleDevice,
    LinuxWeightDevice,
)
from portside.runtime.cgroups import (
    CgroupInvalid,
    CgroupUnavailable,
    blkio,
    cpu,
    cpuset,
    hugetlb,
    memory,
    pids,
)
from portside.runtime.cgroups.v1 import network_writes
from portside.runtime.cgroups.v2 import unified_writes

MiB = 1 << 20

# --- memory v1 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mem", "current", "expected"),
    [
        # lowering both: memory first, then memsw (memsw >= memory at every step)
        (
            LinuxMemory(limit=64 * MiB, swap=128 * MiB),
            512 * MiB,
            [
                ("memory.limit_in_bytes", str(64 * MiB)),
                ("memory.memsw.limit_in_bytes", str(128 * MiB)),
            ],
        ),
        # raising swap above the current limit: memsw first
        (
            LinuxMemory(limit=256 * MiB, swap=512 * MiB),
            64 * MiB,
            [
                ("memory.memsw.limit_in_bytes", str(512 * MiB)),
                ("memory.limit_in_bytes", str(256 * MiB)),
            ],
        ),
        # unlimited swap: memsw first
        (
            LinuxMemory(limit=64 * MiB, swap=-1),
            512 * MiB,
            [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", str(64 * MiB))],
        ),
        # unlimited memory without swap given: swap unlimited too, first
        (
            LinuxMemory(limit=-1),
            64 * MiB,
            [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")],
        ),
        (LinuxMemory(limit=64 * MiB), 0, [("memory.limit_in_bytes", str(64 * MiB))]),
        (LinuxMemory(limit=0), 0, []),
        (
            LinuxMemory(
                reservation=32 * MiB,
                kernel=1,
                kernel_tcp=8 * MiB,
                disable_oom_killer=True,
                swappiness=0,
            ),
            0,
            [
                ("memory.soft_limit_in_bytes", str(32 * MiB)),
                ("memory.kmem.tcp.limit_in_bytes", str(8 * MiB)),
                ("memory.oom_control", "1"),
                ("memory.swappiness", "0"),
            ],
        ),
        (LinuxMemory(disable_oom_killer=False), 0, []),
    ],
)
def test_memory_v1_writes(mem: LinuxMemory, current: int, expected: list[tuple[str, str]]) -> None:
    assert memory.v1_writes(mem, current_limit=current, has_memsw=True) == expected


def test_memory_v1_without_swap_accounting() -> None:
    mem = LinuxMemory(limit=64 * MiB, swap=128 * MiB)
    with pytest.raises(CgroupUnavailable, match="memsw"):
        memory.v1_writes(mem, current_limit=0, has_memsw=False)
    # swap == limit (no swap) or unlimited needs no memsw file
    same = LinuxMemory(limit=64 * MiB, swap=64 * MiB)
    assert memory.v1_writes(same, current_limit=0, has_memsw=False) == [
        ("memory.limit_in_bytes", str(64 * MiB))
    ]


@pytest.mark.parametrize(
    "mem",
    [LinuxMemory(swappiness=101), LinuxMemory(swappiness=-1), LinuxMemory(limit=-2)],
)
def test_memory_invalid(mem: LinuxMemory) -> None:
    with pytest.raises(CgroupInvalid):
        memory.v1_writes(mem, current_limit=0, has_memsw=True)
    with pytest.raises(CgroupInvalid):
        memory.v2_writes(mem, has_swap=True)


# --- memory v2 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("swap", "limit", "expected"),
    [
        (None, None, 0),
        (0, -1, -1),
        (None, -1, -1),
        (-1, 100, -1),
        (0, 100, 0),
        (300, 100, 200),
        (100, 100, 0),
    ],
)
def test_v2_swap_value(swap: int | None, limit: int | None, expected: int) -> None:
    assert memory.v2_swap_value(swap, limit) == expected


@pytest.mark.parametrize(("swap", "limit"), [(100, None), (100, -1), (50, 100)])
def test_v2_swap_value_invalid(swap: int, limit: int | None) -> None:
    with pytest.raises(CgroupInvalid):
        memory.v2_swap_value(swap, limit)


@pytest.mark.parametrize(
    ("mem", "expected"),
    [
        (
            LinuxMemory(limit=64 * MiB, swap=128 * MiB, reservation=32 * MiB),
            [
                ("memory.swap.max", str(64 * MiB)),
                ("memory.max", str(64 * MiB)),
                ("memory.low", str(32 * MiB)),
            ],
        ),
        # memory+swap == memory: swap disabled
        (
            LinuxMemory(limit=64 * MiB, swap=64 * MiB),
            [("memory.swap.max", "0"), ("memory.max", str(64 * MiB))],
        ),
        (LinuxMemory(limit=-1), [("memory.swap.max", "max"), ("memory.max", "max")]),
        (LinuxMemory(reservation=-1), [("memory.low", "max")]),
        (LinuxMemory(swappiness=10), []),
    ],
)
def test_memory_v2_writes(mem: LinuxMemory, expected: list[tuple[str, str]]) -> None:
    assert memory.v2_writes(mem, has_swap=True) == expected


def test_memory_v2_without_swap_file() -> None:
    assert memory.v2_writes(LinuxMemory(limit=-1), has_swap=False) == [("memory.max", "max")]
    with pytest.raises(CgroupUnavailable, match=r"memory\.swap\.max"):
        memory.v2_writes(LinuxMemory(limit=64 * MiB, swap=128 * MiB), has_swap=False)


# --- cpu ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(0, 0), (2, 1), (1024, 39), (512, 20), (262144, 10000), (100, 4)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert cpu.shares_to_weight(shares) == weight


@given(st.integers(min_value=2, max_value=262144))
def test_shares_to_weight_in_range(shares: int) -> None:
    assert 1 <= cpu.shares_to_weight(shares) <= 10000


@pytest.mark.parametrize(
    ("c", "v1", "v2"),
    [
        (
            LinuxCPU(shares=1024, quota=50000, period=100000),
            [
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
            ],
            [("cpu.weight", "39"), ("cpu.max", "50000 100000")],
        ),
        (
            LinuxCPU(quota=-1, period=100000),
            [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "-1")],
            [("cpu.max", "max 100000")],
        ),
        (LinuxCPU(quota=20000), [("cpu.cfs_quota_us", "20000")], [("cpu.max", "20000")]),
        (
            LinuxCPU(burst=1000, idle=1),
            [("cpu.cfs_burst_us", "1000"), ("cpu.idle", "1")],
            [("cpu.max.burst", "1000"), ("cpu.idle", "1")],
        ),
        (LinuxCPU(cpus="0-1"), [], []),
    ],
)
def test_cpu_writes(c: LinuxCPU, v1: list[tuple[str, str]], v2: list[tuple[str, str]]) -> None:
    assert cpu.v1_writes(c) == v1
    assert cpu.v2_writes(c) == v2


def test_cpu_realtime() -> None:
    c = LinuxCPU(realtime_period=1000000, realtime_runtime=950000)
    assert cpu.v1_writes(c) == [("cpu.rt_period_us", "1000000"), ("cpu.rt_runtime_us", "950000")]
    with pytest.raises(CgroupInvalid, match="realtime"):
        cpu.v2_writes(c)


@pytest.mark.parametrize("c", [LinuxCPU(shares=-1), LinuxCPU(period=-5), LinuxCPU(burst=-1)])
def test_cpu_invalid(c: LinuxCPU) -> None:
    with pytest.raises(CgroupInvalid):
        cpu.v1_writes(c)


# --- cpuset ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0", True),
        ("0-3,8,10-11", True),
        ("", True),
        ("3-1", False),
        ("a", False),
        ("1,,2", False),
        ("1-", False),
        ("-1", False),
    ],
)
def test_cpuset_valid_list(text: str, ok: bool) -> None:
    assert cpuset.valid_list(text) is ok


@given(st.lists(st.tuples(st.integers(0, 512), st.integers(0, 64)), min_size=1, max_size=8))
def test_cpuset_valid_list_accepts_ranges(ranges: list[tuple[int, int]]) -> None:
    text = ",".join(f"{lo}-{lo + n}" if n else str(lo) for lo, n in ranges)
    assert cpuset.valid_list(text)


def test_cpuset_writes() -> None:
    assert cpuset.writes(LinuxCPU(cpus="0-1", mems="0")) == [
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
    ]
    assert cpuset.writes(LinuxCPU(shares=2)) == []
    with pytest.raises(CgroupInvalid, match=r"cpu\.cpus"):
        cpuset.writes(LinuxCPU(cpus="0-x"))


# --- pids, hugetlb, network, unified -------------------------------------------------------


@pytest.mark.parametrize(("limit", "value"), [(100, "100"), (0, "max"), (-1, "max"), (1, "1")])
def test_pids_writes(limit: int, value: str) -> None:
    assert pids.writes(LinuxPids(limit=limit)) == [("pids.max", value)]


def test_hugetlb_writes() -> None:
    limits = [LinuxHugepageLimit(page_size="2MB", limit=4 * MiB)]
    assert hugetlb.v1_writes(limits) == [("hugetlb.2MB.limit_in_bytes", str(4 * MiB))]
    assert hugetlb.v2_writes(limits) == [("hugetlb.2MB.max", str(4 * MiB))]
    with pytest.raises(CgroupInvalid, match="pageSize"):
        hugetlb.v1_writes([LinuxHugepageLimit(page_size="2M", limit=1)])


def test_network_writes() -> None:
    net = {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
    assert network_writes(net) == [
        ("net_cls", ("net_cls.classid", "1048577")),
        ("net_prio", ("net_prio.ifpriomap", "eth0 5")),
    ]
    with pytest.raises(CgroupInvalid):
        network_writes({"priorities": [{"name": "eth0"}]})


def test_unified_writes() -> None:
    assert unified_writes({"memory.high": "1000", "cpu.weight.nice": "5"}) == [
        ("memory.high", "1000"),
        ("cpu.weight.nice", "5"),
    ]
    for bad in ("../memory.max", "memory", "cgroup.procs", ".hidden"):
        with pytest.raises(CgroupInvalid):
            unified_writes({bad: "1"})


# --- block I/O ---------------------------------------------------------------------------


def _bio() -> LinuxBlockIO:
    return LinuxBlockIO(
        weight=500,
        weight_device=[LinuxWeightDevice(major=8, minor=0, weight=300)],
        throttle_read_bps_device=[LinuxThrottleDevice(major=8, minor=0, rate=1048576)],
        throttle_write_iops_device=[
            LinuxThrottleDevice(major=8, minor=0, rate=100),
            LinuxThrottleDevice(major=8, minor=16, rate=0),
        ],
    )


def test_blkio_v1_writes_cfq_and_bfq() -> None:
    throttles = [
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_iops_device", "8:0 100"),
        ("blkio.throttle.write_iops_device", "8:16 0"),
    ]
    assert blkio.v1_writes(_bio(), weight_prefix="blkio") == [
        ("blkio.weight", "500"),
        ("blkio.weight_device", "8:0 300"),
        *throttles,
    ]
    assert blkio.v1_writes(_bio(), weight_prefix="blkio.bfq") == [
        ("blkio.bfq.weight", "500"),
        ("blkio.bfq.weight", "8:0 300"),
        *throttles,
    ]


def test_blkio_v1_weight_without_scheduler() -> None:
    with pytest.raises(CgroupUnavailable, match=r"blkio\.weight"):
        blkio.v1_writes(_bio(), weight_prefix=None)
    # throttling alone needs no weight file
    only = LinuxBlockIO(throttle_read_bps_device=[LinuxThrottleDevice(major=1, minor=2, rate=3)])
    assert blkio.v1_writes(only, weight_prefix=None) == [
        ("blkio.throttle.read_bps_device", "1:2 3")
    ]


def test_blkio_v2_writes() -> None:
    assert blkio.v2_writes(_bio(), bfq=False) == [
        ("io.weight", str(blkio.blkio_weight_to_io_weight(500))),
        ("io.weight", f"8:0 {blkio.blkio_weight_to_io_weight(300)}"),
        ("io.max", "8:0 rbps=1048576 wiops=100"),
        ("io.max", "8:16 wiops=max"),
    ]
    assert blkio.v2_writes(_bio(), bfq=True)[:2] == [
        ("io.bfq.weight", "500"),
        ("io.bfq.weight", "8:0 300"),
    ]


@pytest.mark.parametrize(("weight", "io"), [(10, 1), (1000, 10000), (500, 4950), (0, 0)])
def test_blkio_weight_conversion(weight: int, io: int) -> None:
    assert blkio.blkio_weight_to_io_weight(weight) == io


def test_blkio_invalid_weight() -> None:
    with pytest.raises(CgroupInvalid, match="10-1000"):
        blkio.v1_writes(LinuxBlockIO(weight=5), weight_prefix="blkio")


def test_blkio_stat_parsers() -> None:
    v1 = "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n"
    assert blkio.parse_v1_recursive(v1) == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 0},
        {"major": 8, "minor": 0, "op": "Total", "value": 4096},
    ]
    v2 = "8:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n"
    assert blkio.parse_io_stat(v2) == {
        "ioServiceBytesRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 100},
            {"major": 8, "minor": 0, "op": "Write", "value": 200},
        ],
        "ioServicedRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 3},
            {"major": 8, "minor": 0, "op": "Write", "value": 4},
        ],
    }
