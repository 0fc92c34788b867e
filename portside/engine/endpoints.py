"""A container's endpoints on bridge networks: made at start, released at exit.

An endpoint is a veth pair created in one netlink request with its peer (``eth0``,
``eth1``...) born inside the container's namespace and its host end (``ps`` + 8 random
hex) a port of the network's bridge; then, inside the namespace, lo up, the address,
up, and the default route via the gateway (the first non-internal network only). The
netlink socket inside the namespace is opened by a short-lived thread that ``setns()``es,
opens it and exits (``netns_socket="thread"``): no fork of the threaded daemon, and no
thread the daemon uses for anything else ever changes namespace.

Teardown is off the stop path: when the container's last process exits, its namespace
goes and the kernel deletes the pair; only the address (IPAM) and the published ports
are released. Live disconnects delete the veth synchronously (the container must lose
the interface at once).

The state is the container's ``networks`` (Docker's EndpointSettings by network name,
with private ``_`` keys: ``_veth``, ``_ifname``, ``_gw``, ``_mac``, ``_user``) and
``ports`` (NetworkSettings.Ports).
"""

from __future__ import annotations

import os
import re
from ipaddress import IPv4Address, IPv4Interface

from portside.errors import AlreadyExists, Internal, InvalidArgument, NotFound, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.engine.model import Container
    from portside.engine.networks import Network, Networks
    from portside.network.nft import PublishedPort

__all__ = [
    "attach",
    "connect",
    "disconnect",
    "endpoints_on",
    "for_create",
    "has_live_state",
    "is_our_veth",
    "lookup",
    "public",
    "published",
    "release",
]

_VETH = re.compile(r"^ps[0-9a-f]{8}$")
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
_LIVE = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
_RUNNING = ("running", "paused")


def is_our_veth(name: str) -> bool:
    """A host veth end named by Portside (``ps`` + 8 hex)."""
    return bool(_VETH.match(name))


def has_live_state(c: Container) -> bool:
    return bool(c.ports) or any(ep.get("IPAddress") for ep in c.networks.values())


def mac_of(addr: IPv4Address) -> str:
    """Docker's MAC for an address: 02:42 and the address's four bytes (unique on a
    subnet, stable across restarts)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


# --- create -------------------------------------------------------------------------------


def settings(net: Network, config: dict[str, Any]) -> dict[str, Any]:
    """The configured EndpointSettings of a container on ``net`` (``config`` as Docker's
    EndpointsConfig entry: IPAMConfig, Aliases, MacAddress...), checked."""
    ipam_config = config.get("IPAMConfig") or {}
    address = str(ipam_config.get("IPv4Address") or "")
    aliases = [str(a) for a in config.get("Aliases") or []]
    if ipam_config.get("IPv6Address"):
        raise InvalidArgument("IPv6 addresses are not supported yet")
    if address and not net.user_defined:
        raise InvalidArgument(
            "user specified IP address is supported on user defined networks only"
        )
    if aliases and not net.user_defined:
        raise InvalidArgument(
            "network-scoped alias is supported only for containers in user defined networks"
        )
    if address:
        try:
            ip = IPv4Address(address)
        except ValueError as exc:
            raise InvalidArgument(f"invalid IPv4 address: {address}") from exc
        if net.space is not None and ip not in net.space.subnet:
            raise InvalidArgument(
                f"no configured subnet or ip-range contain the IP address {address}"
            )
    ep: dict[str, Any] = {
        "IPAMConfig": {"IPv4Address": address} if address else None,
        "Links": config.get("Links") or None,
        "Aliases": aliases or None,
        "MacAddress": "",
        "DriverOpts": config.get("DriverOpts") or None,
        "NetworkID": net.id,
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None,
    }
    mac = str(config.get("MacAddress") or "")
    if mac:
        if not _MAC.match(mac):
            raise InvalidArgument(f"invalid MAC address: {mac}")
        ep["_mac"] = mac.lower()
    if net.user_defined:
        ep["_user"] = True
    return ep


def for_create(
    nets: Networks, host_config: dict[str, Any], networking: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """A new container's networks from its NetworkMode and EndpointsConfig."""
    mode = str(host_config.get("NetworkMode") or "bridge")
    wanted = {
        ("bridge" if key == "default" else str(key)): dict(value or {})
        for key, value in ((networking or {}).get("EndpointsConfig") or {}).items()
    }
    if mode.startswith("container:"):
        if host_config.get("PortBindings") or host_config.get("PublishAllPorts"):
            raise InvalidArgument(
                "conflicting options: port publishing and the container type network mode"
            )
        return {}
    net = nets.resolve(mode)
    primary = wanted.pop(mode, None) or wanted.pop(net.name, None) or wanted.pop(net.id, None)
    others = [nets.resolve(key) for key in wanted]
    if net.driver != "bridge":
        if others:
            kind = "private (none)" if net.driver == "null" else "host"
            raise InvalidArgument(
                f"container cannot be connected to multiple networks with one of the networks"
                f" in {kind} mode"
            )
        return {net.name: settings(net, {})}
    out = {net.name: settings(net, primary or {})}
    for other, config in zip(others, wanted.values(), strict=True):
        if other.driver != "bridge":
            raise InvalidArgument(
                f"container cannot be connected to multiple networks with one of the networks"
                f" in {other.name} mode"
            )
        out[other.name] = settings(other, config)
    return out


