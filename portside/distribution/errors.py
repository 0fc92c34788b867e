"""What talking to a registry can go wrong with, each naming the registry and what
was asked of it, in words a user can act on (the messages follow Docker's)."""

from __future__ import annotations

from portside.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)

__all__ = [
    "BadContent",
    "RateLimited",
    "RegistryDenied",
    "RegistryError",
    "RegistryNotFound",
    "RegistryTLSError",
    "RegistryUnauthorized",
    "RegistryUnavailable",
    "UnsupportedContent",
]


class RegistryError(PortsideError):
    """Anything a registry answered that is not success. ``code`` is the
    distribution error code (``MANIFEST_UNKNOWN``...) when the registry gave one,
    ``status`` the HTTP status (0 when no answer came)."""

    code: str = ""
    status: int = 0

    def __init__(self, message: str, *, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        if code:
            self.code = code
        if status:
            self.status = status


class RegistryNotFound(RegistryError, NotFound):
    """No such repository, manifest, tag or blob (404, *_UNKNOWN)."""


class RegistryUnauthorized(RegistryError, PermissionDenied):
    """Credentials missing or wrong (401 after the auth flow, UNAUTHORIZED)."""


class RegistryDenied(RegistryError, PermissionDenied):
    """Authenticated, but not allowed (403, DENIED)."""


class RateLimited(RegistryError, Unavailable):
    """429 TOOMANYREQUESTS, still after the retries ``Retry-After`` allowed."""


class RegistryTLSError(RegistryError, Unavailable):
    """The TLS handshake or the certificate check failed."""


class RegistryUnavailable(RegistryError, Unavailable):
    """No connection, a timeout, or 5xx after the retries."""


class BadContent(RegistryError, InvalidArgument):
    """What the registry sent does not match its digest or size, or does not parse;
    nothing of it is stored."""


class UnsupportedContent(RegistryError, FailedPrecondition):
    """A manifest media type, or a platform, Portside cannot pull."""
