"""Namespace plans (runtime.namespaces), sysctl checks (runtime.init) and the parsing
helpers of runtime.cgroupfs — all pure functions over configs and /proc texts."""

from __future__ import annotations

import os
from typing import Any

import pytest

from portside.errors import InvalidArgument, NotFound
from portside.linux import kernel as K
from portside.linux.kernel import RecordingKernel
from portside.oci.runtime_spec import NAMESPACE_TYPES, Linux
from portside.runtime import namespaces
from portside.runtime.cgroupfs import _hierarchy_key, cgroup_mounts, own_cgroups
from portside.runtime.init import check_sysctls
from portside.runtime.namespaces import NamespacePlan, plan_namespaces


def linux(*entries: str | tuple[str, str], **extra: Any) -> Linux:
    """``linux("pid", ("network", "/proc/1/ns/net"))`` -> a Linux record."""
    nss = [{"type": e} if isinstance(e, str) else {"type": e[0], "path": e[1]} for e in entries]
    return Linux.from_json({"namespaces": nss, **extra}, "linux")


# --- plan_namespaces ------------------------------------------------------------------------


def test_no_linux_section_means_no_namespaces() -> None:
    plan = plan_namespaces(None)
    assert (plan.join, plan.new, plan.unshare_flags) == ([], [], 0)
    assert not plan.has("pid") and not plan.creates("pid")


def test_new_namespaces_in_spec_order() -> None:
    plan = plan_namespaces(linux("mount", "pid", "network", "uts", "ipc", "user", "cgroup"))
    assert plan.new == ["user", "cgroup", "ipc", "uts", "network", "pid", "mount"]
    assert plan.join == []


def test_join_and_new_are_split() -> None:
    plan = plan_namespaces(
        linux("pid", ("network", "/var/run/netns/x"), "mount", ("ipc", "/proc/7/ns/ipc"), "uts")
    )
    assert plan.new == ["uts", "pid", "mount"]
    assert plan.join == [("ipc", "/proc/7/ns/ipc"), ("network", "/var/run/netns/x")]
    assert plan.has("network") and not plan.creates("network")
    assert plan.has("pid") and plan.creates("pid")
    assert not plan.has("user") and not plan.has("cgroup")
    assert "NamespacePlan(" in repr(plan)


def test_empty_path_means_new() -> None:
    plan = plan_namespaces(linux(("network", "")))
    assert plan.new == ["network"] and plan.join == []


def test_unshare_flags_exclude_user() -> None:
    plan = plan_namespaces(linux(*NAMESPACE_TYPES))
    everything = 0
    for flag in K.CLONE_FLAGS.values():
        everything |= flag
    assert plan.unshare_flags == everything & ~K.CLONE_NEWUSER
    assert plan.creates("user")
    assert plan_namespaces(linux("user")).unshare_flags == 0


@pytest.mark.parametrize(
    ("entries", "stage1"),
    [
        ((), False),
        (("pid", "mount", "network", "ipc", "uts", "cgroup"), False),  # docker's default
        (("mount", "network"), False),  # the host's PID namespace
        (("pid", "mount", ("network", "/proc/7/ns/net"), ("ipc", "/proc/7/ns/ipc")), False),
        (("pid", "mount", "user"), True),  # maps are written between the unshares
        (("pid", "mount", "time"), True),  # a new time namespace is for children only
        ((("pid", "/proc/7/ns/pid"), "mount"), True),  # so is a joined PID namespace
        ((("user", "/proc/7/ns/user"), "mount"), True),
        ((("time", "/proc/7/ns/time"), "mount"), True),
    ],
)
def test_stage1_only_for_namespaces_entered_by_children(entries: tuple, stage1: bool) -> None:
    assert plan_namespaces(linux(*entries)).needs_stage1 is stage1


@pytest.mark.parametrize("ns_type", NAMESPACE_TYPES)
def test_unshare_flag_of_each_type(ns_type: str) -> None:
    flags = plan_namespaces(linux(ns_type)).unshare_flags
    assert flags == (0 if ns_type == "user" else K.CLONE_FLAGS[ns_type])


def test_joined_namespaces_are_not_unshared() -> None:
    plan = plan_namespaces(linux(("pid", "/proc/1/ns/pid"), "mount"))
    assert plan.unshare_flags == K.CLONE_NEWNS