# --- start and exit -------------------------------------------------------------------------


def _network_of(nets: Networks, name: str, ep: dict[str, Any]) -> Network:
    net = nets.named(name) or nets.by_id(str(ep.get("NetworkID") or ""))
    if net is None or net.removing:
        raise NotFound(f"network {name} not found")
    ep["NetworkID"] = net.id
    return net


def attach(nets: Networks, c: Container, pid: int) -> None:
    """Every bridge endpoint of ``c``, its ports and /etc files; all or nothing."""
    mode = str(c.host_config.get("NetworkMode") or "")
    directory = nets.lc.paths.container_dir(c.id)
    if mode.startswith("container:"):
        _share_etc(nets, c, mode.split(":", 1)[1], directory)
        return
    plan = [(name, ep, _network_of(nets, name, ep)) for name, ep in c.networks.items()]
    plan = [(name, ep, net) for name, ep, net in plan if net.driver == "bridge"]
    if not plan:
        return
    fd = _open_netns(pid, c)
    try:
        routed = False
        for index, (_, ep, net) in enumerate(plan):
            route = not routed and not net.internal
            mac = ep.get("_mac") or (str(c.config.get("MacAddress") or "") if index == 0 else "")
            _plug(nets, net, ep, fd, f"eth{index}", route=route, mac=mac.lower())
            routed = routed or route
        _publish(nets, c)
        _write_etc(nets, c, directory)
    except BaseException:
        release(nets, c)
        raise
    finally:
        os.close(fd)


def _open_netns(pid: int, c: Container) -> int:
    try:
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise Internal(
            f"container {c.id}: cannot open its network namespace /proc/{pid}/ns/net: "
            f"{exc.strerror}"
        ) from exc


def _plug(
    nets: Networks, net: Network, ep: dict[str, Any], fd: int, ifname: str, *, route: bool, mac: str
) -> None:
    from portside.network import netlink

    space = net.space
    assert space is not None
    wanted = ((ep.get("IPAMConfig") or {}).get("IPv4Address")) or None
    with nets._lock:
        if net.removing or nets.by_id(net.id) is None:
            raise NotFound(f"network {net.name} not found")
        addr = space.allocate(IPv4Address(wanted) if wanted else None)
        nets.save_ipam(net)
    try:
        mac = mac or mac_of(addr)
        veth = _create_veth(fd, ifname, net, mac)
        address = IPv4Interface((addr, space.subnet.prefixlen))
        gateway = space.gateway if route else None
        netlink.configure_inside(fd, ifname, address, gateway, netns_socket="thread")
    except BaseException:
        _release_address(nets, net, str(addr))
        raise
    ep.update(
        EndpointID=os.urandom(32).hex(),
        Gateway=str(space.gateway),
        IPAddress=str(addr),
        IPPrefixLen=space.subnet.prefixlen,
        MacAddress=mac,
        _veth=veth,
        _ifname=ifname,
        _gw=route,
    )


def _create_veth(fd: int, ifname: str, net: Network, mac: str) -> str:
    """The pair, its host end under a fresh random name (one retry on a clash)."""
    from portside.network import netlink

    for attempt in (1, 2):
        veth = "ps" + os.urandom(4).hex()
        try:
            netlink.create_veth(veth, fd, ifname, bridge=net.bridge, mtu=net.mtu, mac=mac)
        except AlreadyExists:
            if attempt == 2:
                raise
            continue
        return veth
    raise AssertionError("unreachable")


