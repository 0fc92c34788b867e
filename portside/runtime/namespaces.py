"""Which namespaces a container joins and which it creates.

:func:`plan_namespaces` is pure: from ``linux.namespaces`` it derives the paths
to join (opened by the parent while it still sees the host's mounts) and the
clone flags to unshare. The child then calls :func:`join` and :func:`unshare`.
"""

from __future__ import annotations

import os

from portside.errors import InvalidArgument, NotFound
from portside.linux.kernel import CLONE_FLAGS, CLONE_NEWUSER
from portside.oci.runtime_spec import NAMESPACE_TYPES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.linux.kernel import Kernel
    from portside.oci.runtime_spec import Linux

__all__ = ["NamespacePlan", "open_namespace_fds", "plan_namespaces"]


class NamespacePlan:
    """``join``: (type, path) in joining order; ``new``: the types to create."""

    __slots__ = ("join", "new")

    def __init__(self, join: list[tuple[str, str]], new: list[str]) -> None:
        self.join = join
        self.new = new

    @property
    def unshare_flags(self) -> int:
        """Flags for the second unshare (everything but the user namespace, which
        is created first so the others belong to it)."""
        flags = 0
        for ns in self.new:
            if ns != "user":
                flags |= CLONE_FLAGS[ns]
        return flags

    @property
    def needs_stage1(self) -> bool:
        """True when the namespaces need a process of their own before init: a
        new user or time namespace, or a joined user, PID or time namespace, take
        effect only for the children of whoever makes or joins them."""
        return any(ns in ("user", "time") for ns in self.new) or any(
            ns in ("user", "pid", "time") for ns, _ in self.join
        )

    def creates(self, ns_type: str) -> bool:
        return ns_type in self.new

    def has(self, ns_type: str) -> bool:
        """True when the container gets a namespace of its own of this type
        (created or joined), False when it shares the runtime's."""
        return ns_type in self.new or any(t == ns_type for t, _ in self.join)

    def __repr__(self) -> str:
        return f"NamespacePlan(join={self.join}, new={self.new})"


def plan_namespaces(linux: Linux | None) -> NamespacePlan:
    join: list[tuple[str, str]] = []
    new: list[str] = []
    if linux is None:
        return NamespacePlan(join, new)
    for ns_type in NAMESPACE_TYPES:
        entry = linux.namespace(ns_type)
        if entry is None:
            continue
        if entry.path:
            join.append((ns_type, entry.path))
        else:
            new.append(ns_type)
    if linux.time_offsets and "time" not in new:
        raise InvalidArgument("linux.timeOffsets: needs a new time namespace")
    return NamespacePlan(join, new)


_NS_GET_NSTYPE = 0xB703


def _ns_type(fd: int, path: str) -> int | None:
    """The CLONE_NEW* flag of a namespace fd (ioctl NS_GET_NSTYPE); None if the
    kernel cannot tell. A file that is not a namespace at all fails."""
    import fcntl

    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno == 25:  # ENOTTY: not an nsfs file
            raise InvalidArgument(f"linux.namespaces: {path} is not a namespace") from None
        return None


def open_namespace_fds(plan: NamespacePlan) -> list[tuple[str, int]]:
    """Open every namespace to join, checking each is a namespace of its type."""
    fds: list[tuple[str, int]] = []
    try:
        for ns_type, path in plan.join:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(
                    f"linux.namespaces: {ns_type} namespace {path} does not exist"
                ) from None
            fds.append((ns_type, fd))
            kind = _ns_type(fd, path)
            if kind is not None and kind != CLONE_FLAGS[ns_type]:
                raise InvalidArgument(f"linux.namespaces: {path} is not a {ns_type} namespace")
    except BaseException:
        for _, fd in fds:
            os.close(fd)
        raise
    return fds


def join(k: Kernel, fds: list[tuple[str, int]]) -> None:
    """setns into each namespace, the user namespace first."""
    for ns_type, fd in sorted(fds, key=lambda e: e[0] != "user"):
        k.setns(fd, CLONE_FLAGS[ns_type])
        os.close(fd)


def unshare_user(k: Kernel) -> None:
    k.unshare(CLONE_NEWUSER)
