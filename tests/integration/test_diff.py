"""The changes of a read-write layer, on a real overlay mount and on a vfs copy:
the same operations give the same ``docker diff`` list either way, and the layer tar
reads back with ``tarfile``."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator

import pytest

from portside.image.diff import Change, changes, split_mounts, write_diff
from portside.image.snapshots import (
    SnapshotterBase,
    mount_all,
    open_snapshotter,
    unmount_all,
)

pytestmark = pytest.mark.root

BASE = {
    "a/file1": "one",
    "a/file2": "two",
    "b/dir/x": "x",
    "c": "c",
    "d/e/f": "f",
    "keep/f": "f",
    "keep/sub/g": "g",
    "same/s": "s",
}

EXPECTED = [
    ("C", "/a"),
    ("C", "/a/file1"),
    ("D", "/a/file2"),
    ("D", "/b"),
    ("C", "/c"),
    ("C", "/d"),  # parents of a change are listed, even when they did not change
    ("C", "/d/e"),
    ("C", "/d/e/f"),
    ("C", "/keep"),
    ("D", "/keep/f"),
    ("A", "/keep/new"),
    ("D", "/keep/sub"),
    ("A", "/n"),
    ("A", "/n/dev"),
    ("A", "/n/fifo"),
    ("A", "/n/h1"),
    ("A", "/n/h2"),
    ("A", "/n/link"),
    ("A", "/n/m"),
    ("A", "/n/m/o"),
]


@pytest.fixture
def tmp_root() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="ps-diff-")
    try:
        yield path
    finally:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith(path + "/")), reverse=True):
            unmount_all(point, detach=True)
        shutil.rmtree(path)


def _write(root: str, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)


def _change(root: str) -> None:
    """Add, modify, delete, replace a directory wholesale (opaque), special files."""
    _write(root, {"a/file1": "changed", "d/e/f": "F"})
    os.unlink(os.path.join(root, "a", "file2"))
    shutil.rmtree(os.path.join(root, "b"))
    os.chmod(os.path.join(root, "c"), 0o700)
    shutil.rmtree(os.path.join(root, "keep"))
    _write(root, {"keep/new": "new", "n/m/o": "deep"})
    n = os.path.join(root, "n")
    os.chown(os.path.join(n, "m", "o"), 1234, 5678)
    os.setxattr(os.path.join(n, "m", "o"), "user.note", b"\xffbinary")
    _write(root, {"n/h1": "linked"})
    os.link(os.path.join(n, "h1"), os.path.join(n, "h2"))
    os.symlink("/a/file1", os.path.join(n, "link"))
    os.mkfifo(os.path.join(n, "fifo"))
    os.mknod(os.path.join(n, "dev"), stat.S_IFCHR | 0o600, os.makedev(1, 3))


class Setup:
    """A committed base layer and an active snapshot on it with :func:`_change` done."""

    def __init__(self, root: str, kind: str) -> None:
        self.sn: SnapshotterBase = open_snapshotter(os.path.join(root, "store"), kind)
        self.target = os.path.join(root, "mnt")
        os.mkdir(self.target)
        mount_all(self.sn.prepare("base-rw"), self.target)
        _write(self.target, BASE)
        unmount_all(self.target)
        self.sn.commit("base", "base-rw")
        self.mounts = self.sn.prepare("rw", "base")
        mount_all(self.mounts, self.target)
        _change(self.target)

    def lower_upper(self) -> tuple[list, str]:
        if self.sn.driver == "overlay":
            return split_mounts(self.mounts)  # type: ignore[return-value]
        return self.sn.view("base-view", "base"), self.mounts[0].source


@pytest.fixture(params=["overlay", "vfs"])
def setup(request: pytest.FixtureRequest, tmp_root: str) -> Iterator[Setup]:
    s = Setup(tmp_root, request.param)
    yield s
    unmount_all(s.target)


def _mode(s: Setup) -> str:
    return "overlay" if s.sn.driver == "overlay" else "tree"


def test_changes_as_docker_diff_lists_them(setup: Setup) -> None:
    lower, upper = setup.lower_upper()
    got = changes(lower, upper, mode=_mode(setup))
    assert [(c.kind, c.path) for c in got] == EXPECTED
    assert str(got[0]) == "C /a" and got[0] == Change("C", "/a")


def test_overlay_upper_really_holds_whiteouts(tmp_root: str) -> None:
    s = Setup(tmp_root, "overlay")
    try:
        _, upper = split_mounts(s.mounts)
        st = os.lstat(os.path.join(upper, "a", "file2"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert os.getxattr(os.path.join(upper, "keep"), "trusted.overlay.opaque") == b"y"
    finally:
        unmount_all(s.target)


def test_nothing_changed(tmp_root: str) -> None:
    sn = open_snapshotter(os.path.join(tmp_root, "store"), "overlay")
    sn.prepare("base-rw")
    sn.commit("base", "base-rw")
    lower, upper = split_mounts(sn.prepare("rw", "base"))
    assert changes(lower, upper) == []


def test_whiteouts_and_opaque_dirs_in_lower_layers(tmp_root: str) -> None:
    """A path deleted or hidden by an opaque directory in a lower layer is new again."""
    sn = open_snapshotter(os.path.join(tmp_root, "store"), "overlay")
    target = os.path.join(tmp_root, "mnt")
    os.mkdir(target)
    steps = [
        ("l1", None, lambda t: _write(t, {"x": "x", "d/y": "y", "d/z": "z"})),
        ("l2", "l1", lambda t: (os.unlink(f"{t}/x"), shutil.rmtree(f"{t}/d"), os.mkdir(f"{t}/d"))),
    ]
    for name, parent, change in steps:
        mount_all(sn.prepare(name + "-rw", parent), target)
        change(target)
        unmount_all(target)
        sn.commit(name, name + "-rw")
    mounts = sn.prepare("rw", "l2")
    mount_all(mounts, target)
    try:
        assert os.listdir(target) == ["d"] and os.listdir(f"{target}/d") == []
        _write(target, {"x": "again", "d/y": "again"})
        got = [(c.kind, c.path) for c in changes(*split_mounts(mounts))]
    finally:
        unmount_all(target)
    assert got == [("C", "/d"), ("A", "/d/y"), ("A", "/x")]


def _read_layer(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    seen: set[str] = set()
    for m in members:  # every directory comes before what is in it
        parent = os.path.dirname(m.name)
        assert not parent or parent in seen, m.name
        seen.add(m.name)
    return {m.name: m for m in members}


def test_write_diff_reads_back(setup: Setup) -> None:
    lower, upper = setup.lower_upper()
    out = io.BytesIO()
    diff_id, size = write_diff(lower, upper, out, mode=_mode(setup))
    data = out.getvalue()
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert size == len(data)
    again = io.BytesIO()
    assert write_diff(lower, upper, again, mode=_mode(setup)) == (diff_id, size)
    members = _read_layer(data)
    assert {"a/.wh.file2", ".wh.b"} <= set(members)
    assert members["a/.wh.file2"].size == 0 and members["a/.wh.file2"].isreg()
    if setup.sn.driver == "overlay":  # the opaque marker covers the lower entries
        assert "keep/.wh..wh..opq" in members
        assert "keep/.wh.f" not in members
    else:  # a directory compare knows only single deletions
        assert {"keep/.wh.f", "keep/.wh.sub"} <= set(members)
    o = members["n/m/o"]
    assert (o.uid, o.gid, o.size) == (1234, 5678, 4)
    assert o.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == (
        b"\xffbinary"
    )
    assert isinstance(o.mtime, int) and o.mtime > 0
    assert members["n/h2"].islnk() and members["n/h2"].linkname == "n/h1"
    assert members["n/link"].issym() and members["n/link"].linkname == "/a/file1"
    assert members["n/fifo"].isfifo()
    dev = members["n/dev"]
    assert dev.ischr() and (dev.devmajor, dev.devminor) == (1, 3)
    assert members["c"].mode & 0o7777 == 0o700
    assert "same" not in members and "same/s" not in members
    keys = [k for m in members.values() for k in m.pax_headers]
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for k in keys)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        content = tar.extractfile("a/file1")
        assert content is not None and content.read() == b"changed"
