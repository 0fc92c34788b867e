"""The cpu (and v1 cpuacct) controller: OCI ``resources.cpu`` to writes, and stats.

None (or 0, as runc reads it) leaves a value unchanged. On v2, ``shares`` becomes
``cpu.weight`` by runc's/crun's linear formula and quota/period become ``cpu.max``.
"""

from __future__ import annotations

import os

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupError, CgroupInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxCPU
    from portside.runtime.cgroups.base import Write

__all__ = [
    "V1_DEFERRABLE",
    "shares_to_weight",
    "v1_stats",
    "v1_writes",
    "v2_stats",
    "v2_writes",
]

#: v1 files whose EINVAL is retried after the others (a smaller period can be
#: refused while the old quota is in place; runc retries it after the quota)
V1_DEFERRABLE = ("cpu.cfs_period_us",)


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000]; 0 stays 0."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def _check(cpu: LinuxCPU) -> None:
    if cpu.shares is not None and cpu.shares < 0:
        raise CgroupInvalid(f"cpu.shares: invalid value {cpu.shares}")
    if cpu.period is not None and cpu.period < 0:
        raise CgroupInvalid(f"cpu.period: invalid value {cpu.period}")
    if cpu.burst is not None and cpu.burst < 0:
        raise CgroupInvalid(f"cpu.burst: invalid value {cpu.burst}")
    if cpu.realtime_period is not None and cpu.realtime_period < 0:
        raise CgroupInvalid(f"cpu.realtimePeriod: invalid value {cpu.realtime_period}")


def v1_writes(cpu: LinuxCPU) -> list[Write]:
    """cpu.shares, cfs period/quota/burst, rt period/runtime, idle (runc's order)."""
    _check(cpu)
    writes: list[Write] = []
    if cpu.shares:
        writes.append(("cpu.shares", str(cpu.shares)))
    if cpu.period:
        writes.append(("cpu.cfs_period_us", str(cpu.period)))
    if cpu.quota:
        writes.append(("cpu.cfs_quota_us", str(cpu.quota if cpu.quota > 0 else -1)))
    if cpu.burst is not None:
        writes.append(("cpu.cfs_burst_us", str(cpu.burst)))
    if cpu.realtime_period:
        writes.append(("cpu.rt_period_us", str(cpu.realtime_period)))
    if cpu.realtime_runtime:
        writes.append(("cpu.rt_runtime_us", str(cpu.realtime_runtime)))
    if cpu.idle is not None:
        writes.append(("cpu.idle", str(cpu.idle)))
    return writes


def v2_writes(cpu: LinuxCPU) -> list[Write]:
    """cpu.weight, cpu.max ("quota period", "max period", or just the quota), burst, idle."""
    _check(cpu)
    if cpu.realtime_period or cpu.realtime_runtime:
        raise CgroupInvalid("cpu.realtimePeriod/realtimeRuntime: not supported on cgroup v2")
    writes: list[Write] = []
    if cpu.shares:
        writes.append(("cpu.weight", str(shares_to_weight(cpu.shares))))
    if cpu.quota or cpu.period:
        value = str(cpu.quota) if cpu.quota and cpu.quota > 0 else "max"
        if cpu.period:
            value += f" {cpu.period}"
        writes.append(("cpu.max", value))
    if cpu.burst is not None:
        writes.append(("cpu.max.burst", str(cpu.burst)))
    if cpu.idle is not None:
        writes.append(("cpu.idle", str(cpu.idle)))
    return writes


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split()]


def _percpu_split(cpuacct: str) -> tuple[list[int], list[int]]:
    """(kernel, user) per cpu from cpuacct.usage_all (``cpu user system`` table)."""
    kernel: list[int] = []
    user: list[int] = []
    try:
        lines = _fs.read(cpuacct, "cpuacct.usage_all").splitlines()[1:]
    except CgroupError:
        return kernel, user
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            user.append(int(parts[1]))
            kernel.append(int(parts[2]))
    return kernel, user


def _throttling(stat: dict[str, int], time_key: str, scale: int) -> dict[str, int]:
    return {
        "periods": stat.get("nr_periods", 0),
        "throttledPeriods": stat.get("nr_throttled", 0),
        "throttledTime": stat.get(time_key, 0) * scale,
    }


def v1_stats(cpu_dir: str | None, cpuacct_dir: str | None) -> dict[str, Any]:
    """runc's cpu stats from v1 cpuacct (usage, in ns) and cpu (throttling)."""
    usage: dict[str, Any] = {"total": 0, "percpu": [], "kernel": 0, "user": 0}
    if cpuacct_dir is not None:
        usage["total"] = _fs.read_int_or(cpuacct_dir, "cpuacct.usage")
        try:
            usage["percpu"] = _ints(_fs.read(cpuacct_dir, "cpuacct.usage_percpu"))
        except CgroupError:
            pass
        kernel, user = _percpu_split(cpuacct_dir)
        if kernel:
            usage["percpu_kernel"], usage["percpu_user"] = kernel, user
        ticks = _fs.read_flat_keyed(cpuacct_dir, "cpuacct.stat")
        ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        usage["kernel"] = ticks.get("system", 0) * ns_per_tick
        usage["user"] = ticks.get("user", 0) * ns_per_tick
    stat = _fs.read_flat_keyed(cpu_dir, "cpu.stat") if cpu_dir is not None else {}
    return {"usage": usage, "throttling": _throttling(stat, "throttled_time", 1)}


def v2_stats(directory: str) -> dict[str, Any]:
    """runc's cpu stats from v2 cpu.stat (microseconds there, nanoseconds here)."""
    stat = _fs.read_flat_keyed(directory, "cpu.stat")
    usage = {
        "total": stat.get("usage_usec", 0) * 1000,
        "percpu": [],
        "kernel": stat.get("system_usec", 0) * 1000,
        "user": stat.get("user_usec", 0) * 1000,
    }
    return {"usage": usage, "throttling": _throttling(stat, "throttled_usec", 1000)}
