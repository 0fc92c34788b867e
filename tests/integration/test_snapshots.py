"""One conformance suite for every snapshotter (after containerd's
``core/snapshots/testsuite``), run on the real kernel with real mounts, plus what is
particular to overlay: the capability check and a chain of 120 layers."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from mount_helpers import VOLATILE, fs_options, mounts_under, scratch_root

from portside.errors import FailedPrecondition, InvalidArgument
from portside.image import content_common
from portside.image.snapshots import (
    PAGE_SIZE,
    UNSYNCED_LABEL,
    Info,
    Mount,
    SnapshotExists,
    SnapshotInUse,
    SnapshotNotFound,
    SnapshotterBase,
    WrongKind,
    mount_all,
    open_snapshotter,
    unmount_all,
)
from portside.image.snapshots import overlay as overlay_mod
from portside.image.snapshots import unsynced as unsynced_mod
from portside.image.snapshots.overlay import OverlayFeatures, OverlaySnapshotter

pytestmark = pytest.mark.root

Mounter = Callable[[list[Mount]], str]


@pytest.fixture
def tmp_root() -> Iterator[str]:
    with scratch_root("ps-snap-") as path:
        yield path


@pytest.fixture(params=["overlay", "vfs"])
def sn(request: pytest.FixtureRequest, tmp_root: str) -> SnapshotterBase:
    return open_snapshotter(os.path.join(tmp_root, "root"), kind=request.param)


@pytest.fixture
def mount(tmp_root: str) -> Mounter:
    """``mount(mounts) -> directory`` with the mounts on it (unmounted by tmp_root)."""
    count = [0]

    def do(mounts: list[Mount]) -> str:
        count[0] += 1
        target = os.path.join(tmp_root, f"mnt{count[0]}")
        os.mkdir(target)
        mount_all(mounts, target)
        return target

    return do


def _write(root: str, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)


def _tree(root: str) -> dict[str, str]:
    """rel path -> content (files) or "/" (directories)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "/"
        for name in filenames:
            with open(os.path.join(dirpath, name)) as f:
                out[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
    return out


def _fs(sn: SnapshotterBase, key: str) -> str:
    """The ``fs`` directory of snapshot ``key`` (an implementation detail, for tests)."""
    with sn._meta.transaction(write=False) as tx:
        return sn.fs_dir(tx.get(key).id)


def _layer(
    sn: SnapshotterBase,
    mount: Mounter,
    name: str,
    parent: str | None,
    change: Callable[[str], None],
) -> None:
    """Prepare on ``parent``, change the mounted tree, unmount, commit as ``name``."""
    target = mount(sn.prepare(f"extract {name}", parent))
    try:
        change(target)
    finally:
        unmount_all(target)
    sn.commit(name, f"extract {name}")


def test_basic_lifecycle(sn: SnapshotterBase, mount: Mounter) -> None:
    base = {"foo": "foo\n", "a/b/c/d": "d"}
    _layer(sn, mount, "base", None, lambda t: _write(t, base))
    assert sn.stat("base").kind == "committed"
    assert sn.stat("base").parent is None
    with pytest.raises(SnapshotNotFound):
        sn.stat("extract base")

    def change(t: str) -> None:
        assert _tree(t) == {"foo": "foo\n", "a": "/", "a/b": "/", "a/b/c": "/", "a/b/c/d": "d"}
        _write(t, {"foo": "bar\n", "bar": "bar\n"})
        shutil.rmtree(os.path.join(t, "a", "b"))

    _layer(sn, mount, "next", "base", change)
    assert sn.stat("next").parent == "base"
    view = mount(sn.view("look", "next"))
    assert _tree(view) == {"foo": "bar\n", "bar": "bar\n", "a": "/"}
    with pytest.raises(OSError) as excinfo:
        _write(view, {"new": "x"})
    assert excinfo.value.errno == errno.EROFS
    unmount_all(view)
    with pytest.raises(SnapshotInUse, match="'base'"):
        sn.remove("base")
    for key in ("look", "next", "base"):
        sn.remove(key)
    assert sn.walk() == []
    assert os.listdir(os.path.join(sn.root, "snapshots")) == []


def test_active_files_appear_in_a_child_after_commit(sn: SnapshotterBase, mount: Mounter) -> None:
    _layer(sn, mount, "l1", None, lambda t: _write(t, {"one": "1", "dir/x": "x"}))
    _layer(sn, mount, "l2", "l1", lambda t: _write(t, {"two": "2", "dir/y": "y"}))
    _layer(sn, mount, "l3", "l2", lambda t: os.unlink(os.path.join(t, "one")))
    top = mount(sn.prepare("container", "l3"))
    assert _tree(top) == {"two": "2", "dir": "/", "dir/x": "x", "dir/y": "y"}
    _write(top, {"three": "3"})
    assert sn.stat("container") == Info(
        "container",
        "active",
        "l3",
        {},
        created=sn.stat("container").created,
        updated=sn.stat("container").updated,
    )
    unmount_all(top)
    sn.commit("l4", "container")
    assert [i.parent for i in sn.walk()] == [None, "l1", "l2", "l3"]
    assert "three" in _tree(mount(sn.view("v", "l4")))


def test_view_of_empty_and_of_one_layer_is_read_only(sn: SnapshotterBase, mount: Mounter) -> None:
    empty = mount(sn.view("empty"))
    assert os.listdir(empty) == []
    with pytest.raises(OSError) as excinfo:
        os.mkdir(os.path.join(empty, "d"))
    assert excinfo.value.errno == errno.EROFS
    _layer(sn, mount, "l1", None, lambda t: _write(t, {"f": "1"}))
    one = mount(sn.view("one", "l1"))
    assert _tree(one) == {"f": "1"}
    with pytest.raises(OSError) as excinfo:
        _write(one, {"f": "changed"})
    assert excinfo.value.errno == errno.EROFS
    assert sn.mounts("one") == sn.view("one-again", "l1")


def test_wrong_keys_and_kinds(sn: SnapshotterBase, mount: Mounter) -> None:
    _layer(sn, mount, "base", None, lambda t: None)
    sn.prepare("rw", "base")
    sn.view("ro", "base")
    with pytest.raises(SnapshotExists):
        sn.prepare("rw", "base")
    with pytest.raises(SnapshotExists):
        sn.view("rw", "base")
    with pytest.raises(SnapshotExists):
        sn.prepare("base")
    with pytest.raises(WrongKind):
        sn.prepare("x", "rw")
    with pytest.raises(WrongKind, match="view"):
        sn.commit("c", "ro")
    with pytest.raises(WrongKind, match="committed"):
        sn.mounts("base")
    with pytest.raises(SnapshotExists):
        sn.commit("base", "rw")
    with pytest.raises(SnapshotNotFound):
        sn.prepare("y", "missing")
    with pytest.raises(SnapshotNotFound):
        sn.remove("missing")
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    assert sorted(i.name for i in sn.walk()) == ["base", "ro", "rw"]
    # failed calls leave no directory behind
    assert len(os.listdir(os.path.join(sn.root, "snapshots"))) == 3


def test_keys_never_name_directories(sn: SnapshotterBase, mount: Mounter) -> None:
    key = "sha256:" + "ab" * 32
    _layer(sn, mount, key, None, lambda t: _write(t, {"f": "1"}))
    sn.prepare("../../escape/../x")
    names = os.listdir(os.path.join(sn.root, "snapshots"))
    assert all(n.isdigit() for n in names)
    assert {"driver", "metadata.db", "snapshots"} <= set(os.listdir(sn.root))
    assert not any("escape" in p or "sha256" in p for p in os.listdir(sn.root))


def test_update_and_walk(sn: SnapshotterBase, mount: Mounter) -> None:
    _layer(sn, mount, "a", None, lambda t: None)
    sn.prepare("b", "a", labels={"role": "container"})
    sn.view("c", "a", labels={"role": "view"})
    seen: list[str] = []
    assert [i.name for i in sn.walk(lambda i: seen.append(i.name))] == ["a", "b", "c"]
    assert seen == ["a", "b", "c"]
    assert [i.name for i in sn.walk(kind="active")] == ["b"]
    assert [i.name for i in sn.walk(parent="a")] == ["b", "c"]
    assert [i.name for i in sn.walk(labels={"role": "view"})] == ["c"]
    before = sn.stat("b")
    info = sn.update(Info("b", "active", labels={"role": "gone", "gc": "1"}), ["labels.gc"])
    assert info.labels == {"role": "container", "gc": "1"}
    assert info.updated >= before.updated and info.created == before.created
    assert sn.stat("b") == info


def test_usage(sn: SnapshotterBase, mount: Mounter) -> None:
    data = os.urandom(1 << 20)

    def change(t: str) -> None:
        with open(os.path.join(t, "blob"), "wb") as f:
            f.write(data)
        os.link(os.path.join(t, "blob"), os.path.join(t, "hardlink"))

    target = mount(sn.prepare("rw"))
    change(target)
    size, inodes = sn.usage("rw")
    assert size >= len(data) and inodes == 2  # the root and the file, linked twice
    unmount_all(target)
    sn.commit("done", "rw")
    assert sn.usage("done") == (size, inodes)


def _crash_in_child(fn: Callable[[], object]) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fn()
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3


def test_crash_mid_prepare_is_cleaned(sn: SnapshotterBase, mount: Mounter) -> None:
    _layer(sn, mount, "base", None, lambda t: _write(t, {"f": "1"}))
    snapshots = os.path.join(sn.root, "snapshots")
    owned = set(os.listdir(snapshots))

    populate = sn._populate

    def crash_after_rename() -> None:
        if sn.quick_populate:  # no rename: the directory is made in the transaction
            sn._populate = lambda path, snap: (populate(path, snap), os._exit(3))  # type: ignore[method-assign,func-returns-value]
        else:
            sn._mounts = lambda snap: os._exit(3)  # type: ignore[method-assign]
        sn.prepare("lost", "base")

    _crash_in_child(crash_after_rename)
    with pytest.raises(SnapshotNotFound):
        sn.stat("lost")
    left = set(os.listdir(snapshots)) - owned
    assert len(left) == 1 and left.pop().isdigit()  # the new id's directory, without a row
    # the id is handed out again: the stale directory must not leak into the new snapshot
    target = mount(sn.prepare("again", "base"))
    assert _tree(target) == {"f": "1"}
    unmount_all(target)

    def crash_before_rename() -> None:
        def dying(path: str, snap: object) -> None:
            populate(path, snap)  # type: ignore[arg-type]
            os._exit(3)

        sn._populate = dying  # type: ignore[method-assign]
        sn.prepare("lost2", "base")

    owned = set(os.listdir(snapshots))
    _crash_in_child(crash_before_rename)
    # a staging directory (vfs), or the new id's filled in the transaction (overlay)
    leftovers = sorted(set(os.listdir(snapshots)) - owned)
    assert len(leftovers) == 1
    if sn.quick_populate:
        assert leftovers[0].isdigit()
    else:
        assert leftovers[0].startswith("new-")
    assert sn.cleanup() == [os.path.join(snapshots, leftovers[0])]
    assert sorted(i.name for i in sn.walk()) == ["again", "base"]
    assert sn.cleanup() == []


def test_cleanup_spares_a_directory_being_filled(sn: SnapshotterBase) -> None:
    path, lock = sn._new_dir()
    try:
        assert sn.cleanup() == []
        assert os.path.isdir(path)
    finally:
        os.close(lock)
    assert sn.cleanup() == [path]


def test_root_belongs_to_one_driver(tmp_root: str) -> None:
    root = os.path.join(tmp_root, "root")
    first = open_snapshotter(root, kind="vfs")
    assert open_snapshotter(root).driver == first.driver == "vfs"
    with pytest.raises(FailedPrecondition, match="belongs to 'vfs'"):
        open_snapshotter(root, kind="overlay")


# --- overlay only -----------------------------------------------------------------------


def test_overlay_capability_check(tmp_root: str) -> None:
    features = overlay_mod.overlay_features(tmp_root)
    assert features.supported, features.reason
    assert features.whiteout_devices and features.index_off
    assert features.volatile  # Linux >= 5.10, as on every machine this runs on
    assert overlay_mod.overlay_supported(tmp_root)
    assert os.listdir(tmp_root) == []  # the scratch directory is gone
    assert mounts_under(tmp_root) == []
    sn = open_snapshotter(os.path.join(tmp_root, "auto"))
    assert isinstance(sn, OverlaySnapshotter)


def test_auto_falls_back_to_vfs(tmp_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = OverlayFeatures(False, "mount: no such device")
    monkeypatch.setattr(overlay_mod, "overlay_features", lambda root: broken)
    assert open_snapshotter(os.path.join(tmp_root, "a")).driver == "vfs"
    with pytest.raises(Exception, match="no such device"):
        open_snapshotter(os.path.join(tmp_root, "b"), kind="overlay")


def test_overlay_mounts_shape(tmp_root: str, mount: Mounter) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "root"), kind="overlay")
    _layer(sn, mount, "l1", None, lambda t: None)
    _layer(sn, mount, "l2", "l1", lambda t: None)
    fs = {key: _fs(sn, key) for key in ("l1", "l2")}
    [rw] = sn.prepare("rw", "l2")
    assert rw.type == "overlay"
    assert f"lowerdir={fs['l2']}:{fs['l1']}" in rw.options
    assert any(o.startswith("upperdir=") for o in rw.options)
    assert sn.view("v1", "l1") == [Mount("bind", fs["l1"], ["ro", "rbind"])]
    [v2] = sn.view("v2", "l2")
    assert v2.type == "overlay" and not any(o.startswith("upperdir=") for o in v2.options)