_OFFSETS = {"monotonic": {"secs": 10, "nanosecs": 0}}


def test_time_offsets_need_a_new_time_namespace() -> None:
    with pytest.raises(InvalidArgument, match=r"^linux\.timeOffsets: needs a new time namespace"):
        plan_namespaces(linux("pid", timeOffsets=_OFFSETS))
    with pytest.raises(InvalidArgument, match=r"timeOffsets"):
        plan_namespaces(linux(("time", "/proc/1/ns/time"), timeOffsets=_OFFSETS))
    assert plan_namespaces(linux("time", timeOffsets=_OFFSETS)).creates("time")
    assert plan_namespaces(linux("pid", timeOffsets={})).new == ["pid"]


def test_open_namespace_fds_of_our_own_namespaces() -> None:
    plan = NamespacePlan([("network", "/proc/self/ns/net"), ("uts", "/proc/self/ns/uts")], [])
    fds = namespaces.open_namespace_fds(plan)
    try:
        assert [t for t, _ in fds] == ["network", "uts"]
        assert all(
            os.readlink(f"/proc/self/fd/{fd}").startswith(("net:[", "uts:[")) for _, fd in fds
        )
    finally:
        for _, fd in fds:
            os.close(fd)


def test_open_namespace_fds_refuses_wrong_type_and_closes() -> None:
    before = set(os.listdir("/proc/self/fd"))
    plan = NamespacePlan([("uts", "/proc/self/ns/uts"), ("network", "/proc/self/ns/ipc")], [])
    with pytest.raises(InvalidArgument, match=r"/proc/self/ns/ipc is not a network namespace"):
        namespaces.open_namespace_fds(plan)
    assert set(os.listdir("/proc/self/fd")) == before
    plan = NamespacePlan([("uts", "/proc/self/ns/uts"), ("pid", "/nonexistent/ns")], [])
    with pytest.raises(NotFound, match=r"pid namespace /nonexistent/ns does not exist"):
        namespaces.open_namespace_fds(plan)
    assert set(os.listdir("/proc/self/fd")) == before


def test_join_sets_the_user_namespace_first() -> None:
    fds = [(t, os.open("/dev/null", os.O_RDONLY)) for t in ("network", "user", "pid")]
    k = RecordingKernel()
    namespaces.join(k, fds)
    assert k.calls == [
        ("setns", (fds[1][1], K.CLONE_NEWUSER)),
        ("setns", (fds[0][1], K.CLONE_NEWNET)),
        ("setns", (fds[2][1], K.CLONE_NEWPID)),
    ]
    for _, fd in fds:  # join closed them
        with pytest.raises(OSError):
            os.fstat(fd)


# --- check_sysctls --------------------------------------------------------------------------

_ALL = plan_namespaces(linux("ipc", "uts", "network"))
_NONE = plan_namespaces(linux("pid", "mount"))


@pytest.mark.parametrize(
    ("key", "ns"),
    [
        ("net.ipv4.ip_forward", "network"),
        ("net/ipv4/ip_forward", "network"),
        ("net.core.somaxconn", "network"),
        ("kernel.shmmax", "ipc"),
        ("kernel.shmall", "ipc"),
        ("kernel.msgmax", "ipc"),
        ("kernel.sem", "ipc"),
        ("kernel.shm_rmid_forced", "ipc"),
        ("fs.mqueue.msg_max", "ipc"),
        ("kernel.domainname", "uts"),
    ],
)
def test_namespaced_sysctls(key: str, ns: str) -> None:
    check_sysctls({key: "1"}, _ALL)
    check_sysctls({key: "1"}, plan_namespaces(linux(ns)))
    with pytest.raises(InvalidArgument, match=rf"^linux\.sysctl: {key} needs a {ns} namespace"):
        check_sysctls({key: "1"}, _NONE)


def test_a_joined_namespace_counts() -> None:
    check_sysctls({"net.ipv4.ip_forward": "1"}, plan_namespaces(linux(("network", "/x"))))