def _release_address(nets: Networks, net: Network | None, address: str) -> None:
    if net is None or net.space is None or not address:
        return
    with nets._lock:
        try:
            net.space.release(IPv4Address(address))
        except InvalidArgument:
            return  # not allocated (any more)
        nets.save_ipam(net)


def _publish(nets: Networks, c: Container) -> None:
    from portside.engine import ports

    bindings = ports.wanted(c.config, c.host_config)
    held = ports.allocate(bindings, c.name) if bindings else ports.HeldPorts()
    nets.hold_ports(c.id, held)
    c.ports = held.docker_ports(c.config.get("ExposedPorts"))
    if held.mapped:
        nets.apply()


def _write_etc(nets: Networks, c: Container, directory: str) -> None:
    """/etc/hosts with the primary address, resolv.conf with the embedded DNS of the
    first user network the container is on (it resolves names of all its networks)."""
    from portside.engine.etcfiles import write_etc_files

    live = [ep for ep in c.networks.values() if ep.get("IPAddress")]
    primary = next((ep for ep in live if ep.get("_gw")), live[0] if live else None)
    if primary is None:
        return
    servers = (nets.dns_address(nets.by_id(str(ep.get("NetworkID")))) for ep in live)
    write_etc_files(
        directory,
        c.host_config,
        c.config,
        address=primary["IPAddress"],
        embedded_dns=next((s for s in servers if s), None),
        host_gateway=nets.host_gateway(),
        in_place=True,
    )


def _share_etc(nets: Networks, c: Container, ref: str, directory: str) -> None:
    """``container:<ref>``: the other container's hosts and resolv.conf, as Docker."""
    other = nets.lc.resolve(ref)
    source = nets.lc.paths.container_dir(other.id)
    for name in ("hosts", "resolv.conf"):
        try:
            with open(os.path.join(source, name)) as f:
                text = f.read()
        except OSError:
            continue
        with open(os.path.join(directory, name), "w") as f:  # in place: it is bind-mounted
            f.write(text)


def release(nets: Networks, c: Container) -> None:
    """Addresses back to IPAM, ports freed (table updated), live fields cleared.

    The veths die with the namespace; when another running container shares it
    (``container:<c>``), they are handed to the link reaper instead."""
    had_ports = any(c.ports.values()) if c.ports else False
    nets.hold_ports(c.id, None)
    c.ports = {}
    shared = _shared_by_others(nets, c)
    for ep in c.networks.values():
        if ep.get("IPAddress"):
            _release_address(nets, nets.by_id(str(ep.get("NetworkID"))), ep["IPAddress"])
        if shared and ep.get("_veth"):
            nets.reaper.delete_link_nowait(ep["_veth"])
        _clear(ep)
    if had_ports:
        nets.apply()


def _clear(ep: dict[str, Any]) -> None:
    ep.update(_LIVE)
    for key in ("_veth", "_ifname", "_gw"):
        ep.pop(key, None)


def _shared_by_others(nets: Networks, c: Container) -> bool:
    for other in nets._containers():
        mode = str(other.host_config.get("NetworkMode") or "")
        if other is c or not mode.startswith("container:") or other.state.status not in _RUNNING:
            continue
        ref = mode.split(":", 1)[1]
        if ref == c.name or (len(ref) >= 1 and c.id.startswith(ref)):
            return True
    return False


# --- connect and disconnect -------------------------------------------------------------------


def connect(nets: Networks, net: Network, c: Container, config: dict[str, Any]) -> None:
    """Add ``net`` to ``c``: configured only, or live (the next ethN) when it runs."""
    mode = str(c.host_config.get("NetworkMode") or "")
    if net.driver == "host" or mode == "host":
        raise PermissionDenied(
            "container cannot be disconnected from host network or connected to host network"
        )
    if net.driver == "null" or mode == "none":
        raise PermissionDenied(
            "container cannot be connected to multiple networks with one of the networks in"
            " private (none) mode"
        )
    if mode.startswith("container:"):
        raise PermissionDenied(
            "container sharing network namespace with another container or host cannot be"
            " connected to any other network"
        )
    if net.name in c.networks:
        raise PermissionDenied(f"endpoint with name {c.name} already exists in network {net.name}")
    ep = settings(net, config)
    if c.state.status in _RUNNING and c.state.pid:
        used = {e.get("_ifname") for e in c.networks.values()}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        routed = any(e.get("_gw") for e in c.networks.values())
        fd = _open_netns(c.state.pid, c)
        try:
            mac = str(ep.get("_mac") or "")
            _plug(nets, net, ep, fd, ifname, route=not routed and not net.internal, mac=mac)
        finally:
            os.close(fd)
        c.networks[net.name] = ep
        _write_etc(nets, c, nets.lc.paths.container_dir(c.id))
        return
    c.networks[net.name] = ep


