"""The cgroup layer of the Portside runtime: one manager per container cgroup.

::

    mgr = open_manager(spec.linux.cgroups_path, container_id)
    mgr.create(); mgr.set(spec.linux.resources); mgr.apply(pid)
    ...
    state["cgroup"] = mgr.to_json()          # later: manager_from_json(state["cgroup"])
    mgr.kill_all(signal.SIGKILL); mgr.destroy()

The host's layout (v1, v2 or hybrid) is read from the mount table; the v1 driver
serves v1 and hybrid hosts, the v2 driver unified ones. Both translate OCI resources
with the pure functions of the per-controller modules (``memory``, ``cpu``, ...).
"""

from __future__ import annotations

from portside.runtime.cgroups.base import (
    DEFAULT_ROOT,
    CgroupError,
    CgroupInternal,
    CgroupInvalid,
    CgroupManager,
    CgroupNotFound,
    CgroupPermission,
    CgroupUnavailable,
)
from portside.runtime.cgroups.mounts import (
    cgroup_path,
    parse_proc_cgroup,
    read_layout,
    resolve_dir,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CgroupError",
    "CgroupInternal",
    "CgroupInvalid",
    "CgroupManager",
    "CgroupNotFound",
    "CgroupPermission",
    "CgroupUnavailable",
    "detect_mode",
    "features",
    "manager_from_json",
    "open_manager",
]


def detect_mode(*, root: str = DEFAULT_ROOT, mountinfo: str | None = None) -> str:
    """ "v1", "v2" or "hybrid" (v1 controllers plus a cgroup2 mount) for ``root``.

    ``mountinfo`` is the text of a mount table (default: /proc/self/mountinfo).
    """
    return read_layout(root, mountinfo).mode


def _read_self_cgroup() -> str:
    with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
        return f.read()


def open_manager(
    cgroups_path: str | None,
    container_id: str,
    *,
    root: str = DEFAULT_ROOT,
    systemd: bool = False,
    mountinfo: str | None = None,
    self_cgroup: str | None = None,
) -> CgroupManager:
    """The manager of a container's cgroup (nothing is created until ``create()``).

    ``cgroups_path``: None is ``/portside/<container_id>``; absolute paths are below
    each hierarchy's root; relative ones below the caller's own cgroup in each
    hierarchy (``self_cgroup``, default /proc/self/cgroup); with ``systemd`` it is
    runc's ``slice:prefix:name``, mapped to its cgroupfs path (no D-Bus).
    Reopening with the same arguments names the same cgroup, except that a
    relative path depends on the caller's cgroup: prefer :func:`manager_from_json`.
    """
    layout = read_layout(root, mountinfo)
    path = cgroup_path(cgroups_path, container_id, systemd=systemd)
    own: dict[str, str] = {}
    if not path.startswith("/"):
        own = parse_proc_cgroup(self_cgroup if self_cgroup is not None else _read_self_cgroup())
    meta = {
        "cgroups_path": cgroups_path,
        "container_id": container_id,
        "systemd": systemd,
        "root": root,
    }
    dirs: dict[str, str] = {}
    mountpoints: dict[str, str] = {}
    if layout.mode == "v2" and layout.unified is not None:
        dirs[""] = resolve_dir(layout.unified, "", path, own)
        mountpoints[""] = layout.unified.mountpoint
        return _driver("v2", path, dirs, mountpoints, meta)
    for key, mount in layout.v1.items():
        dirs[key] = resolve_dir(mount, key, path, own)
        mountpoints[key] = mount.mountpoint
    # On a hybrid host the cgroup2 tree has no controllers: joining it limits
    # nothing, and a write to its cgroup.procs takes the kernel's global
    # threadgroup lock (~5-10 ms after an idle spell), so the container stays
    # where its creator was in that tree.
    return _driver(layout.mode, path, dirs, mountpoints, meta)


def _driver(
    mode: str,
    path: str,
    dirs: dict[str, str],
    mountpoints: dict[str, str],
    meta: dict[str, Any],
) -> CgroupManager:
    if mode == "v2":
        from portside.runtime.cgroups.v2 import V2Manager

        return V2Manager(mode, path, dirs, mountpoints, meta)
    from portside.runtime.cgroups.v1 import V1Manager

    return V1Manager(mode, path, dirs, mountpoints, meta)


def manager_from_json(data: dict[str, Any]) -> CgroupManager:
    """Reopen the cgroup recorded by ``mgr.to_json()``, with the directories it had."""
    try:
        mode, path = data["mode"], data["path"]
        dirs, mountpoints = data["dirs"], data["mountpoints"]
    except (KeyError, TypeError) as exc:
        raise CgroupInvalid(f"cgroup state: missing field {exc}") from exc
    if mode not in ("v1", "v2", "hybrid") or not isinstance(path, str):
        raise CgroupInvalid(f"cgroup state: invalid mode {mode!r} or path {path!r}")
    for table in (dirs, mountpoints):
        if not isinstance(table, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith("/")
            for k, v in table.items()
        ):
            raise CgroupInvalid(f"cgroup state: invalid directories {table!r}")
    if mode == "v2" and "" not in dirs:
        raise CgroupInvalid("cgroup state: a v2 cgroup needs its directory")
    meta = {k: data.get(k) for k in ("cgroups_path", "container_id", "systemd", "root")}
    return _driver(mode, path, dirs, mountpoints, meta)


def features() -> dict[str, bool]:
    """The ``linux.cgroup`` part of ``runtime features``."""
    return {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False}
