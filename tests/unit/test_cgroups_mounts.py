"""Hierarchy discovery and cgroup path resolution (mountinfo, /proc/self/cgroup, systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.runtime.cgroups import CgroupInvalid, CgroupUnavailable, detect_mode
from portside.runtime.cgroups.mounts import (
    Mount,
    cgroup_path,
    expand_slice,
    layout_from_dir,
    layout_from_mounts,
    parse_mountinfo,
    parse_proc_cgroup,
    read_layout,
    resolve_dir,
    systemd_path,
)

# this host's table (hybrid: v1 controllers, name=systemd, an empty cgroup2), trimmed
HYBRID = """\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

SYSTEMD_HOST = """\
25 22 0:22 / /sys/fs/cgroup ro,nosuid shared:4 - tmpfs tmpfs ro,mode=755
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 /kubepods /sys/fs/cgroup/pids rw shared:10 - cgroup cgroup rw,pids
"""

V2_HOST = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_parse_mountinfo_hybrid() -> None:
    mounts = parse_mountinfo(HYBRID)
    assert mounts == [
        Mount("/sys/fs/cgroup/cpu", "/", "cgroup", ("cpu",)),
        Mount("/sys/fs/cgroup/cpuacct", "/", "cgroup", ("cpuacct",)),
        Mount("/sys/fs/cgroup/memory", "/", "cgroup", ("memory",)),
        Mount("/sys/fs/cgroup/systemd", "/", "cgroup", ("name=systemd",)),
        Mount("/sys/fs/cgroup/unified", "/", "cgroup2", ()),
    ]


def test_parse_mountinfo_optional_fields_and_comounts() -> None:
    mounts = parse_mountinfo(SYSTEMD_HOST)
    assert mounts == [
        Mount("/sys/fs/cgroup/cpu,cpuacct", "/", "cgroup", ("cpu", "cpuacct")),
        Mount("/sys/fs/cgroup/pids", "/kubepods", "cgroup", ("pids",)),
    ]


def _escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@given(
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x00"
        ),
        min_size=1,
        max_size=20,
    ).map(lambda s: "/" + s.replace("/", "_"))
)
def test_parse_mountinfo_unescapes(mountpoint: str) -> None:
    line = f"1 2 0:3 / {_escape(mountpoint)} rw - cgroup2 cgroup2 rw\n"
    assert parse_mountinfo("garbage line\n" + line) == [Mount(mountpoint, "/", "cgroup2", ())]


def test_parse_proc_cgroup() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice\n"
    assert parse_proc_cgroup(text) == {
        "name=systemd": "/",
        "memory": "/process_api/abc",
        "cpu": "/x",
        "cpuacct": "/x",
        "": "/user.slice",
    }


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("system.slice", "/system.slice"),
        ("a-b.slice", "/a.slice/a-b.slice"),
        ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
        ("-.slice", "/"),
    ],
)
def test_expand_slice(name: str, path: str) -> None:
    assert expand_slice(name) == path


@pytest.mark.parametrize("name", ["a--b.slice", "-a.slice", "a-.slice", "a/b.slice", "a", ".slice"])
def test_expand_slice_invalid(name: str) -> None:
    with pytest.raises(CgroupInvalid, match="slice"):
        expand_slice(name)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("machine.slice:libpod:abc", "/machine.slice/libpod-abc.scope"),
        (":runc:abc", "/system.slice/runc-abc.scope"),
        ("user-1000.slice::abc", "/user.slice/user-1000.slice/abc.scope"),
        ("system.slice:x:my-sub.slice", "/system.slice/my-sub.slice"),
    ],
)
def test_systemd_path(spec: str, path: str) -> None:
    assert systemd_path(spec) == path


@pytest.mark.parametrize("spec", ["machine.slice:abc", "a:b:c:d", "machine.slice:x:", "bad:x:y"])
def test_systemd_path_invalid(spec: str) -> None:
    with pytest.raises(CgroupInvalid):
        systemd_path(spec)


@pytest.mark.parametrize(
    ("given_path", "expected"),
    [
        (None, "/portside/abc"),
        ("/a/b", "/a/b"),
        ("/a/../../b", "/b"),
        ("//a//b/", "/a/b"),
        ("a/b", "a/b"),
        ("a/../../../b", "b"),
        ("./x", "x"),
    ],
)
def test_cgroup_path(given_path: str | None, expected: str) -> None:
    assert cgroup_path(given_path, "abc") == expected


@pytest.mark.parametrize("bad", ["/", "", "..", "/a/..", "a/.."])
def test_cgroup_path_refuses_the_root(bad: str) -> None:
    with pytest.raises(CgroupInvalid, match="root"):
        cgroup_path(bad, "abc")


