"""The SQLite connections the engine keeps open between operations (snapshotter
metadata, image store): one per thread, none across fork, none poisoned by an error."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from portside.errors import FailedPrecondition
from portside.image.snapshots import SnapshotNotFound
from portside.image.snapshots.meta import SCHEMA_VERSION, MetaStore
from portside.image.store_db import ImageDB


@pytest.fixture
def meta(tmp_path: Path) -> MetaStore:
    return MetaStore(str(tmp_path / "metadata.db"))


def _conn_of(meta: MetaStore) -> object:
    return getattr(meta._local, "conn", None)


def test_a_thread_keeps_its_connection(meta: MetaStore) -> None:
    with meta.transaction() as tx:
        tx.create("active", "a", None, {}, 1.0)
    first = _conn_of(meta)
    with meta.transaction(write=False) as tx:
        assert tx.get("a").key == "a"
    assert first is not None and _conn_of(meta) is first
    seen: list[object] = []

    def other() -> None:
        with meta.transaction(write=False) as tx:
            seen.append(tx.get("a").key)
        seen.append(_conn_of(meta))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen[0] == "a" and seen[1] is not None and seen[1] is not first


def test_an_error_rolls_back_and_the_next_transaction_works(meta: MetaStore) -> None:
    with pytest.raises(RuntimeError), meta.transaction() as tx:
        tx.create("active", "gone", None, {}, 1.0)
        raise RuntimeError("boom")
    with pytest.raises(SnapshotNotFound), meta.transaction(write=False) as tx:
        tx.get("gone")
    with meta.transaction() as tx:
        tx.create("active", "kept", None, {}, 1.0)
    with meta.transaction(write=False) as tx:
        assert tx.get("kept").kind == "active"


def test_a_nested_transaction_gets_a_connection_of_its_own(meta: MetaStore) -> None:
    with meta.transaction(write=False) as outer:
        with pytest.raises(SnapshotNotFound):
            outer.get("x")
        with meta.transaction() as inner:
            inner.create("active", "x", None, {}, 1.0)
    with meta.transaction(write=False) as tx:
        assert tx.get("x").key == "x"


def test_a_newer_schema_is_refused_on_a_kept_connection(meta: MetaStore) -> None:
    with meta.transaction(write=False):
        pass
    conn = sqlite3.connect(meta.path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer than this portside"):
        meta.transaction()


def test_a_forked_child_opens_its_own_connection(meta: MetaStore) -> None:
    with meta.transaction() as tx:
        tx.create("active", "parent", None, {}, 1.0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            inherited = _conn_of(meta)
            with meta.transaction() as tx:
                tx.create("active", "child", None, {}, 1.0)
            code = 0 if _conn_of(meta) is not inherited else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with meta.transaction(write=False) as tx:  # the parent's connection still works
        assert tx.get("child").key == "child"


def test_image_db_reuses_its_connection(tmp_path: Path) -> None:
    db = ImageDB(str(tmp_path / "images.db"))
    assert db.read("SELECT COUNT(*) FROM images") == [(0,)]
    conn, cached = db.cached()
    assert cached
    db.release(conn, cached)

    def body(inner: sqlite3.Connection) -> object:
        # a read inside the transaction: a connection of its own, closed after
        assert db.read("SELECT COUNT(*) FROM images") == [(0,)]
        return inner

    assert db.transaction(body) is conn
    with pytest.raises(Exception, match="no such table"):
        db.read("SELECT * FROM nothing_here")
    again, cached = db.cached()  # an error drops the connection: a new one
    assert cached and again is not conn
    db.release(again, cached)
