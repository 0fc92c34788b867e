"""``/version``, ``/info`` and ``/system/df`` shapes (``portside.engine.system``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

import portside
from portside.engine import system


def test_version_shape() -> None:
    v = system.version()
    assert v["Platform"] == {"Name": "Portside Engine"}
    assert (v["ApiVersion"], v["MinAPIVersion"]) == ("1.50", "1.41")
    assert v["Version"] == portside.__version__
    assert (v["Os"], v["GoVersion"]) == ("linux", "n/a")
    assert v["Arch"] == system.go_arch() and v["KernelVersion"] == platform.release()
    engine = v["Components"][0]
    assert engine["Name"] == "Engine" and engine["Version"] == v["Version"]
    assert engine["Details"]["ApiVersion"] == "1.50"
    assert engine["Details"]["MinAPIVersion"] == "1.41"
    assert isinstance(v["GitCommit"], str) and v["GitCommit"]


@pytest.mark.parametrize(
    ("machine", "want"),
    [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "arm"),
        ("i686", "386"),
        ("mips", "mips"),
    ],
)
def test_go_arch(machine: str, want: str) -> None:
    assert system.go_arch(machine) == want


def test_os_release(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text(
        "# c\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID='12'\nID=debian\n"
    )
    assert system.os_release(str(path)) == {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "VERSION_ID": "12",
        "ID": "debian",
    }
    assert system.os_release(str(tmp_path / "missing")) == {}


def _v1_tree(root: Path, *, swap: bool) -> str:
    files = ["memory/memory.limit_in_bytes", "memory/memory.oom_control", "cpu/cpu.cfs_quota_us"]
    files += ["cpu/cpu.shares", "pids/pids.max", "cpuset/cpuset.cpus"]
    if swap:
        files.append("memory/memory.memsw.limit_in_bytes")
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("0\n")
    return str(root)


def test_cgroup_features_v1(tmp_path: Path) -> None:
    feats = system.cgroup_features("1", _v1_tree(tmp_path, swap=False))
    assert feats == {
        "MemoryLimit": True,
        "SwapLimit": False,
        "CpuCfs": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": True,
    }
    assert system.cgroup_features("1", str(tmp_path / "none"))["MemoryLimit"] is False


def test_cgroup_features_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "memory.swap.max").write_text("max\n")
    feats = system.cgroup_features("2", str(tmp_path))
    assert feats["MemoryLimit"] and feats["SwapLimit"] and feats["PidsLimit"]
    assert feats["OomKillDisable"] is False
    (tmp_path / "cgroup.controllers").write_text("pids\n")
    assert system.cgroup_features("2", str(tmp_path))["MemoryLimit"] is False


def test_info_shape(tmp_path: Path) -> None:
    rel = tmp_path / "os-release"
    rel.write_text('PRETTY_NAME="Test OS 1"\nVERSION_ID="1"\n')
    data_root = tmp_path / "data"
    data_root.mkdir()
    info = system.info(
        containers={"total": 3, "running": 1, "paused": 1, "stopped": 1},
        images=2,
        data_root=str(data_root),
        driver="overlay2",
        cgroup_version="1",
        cgroup_root=_v1_tree(tmp_path / "cg", swap=True),
        os_release_path=str(rel),
        events_listeners=4,
    )
    assert (info["Containers"], info["ContainersRunning"], info["ContainersPaused"]) == (3, 1, 1)
    assert (info["ContainersStopped"], info["Images"], info["Driver"]) == (1, 2, "overlay2")
    assert info["OperatingSystem"] == "Test OS 1" and info["OSType"] == "linux"
    assert info["NCPU"] == len(os.sched_getaffinity(0))
    assert info["MemTotal"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert info["KernelVersion"] == platform.release()
    assert info["Architecture"] == platform.machine()
    assert info["Name"] == platform.node()
    assert (info["CgroupDriver"], info["CgroupVersion"]) == ("cgroupfs", "1")
    assert info["SwapLimit"] is True and info["CpuCfsPeriod"] is True
    assert info["DockerRootDir"] == str(data_root)
    assert info["DefaultRuntime"] in info["Runtimes"]
    assert info["LoggingDriver"] == "json-file" and info["NEventsListener"] == 4
    assert info["Plugins"]["Volume"] == ["local"]
    assert info["Plugins"]["Log"] == ["json-file", "none"]
    assert "name=seccomp,profile=builtin" in info["SecurityOptions"]
    # the engine ID is made once and kept
    assert info["ID"] and system.engine_id(str(data_root)) == info["ID"]
    assert (data_root / "engine-id").read_text().strip() == info["ID"]


def test_registry_config_as_dockerd_shows_it() -> None:
    from portside.distribution.config import RegistryConfig

    default = system.registry_config()
    assert default["InsecureRegistryCIDRs"] == ["::1/128", "127.0.0.0/8"]
    assert default["Mirrors"] is None
    assert default["IndexConfigs"] == {
        "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}
    }
    cfg = RegistryConfig(mirrors=("https://m.example",), insecure=("10.1.0.0/16", "reg:5000"))
    shown = system.registry_config(cfg)
    assert shown["InsecureRegistryCIDRs"] == ["::1/128", "127.0.0.0/8", "10.1.0.0/16"]
    assert shown["Mirrors"] == ["https://m.example/"]
    assert shown["IndexConfigs"]["docker.io"]["Mirrors"] == ["https://m.example/"]
    assert shown["IndexConfigs"]["reg:5000"] == {
        "Name": "reg:5000",
        "Mirrors": [],
        "Secure": False,
        "Official": False,
    }


def test_df_fills_counts() -> None:
    images = [
        {"Id": "sha256:a", "Containers": -1, "Size": 10},
        {"Id": "sha256:b", "Containers": -1},
    ]
    containers = [
        {"Id": "c1", "ImageID": "sha256:a", "Mounts": [{"Type": "volume", "Name": "v1"}]},
        {"Id": "c2", "ImageID": "sha256:a", "Mounts": [{"Type": "bind", "Source": "/x"}]},
    ]
    volumes = [{"Name": "v1"}, {"Name": "v2", "UsageData": {"Size": 5, "RefCount": 0}}]
    out = system.df(images=images, containers=containers, volumes=volumes, layers_size=123)
    assert list(out) == ["LayersSize", "Images", "Containers", "Volumes", "BuildCache"]
    assert out["LayersSize"] == 123 and out["BuildCache"] == []
    assert [i["Containers"] for i in out["Images"]] == [2, 0]
    assert out["Volumes"][0]["UsageData"] == {"Size": -1, "RefCount": 1}
    assert out["Volumes"][1]["UsageData"] == {"Size": 5, "RefCount": 0}
    assert images[0]["Containers"] == -1  # the inputs are not changed
