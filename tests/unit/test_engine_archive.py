"""portside.engine.archive: stat, tar and untar inside a container root (docker cp)."""

from __future__ import annotations

import bz2
import gc
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest

from portside.engine.archive import (
    HostileArchive,
    PathNotFound,
    extract_into,
    go_file_mode,
    locate,
    stat_path,
    tar_path,
)
from portside.errors import InvalidArgument, NotFound


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box\n")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "f").write_text("f")
    (root / "d" / "top").write_text("top")
    (root / "d" / "escape").symlink_to("../../../../../outside")
    (root / "etc-link").symlink_to("/etc")
    (root / "dest").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("host secret")
    return root


def members(chunks: object) -> list[str]:
    data = b"".join(chunks)  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf]


def make_tar(*entries: tuple[str, str, bytes | str], compress: str = "") -> io.BytesIO:
    """A tar of (name, kind, data-or-linkname) with kinds file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 1234
            if kind == "file":
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            info.mode = 0o750
            info.linkname = data if isinstance(data, str) else ""
            tf.addfile(info)
    raw = buf.getvalue()
    raw = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}.get(
        compress, lambda b: b
    )(raw)
    return io.BytesIO(raw)


# --- stat -------------------------------------------------------------------------------------


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFREG | 0o2644) == (1 << 22) | 0o644
    assert go_file_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_file_mode(stat.S_IFBLK | 0o660) == (1 << 26) | 0o660
    assert go_file_mode(stat.S_IFIFO | 0o600) == (1 << 25) | 0o600
    assert go_file_mode(stat.S_IFSOCK | 0o755) == (1 << 24) | 0o755


def test_stat_file(rootfs: Path) -> None:
    (rootfs / "etc" / "hostname").chmod(0o4750)
    os.utime(rootfs / "etc" / "hostname", ns=(0, 1_500_000_000_120_000_000))
    doc = stat_path(str(rootfs), "/etc/hostname")
    assert doc == {
        "name": "hostname",
        "size": 4,
        "mode": (1 << 23) | 0o750,
        "mtime": "2017-07-14T02:40:00.12Z",
        "linkTarget": "",
    }


def test_stat_symlink_reports_the_in_root_target(rootfs: Path) -> None:
    doc = stat_path(str(rootfs), "/etc-link")
    assert doc["mode"] & (1 << 27)
    assert doc["linkTarget"] == "/etc"
    followed = stat_path(str(rootfs), "/etc-link/")
    assert followed["mode"] & (1 << 31) and followed["linkTarget"] == ""
    escape = stat_path(str(rootfs), "/d/escape")
    assert escape["linkTarget"] == "/outside"  # clamped at the container's /


def test_stat_missing(rootfs: Path) -> None:
    with pytest.raises(PathNotFound) as info:
        stat_path(str(rootfs), "/nope/x")
    assert isinstance(info.value, NotFound)
    assert info.value.path == "/nope/x"
    with pytest.raises(PathNotFound):
        stat_path(str(rootfs), "/d/escape/secret")  # resolves in-root: /outside/secret
    with pytest.raises(InvalidArgument, match="not a directory"):
        stat_path(str(rootfs), "/etc/hostname/")


# --- tar ---------------------------------------------------------------------------------------


def test_tar_names(rootfs: Path) -> None:
    root = str(rootfs)
    assert members(tar_path(root, "/etc/hostname")) == ["hostname"]
    assert members(tar_path(root, "/d")) == [
        "d/",
        "d/escape",
        "d/sub/",
        "d/sub/f",
        "d/top",
    ]
    assert members(tar_path(root, "/d/.")) == ["./", "escape", "sub/", "sub/f", "top"]
    assert members(tar_path(root, "/etc-link")) == ["etc-link"]
    assert members(tar_path(root, "/etc-link/")) == ["etc-link/", "etc-link/hostname"]


def test_tar_keeps_symlinks_and_hardlinks(rootfs: Path) -> None:
    os.link(rootfs / "d" / "top", rootfs / "d" / "sub" / "again")
    data = b"".join(tar_path(str(rootfs), "/d"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        by_name = {m.name: m for m in tf}
        assert by_name["d/escape"].issym()
        assert by_name["d/escape"].linkname == "../../../../../outside"
        assert by_name["d/sub/again"].isreg()
        assert by_name["d/top"].islnk() and by_name["d/top"].linkname == "d/sub/again"
        assert tf.extractfile(by_name["d/sub/again"]).read() == b"top"  # type: ignore[union-attr]


def test_tar_never_follows_a_symlink_out(rootfs: Path) -> None:
    assert members(tar_path(str(rootfs), "/d/escape")) == ["escape"]
    with pytest.raises(PathNotFound):
        tar_path(str(rootfs), "/d/escape/")  # /outside does not exist in the container


# --- untar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["", "gz", "bz2", "xz"])
def test_extract_compressions(rootfs: Path, compress: str) -> None:
    stream = make_tar(
        ("new", "dir", b""),
        ("new/file", "file", b"hello"),
        ("new/link", "symlink", "file"),
        ("new/hard", "hardlink", "new/file"),
        compress=compress,
    )
    extract_into(str(rootfs), "/dest", stream)
    new = rootfs / "dest" / "new"
    assert (new / "file").read_bytes() == b"hello"
    assert stat.S_IMODE((new / "file").stat().st_mode) == 0o640
    assert stat.S_IMODE(new.stat().st_mode) == 0o750
    assert os.readlink(new / "link") == "file"
    assert (new / "hard").stat().st_ino == (new / "file").stat().st_ino


def test_extract_through_an_existing_symlink_stays_in_root(rootfs: Path) -> None:
    extract_into(str(rootfs), "/etc-link", make_tar(("added", "file", b"x")))
    assert (rootfs / "etc" / "added").read_bytes() == b"x"
    extract_into(str(rootfs), "/d", make_tar(("escape/planted", "file", b"x")))
    assert (rootfs / "outside" / "planted").read_bytes() == b"x"
    assert not (rootfs.parent / "outside" / "planted").exists()


@pytest.mark.parametrize(
    "entries",
    [
        [("../evil", "file", b"x")],
        [("a/../../evil", "file", b"x")],
        [("/abs", "file", b"x")],
        [("ln", "symlink", "/"), ("ln/evil", "file", b"x")],
        [("ln", "symlink", "../../.."), ("ln/x/evil", "file", b"x")],
        [("h", "hardlink", "../../outside/secret")],
        [("h", "hardlink", "/etc/hostname")],
        [("a", "dir", b""), ("a/x", "file", b""), ("a", "symlink", "/"), ("a/y", "file", b"")],
    ],
)
def test_extract_refuses_hostile_members(rootfs: Path, entries: list) -> None:
    before = sorted(str(p) for p in rootfs.parent.rglob("*"))
    with pytest.raises(HostileArchive, match="archive member"):
        extract_into(str(rootfs), "/dest", make_tar(*entries))
    after = sorted(str(p) for p in rootfs.parent.rglob("*") if "dest/" not in str(p))
    assert after == [p for p in before if "dest/" not in p]
    assert (rootfs.parent / "outside" / "secret").read_text() == "host secret"


def test_extract_destination_errors(rootfs: Path) -> None:
    with pytest.raises(PathNotFound):
        extract_into(str(rootfs), "/nope", make_tar(("f", "file", b"")))
    with pytest.raises(InvalidArgument, match="extraction point is not a directory: /etc/hostname"):
        extract_into(str(rootfs), "/etc/hostname", make_tar(("f", "file", b"")))
    with pytest.raises(InvalidArgument, match="invalid tar archive"):
        extract_into(str(rootfs), "/dest", io.BytesIO(b"not a tar" * 100))


def test_extract_overwrites_and_no_overwrite_dir_non_dir(rootfs: Path) -> None:
    (rootfs / "dest" / "dir").mkdir()
    (rootfs / "dest" / "dir" / "inner").write_text("x")
    (rootfs / "dest" / "file").write_text("old")
    with pytest.raises(InvalidArgument, match='cannot overwrite directory "/dest/dir"'):
        extract_into(
            str(rootfs), "/dest", make_tar(("dir", "file", b"")), no_overwrite_dir_non_dir=True
        )
    with pytest.raises(InvalidArgument, match='cannot overwrite non-directory "/dest/file"'):
        extract_into(
            str(rootfs), "/dest", make_tar(("file", "dir", b"")), no_overwrite_dir_non_dir=True
        )
    extract_into(str(rootfs), "/dest", make_tar(("dir", "file", b"now a file")))
    assert (rootfs / "dest" / "dir").read_bytes() == b"now a file"
    extract_into(str(rootfs), "/dest", make_tar(("file", "file", b"new")))
    assert (rootfs / "dest" / "file").read_bytes() == b"new"


def test_round_trip(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "d" / "sub" / "f").chmod(0o600)
    other = tmp_path / "other"
    (other / "in").mkdir(parents=True)
    extract_into(str(other), "/in", io.BytesIO(b"".join(tar_path(str(rootfs), "/d"))))
    copy = other / "in" / "d"
    assert (copy / "sub" / "f").read_text() == "f"
    assert stat.S_IMODE((copy / "sub" / "f").stat().st_mode) == 0o600
    assert os.readlink(copy / "escape") == "../../../../../outside"
    assert (copy / "top").stat().st_mtime_ns // 10**9 == (
        (rootfs / "d" / "top").stat().st_mtime_ns // 10**9
    )


def _open_fds() -> set[tuple[str, str]]:
    """(fd, what it refers to) of this process."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            out.add((name, os.readlink(f"/proc/self/fd/{name}")))
        except FileNotFoundError:
            continue  # the listing's own, or one another thread closed meanwhile
    return out


