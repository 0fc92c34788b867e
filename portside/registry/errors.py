"""The distribution spec's error codes as exception classes: each carries its ``code``
(one of the spec's 14) and the HTTP ``status`` the server answers with, and subclasses
the Portside error class it is a case of. The server renders any of them as
``{"errors":[{"code","message","detail"}]}``::

    RegistryError
    ├── BlobUnknown          BLOB_UNKNOWN           404
    ├── BlobUploadInvalid    BLOB_UPLOAD_INVALID    400
    │   └── RangeInvalid     BLOB_UPLOAD_INVALID    416 (out-of-order or bad Content-Range)
    ├── BlobUploadUnknown    BLOB_UPLOAD_UNKNOWN    404
    ├── DigestInvalid        DIGEST_INVALID         400
    ├── ManifestBlobUnknown  MANIFEST_BLOB_UNKNOWN  400
    ├── ManifestInvalid      MANIFEST_INVALID       400
    ├── ManifestUnknown      MANIFEST_UNKNOWN       404
    ├── NameInvalid          NAME_INVALID           400
    ├── NameUnknown          NAME_UNKNOWN           404
    ├── SizeInvalid          SIZE_INVALID           400
    │   └── TooLarge         SIZE_INVALID           413
    ├── Unsupported          UNSUPPORTED            405 (or 400)
    └── TooManyRequests      TOOMANYREQUESTS        429

UNAUTHORIZED and DENIED are :class:`portside.registry.interfaces.AuthChallenge`.
"""

from __future__ import annotations

from portside.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PortsideError,
    Unavailable,
)

__all__ = [
    "BlobUnknown",
    "BlobUploadInvalid",
    "BlobUploadUnknown",
    "DigestInvalid",
    "ManifestBlobUnknown",
    "ManifestInvalid",
    "ManifestUnknown",
    "NameInvalid",
    "NameUnknown",
    "RangeInvalid",
    "RegistryError",
    "SizeInvalid",
    "TooLarge",
    "TooManyRequests",
    "Unsupported",
]


class RegistryError(PortsideError):
    """An error of the distribution API; ``detail`` is JSON-able data for the client."""

    code = "UNKNOWN"
    status = 500

    def __init__(self, message: str, detail: object = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        if status is not None:
            self.status = status


class BlobUnknown(RegistryError, NotFound):
    code, status = "BLOB_UNKNOWN", 404


class BlobUploadInvalid(RegistryError, InvalidArgument):
    code, status = "BLOB_UPLOAD_INVALID", 400


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start where the upload stands (416); ``offset`` is where
    it does, for the ``Range`` header of the answer."""

    status = 416

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class BlobUploadUnknown(RegistryError, NotFound):
    code, status = "BLOB_UPLOAD_UNKNOWN", 404


class DigestInvalid(RegistryError, InvalidArgument):
    code, status = "DIGEST_INVALID", 400


class ManifestBlobUnknown(RegistryError, FailedPrecondition):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400


class ManifestInvalid(RegistryError, InvalidArgument):
    code, status = "MANIFEST_INVALID", 400


class ManifestUnknown(RegistryError, NotFound):
    code, status = "MANIFEST_UNKNOWN", 404


class NameInvalid(RegistryError, InvalidArgument):
    code, status = "NAME_INVALID", 400


class NameUnknown(RegistryError, NotFound):
    code, status = "NAME_UNKNOWN", 404


class SizeInvalid(RegistryError, InvalidArgument):
    code, status = "SIZE_INVALID", 400


class TooLarge(SizeInvalid):
    status = 413


class Unsupported(RegistryError, InvalidArgument):
    code, status = "UNSUPPORTED", 405


class TooManyRequests(RegistryError, Unavailable):
    code, status = "TOOMANYREQUESTS", 429