def test_overlay_volatile_mounts_skip_syncs_and_mount_again(tmp_root: str, mount: Mounter) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "root"), kind="overlay")
    assert isinstance(sn, OverlaySnapshotter)
    if not sn.features.volatile:
        pytest.skip("overlayfs here has no volatile option (Linux < 5.10)")
    _layer(sn, mount, "base", None, lambda t: _write(t, {"etc/hosts": "x"}))
    sn.prepare("rw", "base", durable=False)
    [plain] = sn.mounts("rw")
    [volatile] = sn.mounts("rw", volatile=True)
    assert "volatile" not in plain.options
    assert volatile.options == [*plain.options, "volatile"]
    for _ in range(2):  # the mark a volatile mount leaves does not stop the next one
        target = mount(sn.mounts("rw", volatile=True))
        assert VOLATILE & fs_options(target)
        _write(target, {"etc/hostname": "h"})
        unmount_all(target)
    look = sn.view("look", "base")
    assert sn.mounts("look", volatile=True) == look  # a view has nothing to sync
    sn.remove("look")
    sn.remove("rw", durable=False)
    assert [i.name for i in sn.walk()] == ["base"]


def test_vfs_ignores_volatile(tmp_root: str) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "root"), kind="vfs")
    sn.prepare("rw", None)
    assert sn.mounts("rw", volatile=True) == sn.mounts("rw")


