"""``portside daemon`` options: dockerd-like flags, a daemon.json config file, flags win."""

from __future__ import annotations

import argparse
import ipaddress
import json
from dataclasses import dataclass, field

from portside.distribution.config import DEFAULT_CERTS_DIR, RegistryConfig
from portside.engine.model import NetworkConfig
from portside.errors import InvalidArgument
from portside.text import is_number

DEFAULT_HOST = "unix:///run/portside.sock"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass
class DaemonConfig:
    data_root: str = "/var/lib/portside"
    exec_root: str = "/run/portside"
    hosts: list[str] = field(default_factory=lambda: [DEFAULT_HOST])
    tlsverify: bool = False
    tls: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    log_level: str = "info"
    pidfile: str = "/run/portside.pid"
    insecure_tcp: bool = False
    cgroup_parent: str = "/portside"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    registry_certs_dir: str = DEFAULT_CERTS_DIR
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    max_download_attempts: int = 5
    bridge: str = "portside0"
    bip: str = ""
    default_address_pools: list[dict] = field(default_factory=list)
    mtu: int = 1500
    ip_forward: bool = True

    def network_config(self) -> NetworkConfig:
        """The networking options the engine gets (the default bridge, pools, MTU)."""
        return NetworkConfig(
            bridge=self.bridge,
            bridge_ip=self.bip,
            address_pools=tuple(self.default_address_pools),
            mtu=self.mtu,
            ip_forward=self.ip_forward,
        )

    def registry_config(self) -> RegistryConfig:
        """The registry settings the engine gets (pull, push, login)."""
        return RegistryConfig(
            mirrors=tuple(self.registry_mirrors),
            insecure=tuple(self.insecure_registries),
            certs_dir=self.registry_certs_dir,
            max_concurrent_downloads=self.max_concurrent_downloads,
            max_concurrent_uploads=self.max_concurrent_uploads,
            max_download_attempts=self.max_download_attempts,
        )


# daemon.json key → DaemonConfig attribute (dockerd's names)
_FILE_KEYS = {
    "data-root": "data_root",
    "exec-root": "exec_root",
    "hosts": "hosts",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "log-level": "log_level",
    "pidfile": "pidfile",
    "cgroup-parent": "cgroup_parent",
    "registry-mirrors": "registry_mirrors",
    "insecure-registries": "insecure_registries",
    "registry-certs-dir": "registry_certs_dir",
    "max-concurrent-downloads": "max_concurrent_downloads",
    "max-concurrent-uploads": "max_concurrent_uploads",
    "max-download-attempts": "max_download_attempts",
    "bridge": "bridge",
    "bip": "bip",
    "default-address-pools": "default_address_pools",
    "mtu": "mtu",
    "ip-forward": "ip_forward",
}
_LIST_KEYS = frozenset({"registry_mirrors", "insecure_registries"})
_INT_KEYS = frozenset(
    {"max_concurrent_downloads", "max_concurrent_uploads", "max_download_attempts", "mtu"}
)
# the flags load_config copies over the file's values when given
_FLAG_ATTRS = (
    "data_root",
    "exec_root",
    "hosts",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "log_level",
    "pidfile",
    "insecure_tcp",
    "cgroup_parent",
    "registry_mirrors",
    "insecure_registries",
    "registry_certs_dir",
    "max_concurrent_downloads",
    "max_concurrent_uploads",
    "max_download_attempts",
    "bridge",
    "bip",
    "default_address_pools",
    "mtu",
    "ip_forward",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="portside daemon", description="Run the Portside daemon")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/portside)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/portside)")
    p.add_argument(
        "-H",
        "--host",
        action="append",
        dest="hosts",
        help="socket to listen on: unix:///path or tcp://ADDR:PORT (repeatable)",
    )
    p.add_argument(
        "--tls", action="store_true", default=None, help="use TLS (implied by --tlsverify)"
    )
    p.add_argument(
        "--tlsverify",
        action="store_true",
        default=None,
        help="use TLS and require a client certificate signed by --tlscacert",
    )
    p.add_argument("--tlscacert", help="CA certificate clients must be signed by")
    p.add_argument("--tlscert", help="the server's certificate")
    p.add_argument("--tlskey", help="the server's key")
    p.add_argument("--config-file", help="daemon.json-style configuration file")
    p.add_argument("-l", "--log-level", choices=LOG_LEVELS)
    p.add_argument("-p", "--pidfile")
    p.add_argument("--cgroup-parent", help="parent cgroup of the containers (default /portside)")
    p.add_argument(
        "--insecure-tcp",
        action="store_true",
        default=None,
        help="allow plain TCP on a non-loopback address (anyone there is root)",
    )
    _registry_flags(p)
    _network_flags(p)
    return p


def _go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _pool(text: str) -> dict:
    """``base=10.10.0.0/16,size=24`` (dockerd's --default-address-pool)."""
    fields = dict(item.partition("=")[::2] for item in text.split(","))
    if set(fields) != {"base", "size"} or not is_number(fields["size"]):
        raise argparse.ArgumentTypeError(f"invalid address pool {text!r}: want base=CIDR,size=N")
    return {"base": fields["base"], "size": int(fields["size"])}