@pytest.mark.parametrize(
    "key", ["vm.swappiness", "kernel.pid_max", "fs.file-max", "kernel/pid_max", "kernel.shm", "net"]
)
def test_host_wide_sysctls_are_refused(key: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^linux\.sysctl: {key} is not namespaced"):
        check_sysctls({key: "1"}, _ALL)


def test_empty_sysctl_is_fine() -> None:
    check_sysctls({}, _NONE)


# --- cgroupfs: mountinfo, /proc/self/cgroup, hierarchy keys ---------------------------------

HYBRID_MOUNTINFO = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
37 31 0:34 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
38 31 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids,release_agent=/x
40 25 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
garbage line without separator
"""  # noqa: E501

HYBRID_CGROUP = """\
12:pids:/user.slice/user-1000.slice
11:net_cls,net_prio:/
10:memory:/user.slice/user-1000.slice/session-3.scope
4:cpu,cpuacct:/user.slice
3:cpuset:/
1:name=systemd:/user.slice/user-1000.slice/session-3.scope
0::/user.slice/user-1000.slice/session-3.scope
"""

UNIFIED_MOUNTINFO = (
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
    "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
)


def test_cgroup_mounts_of_a_hybrid_host() -> None:
    assert cgroup_mounts(HYBRID_MOUNTINFO) == [
        ("/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"),
        ("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
        ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        ("/sys/fs/cgroup/net_cls,net_prio", "cgroup", "rw,net_cls,net_prio"),
        ("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset,clone_children"),
        ("/sys/fs/cgroup/pids", "cgroup", "rw,pids,release_agent=/x"),
    ]


def test_cgroup_mounts_of_a_unified_host() -> None:
    assert cgroup_mounts(UNIFIED_MOUNTINFO) == [
        ("/sys/fs/cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot")
    ]
    assert cgroup_mounts("") == []


def test_cgroup_mounts_of_this_host() -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = cgroup_mounts(f.read())
    assert all(t in ("cgroup", "cgroup2") and mp.startswith("/") for mp, t, _ in mounts)


def test_own_cgroups() -> None:
    ours = own_cgroups(HYBRID_CGROUP)
    assert ours == {
        "pids": "/user.slice/user-1000.slice",
        "net_cls,net_prio": "/",
        "memory": "/user.slice/user-1000.slice/session-3.scope",
        "cpu,cpuacct": "/user.slice",
        "cpuset": "/",
        "name=systemd": "/user.slice/user-1000.slice/session-3.scope",
        "": "/user.slice/user-1000.slice/session-3.scope",
    }
    assert own_cgroups("0::/\n") == {"": "/"}
    assert own_cgroups("0::/a:b\nbad line\n") == {"": "/a:b"}


def test_own_cgroups_of_this_process() -> None:
    with open("/proc/self/cgroup") as f:
        ours = own_cgroups(f.read())
    assert ours and all(path.startswith("/") for path in ours.values())


@pytest.mark.parametrize(
    ("superopts", "key"),
    [
        ("rw,cpu,cpuacct", {"cpu", "cpuacct"}),
        ("rw,memory", {"memory"}),
        ("rw,xattr,name=systemd", {"name=systemd"}),
        ("rw,cpuset,clone_children", {"cpuset"}),
        ("rw,pids,release_agent=/x", {"pids"}),
        ("ro,net_cls,net_prio", {"net_cls", "net_prio"}),
        ("rw,cpuset,noprefix,cpuset_v2_mode", {"cpuset"}),
        ("rw,nsdelegate,memory_recursiveprot", set()),
    ],
)
def test_hierarchy_key(superopts: str, key: set[str]) -> None:
    assert _hierarchy_key(superopts) == key


def test_hierarchy_keys_match_proc_self_cgroup() -> None:
    # the pairing mount_cgroups makes: each v1 hierarchy finds our path in it
    ours = own_cgroups(HYBRID_CGROUP)
    by_key = {frozenset(c.split(",")): p for c, p in ours.items() if c}
    found = {
        mp: by_key.get(frozenset(_hierarchy_key(so)))
        for mp, t, so in cgroup_mounts(HYBRID_MOUNTINFO)
        if t == "cgroup"
    }
    assert found == {
        "/sys/fs/cgroup/systemd": "/user.slice/user-1000.slice/session-3.scope",
        "/sys/fs/cgroup/cpu,cpuacct": "/user.slice",
        "/sys/fs/cgroup/memory": "/user.slice/user-1000.slice/session-3.scope",
        "/sys/fs/cgroup/net_cls,net_prio": "/",
        "/sys/fs/cgroup/cpuset": "/",
        "/sys/fs/cgroup/pids": "/user.slice/user-1000.slice",
    }
