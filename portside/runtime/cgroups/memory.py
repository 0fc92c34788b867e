"""The memory controller: OCI ``resources.memory`` to control-file writes, and stats.

OCI (like cgroup v1) counts ``swap`` as memory+swap; cgroup v2's ``memory.swap.max``
is swap alone. A value of -1 means unlimited; None (or 0, as runc reads it) means
"leave unchanged". Kernel memory limits are ignored, as runc >= 1.2 does: the
kernel no longer supports them.
"""

from __future__ import annotations

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupInvalid, CgroupUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxMemory
    from portside.runtime.cgroups.base import Write

__all__ = [
    "v1_oom_kills",
    "v1_stats",
    "v1_writes",
    "v2_oom_kills",
    "v2_stats",
    "v2_swap_value",
    "v2_writes",
]


def _v1_num(value: int) -> str:
    return "-1" if value < 0 else str(value)


def _v2_num(value: int) -> str:
    return "max" if value < 0 else str(value)


def _check(mem: LinuxMemory) -> None:
    for name in ("limit", "reservation", "swap"):
        value = getattr(mem, name)
        if value is not None and value < -1:
            raise CgroupInvalid(f"memory.{name}: invalid value {value}")
    if mem.swappiness is not None and not 0 <= mem.swappiness <= 100:
        raise CgroupInvalid(
            f"memory.swappiness: invalid value {mem.swappiness}, the valid range is 0-100"
        )


def v1_writes(mem: LinuxMemory, *, current_limit: int, has_memsw: bool) -> list[Write]:
    """The v1 writes, ordered so the kernel accepts them (runc's setMemoryAndSwap).

    ``current_limit`` is the cgroup's memory.limit_in_bytes now: memsw must stay >=
    memory at every step, so when raising (or unlimiting) swap it goes first.
    """
    _check(mem)
    limit, swap = mem.limit or 0, mem.swap or 0
    if limit == -1 and swap == 0:
        swap = -1
    if swap and not has_memsw:
        if swap not in (-1, limit):
            raise CgroupUnavailable(
                "memory.swap: the kernel has no memory.memsw.limit_in_bytes "
                "(swap accounting is disabled)"
            )
        swap = 0
    mem_w = ("memory.limit_in_bytes", _v1_num(limit))
    swap_w = ("memory.memsw.limit_in_bytes", _v1_num(swap))
    writes: list[Write] = []
    if limit and swap:
        writes += [swap_w, mem_w] if swap == -1 or current_limit < swap else [mem_w, swap_w]
    elif limit:
        writes.append(mem_w)
    elif swap:
        writes.append(swap_w)
    if mem.reservation:
        writes.append(("memory.soft_limit_in_bytes", _v1_num(mem.reservation)))
    if mem.kernel_tcp:
        writes.append(("memory.kmem.tcp.limit_in_bytes", _v1_num(mem.kernel_tcp)))
    if mem.disable_oom_killer:
        writes.append(("memory.oom_control", "1"))
    if mem.swappiness is not None:
        writes.append(("memory.swappiness", str(mem.swappiness)))
    return writes


def v2_swap_value(swap: int | None, limit: int | None) -> int:
    """OCI memory+swap to v2 swap alone (runc's ConvertMemorySwapToCgroupV2Value).

    -1 means "max", 0 means "leave unchanged".
    """
    swap, limit = swap or 0, limit or 0
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise CgroupInvalid("memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise CgroupInvalid(f"memory.swap: {swap} is below memory.limit {limit}")
    return swap - limit


def v2_writes(mem: LinuxMemory, *, has_swap: bool) -> list[Write]:
    """The v2 writes: memory.swap.max, memory.max, memory.low (runc's order)."""
    _check(mem)
    writes: list[Write] = []
    swap = v2_swap_value(mem.swap, mem.limit)
    swap_str = _v2_num(swap) if swap else ""
    if swap == 0 and (mem.swap or 0) > 0:
        swap_str = "0"  # memory+swap == memory: no swap at all
    if swap_str:
        if has_swap:
            writes.append(("memory.swap.max", swap_str))
        elif swap_str not in ("max", "0"):
            raise CgroupUnavailable("memory.swap: the kernel has no memory.swap.max")
    if mem.limit:
        writes.append(("memory.max", _v2_num(mem.limit)))
    if mem.reservation:
        writes.append(("memory.low", _v2_num(mem.reservation)))
    return writes


def _v1_entry(directory: str, prefix: str) -> dict[str, int]:
    return {
        "limit": _fs.read_int_or(directory, f"{prefix}.limit_in_bytes"),
        "usage": _fs.read_int_or(directory, f"{prefix}.usage_in_bytes"),
        "max": _fs.read_int_or(directory, f"{prefix}.max_usage_in_bytes"),
        "failcnt": _fs.read_int_or(directory, f"{prefix}.failcnt"),
    }


def v1_stats(directory: str) -> dict[str, Any]:
    """runc's memory stats from a v1 memory cgroup (swap is memory+swap, as in runc)."""
    raw = _fs.read_flat_keyed(directory, "memory.stat")
    return {
        "cache": raw.get("cache", 0),
        "usage": _v1_entry(directory, "memory"),
        "swap": _v1_entry(directory, "memory.memsw"),
        "kernel": _v1_entry(directory, "memory.kmem"),
        "kernelTCP": _v1_entry(directory, "memory.kmem.tcp"),
        "raw": raw,
    }


def _add(a: int, b: int) -> int:
    return _fs.MAX_UINT64 if _fs.MAX_UINT64 in (a, b) else a + b


def v2_stats(directory: str) -> dict[str, Any]:
    """runc's memory stats from a v2 cgroup; swap is reported as memory+swap."""
    raw = _fs.read_flat_keyed(directory, "memory.stat")
    usage = _fs.read_int_or(directory, "memory.current")
    limit = _fs.read_int_or(directory, "memory.max", _fs.MAX_UINT64)
    events = _fs.read_flat_keyed(directory, "memory.events")
    swap_usage = _fs.read_int_or(directory, "memory.swap.current")
    swap_limit = _fs.read_int_or(directory, "memory.swap.max", _fs.MAX_UINT64)
    swap_events = _fs.read_flat_keyed(directory, "memory.swap.events")
    zero = {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}
    return {
        "cache": raw.get("file", 0),
        "usage": {
            "limit": limit,
            "usage": usage,
            "max": _fs.read_int_or(directory, "memory.peak"),
            "failcnt": events.get("max", 0),
        },
        "swap": {
            "limit": _add(limit, swap_limit),
            "usage": usage + swap_usage,
            "max": 0,
            "failcnt": swap_events.get("max", 0),
        },
        "kernel": dict(zero),
        "kernelTCP": dict(zero),
        "raw": raw,
    }


def v1_oom_kills(directory: str) -> int:
    """The ``oom_kill`` count of memory.oom_control (0 on kernels before 4.13)."""
    return _fs.read_flat_keyed(directory, "memory.oom_control").get("oom_kill", 0)


def v2_oom_kills(directory: str) -> int:
    """The ``oom_kill`` count of memory.events."""
    return _fs.read_flat_keyed(directory, "memory.events").get("oom_kill", 0)
