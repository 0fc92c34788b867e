"""``debian:bookworm`` made with debootstrap (slow, opt-in with PORTSIDE_SLOW_TESTS=1),
and finding the mirror in apt's sources (fast, always run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mount_helpers import scratch_root

from portside.errors import FailedPrecondition
from portside.image.content import ContentStore
from portside.image.debian import apt_mirror, make_debian_image
from portside.image.snapshots import mount_all, open_snapshotter, unmount_all
from portside.image.store import ImageStore
from portside.image.unpack import unpack
from portside.oci.image_spec import parse_image_config

SLOW = os.environ.get("PORTSIDE_SLOW_TESTS") == "1"


def _sources(tmp_path: Path, main: str, parts: dict[str, str]) -> str:
    path = tmp_path / "sources.list"
    path.write_text(main)
    (tmp_path / "sources.list.d").mkdir()
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return str(path)


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    debian = """Types: deb
# a comment
URIs: http://deb.example.org/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""
    other = "Types: deb\nURIs: https://apt.example.com/x\nSuites: nodistro\nComponents: main\n"
    path = _sources(tmp_path, "", {"a-other.sources": other, "debian.sources": debian})
    assert apt_mirror("bookworm", path) == "http://deb.example.org/debian"
    # a suite no source lists: the first deb source will do
    assert apt_mirror("trixie", path) == "https://apt.example.com/x"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    main = (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    disabled = "deb http://disabled.example/debian bookworm main\n"
    path = _sources(tmp_path, main, {"x.list.disabled": disabled})
    assert apt_mirror("bookworm", path) == "http://mirror.example/debian"


def test_no_source_is_a_clear_error(tmp_path: Path) -> None:
    path = _sources(tmp_path, "# nothing\n", {})
    with pytest.raises(FailedPrecondition, match="no deb source in"):
        apt_mirror("bookworm", path)


@pytest.fixture
def root() -> Iterator[str]:
    with scratch_root("ps-debian-") as path:
        yield path


@pytest.mark.root
@pytest.mark.skipif(not SLOW, reason="slow (debootstrap, ~1 min): set PORTSIDE_SLOW_TESTS=1")
@pytest.mark.skipif(
    shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin") is None,
    reason="debootstrap is not installed (apt-get install debootstrap)",
)
def test_debian_bookworm_image(root: str) -> None:
    content = ContentStore(os.path.join(root, "content"))
    store = ImageStore(os.path.join(root, "images"), content)
    image = make_debian_image(content, store)
    assert store.get("debian:bookworm").id == image.id
    assert len(image.layers) == 1
    config = parse_image_config(image.config)
    assert config.config.cmd == ["bash"]
    assert [e for e in config.config.env if e.startswith("PATH=")] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert content.check(quick=True) == [] and store.check() == []
    sn = open_snapshotter(os.path.join(root, "snap"))
    top = unpack(image, content, sn)
    target = os.path.join(root, "rootfs")
    os.mkdir(target)
    mount_all(sn.view("view", parent=top), target)
    try:
        with open(os.path.join(target, "etc/debian_version")) as f:
            assert f.read().startswith("12.")
        assert os.listdir(os.path.join(target, "var/cache/apt/archives")) in (
            [],
            ["partial"],
            ["lock", "partial"],
            ["partial", "lock"],
        )
        out = subprocess.run(
            ["chroot", target, "/bin/bash", "-c", "dpkg-query -W -f='${Package}\\n' bash apt"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split() == ["apt", "bash"]
    finally:
        unmount_all(target)
