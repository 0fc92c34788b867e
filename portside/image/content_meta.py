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
"""

from __future__ import annotations

import os
import sqlite3
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
    """The store's SQLite database; one short connection per operation, so it is
    safe across threads and ``fork``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "meta.db")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
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
                conn.close()
                raise FailedPrecondition(
                    f"{self.path} has schema version {version}, newer than this portside"
                    f" ({SCHEMA_VERSION})"
                )
        except sqlite3.Error as exc:
            raise _db_error(exc, f"opening {self.path}") from exc
        return conn

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not os.path.exists(self.path):
            return []
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> int:
        """Run ``statements`` in one transaction; returns the number of rows changed."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                conn.execute(sql, args)
            conn.execute("COMMIT")
            return conn.total_changes
        except sqlite3.Error as exc:
            raise _db_error(exc, f"writing {self.path}") from exc
        finally:
            conn.close()

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
        self._write(
            *(
                ("DELETE FROM labels WHERE digest = ? AND key = ?", (digest, key))
                if value is None
                else ("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", (digest, key, value))
                for key, value in changes.items()
            )
        )

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
        fd = -1 if locked else gc_lock(self.root, exclusive=False)
        try:
            self.get_lease(lease_id)
            statements = [
                ("INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?)", (lease_id, kind, name))
            ]
            if drop_ingest:
                statements.append(
                    (
                        "DELETE FROM lease_resources WHERE lease = ? AND kind = ? AND name = ?",
                        (lease_id, INGEST, drop_ingest),
                    )
                )
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
