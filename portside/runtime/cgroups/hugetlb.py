"""hugetlb limits: ``resources.hugepageLimits`` to v1/v2 writes, and stats."""

from __future__ import annotations

import os

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupInvalid
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxHugepageLimit
    from portside.runtime.cgroups.base import Write

__all__ = ["stats", "v1_writes", "v2_writes", "valid_page_size"]


def valid_page_size(size: str) -> bool:
    """True for the kernel's spelling of a page size: ``2MB``, ``1GB``, ``64KB``."""
    return len(size) > 2 and is_number(size[:-2]) and size[-2:] in ("KB", "MB", "GB")


def _writes(limits: list[LinuxHugepageLimit], suffix: str) -> list[Write]:
    out: list[Write] = []
    for i, h in enumerate(limits):
        if not valid_page_size(h.page_size):
            raise CgroupInvalid(f"hugepageLimits[{i}].pageSize: invalid size {h.page_size!r}")
        out.append((f"hugetlb.{h.page_size}.{suffix}", str(h.limit)))
    return out


def v1_writes(limits: list[LinuxHugepageLimit]) -> list[Write]:
    """``hugetlb.<size>.limit_in_bytes`` per limit."""
    return _writes(limits, "limit_in_bytes")


def v2_writes(limits: list[LinuxHugepageLimit]) -> list[Write]:
    """``hugetlb.<size>.max`` per limit."""
    return _writes(limits, "max")


def stats(directory: str, *, v2: bool) -> dict[str, dict[str, int]]:
    """runc's hugetlb stats per page size found in ``directory``."""
    out: dict[str, dict[str, int]] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    sizes = sorted({n.split(".")[1] for n in names if n.startswith("hugetlb.") and "." in n[8:]})
    for size in sizes:
        base = f"hugetlb.{size}"
        if v2:
            events = _fs.read_flat_keyed(directory, f"{base}.events")
            entry = {
                "usage": _fs.read_int_or(directory, f"{base}.current"),
                "max": 0,
                "failcnt": events.get("max", 0),
            }
        else:
            entry = {
                "usage": _fs.read_int_or(directory, f"{base}.usage_in_bytes"),
                "max": _fs.read_int_or(directory, f"{base}.max_usage_in_bytes"),
                "failcnt": _fs.read_int_or(directory, f"{base}.failcnt"),
            }
        out[size] = entry
    return out
