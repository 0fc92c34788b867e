"""Ingests: a blob being written, invisible until committed with its digest.

An ingest lives at ``<root>/ingest/<sha256(ref)>/``::

    ref        the caller's key, to map the directory back
    data       the bytes written so far
    startedat  when the ingest began (unix time, text)
    total      the expected size, when the caller gave one
    expected   the expected digest, when the caller gave one

A writer holds ``flock`` on the ingest directory for as long as it is open, so a
second writer of the same ref — a thread or another process — fails at once with
IngestLocked. The digest is computed while the data streams in; ``commit``
checks size and digest, fsyncs, and hard-links ``data`` to ``blobs/<alg>/<hex>``
(``link`` fails atomically if the blob exists, where ``rename`` would replace it
silently), then fsyncs that directory — or leaves it to one ``ContentStore.sync``
later (``durable=False``, what a pull does for its layers). ``close`` keeps the
ingest for a later writer of the same ref to resume: Python's hashlib cannot
serialise its state, so resuming re-hashes the partial data once.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time

from portside.image.content_common import (
    BUFSIZE,
    BlobExists,
    DigestMismatch,
    IngestLocked,
    IngestNotFound,
    InvalidArgument,
    WriterClosed,
    gc_lock,
    hash_fd,
    os_error,
    parse_digest,
    start_writeback,
    validate_labels,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    #: what a commit records under the gc lock: (digest, labels) -> None
    OnCommit = Callable[[str, dict[str, str] | None], None]

__all__ = [
    "IngestStatus",
    "Writer",
    "ingest_dir",
    "ingest_lookup",
    "lock_dir",
    "open_ingest",
    "probe_ingest",
    "read_status",
    "remove_ingest",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: a writer starts the write-back of its data every this many bytes, so that the
#: fsync of a commit does not write a whole big blob at once
WRITEBACK_STEP = 8 << 20
_META_FILES = ("ref", "startedat", "total", "expected")


class IngestStatus:
    """What ``ContentStore.ingests()`` reports of one ingest."""

    __slots__ = ("active", "expected", "offset", "ref", "started_at", "total", "updated_at")

    def __init__(
        self,
        ref: str,
        *,
        offset: int,
        total: int | None,
        expected: str | None,
        started_at: float,
        updated_at: float,
        active: bool,
    ) -> None:
        self.ref = ref
        self.offset = offset
        self.total = total
        self.expected = expected
        self.started_at = started_at
        self.updated_at = updated_at
        self.active = active

    def __repr__(self) -> str:
        return (
            f"IngestStatus(ref={self.ref!r}, offset={self.offset}, total={self.total}, "
            f"active={self.active})"
        )


def ingest_dir(root: str, ref: str) -> str:
    """The ingest directory of ``ref``: hashed, so any ref makes a safe fixed-length name."""
    return os.path.join(root, "ingest", hashlib.sha256(ref.encode()).hexdigest())


def _read_text(dfd: int, name: str) -> str | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _write_text(dfd: int, name: str, text: str) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_status(path: str, dfd: int, active: bool) -> IngestStatus | None:
    """The status of the ingest open at ``dfd``, or None if it is not well formed."""
    ref = _read_text(dfd, "ref")
    if not ref or os.path.basename(path) != hashlib.sha256(ref.encode()).hexdigest():
        return None
    total = _read_text(dfd, "total")
    try:
        st = os.stat("data", dir_fd=dfd)
        return IngestStatus(
            ref=ref,
            offset=st.st_size,
            total=int(total) if total is not None else None,
            expected=_read_text(dfd, "expected"),
            started_at=float(_read_text(dfd, "startedat") or ""),
            updated_at=st.st_mtime,
            active=active,
        )
    except (OSError, ValueError):
        return None


def lock_dir(path: str, *, create: bool) -> int:
    """Open ``path`` and take its flock without waiting; returns the fd.

    Raises IngestLocked if another writer holds it, FileNotFoundError if it does
    not exist (and ``create`` is false). Retries if the directory was removed
    and re-made between the open and the lock.
    """
    for _ in range(8):
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
        dfd = os.open(path, _DIR_FLAGS)
        if not _try_lock(dfd):
            os.close(dfd)
            raise IngestLocked(f"ingest {path} is locked by another writer") from None
        try:
            same = os.stat(path).st_ino == os.fstat(dfd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return dfd
        os.close(dfd)  # removed by an abort between our open and our lock
        if not create:
            raise FileNotFoundError(errno.ENOENT, "ingest removed", path)
    raise IngestLocked(f"ingest {path} keeps changing under us")


def _try_lock(dfd: int) -> bool:
    """flock without blocking, but retrying for ~60 ms: ``ingests()`` and gc take
    an ingest's lock for a moment to see whether a writer has it, and a writer
    must not fail for that."""
    for delay in (0.002, 0.004, 0.008, 0.016, 0.032, 0.0):
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if delay:
                time.sleep(delay)
    return False


def probe_ingest(path: str) -> IngestStatus | None:
    """The status of the ingest at ``path`` (None if malformed or gone); ``active``
    tells whether a writer has it open."""
    try:
        dfd = os.open(path, _DIR_FLAGS)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            active = False
        except BlockingIOError:
            active = True
        return read_status(path, dfd, active)
    finally:
        os.close(dfd)


def remove_ingest(path: str, dfd: int) -> None:
    """Remove the ingest at ``path`` whose directory fd ``dfd`` holds its lock."""
    for name in os.listdir(dfd):
        os.unlink(name, dir_fd=dfd)
    os.rmdir(path)


def open_ingest(
    root: str,
    ref: str,
    expected: str | None,
    size: int | None,
    on_commit: OnCommit,
) -> Writer:
    """Begin or resume the ingest of ``ref``; see ``ContentStore.writer``."""
    path = ingest_dir(root, ref)
    try:
        dfd = lock_dir(path, create=True)
    except OSError as exc:
        raise os_error(exc, f"creating ingest {path} for ref {ref!r}") from exc
    try:
        return _start(dfd, path, ref, expected=expected, size=size, on_commit=on_commit)
    except BaseException:
        os.close(dfd)
        raise


def _reconcile(
    status: IngestStatus, ref: str, expected: str | None, size: int | None
) -> tuple[str | None, int | None]:
    """The expected digest and size of a resumed ingest: the caller's and the
    stored ones must agree where both are known."""
    if size is not None and status.total is not None and size != status.total:
        raise InvalidArgument(
            f"ingest {ref!r} was started for size {status.total}, not {size}; abort it first"
        )
    if expected is not None and status.expected not in (None, expected):
        raise InvalidArgument(
            f"ingest {ref!r} was started for {status.expected}, not {expected}; abort it first"
        )
    return expected or status.expected, size if size is not None else status.total


def _start(
    dfd: int,
    path: str,
    ref: str,
    *,
    expected: str | None,
    size: int | None,
    on_commit: OnCommit,
) -> Writer:
    """Resume a well-formed ingest of the same ref, or start afresh."""
    if expected is not None:
        parse_digest(expected)
    status = read_status(path, dfd, True)
    try:
        if status is None:  # new, or too damaged to resume: start over
            for name in os.listdir(dfd):
                os.unlink(name, dir_fd=dfd)
            _write_text(dfd, "ref", ref)
            _write_text(dfd, "startedat", repr(time.time()))
        else:
            expected, size = _reconcile(status, ref, expected, size)
        if size is not None and (status is None or status.total is None):
            _write_text(dfd, "total", str(size))
        if expected is not None and (status is None or status.expected is None):
            _write_text(dfd, "expected", expected)
        fd = os.open("data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            remove_ingest(path, dfd)
        raise os_error(exc, f"starting ingest {path} for ref {ref!r}") from exc
    h = hashlib.new(parse_digest(expected)[0] if expected is not None else "sha256")
    try:
        offset = hash_fd(fd, h)  # the one re-read a resume costs
    except OSError as exc:
        os.close(fd)
        raise os_error(exc, f"reading ingest {path} for ref {ref!r}") from exc
    return Writer(
        ref,
        path,
        root=os.path.dirname(os.path.dirname(path)),
        dfd=dfd,
        fd=fd,
        h=h,
        offset=offset,
        expected=expected,
        size=size,
        on_commit=on_commit,
    )


class Writer:
    """An open ingest. Use it as a context manager: leaving the block closes it,
    keeping uncommitted data for a resume."""

    def __init__(
        self,
        ref: str,
        path: str,
        *,
        root: str,
        dfd: int,
        fd: int,
        h: hashlib._Hash,
        offset: int,
        expected: str | None,
        size: int | None,
        on_commit: OnCommit,
    ) -> None:
        self.ref = ref
        self.path = path
        self.expected = expected
        self.size = size
        self._root = root
        self._dfd = dfd
        self._fd = fd
        self._h = h
        self._offset = offset
        self._flushed = offset  #: write-back started up to here (see write)
        self._on_commit = on_commit

    @property
    def offset(self) -> int:
        """Bytes written so far, including those of an earlier, resumed writer."""
        return self._offset

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def digest(self) -> str:
        """The digest of the data written so far."""
        return f"{self._h.name}:{self._h.hexdigest()}"

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length. On ENOSPC the ingest is removed
        and NoSpace raised: nothing of the blob stays on disk."""
        self._check_open()
        view = memoryview(data).cast("B")
        if self.size is not None and self._offset + len(view) > self.size:
            self._fail()
            raise DigestMismatch(
                f"blob {self._name()}: expected size {self.size},"
                f" got at least {self._offset + len(view)}"
            )
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            # the file no longer matches the running hash: drop the ingest
            self._fail()
            raise os_error(exc, f"writing blob {self._name()} to {self.path}/data") from exc
        self._h.update(view)
        self._offset += done
        if self._offset - self._flushed >= WRITEBACK_STEP:
            start_writeback(self._fd, self._flushed, self._offset - self._flushed)
            self._flushed = self._offset
        return done

    def copy_from(self, src: int, length: int = -1) -> int:
        """Append what ``src`` (an fd) holds from its offset until EOF, or ``length``
        bytes; returns the number of bytes copied."""
        copied = 0
        while length < 0 or copied < length:
            want = BUFSIZE if length < 0 else min(BUFSIZE, length - copied)
            chunk = os.read(src, want)
            if not chunk:
                break
            copied += self.write(chunk)
        return copied

    def truncate(self, size: int = 0) -> None:
        """Cut the data back to ``size`` bytes (0: start over), re-hashing what stays."""
        self._check_open()
        if not 0 <= size <= self._offset:
            raise InvalidArgument(
                f"cannot truncate ingest {self.ref!r} to {size}: it has {self._offset} bytes"
            )
        h = hashlib.new(self._h.name)
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, 0, os.SEEK_SET)
        hash_fd(self._fd, h, size)
        self._h, self._offset = h, size
        self._flushed = min(self._flushed, size)

    def commit(
        self,
        expected: str | None = None,
        size: int | None = None,
        *,
        labels: dict[str, str] | None = None,
        ok_if_exists: bool = False,
        durable: bool = True,
    ) -> str:
        """Verify and publish the blob; returns its digest and closes the writer.

        ``expected`` and ``size`` default to those given when the writer was
        opened; None means "whatever was written". A mismatch raises
        DigestMismatch and discards the ingest. If the store already has the
        blob, BlobExists is raised unless ``ok_if_exists``; the ingest is
        discarded either way and the stored blob's data is untouched. ``labels``
        are merged into the blob's labels, and the writer's lease (if any) then
        holds the blob, in both cases.

        The data is always on disk before the blob gets its name, so a blob is
        never seen with a part of its bytes missing. ``durable`` (the default)
        also syncs the directory, so the name survives a power loss once this
        returns; without it a power loss may take the name back (the blob is then
        simply absent) until :meth:`ContentStore.sync` — a pull commits its layers
        so and syncs once, before it records the image.
        """
        self._check_open()
        if labels:
            validate_labels(labels)
        expected = expected if expected is not None else self.expected
        size = size if size is not None else self.size
        name = expected or self.digest()
        if size is not None and size != self._offset:
            self._fail()
            raise DigestMismatch(f"blob {name}: expected size {size}, got {self._offset}")
        actual = self.digest()
        if expected is not None:
            alg = parse_digest(expected)[0]
            if alg != self._h.name:
                raise InvalidArgument(
                    f"blob {expected}: the writer hashed with {self._h.name}; open it with"
                    f" expected={expected!r} to verify {alg}"
                )
            if actual != expected:
                self._fail()
                raise DigestMismatch(f"blob {expected}: digest mismatch, got {actual}")
        self._publish(actual, labels, ok_if_exists, durable)
        return actual

    def _publish(
        self, digest: str, labels: dict[str, str] | None, ok_if_exists: bool, durable: bool
    ) -> None:
        alg, hexpart = parse_digest(digest)
        alg_dir = os.path.join(self._root, "blobs", alg)
        target = os.path.join(alg_dir, hexpart)
        try:
            os.fchmod(self._fd, 0o444)
            os.utime(self._fd)  # "created" is the commit time
            os.fsync(self._fd)
            os.makedirs(alg_dir, exist_ok=True)
            exists = self._link(target, digest, labels)
            if durable and not exists:
                _fsync_dir(alg_dir)
        except OSError as exc:
            self._fail()
            raise os_error(exc, f"committing blob {digest} to {target}") from exc
        except BaseException:
            self._fail()
            raise
        self._fail()  # the ingest is done with, committed or not
        if exists and not ok_if_exists:
            raise BlobExists(f"blob {digest} already exists at {target}")

    def _link(self, target: str, digest: str, labels: dict[str, str] | None) -> bool:
        """Link the data to ``target`` under the store's shared gc lock, running
        the commit hook (leases, labels) before gc can look; True if it existed."""
        lock = gc_lock(self._root, exclusive=False)
        try:
            try:
                os.link("data", target, src_dir_fd=self._dfd)
                exists = False
            except FileExistsError:
                exists = True
            self._on_commit(digest, labels)
            return exists
        finally:
            os.close(lock)

    def close(self) -> None:
        """Release the ref, keeping the data for a later writer to resume. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            os.close(self._dfd)
            self._fd = self._dfd = -1

    def abort(self) -> None:
        """Remove the ingest and close the writer."""
        self._check_open()
        self._fail()

    def _fail(self) -> None:
        try:
            remove_ingest(self.path, self._dfd)
        except FileNotFoundError:
            pass
        finally:
            self.close()

    def _check_open(self) -> None:
        if self._fd < 0:
            raise WriterClosed(f"writer of ingest {self.ref!r} is closed")

    def _name(self) -> str:
        return self.expected or f"(ref {self.ref!r})"

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Writer(ref={self.ref!r}, offset={self._offset}, closed={self.closed})"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ingest_lookup(root: str, ref: str) -> int:
    """Lock the existing ingest of ``ref``; IngestNotFound if there is none."""
    path = ingest_dir(root, ref)
    try:
        return lock_dir(path, create=False)
    except FileNotFoundError:
        raise IngestNotFound(f"no ingest for ref {ref!r} at {path}") from None
    except OSError as exc:
        raise os_error(exc, f"opening ingest {path}") from exc
