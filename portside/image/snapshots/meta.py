"""The snapshotters' metadata: one SQLite database (WAL), schema-versioned.

A row per snapshot: its integer ``id`` (the name of its directory, never reused:
``AUTOINCREMENT``), the caller's ``key``, its kind, its parent's id, times, and for
committed snapshots the usage measured at commit. Labels in their own table.

Every snapshotter operation is one :class:`Transaction` (``BEGIN IMMEDIATE``): the
row and the directory change together, in the order that keeps the rule *never a
row without a directory* — a directory is made before its row commits and removed
after its row is gone; a crash leaves at most a directory without a row, which
``cleanup()`` removes.

Migrations: ``_MIGRATIONS[n]`` takes the schema from version ``n`` to ``n + 1``;
a database newer than this code is refused rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from portside.errors import FailedPrecondition, Internal, InvalidArgument
from portside.image.content_common import validate_labels
from portside.image.snapshots import (
    ACTIVE,
    COMMITTED,
    VIEW,
    Info,
    SnapshotExists,
    SnapshotInUse,
    SnapshotNotFound,
    WrongKind,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["SCHEMA_VERSION", "MetaStore", "Snapshot", "Transaction", "validate_key"]

_MIGRATIONS = (
    """
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
        parent INTEGER REFERENCES snapshots (id),
        created REAL NOT NULL,
        updated REAL NOT NULL,
        size INTEGER,
        inodes INTEGER);
    CREATE INDEX snapshots_parent ON snapshots (parent);
    CREATE TABLE labels (
        snapshot INTEGER NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (snapshot, key)) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
#: connections a forked child inherited: kept referenced, so never closed in the child
_INHERITED: list[sqlite3.Connection] = []
MAX_KEY = 4096
#: parent chains cached per store (see MetaStore._chains)
_MAX_CHAINS = 4096

_CHAIN = """
WITH RECURSIVE chain (id, parent, depth) AS (
    SELECT id, parent, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent)
SELECT id FROM chain WHERE depth > 0 ORDER BY depth
"""
_INFO = """
SELECT s.id, s.key, s.kind, p.key, s.created, s.updated
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent
"""


def validate_key(key: str, what: str = "key") -> None:
    """Refuse a snapshot key that is not a non-empty string of printable characters."""
    ok = isinstance(key, str) and 0 < len(key) <= MAX_KEY
    if not ok or not key.isprintable():
        raise InvalidArgument(
            f"invalid snapshot {what} {key!r}: want 1-{MAX_KEY} printable characters"
        )


class Snapshot:
    """What a snapshotter needs of a row: its id, kind and parent chain (nearest first)."""

    __slots__ = ("id", "key", "kind", "parent_ids")

    def __init__(self, id: int, key: str, kind: str, parent_ids: list[int]) -> None:
        self.id = id
        self.key = key
        self.kind = kind
        self.parent_ids = parent_ids

    def __repr__(self) -> str:
        return f"Snapshot(id={self.id}, key={self.key!r}, kind={self.kind!r})"


