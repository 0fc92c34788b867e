"""The content store: blobs addressed by their digest, after containerd's.

On disk, under the store's root (``<data-root>/content``)::

    blobs/<alg>/<hex>       committed blobs, read-only, each named by its digest
    ingest/<sha256(ref)>/   blobs being written (see ``content_writer``)
    meta.db                 labels and leases (SQLite, see ``content_meta``)
    gc.lock                 shared by commits, exclusive for a collection

The store is the union of small roles (``content_roles``): a *provider* reads
committed blobs; an *ingester* writes new ones, invisible until committed with
their expected digest and size, verified while the data streams in; a *manager*
lists, deletes and labels them and watches ingests. Leases and reachability gc
(``content_gc``) and a consistency check (``content_check``) complete it.
Reading and writing blobs use only fds and ``os`` calls; SQLite is imported the
first time labels or leases are used.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time

from portside.errors import InvalidArgument
from portside.image.content_common import (
    ALGORITHMS,
    BlobExists,
    BlobNotFound,
    DigestMismatch,
    IngestLocked,
    IngestNotFound,
    InvalidDigest,
    LeaseExists,
    LeaseNotFound,
    NoSpace,
    WriterClosed,
    gc_lock,
    os_error,
    parse_digest,
    validate_labels,
)
from portside.image.content_writer import (
    IngestStatus,
    Writer,
    ingest_dir,
    ingest_lookup,
    open_ingest,
    probe_ingest,
    remove_ingest,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import BinaryIO

    from portside.image.content_gc import GCResult
    from portside.image.content_meta import Lease, MetaDB
    from portside.image.content_writer import OnCommit

__all__ = [
    "BlobExists",
    "BlobInfo",
    "BlobNotFound",
    "ContentStore",
    "DigestMismatch",
    "IngestLocked",
    "IngestNotFound",
    "IngestStatus",
    "InvalidDigest",
    "LeaseExists",
    "LeaseNotFound",
    "NoSpace",
    "ReaderAt",
    "Writer",
    "WriterClosed",
    "parse_digest",
]


class BlobInfo:
    """A committed blob: its digest, size in bytes, commit time and labels."""

    __slots__ = ("created", "digest", "labels", "size")

    def __init__(self, digest: str, size: int, created: float, labels: dict[str, str]) -> None:
        self.digest = digest
        self.size = size
        self.created = created
        self.labels = labels

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlobInfo):
            return NotImplemented
        return (self.digest, self.size, self.created, self.labels) == (
            other.digest,
            other.size,
            other.created,
            other.labels,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BlobInfo(digest={self.digest!r}, size={self.size}, labels={self.labels!r})"


class ReaderAt:
    """Random access to one blob: ``read_at(offset, length)`` with ``pread``."""

    def __init__(self, fd: int, digest: str, size: int) -> None:
        self._fd = fd
        self.digest = digest
        self.size = size

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer only at the end of the blob."""
        if offset < 0 or length < 0:
            raise InvalidArgument(f"blob {self.digest}: invalid range {offset}+{length}")
        if offset > self.size:
            raise InvalidArgument(
                f"blob {self.digest}: offset {offset} is past its size {self.size}"
            )
        length = min(length, self.size - offset)
        parts = []
        while length > 0:
            chunk = os.pread(self._fd, length, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ReaderAt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    """Blobs by digest under ``root``; safe to share between threads and processes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._meta: MetaDB | None = None
        try:
            for alg in ALGORITHMS:
                os.makedirs(os.path.join(root, "blobs", alg), 0o755, exist_ok=True)
            os.makedirs(os.path.join(root, "ingest"), 0o700, exist_ok=True)
            os.close(gc_lock(root, exclusive=False))  # make it now, not on a full disk
        except OSError as exc:
            raise os_error(exc, f"creating content store {root}") from exc

    def __repr__(self) -> str:
        return f"ContentStore({self.root!r})"

    @property
    def meta(self) -> MetaDB:
        """The labels and leases database (imports sqlite3 on first use)."""
        if self._meta is None:
            from portside.image.content_meta import MetaDB

            self._meta = MetaDB(self.root)
        return self._meta

    def _has_meta(self) -> bool:
        return self._meta is not None or os.path.exists(os.path.join(self.root, "meta.db"))

    # --- provider -----------------------------------------------------------------------

    def path(self, digest: str) -> str:
        """Where the blob ``digest`` lives (whether or not it exists)."""
        alg, hexpart = parse_digest(digest)
        return os.path.join(self.root, "blobs", alg, hexpart)

    def exists(self, digest: str) -> bool:
        try:
            os.stat(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def info(self, digest: str) -> BlobInfo:
        path = self.path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found at {path}") from None
        labels = self.meta.labels(digest) if self._has_meta() else {}
        return BlobInfo(digest, st.st_size, st.st_mtime, labels)

    def _open_fd(self, digest: str) -> int:
        path = self.path(digest)
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found at {path}") from None
        except OSError as exc:
            raise os_error(exc, f"opening blob {digest} at {path}") from exc

    def open(self, digest: str) -> BinaryIO:
        """The blob as a binary file object; close it (or use ``with``)."""
        return os.fdopen(self._open_fd(digest), "rb")

    def read(self, digest: str, *, max_size: int | None = None) -> bytes:
        """The whole blob, for small ones (manifests, configs); ``max_size``
        refuses a bigger blob with InvalidArgument rather than reading it."""
        fd = self._open_fd(digest)
        try:
            size = os.fstat(fd).st_size
            if max_size is not None and size > max_size:
                raise InvalidArgument(f"blob {digest} is {size} bytes, more than {max_size}")
            parts = []
            while chunk := os.read(fd, max(size, 1 << 16)):
                parts.append(chunk)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            os.close(fd)

    def reader_at(self, digest: str) -> ReaderAt:
        fd = self._open_fd(digest)
        return ReaderAt(fd, digest, os.fstat(fd).st_size)

    def read_range(self, digest: str, offset: int, length: int) -> bytes:
        with self.reader_at(digest) as r:
            return r.read_at(offset, length)

    # --- ingester -----------------------------------------------------------------------

    def writer(
        self,
        ref: str,
        *,
        expected: str | None = None,
        size: int | None = None,
        lease: str | None = None,
    ) -> Writer:
        """Begin, or resume, the ingest named ``ref`` (a key of the caller's
        choosing, such as ``"layer-sha256:…"``).

        With ``expected`` the blob is hashed with that digest's algorithm, and a
        blob the store already has is refused at once with BlobExists. A second
        writer of the same ref raises IngestLocked while this one is open. With
        ``lease``, the lease holds the ingest and, once committed, the blob.
        """
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument(f"invalid ingest ref {ref!r}: want a non-empty string")
        if size is not None and size < 0:
            raise InvalidArgument(f"invalid size {size} for ingest {ref!r}")
        if expected is not None and self.exists(expected):
            raise BlobExists(f"blob {expected} already exists at {self.path(expected)}")
        if lease is not None:
            self.lease(lease).add_ingest(ref)
        return open_ingest(self.root, ref, expected, size, self._on_commit(lease, ref))

    def _on_commit(self, lease: str | None, ref: str) -> OnCommit:
        """What a commit records, under the gc lock: the lease's hold, the labels."""

        def record(digest: str, labels: dict[str, str] | None) -> None:
            if lease is None and not labels:
                return
            from portside.image.content_meta import CONTENT

            self.meta.commit_record(
                lease,
                CONTENT,
                [digest],
                drop_ingest=ref,
                labels=(digest, labels) if labels else None,
                locked=True,
            )

        return record

    def write_blob(
        self,
        data: bytes,
        expected: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        lease: str | None = None,
        durable: bool = True,
    ) -> str:
        """Store ``data`` and return its digest; a blob already stored is fine.
        ``expected`` is checked before anything touches the disk. ``durable`` as
        :meth:`Writer.commit`'s.

        The bytes go to an unnamed file (``O_TMPFILE``), synced, then linked under
        the blob's name: no ingest to make and remove, and nothing left by a crash.
        Where the file system has no ``O_TMPFILE``, through an ingest."""
        alg = parse_digest(expected)[0] if expected is not None else "sha256"
        digest = f"{alg}:{hashlib.new(alg, data).hexdigest()}"
        if expected is not None and digest != expected:
            raise DigestMismatch(f"blob {expected}: digest mismatch, got {digest}")
        if self._record_if_exists(digest, labels, lease):
            return digest
        if labels:
            validate_labels(labels)
        if self._write_unnamed(data, digest, labels, lease, durable):
            return digest
        ref = f"write-blob-{digest}-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            w = self.writer(ref, expected=digest, size=len(data), lease=lease)
        except BlobExists:
            if self._record_if_exists(digest, labels, lease):
                return digest
            raise
        with w:
            w.write(data)
            return w.commit(labels=labels, ok_if_exists=True, durable=durable)

    def _write_unnamed(
        self,
        data: bytes,
        digest: str,
        labels: dict[str, str] | None,
        lease: str | None,
        durable: bool,
    ) -> bool:
        """:meth:`write_blob` through ``O_TMPFILE``; False where it is not supported."""
        alg_dir = os.path.join(self.root, "blobs", parse_digest(digest)[0])
        try:
            fd = os.open(alg_dir, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o444)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return False
            raise os_error(exc, f"writing blob {digest} to {alg_dir}") from exc
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # the data before the name, always
            dfd = os.open(alg_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                new = self._link_unnamed(fd, dfd, digest, labels=labels, lease=lease)
                if new and durable:
                    os.fsync(dfd)
            finally:
                os.close(dfd)
        except FileNotFoundError as exc:  # no /proc to link from
            if exc.filename and str(exc.filename).startswith("/proc/"):
                return False
            raise os_error(exc, f"writing blob {digest} to {alg_dir}") from exc
        except OSError as exc:
            raise os_error(exc, f"writing blob {digest} to {alg_dir}") from exc
        finally:
            os.close(fd)
        return True

    def _link_unnamed(
        self,
        fd: int,
        dfd: int,
        digest: str,
        *,
        labels: dict[str, str] | None,
        lease: str | None,
    ) -> bool:
        """Name the unnamed file ``fd`` after ``digest`` in ``dfd`` (its algorithm's
        directory) under the shared gc lock, then record labels and lease (as a
        commit does); False if the blob existed."""
        name = parse_digest(digest)[1]
        lock = gc_lock(self.root, exclusive=False)
        try:
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
                new = True
            except FileExistsError:
                new = False
            self._on_commit(lease, "")(digest, labels)
            return new
        finally:
            os.close(lock)

    def _record_if_exists(
        self, digest: str, labels: dict[str, str] | None, lease: str | None
    ) -> bool:
        if not self.exists(digest):
            return False
        fd = gc_lock(self.root, exclusive=False)
        try:
            if not self.exists(digest):  # collected before we took the lock
                return False
            self._on_commit(lease, "")(digest, labels)
            return True
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make the names of the blobs committed with ``durable=False`` durable (their
        bytes were synced at commit): an ``fsync`` of each ``blobs/<alg>``
        directory, not a ``syncfs`` — that would also wait for everything else
        written on the file system, such as the files of layers just unpacked."""
        for alg in ALGORITHMS:
            path = os.path.join(self.root, "blobs", alg)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise os_error(exc, f"syncing {path}") from exc

    # --- manager ------------------------------------------------------------------------

    def delete(self, digest: str) -> None:
        path = self.path(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found at {path}") from None
        except OSError as exc:
            raise os_error(exc, f"deleting blob {digest} at {path}") from exc
        if self._has_meta():
            self.meta.drop_labels([digest])

    def update_labels(self, digest: str, labels: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``labels`` into the blob's (a value of None removes that key);
        returns the labels it has now."""
        if not self.exists(digest):
            raise BlobNotFound(f"blob {digest} not found at {self.path(digest)}")
        self.meta.update_labels(digest, labels)
        return self.meta.labels(digest)

    def usage(self) -> tuple[int, int]:
        """(number of blobs, their total size in bytes — apparent size, as Docker reports)."""
        count = total = 0
        for _digest, st in self._scan():
            count += 1
            total += st.st_size
        return count, total

    def _scan(self) -> Iterator[tuple[str, os.stat_result]]:
        """(digest, lstat) of every regular file in blobs/ named like a digest."""
        for alg, length in ALGORITHMS.items():
            try:
                entries = list(os.scandir(os.path.join(self.root, "blobs", alg)))
            except FileNotFoundError:
                continue
            for entry in entries:
                name = entry.name
                if len(name) != length or not all(c in "0123456789abcdef" for c in name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we looked
                if entry.is_file(follow_symlinks=False):
                    yield f"{alg}:{name}", st

    # --- ingests ------------------------------------------------------------------------

    def ingests(self) -> list[IngestStatus]:
        """Every well-formed ingest, open or waiting to be resumed, by ref."""
        out = []
        for name in self._ingest_names():
            status = probe_ingest(os.path.join(self.root, "ingest", name))
            if status is not None:
                out.append(status)
        return sorted(out, key=lambda s: s.ref)

    def _ingest_names(self) -> list[str]:
        try:
            return [n for n in os.listdir(os.path.join(self.root, "ingest")) if n[0] != "."]
        except FileNotFoundError:
            return []

    def abort(self, ref: str) -> None:
        """Remove the ingest of ``ref``; IngestLocked while a writer has it open."""
        dfd = ingest_lookup(self.root, ref)
        try:
            remove_ingest(ingest_dir(self.root, ref), dfd)
        finally:
            os.close(dfd)

    def abort_stale(self, older_than: float) -> list[str]:
        """Remove ingests not written to for ``older_than`` seconds, unless open or
        held by a live lease; returns their refs (or directory names, for ingests
        too damaged to have one)."""
        from portside.image.content_gc import sweep_ingests

        return sweep_ingests(self, time.time() - older_than, dry_run=False)

    # --- leases, gc, check --------------------------------------------------------------

    def create_lease(self, lease_id: str, expires_at: float | None = None) -> Lease:
        """A new lease; ``expires_at`` (unix time) lets gc drop it if it is forgotten."""
        return self.meta.create_lease(lease_id, expires_at)

    def lease(self, lease_id: str) -> Lease:
        return self.meta.get_lease(lease_id)

    def leases(self) -> list[Lease]:
        return self.meta.leases() if self._has_meta() else []

    def delete_lease(self, lease_id: str) -> None:
        self.meta.delete_lease(lease_id)

    def gc(
        self,
        roots: Iterable[str],
        refs: Callable[[str], Iterable[str]] | None = None,
        *,
        dry_run: bool = False,
    ) -> GCResult:
        """Remove every blob not reachable from ``roots`` or a live lease; see
        ``content_gc.collect``."""
        from portside.image.content_gc import collect

        return collect(self, roots, refs, dry_run=dry_run)

    def check(self, *, quick: bool = False, sizes: Mapping[str, int] | None = None) -> list[str]:
        """Problems found in the store, one sentence each; empty when consistent.
        See ``content_check.check``."""
        from portside.image.content_check import check

        return check(self, quick=quick, sizes=sizes)

    def list(self) -> Iterator[BlobInfo]:
        """Every committed blob, with its labels."""
        all_labels = self.meta.all_labels() if self._has_meta() else {}
        for digest, st in self._scan():
            yield BlobInfo(digest, st.st_size, st.st_mtime, all_labels.get(digest, {}))
