"""The container's /etc/hostname, /etc/hosts and /etc/resolv.conf, written into its
directory and bind-mounted by the spec."""

from __future__ import annotations

import os

from portside.errors import InvalidArgument

__all__ = ["hosts_file", "resolv_conf", "write_etc_files"]

_HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
_HOST_RESOLV = ("/etc/resolv.conf",)
_STUB_RESOLV = "/run/systemd/resolve/resolv.conf"


def hosts_file(
    hostname: str,
    domainname: str = "",
    extra_hosts: list[str] | None = None,
    *,
    address: str | None = None,
    host_gateway: str | None = None,
) -> str:
    """Docker's /etc/hosts: localhost and the IPv6 names, ``extra_hosts`` ("name:ip";
    ``host-gateway`` is ``host_gateway``, the default bridge's address), and the
    container's own hostname on its ``address`` (127.0.1.1 without a network)."""
    lines = [_HOSTS_BASE]
    for entry in extra_hosts or []:
        name, sep, ip = entry.partition(":")
        if not sep or not name or not ip:
            raise InvalidArgument(f"invalid extra host {entry!r}: expected name:ip")
        if ip == "host-gateway":
            if not host_gateway:
                raise InvalidArgument("unable to derive the IP value for host-gateway")
            ip = host_gateway
        lines.append(f"{ip.strip('[]')}\t{name}\n")
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    lines.append(f"{address or '127.0.1.1'}\t{names}\n")
    return "".join(lines)


def _is_local(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "0:0:0:0:0:0:0:1")


def resolv_conf(
    host_text: str,
    *,
    dns: list[str] | None = None,
    search: list[str] | None = None,
    options: list[str] | None = None,
    host_network: bool = False,
    embedded: str | None = None,
) -> str:
    """The container's resolv.conf from the host's: local nameservers (127.x, ::1) dropped
    (Docker's defaults if none is left) unless on the host's network; Dns, DnsSearch and
    DnsOptions replace the host's nameservers, search and options lines. With an
    ``embedded`` DNS server (user networks: the gateway) it is the first nameserver, the
    Dns ones after it, and the host's are left to it (it forwards to them)."""
    servers: list[str] = []
    searches: list[str] = []
    opts: list[str] = []
    for raw in host_text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            if host_network or not _is_local(words[1]):
                servers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            opts.extend(words[1:])
    if embedded:
        servers = [embedded, *(dns or [])]
    elif dns:
        servers = list(dns)
    elif not servers:
        servers = list(_DEFAULT_DNS)
    if search is not None and search:
        searches = [] if search == ["."] else list(search)
    if options:
        opts = list(options)
    out = [f"nameserver {s}\n" for s in servers]
    if searches:
        out.append("search " + " ".join(searches) + "\n")
    if opts:
        out.append("options " + " ".join(opts) + "\n")
    return "".join(out)


def _host_resolv() -> str:
    for path in _HOST_RESOLV:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if "nameserver 127.0.0.53" in text and os.path.exists(_STUB_RESOLV):
            with open(_STUB_RESOLV) as f:
                return f.read()
        return text
    return ""


def _write(path: str, text: str, in_place: bool = False) -> None:
    """Write ``path`` whole: by rename, or ``in_place`` (the same inode) once the file
    is bind-mounted into a container, where a rename would not be seen."""
    if in_place:
        with open(path, "w") as f:
            f.write(text)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_etc_files(
    directory: str,
    host_config: dict,
    config: dict,
    *,
    address: str | None = None,
    embedded_dns: str | None = None,
    host_gateway: str | None = None,
    in_place: bool = False,
) -> dict[str, str]:
    """Write hostname, hosts and resolv.conf into ``directory``; their paths by name.
    ``address``: the container's own (its primary endpoint's); ``embedded_dns``: the
    nameserver of its user network; ``in_place``: rewrite files already bind-mounted."""
    hostname = str(config.get("Hostname") or "")
    domain = str(config.get("Domainname") or "")
    host_network = host_config.get("NetworkMode") == "host"
    paths = {n: os.path.join(directory, n) for n in ("hostname", "hosts", "resolv.conf")}
    _write(paths["hostname"], hostname + "\n", in_place)
    if host_network:
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = _HOSTS_BASE
    else:
        hosts = hosts_file(
            hostname,
            domain,
            host_config.get("ExtraHosts"),
            address=address,
            host_gateway=host_gateway,
        )
    _write(paths["hosts"], hosts, in_place)
    resolv = resolv_conf(
        _host_resolv(),
        dns=host_config.get("Dns"),
        search=host_config.get("DnsSearch"),
        options=host_config.get("DnsOptions"),
        host_network=host_network,
        embedded=embedded_dns,
    )
    _write(paths["resolv.conf"], resolv, in_place)
    return paths
