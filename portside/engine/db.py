"""The engine's state store: SQLite in WAL mode at ``Paths.db``.

Every container is one row: its ID, its unique name, its phase (``creating`` while
create is half done, ``ready`` afterwards) and the JSON of its
:class:`~portside.engine.model.Container`. Exec instances are rows of their own, and
so are networks (their record and their IPAM state, :mod:`portside.engine.networks`).
Every write is one transaction, so a daemon killed at any instant leaves either the
old or the new row, never half of one. The schema is versioned: ``MIGRATIONS`` is
applied in order, each in its own transaction with the version bump.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from typing import Any

from portside.engine.model import Container, ContainerState, ExecConfig
from portside.errors import Conflict, Internal, NotFound

__all__ = ["CREATING", "MIGRATIONS", "READY", "Store", "container_from_doc", "container_to_doc"]

CREATING, READY = "creating", "ready"

#: schema version N is reached by running MIGRATIONS[N - 1]
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " phase TEXT NOT NULL, doc TEXT NOT NULL)",
        "CREATE TABLE execs (id TEXT PRIMARY KEY, container_id TEXT NOT NULL, doc TEXT NOT NULL)",
        "CREATE INDEX execs_by_container ON execs (container_id)",
    ),
    (  # 2: networks (issue 5): the record as JSON, the IPAM state (AddressSpace.to_dict())
        "CREATE TABLE networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " doc TEXT NOT NULL, ipam TEXT NOT NULL DEFAULT '')",
    ),
)


_CONTAINER_FIELDS = tuple(f.name for f in dataclasses.fields(Container))
_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(ContainerState))


def container_to_doc(c: Container) -> str:
    """The JSON of ``c``: what ``json.dumps(dataclasses.asdict(c))`` gives, without
    asdict's deep copy of every dict and list (this runs on every state change)."""
    doc = {name: getattr(c, name) for name in _CONTAINER_FIELDS}
    doc["state"] = {name: getattr(c.state, name) for name in _STATE_FIELDS}
    return _COMPACT.encode(doc)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # made once: dumps makes one per call


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def container_from_doc(doc: str) -> Container:
    data = json.loads(doc)
    state = ContainerState(**_known(ContainerState, data.pop("state", None) or {}))
    return Container(state=state, **_known(Container, data))


def exec_from_doc(doc: str) -> ExecConfig:
    return ExecConfig(**_known(ExecConfig, json.loads(doc)))


class Store:
    """The containers and execs tables; safe to share between threads."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after a crash
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except sqlite3.Error as exc:
            raise Internal(f"opening the engine database {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- schema ---------------------------------------------------------------

    def schema_version(self) -> int:
        with self._lock:
            return self._version()

    def _version(self) -> int:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self._lock:
            version = self._version()
            if version > len(MIGRATIONS):
                raise Internal(
                    f"{self.path}: schema version {version} is newer than this portside"
                    f" ({len(MIGRATIONS)})"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql in MIGRATIONS[number - 1]:
                        self._db.execute(sql)
                    self._db.execute("DELETE FROM schema_version")
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (number,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` as one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- containers -------------------------------------------------------------

    def insert_container(self, c: Container, phase: str = CREATING) -> None:
        """Add ``c``; Conflict (with Docker's message, by the caller) if the name is taken."""
        try:
            self._write(
                [
                    (
                        "INSERT INTO containers (id, name, phase, doc) VALUES (?, ?, ?, ?)",
                        (c.id, c.name, phase, container_to_doc(c)),
                    )
                ]
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"container name {c.name!r} or id {c.id} is already in use") from exc

    def save_container(self, c: Container, phase: str = READY) -> None:
        """Replace the row of ``c`` (its name too)."""
        try:
            self._write(
                [
                    (
                        "UPDATE containers SET name = ?, phase = ?, doc = ? WHERE id = ?",
                        (c.name, phase, container_to_doc(c), c.id),
                    )
                ]
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"container name {c.name!r} is already in use") from exc

    def delete_container(self, cid: str) -> None:
        """Drop the container and its execs, in one transaction."""
        self._write(
            [
                ("DELETE FROM execs WHERE container_id = ?", (cid,)),
                ("DELETE FROM containers WHERE id = ?", (cid,)),
            ]
        )

    def containers(self) -> list[tuple[str, Container]]:
        """Every container as (phase, container)."""
        with self._lock:
            rows = self._db.execute("SELECT phase, doc FROM containers ORDER BY rowid").fetchall()
        return [(phase, container_from_doc(doc)) for phase, doc in rows]

    def get_container(self, cid: str) -> tuple[str, Container]:
        with self._lock:
            row = self._db.execute(
                "SELECT phase, doc FROM containers WHERE id = ?", (cid,)
            ).fetchone()
        if row is None:
            raise NotFound(f"No such container: {cid}")
        return row[0], container_from_doc(row[1])

    # --- execs ------------------------------------------------------------------

    def save_exec(self, e: ExecConfig) -> None:
        doc = json.dumps(dataclasses.asdict(e), separators=(",", ":"))
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO execs (id, container_id, doc) VALUES (?, ?, ?)",
                    (e.id, e.container_id, doc),
                )
            ]
        )

    def execs(self) -> list[ExecConfig]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM execs ORDER BY rowid").fetchall()
        return [exec_from_doc(doc) for (doc,) in rows]

    def delete_exec(self, exec_id: str) -> None:
        self._write([("DELETE FROM execs WHERE id = ?", (exec_id,))])

    # --- networks ---------------------------------------------------------------

    def save_network(self, nid: str, name: str, doc: dict[str, Any], ipam: dict | None) -> None:
        """Insert or replace network ``nid``; Conflict if another network has ``name``."""
        try:
            self._write(
                [
                    (
                        "INSERT OR REPLACE INTO networks (id, name, doc, ipam) VALUES (?, ?, ?, ?)",
                        (nid, name, _dumps(doc), _dumps(ipam) if ipam is not None else ""),
                    )
                ]
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"network with name {name} already exists") from exc

    def save_ipam(self, nid: str, ipam: dict[str, Any]) -> None:
        """Record the IPAM state of network ``nid`` (after every allocate/release)."""
        self._write([("UPDATE networks SET ipam = ? WHERE id = ?", (_dumps(ipam), nid))])

    def delete_network(self, nid: str) -> None:
        self._write([("DELETE FROM networks WHERE id = ?", (nid,))])

    def networks(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Every network as (record, IPAM state or None), in creation order."""
        with self._lock:
            rows = self._db.execute("SELECT doc, ipam FROM networks ORDER BY rowid").fetchall()
        return [(json.loads(doc), json.loads(ipam) if ipam else None) for doc, ipam in rows]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
