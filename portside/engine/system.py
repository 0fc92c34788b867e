"""Docker's ``/version``, ``/info`` and ``/system/df``, with this host's real numbers.

The host facts (kernel, OS, CPUs, memory, cgroup features) are read from /proc,
/etc/os-release and the cgroup tree; every reader takes its root or file as an
argument so the shapes can be tested against a fake tree.
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time

import portside
from portside.engine.model import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.distribution.config import RegistryConfig

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "cgroup_features",
    "df",
    "engine_id",
    "go_arch",
    "info",
    "os_release",
    "registry_config",
    "version",
]

API_VERSION = "1.50"
MIN_API_VERSION = "1.41"
PLATFORM_NAME = "Portside Engine"
#: Python's machine names → Go's GOARCH, which Docker reports
_GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def go_arch(machine: str | None = None) -> str:
    """``amd64`` for ``x86_64``: Docker's (Go's) architecture names."""
    machine = machine or platform.machine()
    return _GO_ARCH.get(machine, machine)


def _git_commit() -> str:
    """The checkout's commit (short), read from .git without running git; ``unknown``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(portside.__file__)))
    git = os.path.join(root, ".git")
    try:
        with open(os.path.join(git, "HEAD"), encoding="ascii") as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            try:
                with open(os.path.join(git, ref), encoding="ascii") as f:
                    return f.read().strip()[:7]
            except OSError:
                with open(os.path.join(git, "packed-refs"), encoding="ascii") as f:
                    for line in f:
                        if line.rstrip().endswith(" " + ref):
                            return line[:7]
                return "unknown"
        return head[:7]
    except OSError:
        return "unknown"


def _build_time() -> str:
    try:
        mtime = os.stat(portside.__file__).st_mtime
    except OSError:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00", time.gmtime(mtime))


def version() -> dict[str, Any]:
    """``GET /version``."""
    details = {
        "ApiVersion": API_VERSION,
        "Arch": go_arch(),
        "BuildTime": _build_time(),
        "Experimental": "false",
        "GitCommit": _git_commit(),
        "GoVersion": "n/a",
        "KernelVersion": platform.release(),
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "PythonVersion": platform.python_version(),
    }
    return {
        "Platform": {"Name": PLATFORM_NAME},
        "Components": [
            {"Name": "Engine", "Version": portside.__version__, "Details": details},
            {
                "Name": "portside-runtime",
                "Version": portside.__version__,
                "Details": {"GitCommit": details["GitCommit"]},
            },
        ],
        "Version": portside.__version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": details["GitCommit"],
        "GoVersion": "n/a",
        "Os": "linux",
        "Arch": details["Arch"],
        "KernelVersion": details["KernelVersion"],
        "BuildTime": details["BuildTime"],
    }


