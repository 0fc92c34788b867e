"""portside.testing: busybox rootfs, bundles, IDs, and the shared conftest fixtures."""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import time
from pathlib import Path

import pytest

import portside.testing
from portside.errors import AlreadyExists, InvalidArgument
from portside.oci import load_spec
from portside.testing import (
    BusyboxUnavailable,
    busybox_available,
    clone_rootfs,
    make_bundle,
    make_busybox_rootfs,
    unique_id,
)
from portside.testing.busybox import DEFAULT_BUSYBOX, is_static_elf

needs_busybox = pytest.mark.skipif(
    not busybox_available(), reason="needs a static /bin/busybox: apt-get install busybox-static"
)

# --- ELF check ---------------------------------------------------------------------


def _elf(path: Path, *, is64: bool, little: bool, types: list[int]) -> Path:
    """A minimal ELF file whose program headers have the given p_type values."""
    end = "<" if little else ">"
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + bytes(9)
    if is64:
        ehsize, phentsize = 64, 56
        header = struct.pack(end + "HHIQQQIHHHHHH", 2, 62, 1, 0, ehsize, 0, 0, ehsize,
                             phentsize, len(types), 0, 0, 0)  # fmt: skip
    else:
        ehsize, phentsize = 52, 32
        header = struct.pack(end + "HHIIIIIHHHHHH", 2, 3, 1, 0, ehsize, 0, 0, ehsize,
                             phentsize, len(types), 0, 0, 0)  # fmt: skip
    table = b"".join(struct.pack(end + "I", t) + bytes(phentsize - 4) for t in types)
    path.write_bytes(ident + header + table)
    return path


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("little", [True, False])
def test_is_static_elf_crafted(tmp_path: Path, is64: bool, little: bool) -> None:
    static = _elf(tmp_path / "s", is64=is64, little=little, types=[6, 1, 1, 4])
    dynamic = _elf(tmp_path / "d", is64=is64, little=little, types=[6, 3, 1, 2])
    assert is_static_elf(str(static)) is True
    assert is_static_elf(str(dynamic)) is False


def test_is_static_elf_real_binaries() -> None:
    assert is_static_elf(os.path.realpath(sys.executable)) is False  # Debian's python: dynamic
    if busybox_available():
        assert is_static_elf(DEFAULT_BUSYBOX) is True


@pytest.mark.parametrize("content", [b"#!/bin/sh\n", b"", b"\x7fELF\x02\x01\x01" + bytes(20)])
def test_is_static_elf_rejects_non_elf(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(InvalidArgument, match="ELF"):
        is_static_elf(str(tmp_path / "f"))


def test_busybox_unavailable(tmp_path: Path) -> None:
    assert not busybox_available(str(tmp_path / "missing"))
    assert not busybox_available(os.path.realpath(sys.executable))
    with pytest.raises(BusyboxUnavailable, match="apt-get install busybox-static"):
        make_busybox_rootfs(str(tmp_path / "r"), busybox=str(tmp_path / "missing"))
    with pytest.raises(BusyboxUnavailable, match=r"dynamically linked.*busybox-static"):
        make_busybox_rootfs(str(tmp_path / "r"), busybox=os.path.realpath(sys.executable))
    assert not (tmp_path / "r").exists()


# --- busybox rootfs ----------------------------------------------------------------


@needs_busybox
def test_make_busybox_rootfs(tmp_path: Path) -> None:
    start = time.perf_counter()
    root = Path(make_busybox_rootfs(str(tmp_path / "rootfs")))
    assert time.perf_counter() - start < 1.0
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "home"):
        assert (root / d).is_dir(), d
    assert (root / "var/run").is_dir()
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    busybox = (root / "bin/busybox").stat()
    assert busybox.st_mode & 0o111 and busybox.st_nlink > 100
    for applet in ("bin/sh", "usr/bin/wc", "bin/hostname", "sbin/ip"):
        assert (root / applet).stat().st_ino == busybox.st_ino, applet
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert "nobody:x:65534:65534:nobody:/nonexistent:/bin/false" in passwd
    groups = {line.split(":")[0]: line.split(":")[2] for line in (root / "etc/group").open()}
    assert groups["root"] == "0" and groups["tty"] == "5" and groups["nogroup"] == "65534"
    assert (root / "etc/hostname").read_text().strip() == "portside"


@needs_busybox
def test_make_busybox_rootfs_symlinks_when_hardlinks_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: str, dst: str) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    root = Path(make_busybox_rootfs(str(tmp_path / "rootfs")))
    assert os.readlink(root / "usr/bin/wc") == "/bin/busybox"
    assert (root / "bin/busybox").is_file() and not (root / "bin/busybox").is_symlink()


