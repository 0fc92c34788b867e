"""Docker's User/GroupAdd → ids, read from the container's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine.userinfo import in_root, lookup_user, resolve_user
from portside.errors import InvalidArgument

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
app:x:1000:1000::/home/app:/bin/sh
broken:x:notanumber:1::/:/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:app,other
audio:x:29:app
app:x:1000:
staff:x:50:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    return str(tmp_path / "rootfs")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", (0, 0, [])),
        ("root", (0, 0, [])),
        ("app", (1000, 1000, [10, 29])),
        ("1000", (1000, 1000, [10, 29])),
        ("app:staff", (1000, 50, [])),
        ("app:50", (1000, 50, [])),
        ("4242", (4242, 0, [])),  # numeric, no passwd entry: Docker's gid 0
        ("4242:4343", (4242, 4343, [])),
        ("daemon:wheel", (1, 10, [])),
    ],
)
def test_resolve_user(rootfs: str, user: str, expected: tuple[int, int, list[int]]) -> None:
    assert resolve_user(rootfs, user) == expected


def test_home(rootfs: str) -> None:
    assert lookup_user(rootfs, "app").home == "/home/app"
    assert lookup_user(rootfs, "").home == "/root"
    assert lookup_user(rootfs, "4242").home == "/"


def test_group_add(rootfs: str) -> None:
    assert resolve_user(rootfs, "app", ["staff", "777", "wheel"]) == (1000, 1000, [10, 29, 50, 777])
    assert resolve_user(rootfs, "", ["audio"]) == (0, 0, [29])


@pytest.mark.parametrize(
    ("user", "group_add", "words"),
    [
        ("nobody", [], "unable to find user nobody"),
        ("app:nogroup", [], "unable to find group nogroup"),
        ("app", ["nogroup"], "unable to find group nogroup"),
        ("99999999999", [], "range"),
    ],
)
def test_errors(rootfs: str, user: str, group_add: list[str], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        resolve_user(rootfs, user, group_add)


def test_no_passwd_file_numeric_ok(tmp_path: Path) -> None:
    assert resolve_user(str(tmp_path), "123:456") == (123, 456, [])
    with pytest.raises(InvalidArgument):
        resolve_user(str(tmp_path), "app")


def test_symlinked_passwd_stays_in_root(tmp_path: Path) -> None:
    """/etc/passwd -> /etc/hostpasswd must resolve inside the rootfs, not on the host."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    (root / "etc" / "real").write_text("app:x:7:7::/app:/bin/sh\n")
    os.symlink("../../../../../../etc/real", root / "etc" / "passwd")
    assert resolve_user(str(root), "app") == (7, 7, [])
    os.remove(root / "etc" / "passwd")
    os.symlink(str(outside / "passwd"), root / "etc" / "passwd")  # absolute: re-rooted
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        resolve_user(str(root), "evil")


def test_in_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "a" / "b").mkdir(parents=True)
    os.symlink("/a", root / "abs")
    os.symlink("../../..", root / "a" / "up")
    assert in_root(str(root), "/abs/b") == str(root / "a" / "b")
    assert in_root(str(root), "/a/up/a") == str(root / "a")
    assert in_root(str(root), "/../../x") == str(root / "x")
    os.symlink("loop", root / "loop")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        in_root(str(root), "/loop")


@given(st.text(alphabet="abc/.", max_size=30))
def test_in_root_never_leaves(path: str) -> None:
    root = "/nonexistent-root-for-test"
    assert (in_root(root, path) + "/").startswith(root + "/")
