"""Labels and leases of the content store, in SQLite (``<root>/meta.db``).

Why SQLite rather than a JSON sidecar per blob: labels and leases are small rows
changed by several processes at once (the daemon, the registry, a ``check`` from
the CLI), a lease gains blobs one by one during a pull while gc reads every
lease, and label changes are read-modify-write. SQLite gives transactions and
locking for all of that; sidecars would need a lock and a rename per change and
a directory scan per gc. The blobs stay the truth of what exists: a label of a
blob that is gone is ignored (and dropped by ``delete`` and gc). The module is
imported, and the database opened, only when labels or leases are used: reading
and writing blobs never touch it.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``: a
transaction is atomic and survives a crash of the process, but a power loss may
take back the last ones (the database stays consistent). Nothing here needs
more: a lease only protects an operation that is still running, and labels are
hints (where a blob came from, which compressed blob a layer has). A commit
costs no ``fsync``; the WAL reaches the disk at checkpoints.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from portside.errors import FailedPrecondition, Internal, InvalidArgument, PortsideError
from portside.image.content_common import (
    LeaseExists,
    LeaseNotFound,
    NoSpace,
    gc_lock,
    parse_digest,
    validate_labels,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Lease", "MetaDB"]

#: connections a forked child inherited: kept referenced, so never closed in the child
_INHERITED: list[sqlite3.Connection] = []
#: one lock per database file, taken around write transactions: the threads of a
#: process queue on it rather than on SQLite's busy handler, which sleeps
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_PID = [os.getpid()]


def _write_lock(path: str) -> threading.Lock:
    """The lock of ``path`` (new ones in a forked child: a lock never crosses fork)."""
    if _LOCKS_PID[0] != os.getpid():
        _WRITE_LOCKS.clear()
        _LOCKS_PID[0] = os.getpid()
    lock = _WRITE_LOCKS.get(path)
    if lock is None:  # setdefault is atomic under the GIL: every thread gets the same
        lock = _WRITE_LOCKS.setdefault(path, threading.Lock())
    return lock


SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE labels (
    digest TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (digest, key)) WITHOUT ROWID;
CREATE TABLE leases (id TEXT PRIMARY KEY, created REAL NOT NULL, expires_at REAL);
CREATE TABLE lease_resources (
    lease TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (lease, kind, name)) WITHOUT ROWID;
"""
CONTENT = "content"
INGEST = "ingest"


def _validate_lease_id(lease_id: str) -> None:
    ok = isinstance(lease_id, str) and 0 < len(lease_id) <= 256
    if not ok or not lease_id.isprintable():
        raise InvalidArgument(f"invalid lease id {lease_id!r}: want 1-256 printable characters")