@needs_busybox
def test_make_busybox_rootfs_refuses_non_empty(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    with pytest.raises(AlreadyExists, match="not empty"):
        make_busybox_rootfs(str(tmp_path))
    assert os.listdir(tmp_path) == ["junk"]


# --- bundles and IDs ---------------------------------------------------------------


@needs_busybox
def test_make_bundle_builds_rootfs(tmp_path: Path) -> None:
    def mutate(spec: dict) -> None:
        spec["process"]["env"].append("HELLO=1")
        spec["hostname"] = "h1"

    path = make_bundle(str(tmp_path / "b"), args=["echo", "hi"], mutate=mutate)
    assert path == str(tmp_path / "b")
    spec = load_spec(os.path.join(path, "config.json"))
    assert spec.process.args == ["echo", "hi"]
    assert spec.process.terminal is False
    assert "HELLO=1" in spec.process.env and spec.hostname == "h1"
    assert spec.root.path == "rootfs" and spec.root.readonly is False
    assert (tmp_path / "b/rootfs/bin/sh").exists()


def test_make_bundle_external_rootfs(tmp_path: Path) -> None:
    (tmp_path / "somewhere").mkdir()
    path = make_bundle(str(tmp_path / "b"), str(tmp_path / "somewhere"), args=["x"], terminal=True)
    data = json.loads((Path(path) / "config.json").read_text())
    assert data["root"] == {"path": str(tmp_path / "somewhere"), "readonly": False}
    assert data["process"]["terminal"] is True
    assert os.listdir(path) == ["config.json"]
    with pytest.raises(AlreadyExists):
        make_bundle(path, str(tmp_path / "somewhere"), args=["x"])


def test_clone_rootfs_keeps_hardlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/a").write_text("payload")
    os.link(src / "bin/a", src / "bin/b")
    (src / "tmp").mkdir(mode=0o1777)
    os.chmod(src / "tmp", 0o1777)
    dest = Path(clone_rootfs(str(src), str(tmp_path / "x/y/dest")))
    a, b = (dest / "bin/a").stat(), (dest / "bin/b").stat()
    assert a.st_ino == b.st_ino != (src / "bin/a").stat().st_ino
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    with pytest.raises(AlreadyExists):
        clone_rootfs(str(src), str(dest))


def test_unique_id() -> None:
    ids = {unique_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        assert value.startswith("t") and len(value) == 9 and value.isalnum()
    long_prefix = unique_id("abcdefg")
    assert len(long_prefix) == 15 and long_prefix.islower()


@pytest.mark.parametrize("prefix", ["", "1a", "Ab", "a-b", "abcdefgh", "a/b", "é"])
def test_unique_id_bad_prefix(prefix: str) -> None:
    with pytest.raises(InvalidArgument, match="prefix"):
        unique_id(prefix)


def test_exported_names() -> None:
    assert sorted(portside.testing.__all__) == [
        "BusyboxUnavailable",
        "busybox_available",
        "clone_rootfs",
        "make_bundle",
        "make_busybox_rootfs",
        "unique_id",
    ]


# --- the shared fixtures of tests/conftest.py --------------------------------------


def test_bundle_fixture_gives_fresh_copies(bundle, busybox_rootfs: str) -> None:
    first = Path(bundle(args=["true"]))
    second = Path(bundle(args=["false"], mutate=lambda s: s.update(hostname="two")))
    assert first != second
    pristine = Path(busybox_rootfs, "etc/hostname")
    (first / "rootfs/etc/hostname").write_text("changed\n")
    assert pristine.read_text() == "portside\n"
    assert (second / "rootfs/etc/hostname").read_text() == "portside\n"
    assert json.loads((second / "config.json").read_text())["hostname"] == "two"
    assert (first / "rootfs/bin/sh").stat().st_ino != Path(busybox_rootfs, "bin/sh").stat().st_ino


def test_runtime_root_fixture(runtime_root: str) -> None:
    assert os.path.isdir(runtime_root) and not os.listdir(runtime_root)
    assert len(runtime_root) < 40


def test_root_marker_skips_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    conftest = sys.modules["conftest"]

    class Item:
        def __init__(self, marked: bool) -> None:
            self.marked = marked

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.marked and name == "root" else None

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        conftest.pytest_runtest_setup(Item(marked=True))
    conftest.pytest_runtest_setup(Item(marked=False))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    conftest.pytest_runtest_setup(Item(marked=True))
