"""``portside daemon`` options: dockerd-like flags, a daemon.json config file, flags win."""

from __future__ import annotations

import argparse
import ipaddress
import json
from dataclasses import dataclass, field

from portside.distribution.config import DEFAULT_CERTS_DIR, RegistryConfig
from portside.errors import InvalidArgument

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
}
_LIST_KEYS = frozenset({"registry_mirrors", "insecure_registries"})
_INT_KEYS = frozenset(
    {"max_concurrent_downloads", "max_concurrent_uploads", "max_download_attempts"}
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
    return p


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
        if attr == "registry_certs_dir" and not isinstance(value, str):
            raise InvalidArgument(f"invalid config file {path}: {key} is not a string")
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
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
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