def test_cgroup_path_systemd_default_and_bad_id() -> None:
    assert cgroup_path(None, "abc", systemd=True) == "/system.slice/portside-abc.scope"
    with pytest.raises(CgroupInvalid):
        cgroup_path(None, "../x")


def test_layout_modes() -> None:
    hybrid = layout_from_mounts(parse_mountinfo(HYBRID), "/sys/fs/cgroup")
    assert hybrid is not None and hybrid.mode == "hybrid"
    assert sorted(hybrid.v1) == ["cpu", "cpuacct", "memory", "name=systemd"]
    v1 = layout_from_mounts(parse_mountinfo(SYSTEMD_HOST), "/sys/fs/cgroup")
    assert v1 is not None and v1.mode == "v1"
    assert v1.v1["cpu"] is v1.v1["cpuacct"]
    v2 = layout_from_mounts(parse_mountinfo(V2_HOST), "/sys/fs/cgroup")
    assert v2 is not None and v2.mode == "v2" and not v2.v1
    # the cgroup2 of a hybrid host, used as a root of its own
    unified = layout_from_mounts(parse_mountinfo(HYBRID), "/sys/fs/cgroup/unified")
    assert unified is not None and unified.mode == "v2"
    assert layout_from_mounts(parse_mountinfo(HYBRID), "/elsewhere") is None


def test_detect_mode_from_mountinfo_and_from_a_tree(tmp_path: Path) -> None:
    assert detect_mode(mountinfo=HYBRID) == "hybrid"
    assert detect_mode(mountinfo=V2_HOST) == "v2"
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    assert detect_mode(root=str(tmp_path), mountinfo=HYBRID) == "v1"
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert detect_mode(root=str(tmp_path), mountinfo="") == "hybrid"
    (tmp_path / "cgroup.controllers").write_text("")
    assert detect_mode(root=str(tmp_path), mountinfo="") == "v2"


def test_layout_from_an_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable, match="no cgroup hierarchy"):
        layout_from_dir(str(tmp_path))


def test_layout_from_dir_names(tmp_path: Path) -> None:
    for name in ("cpu,cpuacct", "systemd", "pids"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cgroup.procs").write_text("")
    layout = layout_from_dir(str(tmp_path))
    assert sorted(layout.v1) == ["cpu", "cpuacct", "name=systemd", "pids"]
    assert layout.v1["cpu"].mountpoint == f"{tmp_path}/cpu,cpuacct"


def test_resolve_dir() -> None:
    own = parse_proc_cgroup("4:memory:/process_api/h\n8:pids:/kubepods/pod1\n1:cpu:/\n0::/\n")
    memory = Mount("/sys/fs/cgroup/memory", "/", "cgroup", ("memory",))
    pids = Mount("/sys/fs/cgroup/pids", "/kubepods", "cgroup", ("pids",))
    cpu = Mount("/sys/fs/cgroup/cpu", "/", "cgroup", ("cpu",))
    assert resolve_dir(memory, "memory", "/portside/x", own) == "/sys/fs/cgroup/memory/portside/x"
    assert resolve_dir(memory, "memory", "x", own) == "/sys/fs/cgroup/memory/process_api/h/x"
    assert resolve_dir(cpu, "cpu", "x", own) == "/sys/fs/cgroup/cpu/x"
    # the mount shows /kubepods as its root: the caller's path is relative to it
    assert resolve_dir(pids, "pids", "x", own) == "/sys/fs/cgroup/pids/pod1/x"
    # a hierarchy missing from /proc/self/cgroup: its root
    assert resolve_dir(cpu, "cpuset", "x", own) == "/sys/fs/cgroup/cpu/x"


def test_read_layout_is_remembered_while_the_cgroup_mounts_stay() -> None:
    other = "90 46 0:99 / /var/lib/x/rootfs rw - overlay overlay rw,lowerdir=/a\n"
    first = read_layout("/sys/fs/cgroup", HYBRID)
    assert read_layout("/sys/fs/cgroup", other + HYBRID + other) is first
    assert read_layout("/sys/fs/cgroup/unified", HYBRID) is not first
    changed = read_layout("/sys/fs/cgroup", SYSTEMD_HOST)
    assert changed is not first and changed.mode == "v1"


def test_read_layout_of_a_tree_is_not_remembered(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("")
    assert read_layout(str(tmp_path), "").mode == "v2"
    (tmp_path / "cgroup.controllers").unlink()
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "cgroup.procs").write_text("")
    assert read_layout(str(tmp_path), "").mode == "v1"