def test_overlay_120_layers(tmp_root: str, mount: Mounter) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "a-rather-long-root-directory-name"), "overlay")
    parent = None
    for i in range(120):
        key = f"extract-{i}"
        sn.prepare(key, parent)
        # write straight into the upper directory: 120 mounts would only slow this down
        _write(_fs(sn, key), {f"layer{i}": str(i), "top": str(i)})
        sn.commit(f"sha256:{i:064x}", key)
        parent = f"sha256:{i:064x}"
    mounts = sn.prepare("container", parent)
    assert len(",".join(mounts[0].options)) > PAGE_SIZE  # the long path is exercised
    with pytest.raises(InvalidArgument):
        mounts[0].to_oci("/")
    root = mount(mounts)
    with open(os.path.join(root, "top")) as f:
        assert f.read() == "119"
    assert sorted(os.listdir(root)) == sorted(["top", *(f"layer{i}" for i in range(120))])
    _write(root, {"written": "yes"})
    assert os.path.exists(os.path.join(_fs(sn, "container"), "written"))


# --- deferred durability: commit(durable=False), sync, recovery at open ----------------


def _lazy_chain(sn: SnapshotterBase, names: list[str], parent: str | None = None) -> None:
    """Commit ``names`` one on the other with ``durable=False``, a file in each."""
    for name in names:
        key = f"extract-{os.getpid()}-x {name}"
        sn.prepare(key, parent, durable=False)
        _write(_fs(sn, key), {name: name})
        sn.commit(name, key, durable=False)
        parent = name