def disconnect(nets: Networks, net: Network | None, ref: str, c: Container) -> None:
    """Remove ``net`` (``ref``, when force-disconnecting from a network that is gone)."""
    from portside.network import netlink

    name = net.name if net is not None else ref
    if net is not None and (net.driver == "host" or c.host_config.get("NetworkMode") == "host"):
        raise PermissionDenied(
            "container cannot be disconnected from host network or connected to host network"
        )
    if name not in c.networks:
        raise NotFound(f"container {c.id} is not connected to network {name}")
    ep = c.networks.pop(name)
    if ep.get("_veth"):
        netlink.delete_link(ep["_veth"])
    if ep.get("IPAddress"):
        _release_address(nets, net, ep["IPAddress"])
        if c.ports:
            nets.apply()  # ports aimed at this endpoint move to another one, or go
        _write_etc(nets, c, nets.lc.paths.container_dir(c.id))


# --- views ----------------------------------------------------------------------------------


def public(c: Container, ep: dict[str, Any]) -> dict[str, Any]:
    """EndpointSettings as Docker shows them (DNSNames on user networks)."""
    out = {k: v for k, v in ep.items() if not k.startswith("_")}
    if ep.get("_user"):
        out["DNSNames"] = [c.name, *(ep.get("Aliases") or []), c.id[:12]]
    return out


def endpoints_on(net: Network, containers: list[Container]) -> dict[str, Any]:
    """Network inspect's Containers: the live endpoints on ``net``."""
    out: dict[str, Any] = {}
    for c in containers:
        ep = c.networks.get(net.name)
        if ep and ep.get("NetworkID") == net.id and ep.get("IPAddress"):
            out[c.id] = {
                "Name": c.name,
                "EndpointID": ep.get("EndpointID", ""),
                "MacAddress": ep.get("MacAddress", ""),
                "IPv4Address": f"{ep['IPAddress']}/{ep.get('IPPrefixLen', 0)}",
                "IPv6Address": "",
            }
    return out


def published(c: Container, by_id: dict[str, Network]) -> list[PublishedPort]:
    """``c``'s published ports as nftables DNATs to its first live endpoint on a bridge
    network (a non-internal one when there is one)."""
    from portside.engine.ports import mapped_of
    from portside.network.nft import PublishedPort

    live = [
        (by_id[ep["NetworkID"]], ep["IPAddress"])
        for ep in c.networks.values()
        if ep.get("IPAddress") and ep.get("NetworkID") in by_id
    ]
    if not live:
        return []
    target = next((ip for net, ip in live if not net.internal), live[0][1])
    out = []
    for proto, host_ip, host_port, port in mapped_of(c.ports):
        where = None if host_ip == "0.0.0.0" else IPv4Address(host_ip)
        out.append(PublishedPort(proto, host_port, IPv4Address(target), port, where))
    return out


def _live_on(c: Container, network_id: str) -> dict[str, Any] | None:
    for ep in c.networks.values():
        if ep.get("NetworkID") == network_id and ep.get("IPAddress") and ep.get("_user"):
            return ep
    return None


def lookup(
    net: Network, containers: list[Container], name: str, client_ip: str = ""
) -> list[str] | None:
    """The addresses of the running containers called ``name`` (name, alias, short
    ID, ``name.<network>``) on the user networks the asking container (``client_ip``
    on ``net``) is on, as Docker's resolver; on ``net`` alone for an unknown client."""
    query = name.rstrip(".").lower()
    if not query:
        return None
    client = next(
        (c for c in containers if (_live_on(c, net.id) or {}).get("IPAddress") == client_ip),
        None,
    )
    scope = {net.id}
    if client is not None:
        scope.update(str(ep.get("NetworkID")) for ep in client.networks.values() if ep.get("_user"))
    found: list[str] | None = None
    for c in containers:
        for network_name, ep in c.networks.items():
            if ep.get("NetworkID") not in scope or not ep.get("IPAddress"):
                continue
            names = {c.name.lower(), c.id[:12]}
            names.update(str(a).lower() for a in ep.get("Aliases") or [])
            qualified = {f"{n}.{network_name.lower()}" for n in names}
            if query in names or query in qualified:
                found = [*(found or []), ep["IPAddress"]]
    return found
