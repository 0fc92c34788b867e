"""The records the engine's modules share.

A container keeps Docker's own ``Config`` and ``HostConfig`` documents as the
client sent them (after the image's defaults are merged in): they are what
``docker inspect`` shows, and Docker's wire shape is the de facto model every
client knows. The engine's own bookkeeping lives beside them in typed fields.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from portside.distribution.config import RegistryConfig

ZERO_TIME = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    """The current time as Docker writes it: RFC3339 with nanoseconds, UTC."""
    ns = time.time_ns()
    return rfc3339(ns)


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


@dataclass
class NetworkConfig:
    """The daemon's networking options (dockerd's names in comments)."""

    bridge: str = "portside0"  # --bridge/-b: the default network's bridge; "none": no default
    bridge_ip: str = ""  # --bip: the default bridge's gateway/prefix, e.g. 172.20.0.1/16
    #: --default-address-pool: ({"base": "10.10.0.0/16", "size": 24}, ...); () = dockerd's
    address_pools: tuple[dict[str, Any], ...] = ()
    mtu: int = 1500  # --mtu: of the default bridge and its containers' interfaces
    ip_forward: bool = True  # --ip-forward: turn on net.ipv4.ip_forward at start
    #: Portside's nftables table ("" = "portside" for the default bridge, else one
    #: named after the bridge, so that two daemons with their own bridges never share it)
    nft_table: str = ""

    @property
    def table(self) -> str:
        if self.nft_table:
            return self.nft_table
        if self.bridge == "portside0":
            return "portside"
        return "portside_" + "".join(c if c.isalnum() else "_" for c in self.bridge)


@dataclass
class EngineConfig:
    """Where the engine keeps its state, and its tunables."""

    data_root: str = "/var/lib/portside"
    exec_root: str = "/run/portside"
    snapshotter: str = "auto"  # "overlay", "vfs" or "auto"
    init_path: str = "/usr/bin/tini-static"  # bind-mounted as /sbin/docker-init for --init
    cgroup_parent: str = "/portside"
    default_ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: mirrors, insecure registries, certs.d, download/upload limits (pull, push, login)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    #: the default bridge, address pools, MTU, ip_forward, the nftables table
    network: NetworkConfig = field(default_factory=NetworkConfig)

    @property
    def paths(self) -> Paths:
        return Paths(self.data_root, self.exec_root)


@dataclass(frozen=True)
class Paths:
    data_root: str
    exec_root: str

    @property
    def db(self) -> str:
        return os.path.join(self.data_root, "engine.db")

    @property
    def content(self) -> str:
        return os.path.join(self.data_root, "content")

    @property
    def images(self) -> str:
        return os.path.join(self.data_root, "images")

    @property
    def snapshots(self) -> str:
        return os.path.join(self.data_root, "snapshots")

    @property
    def volumes(self) -> str:
        return os.path.join(self.data_root, "volumes")

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.exec_root, "runtime")

    def container_dir(self, cid: str) -> str:
        """The container's bundle: config.json, rootfs/, hostname, hosts, resolv.conf, logs."""
        return os.path.join(self.data_root, "containers", cid)

    def rootfs(self, cid: str) -> str:
        return os.path.join(self.container_dir(cid), "rootfs")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.container_dir(cid), f"{cid}-json.log")


@dataclass
class ContainerState:
    """Docker's ``State`` object (inspect), kept current by the engine."""

    status: str = "created"  # created running paused restarting removing exited dead
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: dict[str, Any] | None = None  # {"Status", "FailingStreak", "Log": [...]}

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def to_docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Status": self.status,
            "Running": self.status in ("running", "paused"),
            "Paused": self.status == "paused",
            "Restarting": self.status == "restarting",
            "OOMKilled": self.oom_killed,
            "Dead": self.status == "dead",
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }
        if self.health is not None:
            out["Health"] = self.health
        return out


@dataclass
class Container:
    """One container as the engine stores it (engine.db)."""

    id: str
    name: str  # without the leading "/"
    image: str  # the reference the user gave ("busybox")
    image_id: str  # "sha256:<hex>"
    created: str
    config: dict[str, Any]  # Docker Config, image defaults merged in
    host_config: dict[str, Any]  # Docker HostConfig as given (defaults filled)
    state: ContainerState = field(default_factory=ContainerState)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # Docker "Mounts" (inspect)
    restart_count: int = 0
    manually_stopped: bool = False  # for unless-stopped and daemon-start restarts
    exec_ids: list[str] = field(default_factory=list)
    platform: str = "linux"
    driver: str = "overlay2"
    #: Docker's NetworkSettings.Networks: EndpointSettings by network name (the
    #: configured ones; the live fields while running); keys starting with "_" are
    #: Portside's bookkeeping (the host veth, the interface name), not shown
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Docker's NetworkSettings.Ports while running: {"80/tcp": [{"HostIp", "HostPort"}]}
    ports: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))


@dataclass(frozen=True)
class MountSpec:
    """One mount the container gets, resolved to the host: what helper F1's
    ``resolve_mounts`` produces and ``spec.build_spec`` turns into OCI mounts."""

    type: str  # "bind" (binds and volumes) or "tmpfs"
    source: str  # host path; "tmpfs" for tmpfs
    destination: str  # absolute path inside the container
    options: tuple[str, ...] = ()  # OCI mount options: "rbind", "ro", "rprivate", "size=65536k"...


@dataclass
class ExecConfig:
    """An exec instance (Docker's ExecConfig plus its state)."""

    id: str
    container_id: str
    cmd: list[str]
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    privileged: bool = False
    detach_keys: str = ""
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
