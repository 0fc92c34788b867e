"""The cpuset controller: ``resources.cpu.cpus``/``mems`` and v1's parent copying.

A new v1 cpuset directory starts with empty ``cpuset.cpus``/``cpuset.mems``, and a
process cannot join (nor can a child be configured) until they are filled, so every
intermediate directory created gets its parent's values, as runc's ensureParent does.
"""

from __future__ import annotations

import posixpath

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupInvalid
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import LinuxCPU
    from portside.runtime.cgroups.base import Write

__all__ = ["ensure_v1_dirs", "valid_list", "writes"]


def valid_list(text: str) -> bool:
    """True for a kernel cpu/node list such as ``0-3,8,10-11`` (no ``re``: import cost)."""
    if not text:
        return True
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not is_number(lo) or (sep and (not is_number(hi) or int(hi) < int(lo))):
            return False
    return True


def writes(cpu: LinuxCPU) -> list[Write]:
    """cpuset.cpus then cpuset.mems (same names on v1 and v2); "" leaves them alone."""
    out: list[Write] = []
    for name, value in (("cpus", cpu.cpus), ("mems", cpu.mems)):
        if not value:
            continue
        if not valid_list(value.strip()):
            raise CgroupInvalid(f"cpu.{name}: invalid list {value!r}")
        out.append((f"cpuset.{name}", value.strip()))
    return out


def ensure_v1_dirs(mountpoint: str, directory: str) -> None:
    """mkdir ``directory`` level by level below ``mountpoint``, copying empty cpus/mems."""
    top = mountpoint.rstrip("/")
    rel = posixpath.relpath(directory, top)
    if rel.startswith(".."):
        raise CgroupInvalid(f"cpuset directory {directory} is not below {mountpoint}")
    parent = top
    for part in [] if rel == "." else rel.split("/"):
        current = _fs.mkdir(parent, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not _fs.read(current, name):
                _fs.write(current, name, _fs.read(parent, name))
        parent = current
