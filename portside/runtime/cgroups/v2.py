"""The cgroup v2 (unified) driver.

One directory. Creating it enables, in every ancestor's ``cgroup.subtree_control``,
the controllers that ancestor has (runc's CreateCgroupPath), so the limits can be
written. Devices are an eBPF program (:mod:`~portside.runtime.cgroups.devices_bpf`).
"""

from __future__ import annotations

import os
import posixpath
import signal

from portside.runtime.cgroups import _fs, blkio, cpu, cpuset, freezer, hugetlb, memory, pids
from portside.runtime.cgroups._common import DirsManager
from portside.runtime.cgroups.base import (
    CgroupError,
    CgroupInvalid,
    CgroupNotFound,
    CgroupUnavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxResources
    from portside.runtime.cgroups.base import Write

__all__ = ["V2Manager", "unified_writes"]

#: a step of a plan: (controller, or "" for unified keys; its writes)
Step = tuple[str, list["Write"]]


def unified_writes(unified: dict[str, str]) -> list[Write]:
    """``resources.unified`` verbatim; keys must be plain control-file names."""
    out: list[Write] = []
    for key, value in unified.items():
        if not key or "/" in key or key.startswith(".") or "." not in key:
            raise CgroupInvalid(f"unified: invalid control file name {key!r}")
        if key in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
            raise CgroupInvalid(f"unified: {key} may not be set through unified")
        out.append((key, value))
    return out


class V2Manager(DirsManager):
    """A container's cgroup on a unified (v2) host."""

    @property
    def directory(self) -> str:
        return self._dirs[""]

    def _controllers(self) -> set[str]:
        try:
            return set(_fs.read(self.directory, "cgroup.controllers").split())
        except (CgroupUnavailable, CgroupNotFound):
            return set()

    def create(self) -> None:
        top = self._mountpoints[""].rstrip("/")
        rel = posixpath.relpath(self.directory, top)
        parent = top
        for part in rel.split("/"):
            _enable_controllers(parent)
            parent = _fs.mkdir(parent, part)

    def _plan(self, r: LinuxResources) -> list[Step]:
        if r.rdma:
            raise CgroupUnavailable("rdma: rdma limits are not supported")
        if r.network:
            raise CgroupUnavailable("network: net_cls/net_prio do not exist on cgroup v2")
        plan: list[Step] = []
        if r.pids is not None:
            plan.append(("pids", pids.writes(r.pids)))
        if r.memory is not None:
            has_swap = os.path.exists(f"{self.directory}/memory.swap.max")
            if w := memory.v2_writes(r.memory, has_swap=has_swap):
                plan.append(("memory", w))
        if r.block_io is not None:
            bfq = os.path.exists(f"{self.directory}/io.bfq.weight")
            if w := blkio.v2_writes(r.block_io, bfq=bfq):
                plan.append(("io", w))
        if r.cpu is not None:
            if w := cpu.v2_writes(r.cpu):
                plan.append(("cpu", w))
            if w := cpuset.writes(r.cpu):
                plan.append(("cpuset", w))
        if r.hugepage_limits:
            plan.append(("hugetlb", hugetlb.v2_writes(r.hugepage_limits)))
        if r.unified:
            plan.append(("", unified_writes(r.unified)))
        return plan

    def _set(self, resources: LinuxResources, *, update: bool) -> None:
        plan = self._plan(resources)
        available = self._controllers()
        for controller, _writes in plan:
            if controller and controller not in available:
                raise CgroupUnavailable(
                    f"{controller}: the {controller} controller is not enabled for "
                    f"{self.directory} (available: {' '.join(sorted(available)) or 'none'})"
                )
        if resources.devices and not update:
            from portside.runtime.cgroups import devices_bpf

            devices_bpf.install(self.directory, resources.devices)
        for controller, writes in plan:
            try:
                _fs.write_all(self.directory, writes)
            except CgroupUnavailable as exc:
                if controller == "":  # a unified key naming a missing controller
                    raise CgroupUnavailable(f"unified: {exc}", exc.errno) from exc
                raise

    def freeze(self) -> None:
        freezer.v2_freeze(self.directory)

    def thaw(self) -> None:
        freezer.v2_thaw(self.directory)

    def frozen(self) -> bool:
        try:
            return freezer.v2_frozen(self.directory)
        except (CgroupUnavailable, CgroupNotFound):
            return False

    def kill_all(self, sig: int) -> None:
        """SIGKILL uses cgroup.kill (Linux 5.14+) when there is one; else as runc does."""
        if sig == signal.SIGKILL and os.path.exists(f"{self.directory}/cgroup.kill"):
            try:
                _fs.write(self.directory, "cgroup.kill", "1")
                return
            except CgroupError:
                pass
        super().kill_all(sig)

    def stats(self) -> dict[str, Any]:
        d = self.directory
        return {
            "cpu": cpu.v2_stats(d),
            "memory": memory.v2_stats(d),
            "pids": pids.stats(d),
            "blkio": blkio.v2_stats(d),
            "hugetlb": hugetlb.stats(d, v2=True),
        }

    def oom_kill_count(self) -> int:
        return memory.v2_oom_kills(self.directory)


def _enable_controllers(directory: str) -> None:
    """Enable in ``directory``'s subtree_control every controller it has; best effort
    (one at a time when all at once is refused, e.g. by a threaded subtree)."""
    try:
        available = _fs.read(directory, "cgroup.controllers").split()
    except CgroupError:
        return
    if not available:
        return
    try:
        _fs.write(directory, "cgroup.subtree_control", " ".join(f"+{c}" for c in available))
        return
    except CgroupError:
        pass
    for c in available:
        try:
            _fs.write(directory, "cgroup.subtree_control", f"+{c}")
        except CgroupError:
            continue
