"""The pids controller: ``resources.pids.limit`` to ``pids.max`` (same on v1 and v2)."""

from __future__ import annotations

from portside.runtime.cgroups import _fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxPids
    from portside.runtime.cgroups.base import Write

__all__ = ["stats", "writes"]


def writes(pids: LinuxPids) -> list[Write]:
    """``pids.max``: the limit, or "max" for a limit <= 0."""
    return [("pids.max", str(pids.limit) if pids.limit > 0 else "max")]


def stats(directory: str) -> dict[str, int]:
    """runc's pids stats; an unlimited ``pids.max`` is reported as 0."""
    limit = _fs.read_int_or(directory, "pids.max")
    return {
        "current": _fs.read_int_or(directory, "pids.current"),
        "limit": 0 if limit == _fs.MAX_UINT64 else limit,
    }