def test_extract_leaks_no_fds(rootfs: Path) -> None:
    gc.collect()  # files left to the collector by earlier tests would close mid-count
    before = _open_fds()
    tree = [(f"t/d{i}/f{j}", "file", b"x") for i in range(150) for j in range(2)]
    extract_into(str(rootfs), "/dest", make_tar(*tree, ("t/h", "hardlink", "t/d1/f1")))
    with pytest.raises(HostileArchive):
        extract_into(str(rootfs), "/dest", make_tar(("t/d2/../../../x", "file", b"")))
    # new fds only: one an earlier test's thread or connection closes meanwhile is
    # not this test's business (a count saw 17 -> 16 that way)
    leaked = {(fd, target) for fd, target in _open_fds() - before if str(rootfs) in target}
    assert not leaked
    assert (rootfs / "dest" / "t" / "d149" / "f1").read_bytes() == b"x"


# --- locate: binds and volumes ------------------------------------------------------------


@pytest.fixture
def mounted(tmp_path: Path, rootfs: Path) -> tuple[Path, list[dict[str, object]]]:
    """A volume at /data (with a ro bind at /data/conf inside it), as inspect shows them."""
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "x").write_text("in the volume")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.ini").write_text("ini")
    (rootfs / "data").mkdir()  # the mountpoint, as the runtime made it
    (rootfs / "data-link").symlink_to("/data/sub")
    mounts: list[dict[str, object]] = [
        {"Type": "volume", "Name": "v", "Source": str(vol), "Destination": "/data", "RW": True},
        {"Type": "bind", "Source": str(conf), "Destination": "/data/conf", "RW": False},
        {"Type": "tmpfs", "Source": "", "Destination": "/run", "RW": True},
    ]
    return tmp_path, mounts


