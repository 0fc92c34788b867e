"""portside.runtime.paths: resolving paths inside a container root, against hostile symlinks.

The oracle for "resolves as a container would" is the kernel itself: openat2(2) with
RESOLVE_IN_ROOT resolves a path exactly as if ``root`` were ``/`` (unprivileged, Linux 5.6+).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.errors import InvalidArgument, PermissionDenied
from portside.linux._libc import SYSCALLS, libc
from portside.runtime.paths import mkdir_all_in_root, open_in_root, secure_join

RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def kernel_resolve(root: str, path: str) -> str | None:
    """Where the kernel resolves ``path`` with ``root`` as ``/``; None if it does not exist."""
    if "openat2" not in SYSCALLS:
        pytest.skip("no openat2 syscall number for this architecture")
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
        fd = libc.syscall(
            ctypes.c_long(SYSCALLS["openat2"]),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                pytest.skip("openat2 is not available on this kernel")
            if err in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise OSError(err, f"openat2 {path}: {os.strerror(err)}")
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(dirfd)


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _tree(base: Path) -> tuple[str, str]:
    """A rootfs with hostile links, and a directory outside it. Returns (root, outside)."""
    root = base / "rootfs"
    outside = base / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("inside\n")
    (root / "a" / "b" / "file").write_text("x")
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    links = {
        "abs_etc": "/etc",  # the host's /etc, if followed naively
        "abs_outside": str(outside),  # an absolute path to a real directory outside
        "up": "../../../../..",
        "a/up": "../../..",
        "a/b/up": "../../../../../etc",
        "rel": "a/b",
        "a/rel": "b",
        "esc": "../outside/secret",
        "chain1": "chain2",
        "chain2": "a/chain3",
        "a/chain3": "/a/b",
        "loop1": "loop2",
        "loop2": "loop1",
        "self": "self",
        "dangling": "/nonexistent/deeper",
        "dots": "./a/./b/",
        # the components of the hypothesis test, at every level of the tree
        "link_abs": "/a/b",
        "link_up": "../..",
        "a/link_abs": "/etc",
        "a/link_up": "../../..",
        "a/b/link_abs": "/a/b/../link_up/a",
        "a/b/link_up": "../../../etc/../a",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return os.path.realpath(root), os.path.realpath(outside)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[str, str]:
    return _tree(tmp_path)


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The same tree, made once for the hypothesis tests (they must not modify it)."""
    return _tree(tmp_path_factory.mktemp("paths"))


# --- secure_join ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unsafe", "expected"),
    [
        ("", ""),
        ("/", ""),
        (".", ""),
        ("..", ""),
        ("/../../..", ""),
        ("a/b/file", "a/b/file"),
        ("/a//b/./file", "a/b/file"),
        ("a/../../../etc/passwd", "etc/passwd"),
        ("abs_etc", "etc"),
        ("abs_etc/passwd", "etc/passwd"),
        ("abs_etc/shadow", "etc/shadow"),
        ("up", ""),
        ("up/etc/passwd", "etc/passwd"),
        ("a/up", ""),
        ("a/b/up", "etc"),
        ("a/b/up/passwd", "etc/passwd"),
        ("rel", "a/b"),
        ("rel/file", "a/b/file"),
        ("a/rel/file", "a/b/file"),
        ("esc", "outside/secret"),
        ("chain1", "a/b"),
        ("chain1/file", "a/b/file"),
        ("dangling", "nonexistent/deeper"),
        ("dangling/more", "nonexistent/deeper/more"),
        ("dots/file", "a/b/file"),
        ("nonexistent/x/y", "nonexistent/x/y"),
        ("a/b/file/x", "a/b/file/x"),
    ],
)
def test_secure_join_table(tree: tuple[str, str], unsafe: str, expected: str) -> None:
    root, _ = tree
    want = os.path.join(root, expected) if expected else root
    assert secure_join(root, unsafe) == want


@pytest.mark.parametrize("unsafe", ["abs_outside", "abs_outside/secret", "esc"])
def test_secure_join_never_leaves_root(tree: tuple[str, str], unsafe: str) -> None:
    root, outside = tree
    result = secure_join(root, unsafe)
    assert inside(root, result)
    assert not inside(outside, os.path.realpath(result))


def test_absolute_link_to_outside_is_taken_inside_root(tree: tuple[str, str]) -> None:
    root, outside = tree
    assert secure_join(root, "abs_outside/secret") == root + outside + "/secret"


