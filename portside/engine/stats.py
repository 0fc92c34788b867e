"""Docker's ``/containers/{id}/stats`` JSON, read from the container's cgroup files.

:func:`read_stats` takes one sample (cgroup v1 or v2 layout, told apart by the
directories given: v2 is the single key ``""``) in the shape dockerd builds from
containerd's metrics (moby ``daemon/stats_unix.go``): CPU in nanoseconds,
``system_cpu_usage`` from /proc/stat as dockerd computes it, memory, pids, blkio.
The previous sample feeds ``precpu_stats``. :func:`cpu_percent` and
:func:`memory_usage` are the docker CLI's formulas.
"""

from __future__ import annotations

import os

from portside.engine.model import ZERO_TIME, now_rfc3339
from portside.text import is_number

__all__ = [
    "cgroup_paths_for",
    "cpu_percent",
    "memory_usage",
    "read_stats",
    "system_cpu_usage",
]

NS = 1_000_000_000
#: USER_HZ, the unit of cpuacct.stat and /proc/stat (dockerd assumes it too)
CLOCK_TICKS = 100
MAX_U64 = (1 << 64) - 1
_V1_MEMORY_KEYS = (
    *("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback"),
    *("pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon", "active_anon"),
    *("inactive_file", "active_file", "unevictable"),
    *("hierarchical_memory_limit", "hierarchical_memsw_limit"),
)
#: v1 blkio files, CFQ/BFQ first, then the throttle fallback containerd uses
_V1_BLKIO = {
    "io_service_bytes_recursive": ("io_service_bytes_recursive", "throttle.io_service_bytes"),
    "io_serviced_recursive": ("io_serviced_recursive", "throttle.io_serviced"),
    "io_queue_recursive": ("io_queued_recursive",),
    "io_service_time_recursive": ("io_service_time_recursive",),
    "io_wait_time_recursive": ("io_wait_time_recursive",),
    "io_merged_recursive": ("io_merged_recursive",),
    "io_time_recursive": ("time_recursive",),
    "sectors_recursive": ("sectors_recursive",),
}


def cgroup_paths_for(runtime_root: str, cid: str) -> dict[str, str]:
    """The container's cgroup directory per controller (``""`` on cgroup v2), as the
    runtime recorded them at create (``Runtime(root).load(cid).cgroup``)."""
    from portside.runtime.container import Runtime

    st = Runtime(runtime_root).load(cid)
    if st.cgroup and isinstance(st.cgroup.get("dirs"), dict):
        return dict(st.cgroup["dirs"])
    from portside.runtime.cgroups import open_manager

    return open_manager(st.cgroups_path or None, st.id, systemd=st.systemd_cgroup).paths


# --- small readers ---------------------------------------------------------------------


