"""apply_layer as root on the real kernel: owners, setuid bits, device nodes, fifos,
security.capability, overlayfs whiteouts and a real overlay mount of applied layers,
and a full disk. Every snapshot lives under tmp_path; mounts are undone in finalizers.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portside.errors import Unavailable
from portside.image.layer import OPAQUE_XATTR, ApplyResult, apply_layer
from portside.image.layer_make import make_layer

pytestmark = pytest.mark.root

# VFS_CAP_REVISION_2 with the effective bit: CAP_NET_BIND_SERVICE (10) permitted; all
# bytes ASCII, so tarfile's UTF-8 PAX values carry it unchanged
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = attrs.pop("mtime", 1_700_000_000)
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def apply(blob: bytes, dest: Path, **kwargs: Any) -> ApplyResult:
    return apply_layer(io.BytesIO(blob), str(dest), **kwargs)


@pytest.fixture
def mounts() -> Iterator[Callable[..., None]]:
    """``mount(args..., target)``; everything mounted is unmounted afterwards."""
    done: list[str] = []

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)
        done.append(args[-1])

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def test_owners_modes_and_setuid_bits(tmp_path: Path) -> None:
    tar = make_tar(
        [
            (info("bin/", tarfile.DIRTYPE, mode=0o2775, uid=10, gid=20), None),
            (info("bin/su", mode=0o4755, uid=1234, gid=5678), b"#!/bin/true\n"),
            (info("bin/wall", mode=0o2755, uid=0, gid=5), b""),
            (info("tmp/", tarfile.DIRTYPE, mode=0o1777), None),
            (info("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox", uid=7, gid=8), None),
        ]
    )
    apply(tar, tmp_path / "snap")
    snap = tmp_path / "snap"
    su = (snap / "bin/su").stat()
    assert (su.st_uid, su.st_gid, stat.S_IMODE(su.st_mode)) == (1234, 5678, 0o4755)
    assert stat.S_IMODE((snap / "bin/wall").stat().st_mode) == 0o2755
    bindir = (snap / "bin").stat()
    assert (bindir.st_uid, bindir.st_gid, stat.S_IMODE(bindir.st_mode)) == (10, 20, 0o2775)
    assert stat.S_IMODE((snap / "tmp").stat().st_mode) == 0o1777
    sh = (snap / "bin/sh").lstat()
    assert (sh.st_uid, sh.st_gid) == (7, 8)
    assert sh.st_mtime == 1_700_000_000


def test_device_nodes_fifos_and_xattrs(tmp_path: Path) -> None:
    ping = info("bin/ping", mode=0o755, uid=0, gid=0)
    ping.pax_headers = {
        "SCHILY.xattr.security.capability": CAPABILITY.decode("latin-1"),
        "SCHILY.xattr.user.note": "kept",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",  # not the layer's to set
    }
    tar = make_tar(
        [
            (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
            (info("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660, gid=6), None),
            (info("run/initctl", tarfile.FIFOTYPE, mode=0o600, uid=3), None),
            (ping, b"\x7fELF"),
        ]
    )
    assert apply(tar, tmp_path / "snap").entries == 4
    snap = tmp_path / "snap"
    null = (snap / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert (os.minor(null.st_rdev), stat.S_IMODE(null.st_mode)) == (3, 0o666)
    loop = (snap / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), loop.st_gid) == (7, 6)
    fifo = (snap / "run/initctl").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and fifo.st_uid == 3
    ping_path = str(snap / "bin/ping")
    assert os.getxattr(ping_path, "user.note") == b"kept"
    assert os.getxattr(ping_path, "security.capability") == CAPABILITY
    assert "trusted.overlay.redirect" not in os.listxattr(ping_path)


def test_security_capability_set_by_make_layer_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    tool = src / "bin/tool"
    tool.write_bytes(b"\x7fELF")
    os.chown(tool, 0, 0)
    os.setxattr(tool, "security.capability", CAPABILITY)
    out = io.BytesIO()
    diff_id, _, _ = make_layer(str(src), out)
    result = apply(out.getvalue(), tmp_path / "snap", expected_diff_id=diff_id)
    assert result.diff_id == diff_id
    assert os.getxattr(tmp_path / "snap/bin/tool", "security.capability") == CAPABILITY


def overlay_layers(tmp_path: Path) -> tuple[Path, Path]:
    lower = tmp_path / "l1"
    apply(
        make_tar(
            [
                (info("a/x"), b"lower x"),
                (info("a/y"), b"lower y"),
                (info("d/old"), b"old"),
                (info("bin/tool", mode=0o750, uid=42, gid=43), b"tool"),
            ]
        ),
        lower,
    )
    upper = tmp_path / "l2"
    apply(
        make_tar(
            [
                (info("a/.wh.x", uid=5, gid=6), b""),
                (info("d/", tarfile.DIRTYPE, mode=0o700), None),
                (info("d/.wh..wh..opq"), b""),
                (info("d/new"), b"new"),
                (info("bin/alias", tarfile.LNKTYPE, linkname="bin/tool"), None),
            ]
        ),
        upper,
        lower_dirs=[str(lower)],
    )
    return lower, upper


def test_overlay_whiteouts_are_char_devices_and_opaque_xattrs(tmp_path: Path) -> None:
    _, upper = overlay_layers(tmp_path)
    wh = (upper / "a/x").lstat()
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert (wh.st_uid, wh.st_gid) == (5, 6)
    assert os.getxattr(upper / "d", OPAQUE_XATTR) == b"y"
    names = {p.name for p in upper.rglob("*")}
    assert not {n for n in names if n.startswith(".wh.")}
    # the hardlink's lower target was copied up, owner and mode included
    tool, alias = (upper / "bin/tool").stat(), (upper / "bin/alias").stat()
    assert tool.st_ino == alias.st_ino
    assert (tool.st_uid, tool.st_gid, stat.S_IMODE(tool.st_mode)) == (42, 43, 0o750)
    # and make_layer turns them back into .wh. entries
    out = io.BytesIO()
    make_layer(str(upper), out, whiteouts="overlay")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name for m in tar.getmembers()}
    assert {"a/.wh.x", "d/.wh..wh..opq", "d/new"} <= members
    assert "a/x" not in members


def test_overlay_mount_of_applied_layers(tmp_path: Path, mounts: Callable[..., None]) -> None:
    lower, upper = overlay_layers(tmp_path)
    merged = tmp_path / "merged"
    merged.mkdir()
    mounts("-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(merged))
    assert sorted(p.name for p in (merged / "a").iterdir()) == ["y"]  # x is whited out
    assert sorted(p.name for p in (merged / "d").iterdir()) == ["new"]  # opaque
    assert (merged / "bin/alias").read_bytes() == b"tool"


def test_disk_full_is_unavailable_and_leaves_nothing(
    tmp_path: Path, mounts: Callable[..., None]
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounts("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small))
    tar = make_tar([(info(f"f{i}"), os.urandom(64 << 10)) for i in range(8)])
    with pytest.raises(Unavailable, match="no space left"):
        apply(tar, small / "snap")
    assert list(small.iterdir()) == []
    assert apply(make_tar([(info("f"), b"fits")]), small / "snap").entries == 1