def _unsynced(sn: SnapshotterBase) -> set[str]:
    return {i.name for i in sn.walk() if UNSYNCED_LABEL in i.labels}


def test_lazy_commit_is_labelled_until_a_sync_covers_it(
    sn: SnapshotterBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(content_common, "syncfs", synced.append)
    _lazy_chain(sn, ["a", "b", "c"])
    _lazy_chain(sn, ["other"])
    assert sn.stat("c").labels == {UNSYNCED_LABEL: unsynced_mod.boot_id()}
    assert _unsynced(sn) == {"a", "b", "c", "other"}
    sn.sync(["b"])  # b and what is below it: its files are on disk once syncfs returned
    assert synced and all(p.startswith(sn.root) for p in synced)
    assert _unsynced(sn) == {"c", "other"}
    sn.prepare("rw", "c")
    sn.commit("d", "rw")  # a durable commit carries no label
    assert UNSYNCED_LABEL not in sn.stat("d").labels
    sn.sync(["d", "other"])
    assert _unsynced(sn) == set()


def test_open_syncs_what_this_boot_left_labelled(sn: SnapshotterBase) -> None:
    _lazy_chain(sn, ["a", "b"])  # a crash of the process: the page cache still has it
    again = open_snapshotter(sn.root, kind=sn.driver)
    assert _unsynced(again) == set()
    assert [i.name for i in again.walk()] == ["a", "b"]


def test_open_removes_what_an_earlier_boot_left_labelled(
    sn: SnapshotterBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss before the pull's sync: the labelled snapshots (and those above
    them) may have lost files, so they go; the synced ones stay."""
    _lazy_chain(sn, ["base"])
    sn.sync(["base"])
    _lazy_chain(sn, ["l1", "l2"], parent="base")
    _lazy_chain(sn, ["l3"], parent="l2")
    sn.prepare(f"extract-{os.getpid()}-y l4", "l3")  # an unpack that was running
    _lazy_chain(sn, ["kept"], parent="base")
    sn.prepare("container", "kept")  # a container on it: never removed behind its back
    dirs = {k: _fs(sn, k) for k in ("l1", "l2", "l3", "kept")}
    monkeypatch.setattr(unsynced_mod, "_BOOT_ID", ["another-boot"])
    again = open_snapshotter(sn.root, kind=sn.driver)
    assert sorted(i.name for i in again.walk()) == ["base", "container", "kept"]
    assert not any(os.path.exists(dirs[k]) for k in ("l1", "l2", "l3"))
    assert os.path.exists(dirs["kept"])
    assert again.cleanup() == []


def test_overlay_prepare_direct_makes_no_work_dir_until_mounted(
    tmp_root: str, mount: Mounter
) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "root"), "overlay")
    assert isinstance(sn, OverlaySnapshotter)
    upper, lowers, mode = sn.prepare_direct("extract-1 base")
    assert (lowers, mode) == ([], "remove")  # as the bind mount of a lone layer
    _write(upper, {"f": "base"})
    sn.commit("base", "extract-1 base")
    upper, lowers, mode = sn.prepare_direct("extract-2 top", "base", durable=False)
    assert (upper, lowers, mode) == (_fs(sn, "extract-2 top"), [_fs(sn, "base")], "overlay")
    work = os.path.join(os.path.dirname(upper), "work")
    assert not os.path.exists(work)
    _write(upper, {"g": "top"})
    target = mount(sn.mounts("extract-2 top"))  # asked for its mounts after all: works
    assert os.path.isdir(work)
    assert _tree(target) == {"f": "base", "g": "top"}
    unmount_all(target)
    sn.commit("top", "extract-2 top", durable=False)
    assert UNSYNCED_LABEL in sn.stat("top").labels