def _read(directory: str | None, name: str) -> str | None:
    if not directory:
        return None
    try:
        with open(os.path.join(directory, name), encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _int(directory: str | None, name: str) -> int | None:
    text = _read(directory, name)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return MAX_U64
    try:
        return int(text)
    except ValueError:
        return None


def _kv(directory: str | None, name: str) -> dict[str, int]:
    """A flat keyed file (``memory.stat``, ``cpu.stat``): ``key value`` lines."""
    out: dict[str, int] = {}
    for line in (_read(directory, name) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _devnum(text: str) -> tuple[int, int] | None:
    major, sep, minor = text.partition(":")
    if not sep or not is_number(major) or not is_number(minor):
        return None
    return int(major), int(minor)


def parse_blkio(text: str) -> list[dict]:
    """A v1 blkio file: ``8:0 Read 4096`` lines (``8:0 4096`` without an op); the
    ``Total`` line is dropped, as containerd does."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) not in (2, 3) or (dev := _devnum(parts[0])) is None:
            continue
        op = parts[1] if len(parts) == 3 else ""
        try:
            value = int(parts[-1])
        except ValueError:
            continue
        out.append({"major": dev[0], "minor": dev[1], "op": op, "value": value})
    return out


def parse_io_stat(text: str) -> list[dict]:
    """v2 ``io.stat`` as dockerd reports it: a read and a write bytes entry per device."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or (dev := _devnum(parts[0])) is None:
            continue
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for op, key in (("read", "rbytes"), ("write", "wbytes")):
            value = int(fields[key]) if is_number(fields.get(key, "")) else 0
            out.append({"major": dev[0], "minor": dev[1], "op": op, "value": value})
    return out


def system_cpu_usage(proc_stat: str | None = None) -> tuple[int, int]:
    """(host CPU time in ns, online CPUs) from /proc/stat, as dockerd computes them:
    the first seven fields of the ``cpu`` line in ticks, and the ``cpuN`` lines."""
    if proc_stat is None:
        with open("/proc/stat", encoding="ascii") as f:
            proc_stat = f.read()
    total = 0
    cpus = 0
    for line in proc_stat.splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu"):
            continue
        if parts[0] == "cpu":
            total = sum(int(x) for x in parts[1:8]) * NS // CLOCK_TICKS
        elif is_number(parts[0][3:]):
            cpus += 1
    return total, cpus


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


# --- v1 and v2 ---------------------------------------------------------------------------


def _empty_cpu() -> dict:
    return {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _cpu_v1(paths: dict[str, str]) -> dict:
    acct = paths.get("cpuacct") or paths.get("cpu")
    total = _int(acct, "cpuacct.usage")
    if total is None:
        return _empty_cpu()
    percpu = [int(x) for x in (_read(acct, "cpuacct.usage_percpu") or "").split() if is_number(x)]
    ticks = _kv(acct, "cpuacct.stat")
    usage: dict = {"total_usage": total}
    if percpu:
        usage["percpu_usage"] = percpu
    usage["usage_in_kernelmode"] = ticks.get("system", 0) * NS // CLOCK_TICKS
    usage["usage_in_usermode"] = ticks.get("user", 0) * NS // CLOCK_TICKS
    thr = _kv(paths.get("cpu") or acct, "cpu.stat")
    return {
        "cpu_usage": usage,
        "throttling_data": {
            "periods": thr.get("nr_periods", 0),
            "throttled_periods": thr.get("nr_throttled", 0),
            "throttled_time": thr.get("throttled_time", 0),
        },
    }


def _cpu_v2(directory: str) -> dict:
    st = _kv(directory, "cpu.stat")
    if not st:
        return _empty_cpu()
    return {
        "cpu_usage": {
            "total_usage": st.get("usage_usec", 0) * 1000,
            "usage_in_kernelmode": st.get("system_usec", 0) * 1000,
            "usage_in_usermode": st.get("user_usec", 0) * 1000,
        },
        "throttling_data": {
            "periods": st.get("nr_periods", 0),
            "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_usec", 0) * 1000,
        },
    }


def _memory_v1(directory: str | None, machine: int) -> dict:
    usage = _int(directory, "memory.usage_in_bytes")
    if usage is None:
        return {}
    raw = _kv(directory, "memory.stat")
    stats = {k: raw.get(k, 0) for k in _V1_MEMORY_KEYS}
    stats.update({k: v for k, v in raw.items() if k.startswith("total_")})
    out = {
        "usage": usage,
        "max_usage": _int(directory, "memory.max_usage_in_bytes") or 0,
        "stats": stats,
        "failcnt": _int(directory, "memory.failcnt") or 0,
        "limit": _int(directory, "memory.limit_in_bytes") or 0,
    }
    if machine and out["limit"] > machine:
        out["limit"] = machine
    return out


def _memory_v2(directory: str, machine: int) -> dict:
    usage = _int(directory, "memory.current")
    if usage is None:
        return {}
    limit = _int(directory, "memory.max") or 0
    out = {"usage": usage, "stats": _kv(directory, "memory.stat"), "limit": limit}
    if machine and limit > machine:
        out["limit"] = machine
    oom = _kv(directory, "memory.events").get("oom")
    if oom:
        out["failcnt"] = oom
    return out


def _blkio_v1(directory: str | None) -> dict:
    out: dict = {}
    for key, files in _V1_BLKIO.items():
        entries = None
        for name in files:
            text = _read(directory, "blkio." + name)
            if text is not None and (parsed := parse_blkio(text)):
                entries = parsed
                break
        out[key] = entries
    return out


def _blkio_v2(directory: str) -> dict:
    out: dict = dict.fromkeys(_V1_BLKIO)
    text = _read(directory, "io.stat")
    if text is not None:
        out["io_service_bytes_recursive"] = parse_io_stat(text) or None
    return out


def _pids(directory: str | None, pids: list[int] | None) -> dict:
    current = _int(directory, "pids.current")
    if current is None:
        current = len(pids) if pids is not None else 0
    limit = _int(directory, "pids.max") or 0
    out = {}
    if current:
        out["current"] = current
    if limit and limit != MAX_U64:
        out["limit"] = limit
    return out


def read_stats(
    cgroup_paths: dict[str, str],
    *,
    pids: list[int] | None,
    previous: dict | None,
    name: str,
    cid: str,
    proc_stat: str | None = None,
    machine_memory: int | None = None,
) -> dict:
    """One stats sample of the container whose cgroup directories are ``cgroup_paths``
    (controller → directory; ``{"": dir}`` on cgroup v2). ``previous`` is the
    sample before (its ``read`` and ``cpu_stats`` become ``preread`` and
    ``precpu_stats``); ``pids`` counts processes when there is no pids controller.
    Missing files (a stopped container) give zeros, as dockerd's stats then."""
    machine = _machine_memory() if machine_memory is None else machine_memory
    if "" in cgroup_paths:
        directory = cgroup_paths[""]
        cpu, memory = _cpu_v2(directory), _memory_v2(directory, machine)
        blkio, pid_dir = _blkio_v2(directory), directory
    else:
        cpu, memory = _cpu_v1(cgroup_paths), _memory_v1(cgroup_paths.get("memory"), machine)
        blkio, pid_dir = _blkio_v1(cgroup_paths.get("blkio")), cgroup_paths.get("pids")
    system, online = system_cpu_usage(proc_stat)
    cpu["system_cpu_usage"] = system
    cpu["online_cpus"] = online
    prev = previous or {}
    return {
        "read": now_rfc3339(),
        "preread": prev.get("read", ZERO_TIME),
        "pids_stats": _pids(pid_dir, pids),
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu,
        "precpu_stats": prev.get("cpu_stats") or _empty_cpu(),
        "memory_stats": memory,
        "name": "/" + name.lstrip("/"),
        "id": cid,
    }


# --- the CLI's formulas ----------------------------------------------------------------


def cpu_percent(stats: dict) -> float:
    """docker CLI's ``calculateCPUPercentUnix``: the container's share of the host's
    CPU time between the two samples, times the online CPUs, in percent."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(stats: dict) -> tuple[int, int]:
    """docker CLI's (used, limit): usage minus the inactive page cache
    (``total_inactive_file`` on v1, ``inactive_file`` on v2)."""
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage", 0))
    raw = mem.get("stats") or {}
    if "total_inactive_file" in raw and raw["total_inactive_file"] < usage:
        used = usage - raw["total_inactive_file"]
    elif raw.get("inactive_file", 0) < usage:
        used = usage - raw.get("inactive_file", 0)
    else:
        used = usage
    return used, int(mem.get("limit", 0))
