"""Freezing: v1 ``freezer.state`` (FROZEN/THAWED) and v2 ``cgroup.freeze``.

Freezing is asynchronous in the kernel; both ``freeze`` functions return only once
the kernel reports the cgroup frozen, or thaw it again and raise on timeout.
"""

from __future__ import annotations

import time

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupInternal

__all__ = ["v1_freeze", "v1_frozen", "v1_thaw", "v2_freeze", "v2_frozen", "v2_thaw"]

FREEZE_TIMEOUT = 5.0


def v1_freeze(directory: str, timeout: float = FREEZE_TIMEOUT) -> None:
    """Write FROZEN until freezer.state reads FROZEN (runc re-thaws every 50 tries to
    get past tasks stuck in the kernel's freezing loop)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    state = ""
    while True:
        if attempt % 50 == 49:
            _fs.write(directory, "freezer.state", "THAWED")
            time.sleep(0.01)
        _fs.write(directory, "freezer.state", "FROZEN")
        state = _fs.read(directory, "freezer.state")
        if state == "FROZEN":
            return
        if time.monotonic() > deadline:
            break
        attempt += 1
        time.sleep(0.001)
    _fs.write(directory, "freezer.state", "THAWED")
    raise CgroupInternal(f"freeze {directory}: still {state} after {timeout:g}s")


def v1_thaw(directory: str) -> None:
    """Write THAWED to freezer.state."""
    _fs.write(directory, "freezer.state", "THAWED")


def v1_frozen(directory: str) -> bool:
    """True when freezer.state is FROZEN (FREEZING is not frozen yet)."""
    return _fs.read(directory, "freezer.state") == "FROZEN"


def _events_frozen(directory: str) -> bool:
    return _fs.read_flat_keyed(directory, "cgroup.events").get("frozen") == 1


def v2_freeze(directory: str, timeout: float = FREEZE_TIMEOUT) -> None:
    """Write 1 to cgroup.freeze and wait for ``frozen 1`` in cgroup.events."""
    _fs.write(directory, "cgroup.freeze", "1")
    deadline = time.monotonic() + timeout
    while not _events_frozen(directory):
        if time.monotonic() > deadline:
            _fs.write(directory, "cgroup.freeze", "0")
            raise CgroupInternal(f"freeze {directory}: not frozen after {timeout:g}s")
        time.sleep(0.001)


def v2_thaw(directory: str) -> None:
    """Write 0 to cgroup.freeze."""
    _fs.write(directory, "cgroup.freeze", "0")


def v2_frozen(directory: str) -> bool:
    """True when cgroup.freeze is 1 and the kernel reports the cgroup frozen."""
    return _fs.read(directory, "cgroup.freeze") == "1" and _events_frozen(directory)
