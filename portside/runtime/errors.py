"""Errors of the OCI runtime.

::

    PortsideError
    ├── NotFound ─────────── ContainerNotFound      no container with that ID
    ├── AlreadyExists ────── ContainerExists        the ID is taken
    ├── InvalidArgument ──── SpecError (oci)        config.json does not validate
    │                   └─── InvalidID              an ID with characters we refuse
    ├── FailedPrecondition ─ InvalidState           e.g. start of a running container
    └── Internal ─────────── ChildError             a step inside the container failed
"""

from __future__ import annotations

from portside.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)

__all__ = [
    "ChildError",
    "ContainerExists",
    "ContainerNotFound",
    "InvalidID",
    "InvalidState",
]


class ContainerNotFound(NotFound):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} does not exist")
        self.container_id = container_id


class ContainerExists(AlreadyExists):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id {container_id!r} already exists")
        self.container_id = container_id


class InvalidID(InvalidArgument):
    pass


class InvalidState(FailedPrecondition):
    def __init__(self, container_id: str, action: str, status: str) -> None:
        super().__init__(f"cannot {action} container {container_id!r}: it is {status}")
        self.container_id = container_id
        self.status = status


class ChildError(Internal):
    """A step in a child process (container init, exec) failed.

    Crosses back from the child as (errno, step, message), as crun does.
    """

    def __init__(self, step: str, message: str, errno: int = 0) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.errno = errno
        self.message = message
