"""The cgroup v1 driver (also for hybrid hosts).

One directory per mounted v1 hierarchy, like runc's ``fs`` manager: every hierarchy
is joined, limits go to the controller that owns them. On a hybrid host the
controller-less cgroup2 tree is left alone (see ``open_manager``); runc joins it.
"""

from __future__ import annotations

import os

# the controller modules are imported where used: most runtime calls (state,
# start, kill) need none of them, and each costs an import on every CLI call
from portside.runtime.cgroups import _fs
from portside.runtime.cgroups._common import DirsManager
from portside.runtime.cgroups.base import CgroupInvalid, CgroupUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxResources
    from portside.runtime.cgroups.base import Write

__all__ = ["V1Manager", "network_writes"]

#: a step of a plan: (controller, writes, files whose EINVAL may be retried last)
Step = tuple[str, list["Write"], tuple[str, ...]]


def network_writes(network: dict[str, Any]) -> list[tuple[str, Write]]:
    """(controller, write) for ``resources.network``: net_cls.classid, net_prio.ifpriomap."""
    out: list[tuple[str, Write]] = []
    class_id = network.get("classID")
    if class_id is not None:
        if not isinstance(class_id, int) or class_id < 0:
            raise CgroupInvalid(f"network.classID: invalid value {class_id!r}")
        out.append(("net_cls", ("net_cls.classid", str(class_id))))
    for i, prio in enumerate(network.get("priorities") or []):
        name = prio.get("name") if isinstance(prio, dict) else None
        value = prio.get("priority") if isinstance(prio, dict) else None
        if not isinstance(name, str) or not name or not isinstance(value, int):
            raise CgroupInvalid(f"network.priorities[{i}]: invalid entry {prio!r}")
        out.append(("net_prio", ("net_prio.ifpriomap", f"{name} {value}")))
    return out


class V1Manager(DirsManager):
    """A container's cgroup on a v1 (or hybrid) host."""

    SELF_FILE = "tasks"  # a thread moving itself skips cgroup_threadgroup_rwsem

    def _dir(self, controller: str, asked_by: str) -> str:
        try:
            return self._dirs[controller]
        except KeyError:
            raise CgroupUnavailable(
                f"{asked_by}: the {controller} cgroup controller is not mounted on this host"
            ) from None

    def create(self) -> None:
        from portside.runtime.cgroups import cpuset

        for key, directory in self._dirs.items():
            if key == "cpuset":
                cpuset.ensure_v1_dirs(self._mountpoints[key], directory)
                continue
            try:
                try:  # the parent (/portside) is there but for the first container
                    os.mkdir(directory, 0o755)
                except FileNotFoundError:
                    os.makedirs(directory, 0o755, exist_ok=True)
                except FileExistsError:
                    pass
            except OSError as exc:
                raise _fs.translate_oserror(exc, f"mkdir {directory}", directory) from exc

    def _plan(self, r: LinuxResources, *, update: bool) -> list[Step]:
        """Every write ``r`` asks for, per controller, in runc's controller order."""
        from portside.runtime.cgroups import blkio, cpu, cpuset, devices, hugetlb, memory, pids

        if r.unified:
            raise CgroupUnavailable("unified: cgroup v2 resources given on a cgroup v1 host")
        if r.rdma:
            raise CgroupUnavailable("rdma: rdma limits are not supported")
        plan: list[Step] = []
        if r.cpu is not None and (w := cpuset.writes(r.cpu)):
            plan.append(("cpuset", w, ()))
        if r.devices and not update:
            plan.append(("devices", devices.v1_writes(r.devices), ()))
        if r.memory is not None:
            d = self._dir("memory", "memory")
            current = 0
            if r.memory.limit and r.memory.swap:
                current = _fs.read_int(d, "memory.limit_in_bytes")
            has_memsw = os.path.exists(f"{d}/memory.memsw.limit_in_bytes")
            w = memory.v1_writes(r.memory, current_limit=current, has_memsw=has_memsw)
            plan.append(("memory", w, ()))
        if r.cpu is not None and (w := cpu.v1_writes(r.cpu)):
            plan.append(("cpu", w, cpu.V1_DEFERRABLE))
        if r.pids is not None:
            plan.append(("pids", pids.writes(r.pids), ()))
        if r.block_io is not None:
            prefix = None
            if "blkio" in self._dirs:
                prefix = blkio.v1_weight_prefix(self._dirs["blkio"])
            if w := blkio.v1_writes(r.block_io, weight_prefix=prefix):
                plan.append(("blkio", w, ()))
        if r.hugepage_limits:
            plan.append(("hugetlb", hugetlb.v1_writes(r.hugepage_limits), ()))
        for controller, write in network_writes(r.network or {}):
            plan.append((controller, [write], ()))
        return plan

    def _set(self, resources: LinuxResources, *, update: bool) -> None:
        plan = self._plan(resources, update=update)
        for step in plan:  # every controller asked for must exist before any write
            self._dir(step[0], step[0])
        for controller, writes, deferrable in plan:
            _fs.write_all(self._dirs[controller], writes, deferrable=deferrable)

    def freeze(self) -> None:
        from portside.runtime.cgroups import freezer

        freezer.v1_freeze(self._dir("freezer", "freeze"))

    def thaw(self) -> None:
        from portside.runtime.cgroups import freezer

        freezer.v1_thaw(self._dir("freezer", "thaw"))

    def frozen(self) -> bool:
        from portside.runtime.cgroups import freezer

        if "freezer" not in self._dirs:
            return False
        return freezer.v1_frozen(self._dirs["freezer"])

    def stats(self) -> dict[str, Any]:
        from portside.runtime.cgroups import blkio, cpu, hugetlb, memory, pids

        d = self._dirs.get
        mem = d("memory")
        pid_dir = d("pids")
        blk = d("blkio")
        huge = d("hugetlb")
        return {
            "cpu": cpu.v1_stats(d("cpu"), d("cpuacct")),
            "memory": memory.v1_stats(mem) if mem else {},
            "pids": pids.stats(pid_dir) if pid_dir else {"current": 0, "limit": 0},
            "blkio": blkio.v1_stats(blk) if blk else {},
            "hugetlb": hugetlb.stats(huge, v2=False) if huge else {},
        }

    def oom_kill_count(self) -> int:
        from portside.runtime.cgroups import memory

        return memory.v1_oom_kills(self._dir("memory", "oom kill count"))