def _network_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-b",
        "--bridge",
        metavar="NAME",
        help='the default bridge network\'s bridge (default portside0; "none": no default)',
    )
    p.add_argument("--bip", metavar="CIDR", help="the default bridge's address, e.g. 172.20.0.1/16")
    p.add_argument(
        "--default-address-pool",
        action="append",
        type=_pool,
        dest="default_address_pools",
        metavar="base=CIDR,size=N",
        help="address pool for networks' subnets (repeatable; default dockerd's)",
    )
    p.add_argument("--mtu", type=int, metavar="N", help="MTU of the default bridge (1500)")
    p.add_argument(
        "--ip-forward",
        type=_go_bool,
        nargs="?",
        const=True,
        metavar="BOOL",
        help="turn on net.ipv4.ip_forward at start (default true)",
    )


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry-mirror",
        action="append",
        dest="registry_mirrors",
        metavar="URL",
        help="preferred Docker Hub mirror (repeatable)",
    )
    p.add_argument(
        "--insecure-registry",
        action="append",
        dest="insecure_registries",
        metavar="HOST|CIDR",
        help="registry reachable over plain HTTP or without certificate checks (repeatable)",
    )
    p.add_argument(
        "--registry-certs-dir",
        metavar="DIR",
        help=f"per-registry CAs and client certificates, DIR/HOST[:PORT]/ (default "
        f"{DEFAULT_CERTS_DIR})",
    )
    for flag, default in (
        ("--max-concurrent-downloads", 3),
        ("--max-concurrent-uploads", 5),
        ("--max-download-attempts", 5),
    ):
        what = flag.removeprefix("--").replace("-", " ")
        p.add_argument(flag, type=int, metavar="N", help=f"{what} (default {default})")


def load_config(argv: list[str]) -> DaemonConfig:
    """Defaults, then the config file, then the flags."""
    args = build_parser().parse_args(argv)
    cfg = DaemonConfig()
    if args.config_file:
        _apply_file(cfg, args.config_file)
    for attr in _FLAG_ATTRS:
        value = getattr(args, attr)
        if value is not None:
            setattr(cfg, attr, value)
    if cfg.tlsverify:
        cfg.tls = True
    validate(cfg)
    return cfg


def _apply_file(cfg: DaemonConfig, path: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidArgument(f"invalid config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid config file {path}: not a JSON object")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise InvalidArgument(f"invalid config file {path}: unknown keys {', '.join(unknown)}")
    for key, raw in data.items():
        attr = _FILE_KEYS[key]
        value = [raw] if attr == "hosts" and isinstance(raw, str) else raw
        if attr == "log_level" and value not in LOG_LEVELS:
            raise InvalidArgument(f"invalid config file {path}: bad log-level {value!r}")
        if attr in _LIST_KEYS and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise InvalidArgument(f"invalid config file {path}: {key} is not a list of strings")
        if attr in _INT_KEYS and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidArgument(f"invalid config file {path}: {key} is not an integer")
        if attr in ("registry_certs_dir", "bridge", "bip") and not isinstance(value, str):
            raise InvalidArgument(f"invalid config file {path}: {key} is not a string")
        if attr == "ip_forward" and not isinstance(value, bool):
            raise InvalidArgument(f"invalid config file {path}: {key} is not a boolean")
        if attr == "default_address_pools" and not isinstance(value, list):
            raise InvalidArgument(f"invalid config file {path}: {key} is not a list")
        setattr(cfg, attr, value)


def parse_host(host: str) -> tuple[str, str, int]:
    """``unix:///p`` → ("unix", "/p", 0); ``tcp://a:p`` → ("tcp", a, p)."""
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not path.startswith("/"):
            raise InvalidArgument(f"invalid host {host!r}: the socket path must be absolute")
        return "unix", path, 0
    if host.startswith("tcp://"):
        rest = host[len("tcp://") :].rstrip("/")
        addr, sep, port = rest.rpartition(":")
        if not sep or not is_number(port) or not 0 <= int(port) < 65536:
            raise InvalidArgument(f"invalid host {host!r}: want tcp://ADDR:PORT")
        addr = addr.strip("[]") or "0.0.0.0"
        return "tcp", addr, int(port)
    raise InvalidArgument(f"invalid host {host!r}: want unix:///path or tcp://ADDR:PORT")


def is_loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def validate(cfg: DaemonConfig) -> None:
    """Refuse what dockerd refuses, and plain TCP off loopback unless forced."""
    from portside.distribution.hosts import validate_config

    validate_config(cfg.registry_config())
    _validate_network(cfg)
    if not cfg.cgroup_parent.startswith("/"):
        cfg.cgroup_parent = "/" + cfg.cgroup_parent
    if not cfg.hosts:
        raise InvalidArgument("no host to listen on")
    if cfg.tls and not (cfg.tlscert and cfg.tlskey):
        raise InvalidArgument("tls needs --tlscert and --tlskey")
    if cfg.tlsverify and not cfg.tlscacert:
        raise InvalidArgument("--tlsverify needs --tlscacert")
    for host in cfg.hosts:
        kind, addr, _ = parse_host(host)
        if kind == "tcp" and not cfg.tlsverify and not is_loopback(addr) and not cfg.insecure_tcp:
            raise InvalidArgument(
                f"refusing plain TCP on {host}: anyone who can reach {addr} gets root on this "
                "host; use --tlsverify with certificates (portside tls init), or --insecure-tcp"
            )


def _validate_network(cfg: DaemonConfig) -> None:
    """The networking options, as dockerd checks them at start."""
    from portside.network.ipam import parse_pools

    if cfg.default_address_pools:
        parse_pools(cfg.default_address_pools)
    if not 68 <= cfg.mtu <= 65535:
        raise InvalidArgument(f"invalid mtu {cfg.mtu}: must be 68-65535")
    name = cfg.bridge
    if not name or len(name.encode()) > 15 or any(c in name for c in "/: \t"):
        raise InvalidArgument(f"invalid bridge name {name!r}")
    if cfg.bip:
        try:
            ipaddress.IPv4Interface(cfg.bip)
        except ValueError as exc:
            raise InvalidArgument(f"invalid bip {cfg.bip}: {exc}") from exc
        if "/" not in cfg.bip:
            raise InvalidArgument(f"invalid bip {cfg.bip}: want an address with a prefix")
