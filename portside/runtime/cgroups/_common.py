"""What the v1 and v2 drivers share: a cgroup as a set of directories, one per hierarchy."""

from __future__ import annotations

import os

from portside.runtime.cgroups import _fs
from portside.runtime.cgroups.base import CgroupError, CgroupManager, CgroupUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.oci.runtime_spec import LinuxResources

__all__ = ["DirsManager", "read_procs"]

#: version of the :meth:`DirsManager.to_json` document
JSON_VERSION = 1


def read_procs(directory: str) -> set[int]:
    """PIDs in ``directory``'s cgroup.procs and every descendant's; empty when gone."""
    found: set[int] = set()
    for dirpath, _dirs, _files in os.walk(directory, followlinks=False):
        try:
            with open(f"{dirpath}/cgroup.procs", encoding="ascii") as f:
                found.update(int(line) for line in f if line.strip())
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _fs.translate_oserror(exc, f"read {dirpath}/cgroup.procs", dirpath) from exc
    return found


class DirsManager(CgroupManager):
    """A cgroup living in one directory per hierarchy (``dirs``: key -> directory).

    ``meta`` holds what :func:`~portside.runtime.cgroups.open_manager` was given, so
    that :meth:`to_json` can record it.
    """

    def __init__(
        self,
        mode: str,
        path: str,
        dirs: dict[str, str],
        mountpoints: dict[str, str],
        meta: dict[str, Any],
    ) -> None:
        self.mode = mode
        self._path = path
        self._dirs = dict(dirs)
        self._mountpoints = dict(mountpoints)
        self._meta = dict(meta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode}, {self._path!r})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._dirs)

    def unique_dirs(self) -> list[str]:
        """Each directory once (co-mounted v1 controllers share one), in key order."""
        return list(dict.fromkeys(self._dirs.values()))

    #: the file a thread writes 0 to, to move itself (v1 overrides: ``tasks``)
    SELF_FILE = "cgroup.procs"

    def apply(self, pid: int) -> None:
        value = str(pid or os.getpid())
        for directory in self.unique_dirs():
            _fs.write(directory, "cgroup.procs", value)

    def enter(self) -> None:
        for directory in self.unique_dirs():
            _fs.write(directory, self.SELF_FILE, "0")

    def update(self, resources: LinuxResources) -> None:
        self._set(resources, update=True)

    def set(self, resources: LinuxResources | None) -> None:
        if resources is not None:
            self._set(resources, update=False)

    def _set(self, resources: LinuxResources, *, update: bool) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in self.unique_dirs():
            found |= read_procs(directory)
        return sorted(found)

    def kill_all(self, sig: int) -> None:
        frozen = False
        try:
            self.freeze()
            frozen = True
        except CgroupUnavailable:
            pass  # no freezer: signal without it, as runc does
        try:
            me = os.getpid()
            for pid in self.pids():
                if pid == me:
                    continue
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
        finally:
            if frozen:
                self.thaw()

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.unique_dirs())

    def destroy(self, *, attempts: int = 12) -> None:
        errors: list[CgroupError] = []
        for directory in self.unique_dirs():
            try:
                _fs.rmdir_tree(directory, attempts=attempts)
            except CgroupError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "mode": self.mode,
            "path": self._path,
            "dirs": dict(self._dirs),
            "mountpoints": dict(self._mountpoints),
            **self._meta,
        }
