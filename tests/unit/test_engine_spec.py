"""Docker Config/HostConfig + image config → OCI spec: merge, validation, the spec itself."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine import defaults as D
from portside.engine.model import Container, ExecConfig, MountSpec, Paths
from portside.engine.spec import (
    build_exec_process,
    build_spec,
    container_capabilities,
    merge_image_config,
    parse_security_opts,
    validate_create,
)
from portside.engine.spec_resources import parse_cgroup_rule
from portside.errors import InvalidArgument, NotFound
from portside.oci.runtime_spec import Spec, parse_spec

CID = "0123456789ab" + "c" * 52
IMAGE = {
    "Cmd": ["sh"],
    "Env": ["PATH=/image/bin", "IMG=1"],
    "WorkingDir": "",
    "Labels": {"a": "image", "b": "image"},
}


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/\n")
    (etc / "group").write_text("root:x:0:\nwheel:x:10:app\n")
    return str(tmp_path / "rootfs")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(str(tmp_path / "data"), str(tmp_path / "exec"))


def container(config: dict[str, Any] | None = None, **host_config: Any) -> Container:
    return Container(
        id=CID,
        name="c",
        image="busybox",
        image_id="sha256:" + "0" * 64,
        created="0001-01-01T00:00:00Z",
        config=merge_image_config(config or {}, IMAGE),
        host_config=host_config,
    )


def spec_of(
    rootfs: str,
    paths: Paths,
    config: dict[str, Any] | None = None,
    mounts: list[MountSpec] | None = None,
    **host_config: Any,
) -> Spec:
    spec = build_spec(container(config, **host_config), IMAGE, rootfs, mounts or [], paths=paths)
    return parse_spec(spec.to_json())  # what the runtime will read back


# --- merge --------------------------------------------------------------------------------


def test_merge_image_defaults() -> None:
    out = merge_image_config({}, IMAGE)
    assert out["Cmd"] == ["sh"] and out["Entrypoint"] is None
    assert out["Env"] == ["PATH=/image/bin", "IMG=1"]
    assert out["Labels"] == {"a": "image", "b": "image"}


def test_merge_entrypoint_drops_image_cmd() -> None:
    out = merge_image_config({"Entrypoint": ["/bin/echo"]}, {**IMAGE, "Entrypoint": ["/x"]})
    assert (out["Entrypoint"], out.get("Cmd")) == (["/bin/echo"], None)
    out = merge_image_config({"Entrypoint": ["/e"], "Cmd": ["a"]}, IMAGE)
    assert (out["Entrypoint"], out["Cmd"]) == (["/e"], ["a"])
    out = merge_image_config({"Cmd": ["ls"]}, {**IMAGE, "Entrypoint": ["/x"]})
    assert (out["Entrypoint"], out["Cmd"]) == (["/x"], ["ls"])
    out = merge_image_config({"Entrypoint": [""]}, {**IMAGE, "Entrypoint": ["/x"]})
    assert (out["Entrypoint"], out["Cmd"]) == ([], ["sh"])  # --entrypoint "" resets it


def test_merge_default_path_and_labels() -> None:
    out = merge_image_config({"Env": ["A=1"], "Labels": {"a": "user"}}, {"Cmd": ["x"]})
    assert out["Env"] == ["A=1", "PATH=" + D.DEFAULT_PATH]
    assert out["Labels"] == {"a": "user"}
    out = merge_image_config({"Labels": {"a": "user"}}, IMAGE)
    assert out["Labels"] == {"a": "user", "b": "image"}


def test_merge_healthcheck_and_fallbacks() -> None:
    image = {
        **IMAGE,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5},
        "User": "app",
        "WorkingDir": "/srv",
        "StopSignal": "SIGINT",
    }
    out = merge_image_config({"Healthcheck": {"Retries": 3}}, image)
    assert out["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5, "Retries": 3}
    assert (out["User"], out["WorkingDir"], out["StopSignal"]) == ("app", "/srv", "SIGINT")


KEYS = st.sampled_from(["A", "B", "C", "PATH", "HOME"])
ENV = st.lists(st.tuples(KEYS, st.text("xyz", max_size=3)).map("=".join), max_size=6)


@given(ENV, ENV)
def test_merge_env_by_key(user: list[str], image: list[str]) -> None:
    out = merge_image_config({"Env": user}, {"Env": image})["Env"]
    keys = lambda env: [e.partition("=")[0] for e in env]  # noqa: E731
    assert out[: len(user)] == user
    for entry in image:
        key = entry.partition("=")[0]
        assert key in keys(out)
        if key not in keys(user):
            assert entry in out
    assert "PATH" in keys(out)


def test_merge_does_not_mutate() -> None:
    config = {"Env": ["A=1"]}
    merge_image_config(config, IMAGE)
    assert config == {"Env": ["A=1"]}


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "host_config", "words"),
    [
        ({}, {"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
        ({}, {"Memory": 10 << 20, "MemorySwap": 8 << 20}, "Minimum memoryswap limit"),
        ({}, {"NanoCpus": -1}, "Range of CPUs is from 0.01 to"),
        ({}, {"NanoCpus": 10**9 * 100000}, "as there are only"),
        ({}, {"NanoCpus": 10**9, "CpuPeriod": 100000}, "Nano CPUs and CPU Period cannot both"),
        ({}, {"NanoCpus": 10**9, "CpuQuota": 50000}, "Nano CPUs and CPU Quota cannot both"),
        ({}, {"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
        (
            {},
            {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
            "maximum retry count cannot be used with restart policy 'always'",
        ),
        (
            {},
            {"AutoRemove": True, "RestartPolicy": {"Name": "always"}},
            "can't create 'AutoRemove' container with restart policy",
        ),
        ({}, {"Sysctls": {"kernel.core_pattern": "|/x"}}, "sysctl 'kernel.core_pattern' is not"),
        ({}, {"Sysctls": {"net.ipv4.ip_forward": "1"}, "NetworkMode": "host"}, "host network"),
        ({}, {"Sysctls": {"kernel.shmmax": "1"}, "IpcMode": "host"}, "host IPC"),
        ({}, {"SecurityOpt": ["bogus=1"]}, "invalid --security-opt 2"),
        ({}, {"SecurityOpt": ["bogus"]}, "invalid --security-opt 1"),
        ({}, {"SecurityOpt": ["no-new-privileges=maybe"]}, "invalid --security-opt 2"),
        ({}, {"SecurityOpt": ["seccomp={not json"]}, "decoding seccomp profile failed"),
        ({"WorkingDir": "rel/dir"}, {}, "it needs to be an absolute path"),
        ({"WorkingDir": "/proc/self/fd/3"}, {}, "/proc/self/fd"),
        ({"WorkingDir": "/proc/1/fd/../fd/7"}, {}, "/proc/self/fd"),
        ({}, {"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type"),
        ({}, {"Ulimits": [{"Name": "nofile", "Soft": 9, "Hard": 1}]}, "soft limit must be"),
        ({}, {"CapAdd": ["NOT_A_CAP"]}, 'unknown capability: "CAP_NOT_A_CAP"'),
        ({}, {"IpcMode": "weird"}, "invalid IPC mode"),
        ({}, {"PidMode": "container:"}, "invalid PID mode"),
        ({}, {"UsernsMode": "private"}, "userns"),
        ({}, {"OomScoreAdj": 5000}, "oom score adj"),
        ({}, {"DeviceCgroupRules": ["x 1:2 rwm"]}, "invalid device cgroup rule"),
        ({"Hostname": "h"}, {"NetworkMode": "host"}, "conflicting options"),
    ],
)
def test_validate_refuses(config: dict[str, Any], host_config: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_create(config, host_config)
    assert words in str(info.value)


def test_validate_unknown_network() -> None:
    with pytest.raises(NotFound, match="network mynet not found"):
        validate_create({}, {"NetworkMode": "mynet"})


def test_validate_accepts() -> None:
    hc = {
        "Memory": 64 << 20,
        "MemorySwap": -1,
        "NanoCpus": 10**9 // 2,
        "PidsLimit": -1,
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "9"},
        "SecurityOpt": [
            "no-new-privileges:true",
            "apparmor=unconfined",
            "label=disable",
            "seccomp=unconfined",
        ],
        "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}],
        "CapAdd": ["net_admin", "CAP_SYS_TIME"],
        "CapDrop": ["ALL"],
        "IpcMode": "shareable",
        "PidMode": "container:abc",
    }
    assert validate_create({"WorkingDir": "/srv"}, hc) == []
    assert validate_create({}, {"OomKillDisable": True})  # a warning


def test_security_opts() -> None:
    assert parse_security_opts(["no-new-privileges"]).no_new_privileges
    assert not parse_security_opts(["no-new-privileges=false"]).no_new_privileges
    assert parse_security_opts(["seccomp=unconfined"]).seccomp == "unconfined"
    assert parse_security_opts(['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}']).seccomp == {
        "defaultAction": "SCMP_ACT_ALLOW"
    }


# --- capabilities -------------------------------------------------------------------------


CAP_NAMES = st.sampled_from(["CHOWN", "cap_kill", "NET_ADMIN", "SYS_ADMIN", "MKNOD", "NET_RAW"])


@given(st.lists(CAP_NAMES, max_size=4), st.lists(CAP_NAMES, max_size=4))
def test_cap_add_drop(adds: list[str], drops: list[str]) -> None:
    norm = lambda names: {"CAP_" + n.upper().removeprefix("CAP_") for n in names}  # noqa: E731
    caps = container_capabilities({"CapAdd": adds, "CapDrop": drops})
    assert len(caps) == len(set(caps))
    expected = (set(D.DEFAULT_CAPS) - norm(drops)) | norm(adds)
    assert set(caps) == expected


def test_cap_all() -> None:
    assert container_capabilities({}) == list(D.DEFAULT_CAPS)
    assert container_capabilities({"CapDrop": ["ALL"], "CapAdd": ["kill"]}) == ["CAP_KILL"]
    everything = container_capabilities({"CapAdd": ["ALL"], "CapDrop": ["NET_RAW"]})
    assert "CAP_SYS_ADMIN" in everything and "CAP_NET_RAW" not in everything
    assert "CAP_NET_RAW" in container_capabilities({"Privileged": True, "CapDrop": ["NET_RAW"]})


# --- build_spec ---------------------------------------------------------------------------


def test_default_spec(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths)
    proc = spec.process
    assert proc is not None and spec.linux is not None and spec.root is not None
    assert proc.args == ["sh"]
    assert proc.cwd == "/"
    assert proc.env == ["PATH=/image/bin", "HOSTNAME=0123456789ab", "IMG=1", "HOME=/root"]
    assert proc.user is not None and (proc.user.uid, proc.user.gid) == (0, 0)
    caps = proc.capabilities
    assert caps is not None
    assert caps.bounding == caps.permitted == caps.effective == list(D.DEFAULT_CAPS)
    assert caps.inheritable == caps.ambient == []
    assert not proc.terminal and not proc.no_new_privileges
    assert spec.hostname == "0123456789ab"
    assert spec.root.path == rootfs and not spec.root.readonly
    assert spec.linux.cgroups_path == f"/portside/{CID}"
    assert [ns.type for ns in spec.linux.namespaces] == [
        "pid",
        "ipc",
        "uts",
        "mount",
        "network",
        "cgroup",
    ]
    assert all(ns.path is None for ns in spec.linux.namespaces)
    assert spec.linux.masked_paths == list(D.MASKED_PATHS)
    assert "/proc/interrupts" in spec.linux.masked_paths
    assert spec.linux.readonly_paths == list(D.READONLY_PATHS)
    seccomp = spec.linux.seccomp
    assert seccomp is not None and seccomp.default_action == "SCMP_ACT_ERRNO"
    assert spec.linux.resources is not None
    assert spec.linux.resources.devices[0].to_json() == {"allow": False, "access": "rwm"}


def test_default_mounts(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths)
    by_dest = {m.destination: m for m in spec.mounts}
    assert list(by_dest) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]
    assert "size=65536k" in by_dest["/dev"].options
    assert "gid=5" in by_dest["/dev/pts"].options and "newinstance" in by_dest["/dev/pts"].options
    assert f"size={64 << 20}" in by_dest["/dev/shm"].options
    assert "ro" in by_dest["/sys"].options and "ro" in by_dest["/sys/fs/cgroup"].options
    assert by_dest["/sys/fs/cgroup"].type == "cgroup"
    hosts = by_dest["/etc/hosts"]
    assert (hosts.type, hosts.source) == ("bind", os.path.join(paths.container_dir(CID), "hosts"))


def test_user_mounts_override_defaults(rootfs: str, paths: Paths) -> None:
    mounts = [
        MountSpec("bind", "/srv/data", "/data", ("rbind", "ro", "rprivate")),
        MountSpec("tmpfs", "tmpfs", "/dev/shm", ("size=1m",)),
        MountSpec("bind", "/srv/hosts", "/etc/hosts", ("rshared",)),
    ]
    spec = spec_of(rootfs, paths, mounts=mounts, ShmSize=1 << 20)
    dests = [m.destination for m in spec.mounts]
    assert dests.count("/dev/shm") == 1 and dests.count("/etc/hosts") == 1
    assert dests[-3:] == ["/data", "/dev/shm", "/etc/hosts"]
    assert spec.mounts[-1].options == ["rbind", "rshared"]
    assert spec.linux is not None and spec.linux.rootfs_propagation == "rshared"


def test_process_from_config(rootfs: str, paths: Paths) -> None:
    config = {
        "Entrypoint": ["/bin/echo"],
        "Cmd": ["hi"],
        "Env": ["HOME=/custom", "IMG"],
        "User": "app",
        "WorkingDir": "/srv/app",
        "Tty": True,
        "Hostname": "web",
        "Domainname": "example.org",
    }
    spec = spec_of(
        rootfs, paths, config, GroupAdd=["55"], OomScoreAdj=100, SecurityOpt=["no-new-privileges"]
    )
    proc = spec.process
    assert proc is not None and proc.user is not None
    assert proc.args == ["/bin/echo", "hi"]
    assert proc.cwd == "/srv/app" and os.path.isdir(os.path.join(rootfs, "srv/app"))
    assert proc.env == ["PATH=/image/bin", "HOSTNAME=web", "TERM=xterm", "HOME=/custom"]
    assert (proc.user.uid, proc.user.gid, proc.user.additional_gids) == (1000, 1000, [10, 55])
    assert proc.terminal and proc.no_new_privileges and proc.oom_score_adj == 100
    assert proc.capabilities is not None
    assert proc.capabilities.bounding == list(D.DEFAULT_CAPS)
    assert proc.capabilities.effective == proc.capabilities.permitted == []
    assert (spec.hostname, spec.domainname) == ("web", "example.org")


def test_no_command(rootfs: str, paths: Paths) -> None:
    c = container({})
    c.config["Cmd"] = None
    with pytest.raises(InvalidArgument, match="no command specified"):
        build_spec(c, {}, rootfs, [], paths=paths)


def test_rlimits(rootfs: str, paths: Paths) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    spec = spec_of(rootfs, paths)
    assert spec.process is not None
    (nofile,) = spec.process.rlimits
    assert nofile.type == "RLIMIT_NOFILE"
    assert nofile.soft <= nofile.hard
    if hard != resource.RLIM_INFINITY:
        assert nofile.hard <= hard
    spec = spec_of(
        rootfs,
        paths,
        Ulimits=[
            {"Name": "nofile", "Soft": 10, "Hard": 20},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
    )
    assert spec.process is not None
    got = {r.type: (r.soft, r.hard) for r in spec.process.rlimits}
    assert got == {"RLIMIT_NOFILE": (10, 20), "RLIMIT_CORE": (0, 0)}


def test_init(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths, Init=True)
    assert spec.process is not None
    assert spec.process.args == ["/sbin/docker-init", "--", "sh"]
    init = [m for m in spec.mounts if m.destination == "/sbin/docker-init"]
    assert init and init[0].source == "/usr/bin/tini-static" and "ro" in init[0].options
    with pytest.raises(InvalidArgument, match="init"):
        build_spec(container(Init=True), IMAGE, rootfs, [], paths=paths, init_path=None)


@pytest.mark.parametrize(
    ("host_config", "ns_paths", "expected"),
    [
        (
            {"NetworkMode": "host"},
            {},
            {"pid": None, "ipc": None, "uts": None, "mount": None, "cgroup": None},
        ),
        (
            {"NetworkMode": "none", "IpcMode": "host", "PidMode": "host", "UTSMode": "host"},
            {},
            {"mount": None, "network": None, "cgroup": None},
        ),
        (
            {"NetworkMode": "container:x", "PidMode": "container:x", "IpcMode": "container:x"},
            {"network": "/proc/7/ns/net", "pid": "/proc/7/ns/pid", "ipc": "/proc/7/ns/ipc"},
            {
                "pid": "/proc/7/ns/pid",
                "ipc": "/proc/7/ns/ipc",
                "uts": None,
                "mount": None,
                "network": "/proc/7/ns/net",
                "cgroup": None,
            },
        ),
    ],
)
def test_namespace_modes(
    rootfs: str,
    paths: Paths,
    host_config: dict[str, Any],
    ns_paths: dict[str, str],
    expected: dict[str, str | None],
) -> None:
    spec = build_spec(
        container(**host_config), IMAGE, rootfs, [], paths=paths, namespace_paths=ns_paths
    )
    assert spec.linux is not None
    assert {ns.type: ns.path for ns in spec.linux.namespaces} == expected
    if host_config.get("UTSMode") == "host":
        assert spec.hostname is None
    if host_config.get("IpcMode") == "container:x":
        shm = [m for m in spec.mounts if m.destination == "/dev/shm"]
        assert shm[0].source == "/proc/7/root/dev/shm"


def test_join_without_path(rootfs: str, paths: Paths) -> None:
    with pytest.raises(InvalidArgument, match="namespace path"):
        build_spec(container(NetworkMode="container:x"), IMAGE, rootfs, [], paths=paths)


def test_resources(rootfs: str, paths: Paths) -> None:
    spec = spec_of(
        rootfs,
        paths,
        Memory=64 << 20,
        MemoryReservation=32 << 20,
        MemorySwappiness=10,
        KernelMemory=1 << 30,
        NanoCpus=1_500_000_000,
        CpuShares=512,
        CpusetCpus="0",
        CpusetMems="0",
        PidsLimit=50,
        BlkioWeight=300,
        OomKillDisable=True,
        BlkioDeviceReadBps=[{"Path": "/dev/null", "Rate": 1000}],
        BlkioWeightDevice=[{"Path": "/dev/null", "Weight": 20}],
    )
    assert spec.linux is not None and spec.linux.resources is not None
    res = spec.linux.resources.to_json()
    assert res["memory"] == {
        "limit": 64 << 20,
        "reservation": 32 << 20,
        "swap": 128 << 20,
        "swappiness": 10,
        "disableOOMKiller": True,
    }
    assert res["cpu"] == {
        "shares": 512,
        "quota": 150000,
        "period": 100000,
        "cpus": "0",
        "mems": "0",
    }
    assert res["pids"] == {"limit": 50}
    assert res["blockIO"]["weight"] == 300
    assert res["blockIO"]["throttleReadBpsDevice"] == [{"major": 1, "minor": 3, "rate": 1000}]
    assert res["blockIO"]["weightDevice"] == [{"major": 1, "minor": 3, "weight": 20}]


def test_resources_unlimited(rootfs: str, paths: Paths) -> None:
    spec = spec_of(
        rootfs,
        paths,
        Memory=64 << 20,
        MemorySwap=-1,
        PidsLimit=-1,
        CpuQuota=50000,
        CpuPeriod=100000,
    )
    assert spec.linux is not None and spec.linux.resources is not None
    res = spec.linux.resources
    assert res.memory is not None and res.memory.swap == -1
    assert res.pids is None
    assert res.cpu is not None and (res.cpu.quota, res.cpu.period) == (50000, 100000)


def test_devices(rootfs: str, paths: Paths) -> None:
    spec = spec_of(
        rootfs,
        paths,
        Devices=[
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r"},
            "/dev/zero:/dev/z",
        ],
        DeviceCgroupRules=["c 42:* rm"],
    )
    assert spec.linux is not None and spec.linux.resources is not None
    assert [(d.path, d.type, d.major, d.minor) for d in spec.linux.devices] == [
        ("/dev/mynull", "c", 1, 3),
        ("/dev/z", "c", 1, 5),
    ]
    rules = [r.to_json() for r in spec.linux.resources.devices]
    assert rules == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 42, "access": "rm"},
    ]
    with pytest.raises(InvalidArgument, match="not a device node"):
        spec_of(rootfs, paths, Devices=["/etc/hostname"])


def test_privileged_lifts_everything(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths, Privileged=True, SecurityOpt=["seccomp=unconfined"])
    assert spec.linux is not None and spec.process is not None
    assert spec.process.capabilities is not None
    assert "CAP_SYS_ADMIN" in spec.process.capabilities.bounding
    assert spec.linux.seccomp is None
    assert spec.linux.masked_paths == [] and spec.linux.readonly_paths == []
    sys_mounts = [m for m in spec.mounts if m.destination in ("/sys", "/sys/fs/cgroup")]
    assert all("ro" not in m.options for m in sys_mounts)
    assert spec.linux.resources is not None
    assert [r.to_json() for r in spec.linux.resources.devices] == [{"allow": True, "access": "rwm"}]
    paths_seen = {d.path for d in spec.linux.devices}
    assert "/dev/null" not in paths_seen  # the runtime makes those
    assert not any(p.startswith("/dev/pts/") for p in paths_seen)


def test_seccomp_choices(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths, SecurityOpt=["seccomp=unconfined"])
    assert spec.linux is not None and spec.linux.seccomp is None
    custom = (
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
        '"action": "SCMP_ACT_ERRNO"}]}'
    )
    spec = spec_of(rootfs, paths, SecurityOpt=["seccomp=" + custom])
    assert spec.linux is not None and spec.linux.seccomp is not None
    assert spec.linux.seccomp.default_action == "SCMP_ACT_ALLOW"
    assert spec.linux.seccomp.syscalls[0].names == ["mkdir"]


def test_masked_paths_from_host_config(rootfs: str, paths: Paths) -> None:
    spec = spec_of(rootfs, paths, MaskedPaths=[], ReadonlyPaths=["/proc/sys"])
    assert spec.linux is not None
    assert (spec.linux.masked_paths, spec.linux.readonly_paths) == ([], ["/proc/sys"])


def test_readonly_rootfs_and_sysctls(rootfs: str, paths: Paths) -> None:
    spec = spec_of(
        rootfs,
        paths,
        ReadonlyRootfs=True,
        Sysctls={"net.core.somaxconn": "1024"},
        CgroupParent="/ignored",
    )
    assert spec.root is not None and spec.root.readonly
    assert spec.linux is not None and spec.linux.sysctl == {"net.core.somaxconn": "1024"}
    etc = [m for m in spec.mounts if m.destination.startswith("/etc/")]
    assert all("ro" in m.options for m in etc)
    with pytest.raises(InvalidArgument):
        spec_of(rootfs, paths, Sysctls={"kernel.core_pattern": "x"})


def test_cgroup_parent(rootfs: str, paths: Paths) -> None:
    spec = build_spec(container(), IMAGE, rootfs, [], paths=paths, cgroup_parent="/other/")
    assert spec.linux is not None and spec.linux.cgroups_path == f"/other/{CID}"


# --- exec ---------------------------------------------------------------------------------


def test_exec_process(rootfs: str) -> None:
    c = container(
        {"Env": ["A=1"], "User": "app", "WorkingDir": "/srv"},
        SecurityOpt=["no-new-privileges"],
        CapDrop=["NET_RAW"],
        GroupAdd=["77"],
    )
    ex = ExecConfig(id="e", container_id=CID, cmd=["ls", "-l"], env=["B=2", "A=3"], tty=True)
    proc = build_exec_process(c, ex, rootfs)
    assert proc.args == ["ls", "-l"]
    assert proc.cwd == "/srv" and proc.terminal
    assert proc.env == [
        "PATH=/image/bin",
        "HOSTNAME=0123456789ab",
        "TERM=xterm",
        "A=3",
        "IMG=1",
        "B=2",
        "HOME=/home/app",
    ]
    assert proc.user is not None and (proc.user.uid, proc.user.additional_gids) == (1000, [10, 77])
    assert proc.no_new_privileges
    caps = proc.capabilities
    assert caps is not None and "CAP_NET_RAW" not in caps.bounding and "CAP_KILL" in caps.bounding
    assert caps.effective == caps.permitted == []  # not root: bounding only, as Docker
    assert proc.rlimits


def test_exec_privileged_and_user(rootfs: str) -> None:
    c = container({"User": "app"})
    ex = ExecConfig(
        id="e", container_id=CID, cmd=["id"], user="0:0", privileged=True, working_dir="/tmp"
    )
    proc = build_exec_process(c, ex, rootfs)
    assert proc.user is not None and (proc.user.uid, proc.user.gid) == (0, 0)
    assert proc.capabilities is not None and "CAP_SYS_ADMIN" in proc.capabilities.effective
    assert proc.cwd == "/tmp"
    with pytest.raises(InvalidArgument):
        build_exec_process(c, ExecConfig(id="e", container_id=CID, cmd=[]), rootfs)


# --- parsers under hypothesis -----------------------------------------------------------

NUM = st.one_of(st.just("*"), st.integers(0, 4095).map(str))


@given(st.sampled_from("bc"), NUM, NUM, st.sets(st.sampled_from("rwm"), min_size=1))
def test_cgroup_rule_roundtrip(kind: str, major: str, minor: str, access: set[str]) -> None:
    perms = "".join(sorted(access))
    rule = parse_cgroup_rule(f"{kind} {major}:{minor} {perms}")
    assert (rule.allow, rule.type, rule.access) == (True, kind, perms)
    assert rule.major == (None if major == "*" else int(major))
    assert rule.minor == (None if minor == "*" else int(minor))


@given(st.text(alphabet="abc :*12rwmx", max_size=12))
def test_cgroup_rule_garbage(text: str) -> None:
    try:
        rule = parse_cgroup_rule(text)
    except InvalidArgument as exc:
        assert "invalid device cgroup rule" in str(exc)
    else:
        assert rule.type in ("a", "b", "c") and rule.allow


@given(st.lists(st.text(alphabet="abcnoe-=:{}01", max_size=20), max_size=3))
def test_security_opts_garbage(opts: list[str]) -> None:
    try:
        parsed = parse_security_opts(opts)
    except InvalidArgument as exc:
        assert "security-opt" in str(exc) or "seccomp" in str(exc)
    else:
        assert parsed.seccomp in ("default", "unconfined") or isinstance(parsed.seccomp, dict)
