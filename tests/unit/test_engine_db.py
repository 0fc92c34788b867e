"""The engine's state store: round trips, migrations by number, and consistency after
the writer is killed with SIGKILL at arbitrary moments."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from portside.engine import db as dbmod
from portside.engine.db import CREATING, READY, Store
from portside.engine.model import Container, ContainerState, ExecConfig
from portside.errors import Conflict, Internal, NotFound


def _container(n: int, name: str | None = None) -> Container:
    return Container(
        id=f"{n:064x}",
        name=name or f"c{n}",
        image="busybox",
        image_id="sha256:" + "ab" * 32,
        created="2026-11-28T03:30:19.123456789Z",
        config={"Cmd": ["sh"], "Labels": {"a": "b"}},
        host_config={"AutoRemove": False},
        state=ContainerState(status="running", pid=42, health={"Status": "healthy"}),
        mounts=[{"Type": "volume", "Name": "v"}],
        exec_ids=["e1"],
    )


def test_round_trip(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "engine.db"))
    c = _container(1)
    store.insert_container(c)
    assert store.get_container(c.id) == (CREATING, c)
    c.state.status, c.name = "exited", "renamed"
    store.save_container(c, READY)
    store.close()
    again = Store(str(tmp_path / "engine.db"))
    assert again.containers() == [(READY, c)]
    e = ExecConfig(id="e1", container_id=c.id, cmd=["ls", "-l"], tty=True, exit_code=3)
    again.save_exec(e)
    assert again.execs() == [e]
    again.delete_container(c.id)
    assert again.containers() == [] and again.execs() == []
    with pytest.raises(NotFound, match="No such container"):
        again.get_container(c.id)


def test_names_are_unique(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "engine.db"))
    store.insert_container(_container(1, "same"))
    with pytest.raises(Conflict):
        store.insert_container(_container(2, "same"))
    store.insert_container(_container(3, "other"))
    other = _container(3, "same")
    with pytest.raises(Conflict):
        store.save_container(other)
    assert [c.name for _, c in store.containers()] == ["same", "other"]


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    """A row written by a newer portside with extra fields still loads."""
    doc = dbmod.container_to_doc(_container(1))
    assert dbmod.container_from_doc(doc.replace('"platform"', '"future":1,"platform"'))


def test_migrations_run_once_by_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "engine.db")
    store = Store(path)
    assert store.schema_version() == len(dbmod.MIGRATIONS)
    store.insert_container(_container(1))
    store.close()
    added = ("ALTER TABLE containers ADD COLUMN note TEXT DEFAULT 'x'",)
    monkeypatch.setattr(dbmod, "MIGRATIONS", (*dbmod.MIGRATIONS, added))
    store = Store(path)
    assert store.schema_version() == len(dbmod.MIGRATIONS)
    assert [c.id for _, c in store.containers()] == [_container(1).id]
    store.close()
    Store(path).close()  # applied already: an ALTER run twice would fail here
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT note FROM containers").fetchall() == [("x",)]
    conn.close()


def test_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "engine.db")
    Store(path).close()
    bad = ("CREATE TABLE extra (x)", "THIS IS NOT SQL")
    monkeypatch.setattr(dbmod, "MIGRATIONS", (*dbmod.MIGRATIONS, bad))
    with pytest.raises(Internal, match="engine database"):
        Store(path)
    monkeypatch.undo()
    store = Store(path)
    assert store.schema_version() == len(dbmod.MIGRATIONS)
    with pytest.raises(sqlite3.OperationalError):
        store._db.execute("SELECT * FROM extra")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.db")
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(Internal, match="schema version 99 is newer"):
        Store(path)


_WRITER = """
import sys
from portside.engine.db import Store
from portside.engine.model import Container, ExecConfig
store = Store(sys.argv[1])
start = int(sys.argv[2])
for n in range(start, start + 100000):
    c = Container(id=f"{n:064x}", name=f"c{n}", image="i", image_id="sha256:x",
                  created="t", config={"Cmd": ["x" * 2000]}, host_config={})
    store.insert_container(c)
    store.save_exec(ExecConfig(id=f"e{n}", container_id=c.id, cmd=["x"]))
    if n > start:
        store.delete_container(f"{n - 1:064x}")
    if n == start + 20:
        print("ready", flush=True)
"""


def test_consistent_after_sigkill(tmp_path: Path) -> None:
    """A writer killed mid-stream leaves whole transactions only: an exec row never
    outlives its container (both go in one transaction) and every document parses."""
    path = str(tmp_path / "engine.db")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    start = 0
    for delay in (0.0, 0.013, 0.031, 0.07):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, path, str(start)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        store = Store(path)
        rows = store.containers()
        ids = {c.id for _, c in rows}
        assert rows and all(c.config["Cmd"] == ["x" * 2000] for _, c in rows)
        assert all(e.container_id in ids for e in store.execs())
        assert store._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        store.close()
        start += 100000


def test_doc_is_what_asdict_gives() -> None:
    import dataclasses
    import json

    c = _container(7)
    c.config["Nested"] = {"list": [1, {"t": (1, 2)}], "none": None}
    expected = json.dumps(dataclasses.asdict(c), separators=(",", ":"))
    assert dbmod.container_to_doc(c) == expected
    assert dbmod.container_from_doc(expected) == dbmod.container_from_doc(dbmod.container_to_doc(c))