class MetaDB:
    """The store's SQLite database. Each thread keeps its connection open between
    operations (opening one, and the WAL checkpoint when the last one closes, cost
    more than most operations); a forked child opens its own, as a connection never
    crosses ``fork``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "meta.db")
        self._local = threading.local()
        self._exists = False

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                self._check_version(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise _db_error(exc, f"opening {self.path}") from exc
        self._exists = True
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        elif version > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"{self.path} has schema version {version}, newer than this portside"
                f" ({SCHEMA_VERSION})"
            )

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, its schema version checked (it is cheap)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            try:
                self._check_version(conn)
            except BaseException:
                self._drop(conn)
                raise
            return conn
        if conn is not None:
            _INHERITED.append(conn)  # the parent's: neither used nor closed here
        local.conn = None
        conn = self._connect()
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Forget ``conn`` after an error: the thread's next operation reconnects."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close this thread's connection (the next operation opens another)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            self._drop(conn)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not self._exists and not os.path.exists(self.path):
            return []
        try:
            conn = self._conn()
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _db_error(exc, f"reading {self.path}") from exc

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> int:
        """Run ``statements`` in one transaction; returns the number of rows changed."""
        conn = None
        try:
            conn = self._conn()
            before = conn.total_changes
            with _write_lock(self.path):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements:
                        conn.execute(sql, args)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            return conn.total_changes - before
        except sqlite3.Error as exc:
            if conn is not None:
                self._drop(conn)
            raise _db_error(exc, f"writing {self.path}") from exc

    # --- labels -------------------------------------------------------------------------

    def labels(self, digest: str) -> dict[str, str]:
        rows = self._read("SELECT key, value FROM labels WHERE digest = ?", (digest,))
        return {str(k): str(v) for k, v in rows}

    def all_labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for digest, key, value in self._read("SELECT digest, key, value FROM labels"):
            out.setdefault(str(digest), {})[str(key)] = str(value)
        return out

    def update_labels(self, digest: str, changes: Mapping[str, str | None]) -> None:
        validate_labels(changes)
        self._write(*_label_changes(digest, changes))

    def drop_labels(self, digests: Iterable[str]) -> None:
        self._write(*(("DELETE FROM labels WHERE digest = ?", (d,)) for d in digests))

    # --- leases -------------------------------------------------------------------------

    def create_lease(self, lease_id: str, expires_at: float | None) -> Lease:
        _validate_lease_id(lease_id)
        created = time.time()
        sql = "INSERT OR IGNORE INTO leases VALUES (?, ?, ?)"
        if not self._write((sql, (lease_id, created, expires_at))):
            raise LeaseExists(f"lease {lease_id!r} already exists in {self.path}")
        return Lease(self, lease_id, created, expires_at)

    def get_lease(self, lease_id: str) -> Lease:
        rows = self._read("SELECT created, expires_at FROM leases WHERE id = ?", (lease_id,))
        if not rows:
            raise LeaseNotFound(f"lease {lease_id!r} does not exist in {self.path}")
        created, expires_at = rows[0]
        return Lease(self, lease_id, float(created), expires_at)  # type: ignore[arg-type]

    def leases(self) -> list[Lease]:
        rows = self._read("SELECT id, created, expires_at FROM leases ORDER BY id")
        return [Lease(self, str(i), float(c), e) for i, c, e in rows]  # type: ignore[arg-type]

    def delete_lease(self, lease_id: str) -> None:
        self.get_lease(lease_id)
        self._write(
            ("DELETE FROM lease_resources WHERE lease = ?", (lease_id,)),
            ("DELETE FROM leases WHERE id = ?", (lease_id,)),
        )

    def lease_add(
        self, lease_id: str, kind: str, name: str, *, drop_ingest: str = "", locked: bool = False
    ) -> None:
        """Record that the lease holds ``name``; with ``drop_ingest``, in the same
        transaction forget the ingest ref whose commit made it. Takes the shared gc
        lock unless the caller holds it (``locked``): never while gc is marking."""
        self.lease_add_all(lease_id, kind, [name], drop_ingest=drop_ingest, locked=locked)

    def lease_add_all(
        self,
        lease_id: str,
        kind: str,
        names: Iterable[str],
        *,
        drop_ingest: str = "",
        locked: bool = False,
    ) -> None:
        """:meth:`lease_add` of several names, in one transaction."""
        self.commit_record(lease_id, kind, names, drop_ingest=drop_ingest, locked=locked)

    def commit_record(
        self,
        lease_id: str | None,
        kind: str,
        names: Iterable[str],
        *,
        drop_ingest: str = "",
        labels: tuple[str, Mapping[str, str | None]] | None = None,
        locked: bool = False,
    ) -> None:
        """In one transaction: the lease ``lease_id`` (if any) holds ``names`` and
        forgets ``drop_ingest``; ``labels`` = (digest, changes) are merged into that
        blob's labels. What a commit records (see :meth:`lease_add` for ``locked``)."""
        statements: list[tuple[str, tuple[object, ...]]] = []
        if labels is not None and labels[1]:
            validate_labels(labels[1])
            statements += _label_changes(*labels)
        fd = -1 if locked or lease_id is None else gc_lock(self.root, exclusive=False)
        try:
            if lease_id is not None:
                self.get_lease(lease_id)
                sql = "INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?)"
                statements += [(sql, (lease_id, kind, name)) for name in names]
                if drop_ingest:
                    statements.append(
                        (
                            "DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND name = ?",
                            (lease_id, INGEST, drop_ingest),
                        )
                    )
            if statements:
                self._write(*statements)
        finally:
            if fd >= 0:
                os.close(fd)

    def lease_remove(self, lease_id: str, kind: str, name: str) -> None:
        self._write(
            (
                "DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND name = ?",
                (lease_id, kind, name),
            )
        )

    def lease_items(self, lease_id: str, kind: str) -> set[str]:
        rows = self._read(
            "SELECT name FROM lease_resources WHERE lease = ? AND kind = ?", (lease_id, kind)
        )
        return {str(r[0]) for r in rows}

    def protected(self, now: float) -> tuple[set[str], set[str], list[str]]:
        """What live leases hold: (digests, ingest refs), and the ids of expired leases."""
        rows = self._read(
            "SELECT r.kind, r.name FROM lease_resources r JOIN leases l ON l.id = r.lease"
            " WHERE l.expires_at IS NULL OR l.expires_at > ?",
            (now,),
        )
        digests = {str(n) for k, n in rows if k == CONTENT}
        refs = {str(n) for k, n in rows if k == INGEST}
        expired = self._read("SELECT id FROM leases WHERE expires_at <= ?", (now,))
        return digests, refs, [str(r[0]) for r in expired]

    def iter_ids(self) -> Iterator[str]:
        for row in self._read("SELECT id FROM leases"):
            yield str(row[0])