# --- host facts --------------------------------------------------------------------------


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    """The ``KEY=value`` pairs of os-release (quotes removed); empty when unreadable."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[key] = value
    return out


def _mem_total(meminfo: str = "/proc/meminfo") -> int:
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _exists(*parts: str) -> bool:
    return os.path.exists(os.path.join(*parts))


def cgroup_features(cgroup_version: str, root: str = "/sys/fs/cgroup") -> dict[str, bool]:
    """Docker's /info booleans for what the host's cgroups can limit."""
    if cgroup_version == "2":
        try:
            with open(os.path.join(root, "cgroup.controllers"), encoding="ascii") as f:
                controllers = set(f.read().split())
        except OSError:
            controllers = set()
        mem = "memory" in controllers
        cpu = "cpu" in controllers
        return {
            "MemoryLimit": mem,
            "SwapLimit": mem and _swap_v2(root),
            "CpuCfs": cpu,
            "CPUShares": cpu,
            "CPUSet": "cpuset" in controllers,
            "PidsLimit": "pids" in controllers,
            "OomKillDisable": False,
        }
    return {
        "MemoryLimit": _exists(root, "memory", "memory.limit_in_bytes"),
        "SwapLimit": _exists(root, "memory", "memory.memsw.limit_in_bytes"),
        "CpuCfs": _exists(root, "cpu", "cpu.cfs_quota_us"),
        "CPUShares": _exists(root, "cpu", "cpu.shares"),
        "CPUSet": _exists(root, "cpuset"),
        "PidsLimit": _exists(root, "pids", "pids.max") or _exists(root, "pids"),
        "OomKillDisable": _exists(root, "memory", "memory.oom_control"),
    }


def _swap_v2(root: str) -> bool:
    """Swap limits exist on v2 when some child cgroup has ``memory.swap.max``."""
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and _exists(entry.path, "memory.swap.max"):
                    return True
    except OSError:
        return False
    return False


def _ip_forward() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def _nfd() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def engine_id(data_root: str) -> str:
    """The engine's ID (Docker's ``ID``): a UUID made once and kept in
    ``<data_root>/engine-id``; a fresh one each call if the file cannot be written."""
    import uuid

    path = os.path.join(data_root, "engine-id")
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        if text:
            return text
    except OSError:
        pass
    ident = str(uuid.uuid4())
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(ident + "\n")
        os.replace(tmp, path)
    except OSError:
        return ident
    return ident


# --- /info ------------------------------------------------------------------------------


def registry_config(cfg: RegistryConfig | None = None) -> dict[str, Any]:
    """``/info``'s ``RegistryConfig`` as dockerd shows it: the insecure CIDRs
    (loopback always), an ``IndexConfigs`` entry for Docker Hub (with the mirrors) and
    one per insecure ``host[:port]``, the mirrors (null when none)."""
    from portside.distribution import hosts
    from portside.distribution.config import RegistryConfig

    cfg = cfg or RegistryConfig()
    mirrors = [hosts.validate_mirror(m) for m in cfg.mirrors]
    index = {
        "docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True, "Official": True}
    }
    for name in hosts.insecure_hosts(cfg):
        index[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    return {
        "AllowNondistributableArtifactsCIDRs": None,
        "AllowNondistributableArtifactsHostnames": None,
        "InsecureRegistryCIDRs": hosts.insecure_cidrs(cfg),
        "IndexConfigs": index,
        "Mirrors": mirrors or None,
    }


def info(
    *,
    containers: dict[str, int],
    images: int,
    data_root: str,
    driver: str,
    cgroup_version: str,
    driver_status: list[list[str]] | None = None,
    events_listeners: int = 0,
    runtime_path: str = "portside-runtime",
    init_path: str = "",
    security_options: list[str] | None = None,
    labels: list[str] | None = None,
    warnings: list[str] | None = None,
    debug: bool = False,
    cgroup_root: str = "/sys/fs/cgroup",
    os_release_path: str = "/etc/os-release",
    registry: RegistryConfig | None = None,
) -> dict[str, Any]:
    """``GET /info``. ``containers``: ``total``, ``running``, ``paused``, ``stopped``;
    ``cgroup_version``: ``"1"`` or ``"2"``; ``driver``: the graph driver name
    (``overlay2``, ``vfs``)."""
    rel = os_release(os_release_path)
    feats = cgroup_features(cgroup_version, cgroup_root)
    commit = {"ID": _git_commit()}
    return {
        "ID": engine_id(data_root),
        "Containers": containers.get("total", 0),
        "ContainersRunning": containers.get("running", 0),
        "ContainersPaused": containers.get("paused", 0),
        "ContainersStopped": containers.get("stopped", 0),
        "Images": images,
        "Driver": driver,
        "DriverStatus": driver_status or [],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "null"],
            "Authorization": None,
            "Log": ["json-file", "none"],
        },
        "MemoryLimit": feats["MemoryLimit"],
        "SwapLimit": feats["SwapLimit"],
        "CpuCfsPeriod": feats["CpuCfs"],
        "CpuCfsQuota": feats["CpuCfs"],
        "CPUShares": feats["CPUShares"],
        "CPUSet": feats["CPUSet"],
        "PidsLimit": feats["PidsLimit"],
        "IPv4Forwarding": _ip_forward(),
        "Debug": debug,
        "NFd": _nfd(),
        "OomKillDisable": feats["OomKillDisable"],
        "NGoroutines": threading.active_count(),
        "SystemTime": now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": events_listeners,
        "KernelVersion": platform.release(),
        "OperatingSystem": rel.get("PRETTY_NAME") or "Linux",
        "OSVersion": rel.get("VERSION_ID", ""),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(registry),
        "NCPU": len(os.sched_getaffinity(0)) or os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
        "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
        "Name": socket.gethostname(),
        "Labels": labels or [],
        "ExperimentalBuild": False,
        "ServerVersion": portside.__version__,
        "Runtimes": {"portside": {"path": runtime_path}},
        "DefaultRuntime": "portside",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": init_path,
        "ContainerdCommit": commit,
        "RuncCommit": commit,
        "InitCommit": {"ID": "N/A"},
        "SecurityOptions": (
            security_options
            if security_options is not None
            else ["name=seccomp,profile=builtin", "name=cgroupns"]
            if cgroup_version == "2"
            else ["name=seccomp,profile=builtin"]
        ),
        "CDISpecDirs": [],
        "Warnings": warnings or [],
    }


# --- /system/df -------------------------------------------------------------------------


def df(
    *,
    images: list[dict[str, Any]],
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    layers_size: int,
) -> dict[str, Any]:
    """``GET /system/df``: ``images`` are ImageSummary items, ``containers`` container
    list items (with SizeRw/SizeRootFs), ``volumes`` Docker Volumes. An image's
    ``Containers`` count and a volume's ``UsageData`` are filled in when missing
    (RefCount from the containers' Mounts, Size -1: not computed)."""
    per_image: dict[str, int] = {}
    per_volume: dict[str, int] = {}
    for c in containers:
        per_image[c.get("ImageID", "")] = per_image.get(c.get("ImageID", ""), 0) + 1
        for m in c.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Name"):
                per_volume[m["Name"]] = per_volume.get(m["Name"], 0) + 1
    out_images = []
    for image in images:
        item = dict(image)
        if item.get("Containers", -1) < 0:
            item["Containers"] = per_image.get(item.get("Id", ""), 0)
        out_images.append(item)
    out_volumes = []
    for volume in volumes:
        item = dict(volume)
        if not item.get("UsageData"):
            item["UsageData"] = {"Size": -1, "RefCount": per_volume.get(item.get("Name", ""), 0)}
        out_volumes.append(item)
    return {
        "LayersSize": layers_size,
        "Images": out_images,
        "Containers": containers,
        "Volumes": out_volumes,
        "BuildCache": [],
    }
