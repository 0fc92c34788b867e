"""The snapshotters' metadata database, and the pure parts of the mount contract
(option parsing, lowerdir compaction, the mount sequence against a recording kernel)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from portside.image.snapshots import (
    PAGE_SIZE,
    Info,
    Mount,
    SnapshotExists,
    SnapshotInUse,
    SnapshotNotFound,
    WrongKind,
    _compact_lowerdir,
    _split_options,
    mount_all,
    unmount_all,
)
from portside.image.snapshots.meta import SCHEMA_VERSION, MetaStore
from portside.linux.kernel import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, RecordingKernel


@pytest.fixture
def meta(tmp_path: Path) -> MetaStore:
    return MetaStore(str(tmp_path / "metadata.db"))


def _chain(meta: MetaStore, *names: str) -> None:
    """Committed snapshots names[0] <- names[1] <- ..."""
    parent = None
    for name in names:
        with meta.transaction() as tx:
            tx.create("active", f"tmp-{name}", parent, {}, 1.0)
            tx.commit_active(f"tmp-{name}", name, None, (4096, 1), 2.0)
        parent = name


def test_new_database_is_current_and_wal(meta: MetaStore) -> None:
    assert meta.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(meta.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_newer_schema_is_refused(meta: MetaStore) -> None:
    conn = sqlite3.connect(meta.path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer than this portside"):
        meta.transaction()


def test_create_commit_chain(meta: MetaStore) -> None:
    _chain(meta, "a", "b", "c")
    with meta.transaction() as tx:
        snap = tx.create("active", "rw", "c", {"x": "1"}, 3.0)
        assert snap.kind == "active"
        assert [tx.get(k).id for k in ("c", "b", "a")] == snap.parent_ids
        info = tx.info("rw")
    assert info == Info("rw", "active", "c", {"x": "1"}, created=3.0, updated=3.0)
    with meta.transaction(write=False) as tx:
        assert tx.info("a").parent is None
        assert tx.stored_usage("a") == (4096, 1)
        assert tx.stored_usage("rw") is None
        assert [i.name for i in tx.walk()] == ["a", "b", "c", "rw"]


def test_errors(meta: MetaStore) -> None:
    _chain(meta, "base")
    with meta.transaction() as tx:
        tx.create("active", "rw", "base", {}, 1.0)
        tx.create("view", "ro", "base", {}, 1.0)
    cases = [
        (lambda tx: tx.create("active", "rw", None, {}, 1.0), SnapshotExists),
        (lambda tx: tx.create("view", "x", "rw", {}, 1.0), WrongKind),
        (lambda tx: tx.create("active", "x", "missing", {}, 1.0), SnapshotNotFound),
        (lambda tx: tx.create("committed", "x", None, {}, 1.0), InvalidArgument),
        (lambda tx: tx.create("active", "", None, {}, 1.0), InvalidArgument),
        (lambda tx: tx.create("active", "a\nb", None, {}, 1.0), InvalidArgument),
        (lambda tx: tx.create("active", "x", None, {"k": 1}, 1.0), InvalidArgument),
        (lambda tx: tx.commit_active("ro", "x", None, None, 1.0), WrongKind),
        (lambda tx: tx.commit_active("base", "x", None, None, 1.0), WrongKind),
        (lambda tx: tx.commit_active("rw", "base", None, None, 1.0), SnapshotExists),
        (lambda tx: tx.remove("base"), SnapshotInUse),
        (lambda tx: tx.remove("nope"), SnapshotNotFound),
    ]
    for call, error in cases:
        with pytest.raises(error), meta.transaction() as tx:
            call(tx)
    with meta.transaction(write=False) as tx:
        assert sorted(i.name for i in tx.walk()) == ["base", "ro", "rw"]


def test_remove_names_children(meta: MetaStore) -> None:
    _chain(meta, "base", "child")
    with pytest.raises(SnapshotInUse, match=r"'base'.*'child'"), meta.transaction() as tx:
        tx.remove("base")


def test_rollback_leaves_nothing(meta: MetaStore) -> None:
    with pytest.raises(RuntimeError), meta.transaction() as tx:
        tx.create("active", "rw", None, {"a": "b"}, 1.0)
        raise RuntimeError("crash")
    with meta.transaction(write=False) as tx:
        assert tx.walk() == []
        assert tx.ids() == set()


def test_ids_are_never_reused(meta: MetaStore) -> None:
    with meta.transaction() as tx:
        first = tx.create("active", "one", None, {}, 1.0).id
    with meta.transaction() as tx:
        tx.remove("one")
    with meta.transaction() as tx:
        assert tx.create("active", "one", None, {}, 1.0).id > first


def test_commit_keeps_or_replaces_labels(meta: MetaStore) -> None:
    with meta.transaction() as tx:
        tx.create("active", "a", None, {"keep": "1"}, 1.0)
        tx.create("active", "b", None, {"drop": "1"}, 1.0)
        tx.commit_active("a", "A", None, None, 2.0)
        tx.commit_active("b", "B", {"new": "2"}, None, 2.0)
        assert tx.info("A").labels == {"keep": "1"}
        assert tx.info("B").labels == {"new": "2"}
        assert tx.info("A").updated == 2.0


def test_update_labels(meta: MetaStore) -> None:
    with meta.transaction() as tx:
        tx.create("active", "a", None, {"x": "1", "y": "2"}, 1.0)
    with meta.transaction() as tx:
        info = tx.update(Info("a", "active", labels={"x": "9", "z": "3"}), ["labels.x"], 5.0)
    assert info.labels == {"x": "9", "y": "2"}
    assert info.updated == 5.0
    with meta.transaction() as tx:
        info = tx.update(Info("a", "active", labels={}), ["labels.y"], 6.0)
    assert info.labels == {"x": "9"}
    with meta.transaction() as tx:
        info = tx.update(Info("a", "active", labels={"only": "1"}), [], 7.0)
    assert info.labels == {"only": "1"}
    with pytest.raises(InvalidArgument, match="'parent'"), meta.transaction() as tx:
        tx.update(Info("a", "active", parent="x"), ["parent"], 8.0)


def test_clear_label_follows_parents_not_children(meta: MetaStore) -> None:
    _chain(meta, "a", "b", "c")
    _chain(meta, "x")
    with meta.transaction() as tx:
        for key in ("a", "b", "c", "x"):
            tx.add_labels(tx.get(key).id, {"mark": "boot-1", "keep": "k"})
    with meta.transaction() as tx:
        assert tx.clear_label("mark", keys=["b"]) == 2
        assert [key for _, key, _, _ in tx.labelled("mark")] == ["c", "x"]
        assert tx.clear_label("mark", ids=[tx.get("x").id]) == 1
        assert [(key, value) for _, key, _, value in tx.labelled("mark")] == [("c", "boot-1")]
        assert tx.info("a").labels == {"keep": "k"}


def test_descendants_and_delete_rows(meta: MetaStore) -> None:
    _chain(meta, "a", "b", "c")
    with meta.transaction() as tx:
        tx.create("active", "rw", "b", {}, 1.0)
        ids = {key: tx.get(key).id for key in ("a", "b", "c", "rw")}
        tree = tx.descendants([ids["b"]])
        assert sorted(key for _, key, _ in tree) == ["b", "c", "rw"]
        assert {kind for _, key, kind in tree if key == "rw"} == {"active"}
        tx.delete_rows([i for i, _, _ in tree])  # parent and children in one statement
    with meta.transaction(write=False) as tx:
        assert [i.name for i in tx.walk()] == ["a"]


def test_chains_are_cached_and_still_right(meta: MetaStore) -> None:
    names = [f"l{i}" for i in range(30)]
    _chain(meta, *names)
    with meta.transaction(write=False) as tx:
        ids = [tx.get(n).id for n in names]
    fresh = MetaStore(meta.path)  # no cache: the recursive query
    for store in (meta, fresh, fresh):
        with store.transaction(write=False) as tx:
            assert tx.get("l29").parent_ids == ids[-2::-1]
            assert tx.get("l0").parent_ids == []


def _synchronous(meta: MetaStore) -> int:
    with meta.transaction(write=False) as tx:
        return int(tx._conn.execute("PRAGMA synchronous").fetchone()[0])


def test_lazy_writes_are_normal_durable_ones_full(meta: MetaStore) -> None:
    full, normal = 2, 1
    with meta.transaction(durable=False) as tx:
        tx.create("active", "a", None, {}, 1.0)
    assert _synchronous(meta) == normal
    with meta.transaction() as tx:
        tx.create("active", "b", None, {}, 1.0)
    assert _synchronous(meta) == full
    with meta.transaction(write=False):  # reads leave it as it is
        pass
    assert _synchronous(meta) == full


# --- the mount contract, without a kernel ----------------------------------------------


def test_split_options() -> None:
    flags, data = _split_options(["ro", "rbind", "nosuid", "lowerdir=/a:/b", "index=off"])
    assert flags == MS_RDONLY | MS_BIND | MS_REC | 2
    assert data == "lowerdir=/a:/b,index=off"
    assert _split_options(["ro", "rw"]) == (0, "")


@given(
    st.text(alphabet="abcxyz", min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=2, max_size=50, unique=True),
)
def test_compact_lowerdir_resolves_to_the_same_dirs(root: str, ids: list[int]) -> None:
    dirs = [f"/{root}/snapshots/{i}/fs" for i in ids]
    data = f"index=off,upperdir=/u,lowerdir={':'.join(dirs)},workdir=/w"
    compact = _compact_lowerdir(data)
    assert compact is not None
    cwd, new = compact
    options = new.split(",")
    assert options[0] == "index=off" and options[1] == "upperdir=/u"
    lowers = options[2][len("lowerdir=") :].split(":")
    assert [os.path.join(cwd, d) for d in lowers] == dirs
    assert lowers == [f"{i}/fs" for i in ids]


def test_compact_lowerdir_needs_a_common_parent() -> None:
    assert _compact_lowerdir("upperdir=/u") is None
    assert _compact_lowerdir("lowerdir=/a/fs:/b/fs") is None


def test_mount_all_bind_readonly_remounts() -> None:
    kernel = RecordingKernel()
    mount_all([Mount("bind", "/src", ["ro", "rbind"])], "/dst", kernel)
    assert kernel.calls == [
        ("mount", ("/src", "/dst", None, MS_BIND | MS_REC, None)),
        ("mount", (None, "/dst", None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)),
    ]


def test_mount_all_overlay_and_rollback() -> None:
    kernel = RecordingKernel()
    mount_all([Mount("overlay", "overlay", ["lowerdir=/a:/b"])], "/t", kernel)
    assert kernel.calls == [("mount", ("overlay", "/t", "overlay", 0, "lowerdir=/a:/b"))]
    failing = RecordingKernel(fail={"mount": OSError(errno.EPERM, "mount /t")})
    with pytest.raises(PermissionDenied, match="mounting /t"):
        mount_all([Mount("overlay", "overlay", ["lowerdir=/a"])], "/t", failing)


def test_mount_all_refuses_options_that_cannot_fit() -> None:
    dirs = ":".join(f"/x{i}/fs" for i in range(PAGE_SIZE // 5))
    with pytest.raises(InvalidArgument, match="do not fit a page"):
        mount_all([Mount("overlay", "overlay", [f"lowerdir={dirs}"])], "/t", RecordingKernel())


def test_unmount_all_stops_when_nothing_is_mounted() -> None:
    class TwoMounts(RecordingKernel):
        def umount2(self, target: str, flags: int) -> None:
            super().umount2(target, flags)
            if len(self.calls) > 2:
                raise OSError(errno.EINVAL, "umount")

    kernel = TwoMounts()
    unmount_all("/t", kernel)
    assert kernel.names() == ["umount2"] * 3


def test_to_oci() -> None:
    m = Mount("overlay", "overlay", ["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"])
    oci = m.to_oci("/rootfs")
    assert oci.to_json() == {
        "destination": "/rootfs",
        "type": "overlay",
        "source": "overlay",
        "options": ["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"],
    }
    long = Mount("overlay", "overlay", ["lowerdir=" + ":".join(["/l/fs"] * PAGE_SIZE)])
    with pytest.raises(InvalidArgument, match="mount_all"):
        long.to_oci("/rootfs")
