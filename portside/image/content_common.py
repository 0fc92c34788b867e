"""Pieces every part of the content store shares: its errors, digest parsing,
translation of OS errors, and a streaming hash over an fd.

The errors::

    PortsideError
    ├── NotFound ─────────── BlobNotFound       no committed blob with that digest
    │                   ├─── IngestNotFound     no ingest with that ref
    │                   └─── LeaseNotFound      no lease with that id
    ├── AlreadyExists ────── BlobExists         commit of a blob the store has
    │                   └─── LeaseExists        a lease with that id exists
    ├── InvalidArgument ──── InvalidDigest      not ``sha256:<64 hex>`` / ``sha512:<128 hex>``
    │                   └─── DigestMismatch     the data is not what the caller expected
    ├── FailedPrecondition ─ WriterClosed       a writer used after commit, abort or close
    └── Unavailable ──────── IngestLocked       another writer holds the ref
                        └─── NoSpace            ENOSPC / EDQUOT while writing
"""

from __future__ import annotations

import errno
import hashlib
import os

from portside.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)
from portside.oci.digest import ALGORITHMS, Digest, DigestMismatch, InvalidDigest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "ALGORITHMS",
    "BUFSIZE",
    "BlobExists",
    "BlobNotFound",
    "DigestMismatch",
    "IngestLocked",
    "IngestNotFound",
    "InvalidDigest",
    "LeaseExists",
    "LeaseNotFound",
    "NoSpace",
    "WriterClosed",
    "gc_lock",
    "hash_fd",
    "os_error",
    "parse_digest",
    "start_writeback",
    "syncfs",
    "validate_labels",
]

#: read size for hashing and copying
BUFSIZE = 1 << 20
#: containerd's limit on one label: key and value together
MAX_LABEL = 4096


class BlobNotFound(NotFound):
    pass


class IngestNotFound(NotFound):
    pass


class LeaseNotFound(NotFound):
    pass


class BlobExists(AlreadyExists):
    pass


class LeaseExists(AlreadyExists):
    pass


class WriterClosed(FailedPrecondition):
    pass


class IngestLocked(Unavailable):
    pass


class NoSpace(Unavailable):
    pass


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``alg:hex`` into its parts, or raise InvalidDigest (only the
    algorithms the store can verify: sha256, sha512)."""
    if not isinstance(digest, str):
        raise InvalidDigest(repr(digest), "not a string")
    parsed = Digest.parse(digest)
    if parsed.algorithm not in ALGORITHMS:
        raise InvalidDigest(digest, f"unsupported algorithm {parsed.algorithm!r}")
    return parsed.algorithm, parsed.hex


def validate_labels(labels: Mapping[str, str | None]) -> None:
    """Refuse labels that are not strings or longer than MAX_LABEL (None: delete)."""
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"invalid label key {key!r}: want a non-empty string")
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"invalid value of label {key!r}: want a string")
        if len(key) + len(value or "") > MAX_LABEL:
            raise InvalidArgument(f"label {key!r} is longer than {MAX_LABEL} characters")


def os_error(exc: OSError, what: str) -> PortsideError:
    """The Portside error for an OSError raised while doing ``what`` (a phrase
    naming the object and path); raise it ``from exc``."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left on device {what}")
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied {what}")
    if code == errno.EROFS:
        return Unavailable(f"read-only file system {what}")
    return Internal(f"{reason.lower()} {what}")


def hash_fd(fd: int, h: hashlib._Hash, limit: int = -1) -> int:
    """Feed ``fd`` from its current offset into ``h`` until EOF (or ``limit``
    bytes); returns the number of bytes read. One reused 1 MiB buffer."""
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    total = 0
    while limit < 0 or total < limit:
        want = BUFSIZE if limit < 0 else min(BUFSIZE, limit - total)
        n = os.readv(fd, [view[:want]])
        if n == 0:
            break
        h.update(view[:n])
        total += n
    return total


def gc_lock(root: str, *, exclusive: bool) -> int:
    """Take the store's gc lock: shared by commits and lease changes, exclusive
    for a collection; returns the fd, which releases it when closed."""
    import fcntl

    path = os.path.join(root, "gc.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise os_error(exc, f"opening {path}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def syncfs(path: str) -> None:
    """Flush the whole file system that holds ``path`` — the data and metadata of
    every file on it, whoever wrote them — and wait (``syncfs(2)``): one durable
    barrier instead of an ``fsync`` per file and directory. Raises OSError (also
    for an earlier write-back error, which Linux reports here since 5.8)."""
    from portside.linux._libc import call, libc

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        call(f"syncfs {path}", libc.syncfs(fd))
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: list[Callable[..., int]] = []


def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Start writing ``nbytes`` of ``fd``'s dirty pages from ``offset`` (0: to the
    end) to disk, without waiting (``sync_file_range(SYNC_FILE_RANGE_WRITE)``): the
    ``fsync`` or ``syncfs`` that comes later then finds most of a big file on disk
    already, instead of writing it all while the caller waits. Only a hint: errors
    are ignored (the sync reports write errors)."""
    if not _sync_file_range:
        import ctypes

        from portside.linux._libc import libc

        func = libc.sync_file_range
        func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        _sync_file_range.append(func)
    _sync_file_range[0](fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)
