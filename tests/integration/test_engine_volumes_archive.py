"""Volumes copy-up and docker-cp archives as root, on a busybox rootfs in tmp dirs.

Everything happens under pytest's tmp_path: the "host" a hostile archive must not reach is
a sentinel directory beside the rootfs, never the real / or /etc.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from portside.engine.archive import HostileArchive, extract_into, stat_path, tar_path
from portside.engine.volumes import VolumeStore, resolve_mounts
from portside.testing import clone_rootfs

pytestmark = pytest.mark.root

CID = "f1" * 32


def _xattr_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.portside-probe", b"1")
    except OSError:
        return False
    os.removexattr(path, "user.portside-probe")
    return True


@pytest.fixture
def rootfs(busybox_rootfs: str, tmp_path: Path) -> Path:
    """A private copy of the busybox rootfs, with an image directory /data to copy up."""
    root = Path(clone_rootfs(busybox_rootfs, str(tmp_path / "rootfs")))
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    os.chown(data, 1000, 1001)
    data.chmod(0o750)
    (data / "file").write_text("image content")
    os.chown(data / "file", 1000, 1001)
    (data / "file").chmod(0o4710)
    os.link(data / "file", data / "sub" / "hard")
    (data / "link").symlink_to("/etc/passwd")
    (data / "escape").symlink_to("../../../../../../../tmp")
    os.mkfifo(data / "fifo", 0o620)
    os.mknod(data / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.utime(data / "sub", ns=(1_000_000_000, 1_000_000_000))
    # an image whose VOLUME path is a symlink that climbs out: resolves to the rootfs's /etc
    (root / "evil").symlink_to("../../../../../../../../etc")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sentinel").write_text("host")
    return root


def test_copy_up_into_a_fresh_volume(rootfs: Path, tmp_path: Path) -> None:
    store = VolumeStore(str(tmp_path / "volumes"))
    config = {"Volumes": {"/data": {}, "/evil": {}, "/bin": {}}}
    specs, entries = resolve_mounts(store, CID, config, {}, str(rootfs))
    vols = {e["Destination"]: Path(e["Source"]) for e in entries}
    assert {s.source for s in specs} == {str(v) for v in vols.values()}
    vol = vols["/data"]

    st = vol.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o750)
    f = (vol / "file").stat()
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 1001, 0o4710)
    assert (vol / "file").read_text() == "image content"
    assert (vol / "sub" / "hard").stat().st_ino == f.st_ino
    assert os.readlink(vol / "link") == "/etc/passwd"
    assert os.readlink(vol / "escape") == "../../../../../../../tmp"
    assert stat.S_ISFIFO((vol / "fifo").lstat().st_mode)
    assert os.major((vol / "null").lstat().st_rdev) == 1
    assert (vol / "sub").stat().st_mtime_ns == 1_000_000_000

    evil = vols["/evil"]
    assert (evil / "passwd").read_bytes() == (rootfs / "etc" / "passwd").read_bytes()
    assert (evil / "passwd").read_bytes() != Path("/etc/passwd").read_bytes()
    assert (vols["/bin"] / "busybox").stat().st_size == (rootfs / "bin" / "busybox").stat().st_size


def test_copy_up_keeps_xattrs(rootfs: Path, tmp_path: Path) -> None:
    if not _xattr_supported(rootfs / "data" / "file"):
        pytest.skip("no user xattrs on the tmp file system")
    os.setxattr(rootfs / "data" / "file", "user.origin", b"image")
    store = VolumeStore(str(tmp_path / "volumes"))
    resolve_mounts(store, CID, {}, {"Binds": ["named:/data"]}, str(rootfs))
    assert os.getxattr(Path(store.path("named"), "file"), "user.origin") == b"image"


def test_nocopy_leaves_the_volume_empty(rootfs: Path, tmp_path: Path) -> None:
    store = VolumeStore(str(tmp_path / "volumes"))
    resolve_mounts(store, CID, {}, {"Binds": ["named:/data:nocopy"]}, str(rootfs))
    assert os.listdir(store.path("named")) == []


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buf.seek(0)
    return buf


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.uid, info.gid, info.mode = kind, link, 4321, 8765, 0o644
    return info


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "members",
    [
        [(_info("../../outside/pwned"), b"x")],
        [(_info("/outside/pwned"), b"x")],
        [(_info("up", tarfile.SYMTYPE, "../../.."), b""), (_info("up/outside/pwned"), b"x")],
        [(_info("abs", tarfile.SYMTYPE, "/"), b""), (_info("abs/pwned"), b"x")],
        [(_info("hl", tarfile.LNKTYPE, "../../outside/sentinel"), b"")],
        [(_info("d", tarfile.DIRTYPE), b""), (_info("d/../../../outside/pwned"), b"x")],
    ],
)
def test_hostile_archives_write_nothing_outside(
    rootfs: Path, tmp_path: Path, members: list
) -> None:
    outside_before = _tree(tmp_path / "outside")
    with pytest.raises(HostileArchive, match="archive member"):
        extract_into(str(rootfs), "/tmp", _tar(*members))
    assert _tree(tmp_path / "outside") == outside_before
    assert (tmp_path / "outside" / "sentinel").read_text() == "host"
    assert (tmp_path / "outside" / "sentinel").stat().st_nlink == 1
    assert not list(tmp_path.glob("**/pwned"))


def test_extract_through_a_container_symlink_stays_in_root(rootfs: Path, tmp_path: Path) -> None:
    extract_into(str(rootfs), "/data/escape", _tar((_info("dropped"), b"x")))
    assert (rootfs / "tmp" / "dropped").read_bytes() == b"x"  # the container's /tmp
    assert not (tmp_path / "dropped").exists()


def test_extract_ownership(rootfs: Path) -> None:
    node = _info("null", tarfile.CHRTYPE)
    node.devmajor, node.devminor = 1, 3
    extract_into(str(rootfs), "/tmp", _tar((_info("owned"), b"x"), (node, b"")))
    st = (rootfs / "tmp" / "owned").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_ISCHR((rootfs / "tmp" / "null").lstat().st_mode)
    extract_into(str(rootfs), "/tmp", _tar((_info("kept"), b"x")), copy_uid_gid=True)
    st = (rootfs / "tmp" / "kept").stat()
    assert (st.st_uid, st.st_gid) == (4321, 8765)


def test_round_trip_of_the_whole_rootfs(rootfs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    extract_into(
        str(other), "/", io.BytesIO(b"".join(tar_path(str(rootfs), "/."))), copy_uid_gid=True
    )
    assert _tree(other) == _tree(rootfs)
    for rel in ("data/file", "data/sub", "data/link", "bin/busybox", "etc/passwd", "tmp"):
        a, b = (rootfs / rel).lstat(), (other / rel).lstat()
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_size) == (
            b.st_mode,
            b.st_uid,
            b.st_gid,
            b.st_size,
        )
    assert (other / "data" / "sub" / "hard").stat().st_ino == (
        other / "data" / "file"
    ).stat().st_ino
    assert stat_path(str(other), "/data/link")["linkTarget"] == "/etc/passwd"
