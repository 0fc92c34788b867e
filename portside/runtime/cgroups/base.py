"""The cgroup manager protocol and the errors of the cgroup layer.

Error classes (each also derives from the matching :mod:`portside.errors` class)::

    CgroupError(PortsideError)
    ├── CgroupNotFound(NotFound)               the cgroup directory is gone
    ├── CgroupInvalid(InvalidArgument)         a resource value the kernel or we refuse
    ├── CgroupPermission(PermissionDenied)     EPERM/EACCES/EROFS writing a control file
    ├── CgroupUnavailable(Unavailable)         a controller or control file the host lacks
    └── CgroupInternal(Internal)               anything else (EBUSY, timeouts, ...)
"""

from __future__ import annotations

from portside.errors import (
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from portside.oci.runtime_spec import LinuxResources
else:  # a plain base class at run time: importing typing costs ~10 ms per CLI call
    Protocol = object

__all__ = [
    "DEFAULT_ROOT",
    "CgroupError",
    "CgroupInternal",
    "CgroupInvalid",
    "CgroupManager",
    "CgroupNotFound",
    "CgroupPermission",
    "CgroupUnavailable",
    "Write",
]

DEFAULT_ROOT = "/sys/fs/cgroup"

#: one control-file write: (file name relative to the cgroup directory, value)
Write = tuple[str, str]


class CgroupError(PortsideError):
    """Base of every error of the cgroup layer; ``errno`` is set when the kernel said no."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class CgroupNotFound(CgroupError, NotFound):
    """The cgroup (or one of its directories) does not exist."""


class CgroupInvalid(CgroupError, InvalidArgument):
    """A resource value is malformed or out of range."""


class CgroupPermission(CgroupError, PermissionDenied):
    """The kernel refused a write to a control file."""


class CgroupUnavailable(CgroupError, Unavailable):
    """A controller or control file the request needs is missing on this host."""


class CgroupInternal(CgroupError, Internal):
    """An unexpected failure (EBUSY, a freeze that never completes, ...)."""


class CgroupManager(Protocol):
    """One container's cgroup, in every hierarchy the driver uses.

    Implementations: :class:`~portside.runtime.cgroups.v1.V1Manager` (cgroup v1 and
    hybrid hosts) and :class:`~portside.runtime.cgroups.v2.V2Manager` (unified).
    """

    #: "v1", "v2" or "hybrid"
    mode: str

    @property
    def path(self) -> str:
        """The normalised cgroup path, e.g. ``/portside/abc``."""
        ...

    @property
    def paths(self) -> dict[str, str]:
        """Directory of the cgroup per hierarchy key (controller name, or "" for v2)."""
        ...

    def create(self) -> None:
        """Make the cgroup directory in every hierarchy used; idempotent."""
        ...

    def apply(self, pid: int) -> None:
        """Move process ``pid`` (0: the caller) into the cgroup in every hierarchy."""
        ...

    def enter(self) -> None:
        """Move the calling *thread* into the cgroup: the whole process when it is
        single-threaded, as a freshly forked child is. On v1 this writes 0 to
        ``tasks``, which the kernel does without the global threadgroup lock whose
        RCU wait costs ~10 ms per ``cgroup.procs`` write after an idle spell."""
        ...

    def set(self, resources: LinuxResources | None) -> None:
        """Write the limits of ``resources``; only controllers it asks for must exist."""
        ...

    def update(self, resources: LinuxResources) -> None:
        """Apply the fields given in ``resources`` (``runtime update``)."""
        ...

    def freeze(self) -> None:
        """Freeze every process of the cgroup; returns once the kernel reports frozen."""
        ...

    def thaw(self) -> None:
        """Thaw the cgroup."""
        ...

    def frozen(self) -> bool:
        """True when the cgroup is frozen."""
        ...

    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendants, sorted."""
        ...

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process (freeze, signal, thaw, as runc does)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Resource usage in the shape of runc's ``events --stats`` data."""
        ...

    def oom_kill_count(self) -> int:
        """How many processes of the cgroup the OOM killer killed."""
        ...

    def exists(self) -> bool:
        """True while any directory of the cgroup exists."""
        ...

    def destroy(self, *, attempts: int = 12) -> None:
        """Remove the cgroup directories (children first); idempotent. A busy
        directory is retried, ``attempts`` times in all, with a short backoff."""
        ...

    def to_json(self) -> dict[str, Any]:
        """What :func:`~portside.runtime.cgroups.manager_from_json` needs to reopen it."""
        ...
