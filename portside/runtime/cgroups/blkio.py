"""Block I/O: OCI ``resources.blockIO`` to v1 blkio / v2 io writes, and stats.

Weights need a proportional-weight scheduler: CFQ (``blkio.weight``, gone since
Linux 5.0) or BFQ (``blkio.bfq.weight`` / ``io.bfq.weight``). v2 falls back to
``io.weight`` (io.cost) with runc's conversion. A missing weight file is an error
only when a weight is asked for.
"""

from __future__ import annotations

import os

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupInvalid, CgroupNotFound, CgroupUnavailable
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxBlockIO, LinuxThrottleDevice
    from portside.runtime.cgroups.base import Write

__all__ = [
    "blkio_weight_to_io_weight",
    "parse_io_stat",
    "parse_v1_recursive",
    "v1_stats",
    "v1_weight_prefix",
    "v1_writes",
    "v2_stats",
    "v2_writes",
]

_THROTTLES = (
    ("throttle_read_bps_device", "read_bps_device", "rbps"),
    ("throttle_write_bps_device", "write_bps_device", "wbps"),
    ("throttle_read_iops_device", "read_iops_device", "riops"),
    ("throttle_write_iops_device", "write_iops_device", "wiops"),
)


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio weight [10, 1000] to io.weight [1, 10000] (runc's conversion); 0 stays 0."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def _check_weight(weight: int | None, what: str) -> None:
    if weight is not None and weight != 0 and not 10 <= weight <= 1000:
        raise CgroupInvalid(f"{what}: invalid weight {weight}, the valid range is 10-1000")


def _wants_weight(bio: LinuxBlockIO) -> bool:
    return bool(bio.weight or bio.leaf_weight or bio.weight_device)


def v1_weight_prefix(directory: str) -> str | None:
    """ "blkio" with CFQ, "blkio.bfq" with BFQ, None when the kernel has neither."""
    if os.path.exists(f"{directory}/blkio.weight"):
        return "blkio"
    if os.path.exists(f"{directory}/blkio.bfq.weight"):
        return "blkio.bfq"
    return None


def v1_writes(bio: LinuxBlockIO, *, weight_prefix: str | None) -> list[Write]:
    """Weights (through ``weight_prefix``, see :func:`v1_weight_prefix`), then throttles."""
    _check_weight(bio.weight, "blockIO.weight")
    writes: list[Write] = []
    if _wants_weight(bio):
        if weight_prefix is None:
            raise CgroupUnavailable(
                "blockIO.weight: the kernel has no blkio.weight nor blkio.bfq.weight "
                "(no CFQ or BFQ I/O scheduler)"
            )
        bfq = weight_prefix == "blkio.bfq"
        if bio.weight:
            writes.append((f"{weight_prefix}.weight", str(bio.weight)))
        if bio.leaf_weight:
            if bfq:
                raise CgroupUnavailable("blockIO.leafWeight: not supported by BFQ")
            writes.append(("blkio.leaf_weight", str(bio.leaf_weight)))
        for i, wd in enumerate(bio.weight_device):
            _check_weight(wd.weight, f"blockIO.weightDevice[{i}].weight")
            if wd.weight:
                name = "blkio.bfq.weight" if bfq else "blkio.weight_device"
                writes.append((name, f"{wd.major}:{wd.minor} {wd.weight}"))
            if wd.leaf_weight and not bfq:
                writes.append(
                    ("blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}")
                )
    for attr, suffix, _key in _THROTTLES:
        devices: list[LinuxThrottleDevice] = getattr(bio, attr)
        for td in devices:
            writes.append((f"blkio.throttle.{suffix}", f"{td.major}:{td.minor} {td.rate}"))
    return writes


def v2_writes(bio: LinuxBlockIO, *, bfq: bool) -> list[Write]:
    """io.bfq.weight (or io.weight converted), then one io.max line per device.

    An io.max line carries every limit given for its device, e.g.
    ``8:0 rbps=1048576 wiops=100``; a rate of 0 is written as ``max`` (no limit).
    """
    _check_weight(bio.weight, "blockIO.weight")
    writes: list[Write] = []
    if bio.leaf_weight:
        raise CgroupUnavailable("blockIO.leafWeight: not supported on cgroup v2")
    if bio.weight:
        if bfq:
            writes.append(("io.bfq.weight", str(bio.weight)))
        else:
            writes.append(("io.weight", str(blkio_weight_to_io_weight(bio.weight))))
    for i, wd in enumerate(bio.weight_device):
        _check_weight(wd.weight, f"blockIO.weightDevice[{i}].weight")
        if wd.weight:
            value = wd.weight if bfq else blkio_weight_to_io_weight(wd.weight)
            writes.append(
                ("io.bfq.weight" if bfq else "io.weight", f"{wd.major}:{wd.minor} {value}")
            )
    lines: dict[str, list[str]] = {}
    for attr, _suffix, key in _THROTTLES:
        devices: list[LinuxThrottleDevice] = getattr(bio, attr)
        for td in devices:
            rate = str(td.rate) if td.rate > 0 else "max"
            lines.setdefault(f"{td.major}:{td.minor}", []).append(f"{key}={rate}")
    writes += [("io.max", f"{dev} {' '.join(limits)}") for dev, limits in lines.items()]
    return writes


def _entry(device: str, op: str, value: int) -> dict[str, Any] | None:
    major, sep, minor = device.partition(":")
    if not sep or not is_number(major) or not is_number(minor):
        return None
    return {"major": int(major), "minor": int(minor), "op": op, "value": value}


def parse_v1_recursive(text: str) -> list[dict[str, Any]]:
    """``8:0 Read 123`` lines as runc's BlkioEntry dicts (the ``Total`` line is skipped)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not is_number(parts[2]):
            continue
        entry = _entry(parts[0], parts[1], int(parts[2]))
        if entry is not None:
            out.append(entry)
    return out


def _v1_table(directory: str, name: str) -> list[dict[str, Any]]:
    try:
        return parse_v1_recursive(_fs.read(directory, name))
    except (CgroupUnavailable, CgroupNotFound):
        return []


def v1_stats(directory: str) -> dict[str, Any]:
    """runc's blkio stats: CFQ's tables when present, else BFQ's, else the throttle ones."""
    for prefix in ("blkio", "blkio.bfq", "blkio.throttle"):
        if os.path.exists(f"{directory}/{prefix}.io_serviced_recursive"):
            break
    return {
        "ioServiceBytesRecursive": _v1_table(directory, f"{prefix}.io_service_bytes_recursive"),
        "ioServicedRecursive": _v1_table(directory, f"{prefix}.io_serviced_recursive"),
    }


_V2_OPS = {
    "rbytes": ("ioServiceBytesRecursive", "Read"),
    "wbytes": ("ioServiceBytesRecursive", "Write"),
    "rios": ("ioServicedRecursive", "Read"),
    "wios": ("ioServicedRecursive", "Write"),
}


def parse_io_stat(text: str) -> dict[str, list[dict[str, Any]]]:
    """v2 io.stat mapped to runc's v1-shaped tables (rbytes/wbytes, rios/wios)."""
    out: dict[str, list[dict[str, Any]]] = {
        "ioServiceBytesRecursive": [],
        "ioServicedRecursive": [],
    }
    for device, fields in _fs.parse_nested_keyed(text):
        for key, value in fields.items():
            if key not in _V2_OPS or not is_number(value):
                continue
            table, op = _V2_OPS[key]
            entry = _entry(device, op, int(value))
            if entry is not None:
                out[table].append(entry)
    return out


def v2_stats(directory: str) -> dict[str, Any]:
    """runc's blkio stats from v2 io.stat."""
    try:
        return parse_io_stat(_fs.read(directory, "io.stat"))
    except (CgroupUnavailable, CgroupNotFound):
        return parse_io_stat("")