class MetaStore:
    """The database at ``path``; one connection per thread, kept open between
    transactions (opening and closing one costs more than most transactions). A
    forked child opens its own: a connection never crosses ``fork``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        #: id -> parent chain of snapshots seen: a chain never changes (parents are
        #: fixed, ids never reused), and a pull asks for one per layer, 200 deep
        self._chains: dict[int, tuple[int, ...]] = {}

    def transaction(self, *, write: bool = True, durable: bool = True) -> Transaction:
        """A transaction (a context manager): committed on a clean exit, rolled back
        when the block raises. A write is on disk when the block ends; one that is
        not ``durable`` is only atomic (``synchronous=NORMAL``: a power loss may
        take it back, with every later one, until the next durable commit or a
        ``syncfs`` of the file system)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            if conn is not None:
                _INHERITED.append(conn)  # the parent's: neither used nor closed here
            local.conn = None
            conn = self._connect()
            local.conn, local.pid, local.lazy = conn, os.getpid(), False
        elif conn.in_transaction:  # a transaction inside another one: a connection of its own
            return Transaction(
                self._connect(), self.path, write, durable=durable, chains=self._chains
            )
        else:
            self._check_version(conn)
        return Transaction(
            conn,
            self.path,
            write,
            keep=self._forget,
            durable=durable,
            chains=self._chains,
            state=local,
        )

    def _forget(self, conn: sqlite3.Connection) -> None:
        """Drop ``conn`` (after an error): the thread's next transaction reconnects."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise Internal(f"{str(exc).lower()} opening {self.path}") from exc
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_version(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise Internal(f"{str(exc).lower()} reading {self.path}") from exc
        if version != SCHEMA_VERSION:
            _migrate(conn, self.path)

    def schema_version(self) -> int:
        conn = self._connect()
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            conn.execute("ROLLBACK")
            raise FailedPrecondition(
                f"{path} has schema version {version}, newer than this portside ({SCHEMA_VERSION})"
            )
        for script in _MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise Internal(f"{str(exc).lower()} migrating {path}") from exc


class Transaction:
    """One operation's view of the database; see :meth:`MetaStore.transaction`.

    ``keep``: the connection is the thread's, kept open afterwards; on an error it
    is handed to ``keep`` to be dropped. Without it the connection is closed."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        write: bool,
        keep: Callable[[sqlite3.Connection], None] | None = None,
        *,
        durable: bool = True,
        chains: dict[int, tuple[int, ...]] | None = None,
        state: threading.local | None = None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._write = write
        self._keep = keep
        self._lazy = write and not durable
        self._chains = chains if chains is not None else {}
        #: the thread's cached connection remembers its synchronous mode there
        self._state = state

    def _release(self, failed: bool) -> None:
        if self._keep is None:
            self._conn.close()
        elif failed or self._conn.in_transaction:
            self._keep(self._conn)

    def __enter__(self) -> Transaction:
        try:
            if self._write:
                self._set_synchronous()
            self._conn.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
        except sqlite3.Error as exc:
            self._release(True)
            raise Internal(f"{str(exc).lower()} starting a transaction on {self._path}") from exc
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        failed = True
        try:
            self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
            failed = False
        except sqlite3.Error as err:
            if exc_type is None:
                raise Internal(f"{str(err).lower()} committing {self._path}") from err
        finally:
            self._release(failed)

    def _set_synchronous(self) -> None:
        """``synchronous`` for this write: NORMAL when not durable, else FULL (the
        default), changed only when the connection has the other."""
        state = self._state
        if state is not None and getattr(state, "lazy", False) == self._lazy:
            return
        self._conn.execute(f"PRAGMA synchronous = {'NORMAL' if self._lazy else 'FULL'}")
        if state is not None:
            state.lazy = self._lazy

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise Internal(f"{str(exc).lower()} in {self._path}") from exc

    # --- reads ---------------------------------------------------------------------

    def get(self, key: str) -> Snapshot:
        """The snapshot ``key`` with its parent chain, or SnapshotNotFound."""
        rows = self._rows("SELECT id, kind, parent FROM snapshots WHERE key = ?", (key,))
        if not rows:
            raise SnapshotNotFound(f"snapshot {key!r} does not exist")
        sid, kind, parent = int(rows[0][0]), str(rows[0][1]), rows[0][2]  # type: ignore[call-overload]
        if parent is None:
            return Snapshot(sid, key, kind, [])
        above = self._chains.get(int(parent))  # type: ignore[call-overload]
        if above is None:
            chain = [int(r[0]) for r in self._rows(_CHAIN, (sid,))]  # type: ignore[call-overload]
        else:
            chain = [int(parent), *above]  # type: ignore[call-overload]
        if len(self._chains) >= _MAX_CHAINS:
            self._chains.clear()
        self._chains[sid] = tuple(chain)
        return Snapshot(sid, key, kind, chain)

    def info(self, key: str) -> Info:
        rows = self._rows(_INFO + " WHERE s.key = ?", (key,))
        if not rows:
            raise SnapshotNotFound(f"snapshot {key!r} does not exist")
        return self._info(rows[0])

    def _info(self, row: tuple[object, ...]) -> Info:
        sid, key, kind, parent, created, updated = row
        labels = self._rows("SELECT key, value FROM labels WHERE snapshot = ?", (sid,))
        return Info(
            str(key),
            str(kind),
            None if parent is None else str(parent),
            {str(k): str(v) for k, v in labels},
            created=float(created),  # type: ignore[arg-type]
            updated=float(updated),  # type: ignore[arg-type]
        )

    def walk(self) -> list[Info]:
        """Every snapshot, by id (creation order)."""
        return [self._info(row) for row in self._rows(_INFO + " ORDER BY s.id")]

    def ids(self) -> set[int]:
        return {int(r[0]) for r in self._rows("SELECT id FROM snapshots")}  # type: ignore[call-overload]

    def stored_usage(self, key: str) -> tuple[int, int] | None:
        """The usage recorded at commit, or None (not committed or not measured)."""
        rows = self._rows("SELECT size, inodes FROM snapshots WHERE key = ?", (key,))
        if not rows or rows[0][0] is None:
            return None
        return int(rows[0][0]), int(rows[0][1])  # type: ignore[call-overload]

    # --- writes --------------------------------------------------------------------

    def create(
        self, kind: str, key: str, parent: str | None, labels: Mapping[str, str], now: float
    ) -> Snapshot:
        """Insert an active or view snapshot on top of committed ``parent``."""
        validate_labels(labels)
        chain = self.plan(kind, key, parent)
        sid = self._execute(
            "INSERT INTO snapshots (key, kind, parent, created, updated) VALUES (?, ?, ?, ?, ?)",
            (key, kind, chain[0] if chain else None, now, now),
        )
        self._set_labels(sid, labels)
        return Snapshot(sid, key, kind, chain)

    def plan(self, kind: str, key: str, parent: str | None) -> list[int]:
        """Check that ``key`` could be created on ``parent``; returns the parent chain."""
        validate_key(key)
        if kind not in (ACTIVE, VIEW):
            raise InvalidArgument(f"invalid snapshot kind {kind!r} for {key!r}")
        chain: list[int] = []
        if parent is not None:
            base = self.get(parent)
            if base.kind != COMMITTED:
                raise WrongKind(f"parent {parent!r} of {key!r} is {base.kind}, not committed")
            chain = [base.id, *base.parent_ids]
        if self._rows("SELECT 1 FROM snapshots WHERE key = ?", (key,)):
            raise SnapshotExists(f"snapshot {key!r} already exists")
        return chain

    def commit_active(
        self,
        key: str,
        name: str,
        labels: Mapping[str, str] | None,
        usage: tuple[int, int] | None,
        now: float,
    ) -> Snapshot:
        """Turn active ``key`` into committed ``name`` (same id, so same directory)."""
        validate_key(name, "name")
        if labels is not None:
            validate_labels(labels)
        snap = self.get(key)
        if snap.kind != ACTIVE:
            raise WrongKind(f"snapshot {key!r} is {snap.kind}, only an active one can be committed")
        if self._rows("SELECT 1 FROM snapshots WHERE key = ?", (name,)):
            raise SnapshotExists(f"snapshot {name!r} already exists")
        size, inodes = usage if usage is not None else (None, None)
        self._execute(
            "UPDATE snapshots SET key = ?, kind = ?, updated = ?, size = ?, inodes = ?"
            " WHERE id = ?",
            (name, COMMITTED, now, size, inodes, snap.id),
        )
        if labels is not None:
            self._execute("DELETE FROM labels WHERE snapshot = ?", (snap.id,))
            self._set_labels(snap.id, labels)
        return Snapshot(snap.id, name, COMMITTED, snap.parent_ids)

    def remove(self, key: str) -> Snapshot:
        """Delete the row of ``key``; refused while other snapshots descend from it."""
        snap = self.get(key)
        children = self._rows(
            "SELECT key FROM snapshots WHERE parent = ? ORDER BY id LIMIT 3", (snap.id,)
        )
        if children:
            names = ", ".join(repr(str(c[0])) for c in children)
            raise SnapshotInUse(f"cannot remove snapshot {key!r}: it is the parent of {names}")
        self._execute("DELETE FROM snapshots WHERE id = ?", (snap.id,))
        return snap

    def update(self, info: Info, fieldpaths: Sequence[str], now: float) -> Info:
        """Change the mutable fields of ``info.name``: ``labels`` (all of them) or
        ``labels.<key>`` (one; absent from ``info.labels`` means delete it)."""
        snap = self.get(info.name)
        validate_labels(info.labels)
        paths = list(fieldpaths) or ["labels"]
        for path in paths:
            if path == "labels":
                self._execute("DELETE FROM labels WHERE snapshot = ?", (snap.id,))
                self._set_labels(snap.id, info.labels)
            elif path.startswith("labels.") and len(path) > 7:
                label = path[7:]
                self._execute("DELETE FROM labels WHERE snapshot = ? AND key = ?", (snap.id, label))
                if label in info.labels:
                    self._set_labels(snap.id, {label: info.labels[label]})
            else:
                raise InvalidArgument(
                    f"cannot update field {path!r} of snapshot {info.name!r}: only labels"
                )
        self._execute("UPDATE snapshots SET updated = ? WHERE id = ?", (now, snap.id))
        return self.info(info.name)

    def add_labels(self, sid: int, labels: Mapping[str, str]) -> None:
        """Set ``labels`` on the snapshot ``sid``, keeping its others."""
        validate_labels(labels)
        self._set_labels(sid, labels)

    def labelled(self, label: str) -> list[tuple[int, str, str, str]]:
        """(id, key, kind, value) of every snapshot that has ``label``."""
        rows = self._rows(
            "SELECT s.id, s.key, s.kind, l.value FROM labels l JOIN snapshots s"
            " ON s.id = l.snapshot WHERE l.key = ? ORDER BY s.id",
            (label,),
        )
        return [(int(i), str(k), str(t), str(v)) for i, k, t, v in rows]  # type: ignore[call-overload]

    def clear_label(self, label: str, *, keys: Sequence[str] = (), ids: Sequence[int] = ()) -> int:
        """Remove ``label`` from the snapshots ``keys`` and all their ancestors, and
        from the snapshots ``ids``; returns how many lost it."""
        changed = 0
        if keys:
            marks = ", ".join("?" * len(keys))
            changed += self._count(
                "WITH RECURSIVE chain (id, parent) AS ("
                f" SELECT id, parent FROM snapshots WHERE key IN ({marks})"
                " UNION SELECT s.id, s.parent FROM snapshots s JOIN chain c ON s.id = c.parent)"
                " DELETE FROM labels WHERE key = ? AND snapshot IN (SELECT id FROM chain)",
                (*keys, label),
            )
        if ids:
            marks = ", ".join("?" * len(ids))
            changed += self._count(
                f"DELETE FROM labels WHERE key = ? AND snapshot IN ({marks})", (label, *ids)
            )
        return changed

    def descendants(self, ids: Sequence[int]) -> list[tuple[int, str, str]]:
        """(id, key, kind) of the snapshots ``ids`` and of every snapshot above them."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._rows(
            "WITH RECURSIVE tree (id) AS ("
            f" SELECT id FROM snapshots WHERE id IN ({marks})"
            " UNION SELECT s.id FROM snapshots s JOIN tree t ON s.parent = t.id)"
            " SELECT s.id, s.key, s.kind FROM snapshots s JOIN tree t ON s.id = t.id",
            tuple(ids),
        )
        return [(int(i), str(k), str(t)) for i, k, t in rows]  # type: ignore[call-overload]

    def delete_rows(self, ids: Sequence[int]) -> None:
        """Delete the rows ``ids`` in one statement (children and parents together)."""
        if ids:
            marks = ", ".join("?" * len(ids))
            self._execute(f"DELETE FROM snapshots WHERE id IN ({marks})", tuple(ids))

    def _count(self, sql: str, args: Sequence[object]) -> int:
        """Run ``sql``; the rows it changed (``rowcount`` is -1 for a ``WITH``)."""
        try:
            before = self._conn.total_changes
            self._conn.execute(sql, tuple(args))
            return self._conn.total_changes - before
        except sqlite3.Error as exc:
            raise Internal(f"{str(exc).lower()} in {self._path}") from exc

    def _set_labels(self, sid: int, labels: Mapping[str, str]) -> None:
        for key, value in labels.items():
            self._execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", (sid, key, value))

    def _execute(self, sql: str, args: Sequence[object]) -> int:
        """Run one statement; returns the last inserted rowid."""
        try:
            return int(self._conn.execute(sql, tuple(args)).lastrowid or 0)
        except sqlite3.Error as exc:
            raise Internal(f"{str(exc).lower()} in {self._path}") from exc


def db_path(root: str) -> str:
    return os.path.join(root, "metadata.db")