def _label_changes(
    digest: str, changes: Mapping[str, str | None]
) -> list[tuple[str, tuple[object, ...]]]:
    """The statements that merge ``changes`` into the labels of ``digest``."""
    return [
        ("DELETE FROM labels WHERE digest = ? AND key = ?", (digest, key))
        if value is None
        else ("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", (digest, key, value))
        for key, value in changes.items()
    ]


def _db_error(exc: sqlite3.Error, what: str) -> PortsideError:
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return NoSpace(f"no space left on device {what}")
    return Internal(f"{str(exc).lower()} {what}")


class Lease:
    """A named hold on blobs and ingests: while it lives (and has not expired),
    gc keeps what it holds. Used as a context manager, it is deleted on exit —
    the shape of a pull: lease, write, tag, let go."""

    __slots__ = ("_db", "created", "expires_at", "id")

    def __init__(self, db: MetaDB, lease_id: str, created: float, expires_at: float | None) -> None:
        self._db = db
        self.id = lease_id
        self.created = created
        self.expires_at = expires_at

    def add(self, digest: str) -> None:
        """Hold the blob ``digest`` (it need not exist yet)."""
        parse_digest(digest)
        self._db.lease_add(self.id, CONTENT, digest)

    def add_all(self, digests: Iterable[str]) -> None:
        """Hold every blob of ``digests``, in one transaction."""
        digests = list(digests)
        for digest in digests:
            parse_digest(digest)
        self._db.lease_add_all(self.id, CONTENT, digests)

    def remove(self, digest: str) -> None:
        self._db.lease_remove(self.id, CONTENT, digest)

    def add_ingest(self, ref: str) -> None:
        """Hold the ingest of ``ref`` (``ContentStore.writer(lease=...)`` does this)."""
        self._db.lease_add(self.id, INGEST, ref)

    def digests(self) -> set[str]:
        return self._db.lease_items(self.id, CONTENT)

    def refs(self) -> set[str]:
        return self._db.lease_items(self.id, INGEST)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())

    def delete(self) -> None:
        self._db.delete_lease(self.id)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"Lease(id={self.id!r}, expires_at={self.expires_at})"
