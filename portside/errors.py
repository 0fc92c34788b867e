"""Portside's error classes, shared by every layer.

The hierarchy, after containerd's ``errdefs``::

    PortsideError                  base of everything Portside raises on purpose
    ├── NotFound                   the named thing does not exist
    ├── AlreadyExists              a thing of that name or ID exists already
    ├── InvalidArgument            the caller's input is malformed or out of range
    ├── FailedPrecondition         valid input, but the object is in the wrong state
    ├── Conflict                   the request conflicts with another object's use of it
    ├── PermissionDenied           the kernel or a policy refused the operation
    ├── Unavailable                a resource or kernel feature is missing on this host
    ├── NotModified                the object is already in the requested state (HTTP 304)
    └── Internal                   a fault of ours or of the host, with the cause chained

Each package subclasses these for its own errors; the API layer maps the *class*
to a wire code in one place, never the message text. Messages are lowercase, have
no final period, and name the path or value that failed.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "NotModified",
    "PermissionDenied",
    "PortsideError",
    "Unavailable",
]


class PortsideError(Exception):
    """Base class of every error Portside raises deliberately."""


class NotFound(PortsideError):
    """The named object does not exist."""


class AlreadyExists(PortsideError):
    """An object with that name or ID already exists."""


class InvalidArgument(PortsideError):
    """The input is malformed or out of range."""


class FailedPrecondition(PortsideError):
    """The input is valid but the object is in a state that does not allow it."""


class Conflict(PortsideError):
    """The operation conflicts with how another object uses this one (HTTP 409),
    e.g. removing an image a container uses."""


class PermissionDenied(PortsideError):
    """The kernel or a policy refused the operation."""


class Unavailable(PortsideError):
    """A resource or kernel feature the request needs is missing on this host."""


class NotModified(PortsideError):
    """Nothing to do: the object is already in the requested state, e.g. starting
    a running container (Docker answers 304)."""


class Internal(PortsideError):
    """An unexpected fault; the underlying exception is chained as ``__cause__``."""