@pytest.mark.parametrize(
    "unsafe", ["loop1", "loop2/x", "self", "a/../self", "a/../loop1", "rel/../../loop2"]
)
def test_symlink_loops_are_refused(tree: tuple[str, str], unsafe: str) -> None:
    root, _ = tree
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        secure_join(root, unsafe)


def test_long_chains_are_followed_up_to_a_limit(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "target").mkdir()
    for i in range(300):
        os.symlink(f"l{i + 1}" if i < 299 else "target", root / f"l{i}")
    assert secure_join(str(root), "l100") == str(root / "target")
    with pytest.raises(InvalidArgument):
        secure_join(str(root), "l0")


def test_relative_root_is_made_absolute(
    tree: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = tree
    monkeypatch.chdir(os.path.dirname(root))
    assert secure_join("rootfs", "rel/file") == os.path.join(root, "a/b/file")


@pytest.mark.parametrize(
    "unsafe",
    [
        "a/b/file",
        "abs_etc/passwd",
        "a/b/up/passwd",
        "up/a/rel",
        "chain1/file",
        "a/link_abs/passwd",
        "a/b/link_abs",
        "a/b/link_up",
        "link_abs/link_up/rel",
        "a/../../etc",
        "dots",
    ],
)
def test_secure_join_agrees_with_the_kernel(tree: tuple[str, str], unsafe: str) -> None:
    root, _ = tree
    expected = kernel_resolve(root, unsafe)
    assert expected is not None
    assert secure_join(root, unsafe) == expected


@pytest.mark.parametrize(
    "unsafe", ["rel/..", "chain1/../b/file", "link_abs/../b/file", "a/link_abs/.."]
)
def test_dotdot_after_a_symlink_is_taken_from_its_target(
    tree: tuple[str, str], unsafe: str
) -> None:
    # the kernel (and filepath-securejoin) resolve "rel/.." as "a/b/..", i.e. "a"
    root, _ = tree
    expected = kernel_resolve(root, unsafe)
    assert expected is not None
    assert secure_join(root, unsafe) == expected


# --- open_in_root ---------------------------------------------------------------------------


def test_open_in_root_returns_a_checked_o_path_fd(tree: tuple[str, str]) -> None:
    root, _ = tree
    fd = open_in_root(root, secure_join(root, "rel/file"), "test")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == os.path.join(root, "a/b/file")
        assert os.get_inheritable(fd) is False
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.read(fd, 1)  # O_PATH: no I/O
    finally:
        os.close(fd)
    fd = open_in_root(root, root, "root itself")
    os.close(fd)


def test_open_in_root_checks_against_the_real_root_given(tree: tuple[str, str]) -> None:
    """``real_root`` (the caller's realpath of root) is what the fd is checked against."""
    root, outside = tree
    fd = open_in_root(root, secure_join(root, "rel/file"), "test", real_root=root)
    os.close(fd)
    before = open_fds()
    with pytest.raises(PermissionDenied, match="outside the container root"):
        open_in_root(root, secure_join(root, "rel/file"), "test", real_root=outside)
    assert open_fds() == before


def test_open_in_root_of_a_raw_symlink_gets_the_link_not_its_target(tree: tuple[str, str]) -> None:
    # O_PATH|O_NOFOLLOW on a symlink: no ELOOP, an fd of the symlink itself (inside root)
    root, outside = tree
    for raw in ("esc", "abs_outside", "abs_etc"):
        fd = open_in_root(root, os.path.join(root, raw), "raw link")
        try:
            st = os.fstat(fd)
            assert stat.S_ISLNK(st.st_mode)
            assert os.readlink(f"/proc/self/fd/{fd}") == os.path.join(root, raw)
            assert st.st_ino != os.stat(os.path.join(outside, "secret")).st_ino
            assert st.st_ino != os.stat(outside).st_ino
        finally:
            os.close(fd)


def test_open_in_root_refuses_a_raw_path_through_a_link_to_outside(tree: tuple[str, str]) -> None:
    root, outside = tree
    before = open_fds()
    with pytest.raises(PermissionDenied) as info:
        open_in_root(root, os.path.join(root, "abs_outside", "secret"), "mount /x")
    message = str(info.value)
    assert message.startswith("mount /x: resolves to ")
    assert os.path.join(outside, "secret") in message
    assert open_fds() == before  # the fd of the outside file was closed


def test_open_in_root_refuses_a_sibling_with_the_same_prefix(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs2").mkdir()
    (tmp_path / "rootfs2" / "f").write_text("")
    with pytest.raises(PermissionDenied):
        open_in_root(str(tmp_path / "rootfs"), str(tmp_path / "rootfs2" / "f"), "f")


def test_open_in_root_accepts_a_root_given_through_a_symlink(tree: tuple[str, str]) -> None:
    root, _ = tree
    alias = os.path.join(os.path.dirname(root), "alias")
    os.symlink(root, alias)
    fd = open_in_root(alias, os.path.join(alias, "a", "b", "file"), "f")
    os.close(fd)


def test_open_in_root_of_a_missing_path_raises_file_not_found(tree: tuple[str, str]) -> None:
    root, _ = tree
    with pytest.raises(FileNotFoundError):
        open_in_root(root, os.path.join(root, "missing"), "missing")


# --- mkdir_all_in_root ----------------------------------------------------------------------


def test_mkdir_all_creates_every_level(tree: tuple[str, str]) -> None:
    root, _ = tree
    path = mkdir_all_in_root(root, "/new/deeper/still")
    assert path == os.path.join(root, "new/deeper/still")
    assert os.path.isdir(path)
    assert mkdir_all_in_root(root, "new/deeper/still") == path  # idempotent
    assert mkdir_all_in_root(root, "/") == root
    assert mkdir_all_in_root(root, "") == root


def test_mkdir_all_follows_links_inside_root(tree: tuple[str, str]) -> None:
    root, outside = tree
    before = sorted(os.listdir(outside))
    assert mkdir_all_in_root(root, "abs_outside/made") == root + outside + "/made"
    assert os.path.isdir(root + outside + "/made")
    assert mkdir_all_in_root(root, "rel/sub") == os.path.join(root, "a/b/sub")
    assert mkdir_all_in_root(root, "../../../escape") == os.path.join(root, "escape")
    assert mkdir_all_in_root(root, "dangling/x") == os.path.join(root, "nonexistent/deeper/x")
    assert sorted(os.listdir(outside)) == before
    assert not os.path.exists(os.path.join(os.path.dirname(root), "escape"))


@pytest.mark.parametrize(
    "unsafe", ["a/b/file", "a/b/file/sub", "rel/file/sub/deeper", "etc/passwd"]
)
def test_mkdir_all_refuses_through_a_file(tree: tuple[str, str], unsafe: str) -> None:
    root, _ = tree
    with pytest.raises(InvalidArgument, match="exists and is not a directory"):
        mkdir_all_in_root(root, unsafe)
    assert not os.path.exists(os.path.join(root, "a/b/file/sub"))


def test_mkdir_all_refuses_a_loop(tree: tuple[str, str]) -> None:
    root, _ = tree
    with pytest.raises(InvalidArgument):
        mkdir_all_in_root(root, "loop1/x")


# --- hypothesis -----------------------------------------------------------------------------

_COMPONENTS = ["a", "b", "..", ".", "link_abs", "link_up"]
_paths = st.tuples(st.booleans(), st.lists(st.sampled_from(_COMPONENTS), max_size=8)).map(
    lambda t: ("/" if t[0] else "") + "/".join(t[1])
)


@settings(max_examples=400, deadline=None)
@given(_paths)
def test_secure_join_result_is_always_under_root(shared_tree: tuple[str, str], unsafe: str) -> None:
    root, outside = shared_tree
    result = secure_join(root, unsafe)
    assert inside(root, result)
    assert os.path.realpath(result) == result  # nothing left to resolve: no link leads out
    assert not inside(outside, result)


@settings(max_examples=400, deadline=None)
@given(_paths)
def test_secure_join_matches_the_kernel(shared_tree: tuple[str, str], unsafe: str) -> None:
    root, _ = shared_tree
    expected = kernel_resolve(root, unsafe)
    if expected is not None:
        assert secure_join(root, unsafe) == expected


@settings(max_examples=200, deadline=None)
@given(_paths)
def test_open_in_root_of_a_secure_join_result_never_escapes(
    shared_tree: tuple[str, str], unsafe: str
) -> None:
    root, _ = shared_tree
    path = secure_join(root, unsafe)
    try:
        fd = open_in_root(root, path, "x")
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        assert inside(root, os.readlink(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)