@pytest.mark.parametrize(
    "case",
    [
        ("/etc/hostname", "rootfs", "/etc/hostname", None, False),
        ("/data", "vol", "/", "data", False),
        ("/data/", "vol", "/", None, False),
        ("/data/.", "vol", "/.", None, False),
        ("/data/sub/x", "vol", "/sub/x", None, False),
        ("data/sub/../sub/x", "vol", "/sub/x", None, False),
        ("/data-link/", "vol", "/sub/", None, False),  # a rootfs symlink into the volume
        ("/data-link", "rootfs", "/data-link", None, False),  # the link itself
        ("/data/conf/app.ini", "conf", "/app.ini", None, True),  # the innermost mount
        ("/data/conf", "conf", "/", "conf", True),
        ("/run/x", "rootfs", "/run/x", None, False),  # a tmpfs is not reached
        ("/datax", "rootfs", "/datax", None, False),  # a prefix is not a parent
    ],
)
def test_locate_finds_binds_and_volumes(
    mounted: tuple[Path, list[dict[str, object]]],
    rootfs: Path,
    case: tuple[str, str, str, str | None, bool],
) -> None:
    """case: (path, where it lives, the path below that root, its name, read-only)"""
    path, where, below, name, read_only = case
    base, mounts = mounted
    at = locate(str(rootfs), mounts, path)
    assert at.root == str(rootfs if where == "rootfs" else base / where)
    assert (at.path, at.name, at.read_only) == (below, name, read_only)


def test_a_mount_root_is_archived_and_stated_by_its_container_name(
    mounted: tuple[Path, list[dict[str, object]]], rootfs: Path
) -> None:
    _, mounts = mounted
    at = locate(str(rootfs), mounts, "/data")
    assert stat_path(at.root, at.path, name=at.name)["name"] == "data"
    names = members(tar_path(at.root, at.path, name=at.name))
    assert names[0] == "data/" and "data/sub/x" in names
    assert all(n.startswith("data/") for n in names)
    inner = locate(str(rootfs), mounts, "/data/sub/x")
    assert members(tar_path(inner.root, inner.path)) == ["x"]
