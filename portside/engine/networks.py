"""Networks: the predefined ``bridge``/``host``/``none``, user-defined bridge networks,
NAT and published ports (one nftables table), the embedded DNS, and reconciliation.

A network is a record (Docker's fields) plus, for the bridge driver, a Linux bridge and
an :class:`~portside.network.ipam.AddressSpace`; both are rows of the engine DB
(``networks``: the record as JSON, the IPAM state after every change). The default
``bridge`` network lives on the daemon's bridge (``portside0``) with the first subnet of
the address pools that overlaps no host route and no other network.

Containers' endpoints (a veth whose peer is born in the container's namespace, an
address, routes, /etc/hosts and resolv.conf, published ports) are made by
:mod:`portside.engine.endpoints` at start and released at exit; their state is the
container's ``networks`` (Docker's EndpointSettings) and ``ports``. Every change of the
networks or of published ports rebuilds the whole nftables table from that state and
swaps it in one transaction (:meth:`Networks.apply`, serialised).

Locks: a container's lock (held by the caller for anything touching one container) is
taken before ``_lock`` (the records, address spaces, held ports, DB rows of networks),
which is taken before the lifecycle's ``map_lock``; ``_nft_lock`` serialises applies.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from ipaddress import IPv4Interface, IPv4Network
from typing import TYPE_CHECKING, Any

from portside.engine import endpoints as _ep
from portside.engine.model import NetworkConfig, now_rfc3339
from portside.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
)
from portside.network import ipam

if TYPE_CHECKING:
    from collections.abc import Iterable

    from portside.engine.db import Store
    from portside.engine.model import Container
    from portside.network.nft import Ruleset

__all__ = ["PREDEFINED", "Network", "Networks"]

log = logging.getLogger("portside.engine.networks")

PREDEFINED = ("bridge", "host", "none")
OPT_BRIDGE = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")


class Network:
    """One network's record; ``space`` (bridge driver) is its address allocator."""

    FIELDS = (
        "id", "name", "driver", "created", "internal", "attachable", "options", "labels",
        "ipam_options", "ipam_config", "bridge", "mtu", "masquerade", "default",
    )  # fmt: skip

    def __init__(self, **kw: Any) -> None:
        self.id: str = kw["id"]
        self.name: str = kw["name"]
        self.driver: str = kw.get("driver", "bridge")
        self.created: str = kw.get("created") or now_rfc3339()
        self.internal: bool = bool(kw.get("internal"))
        self.attachable: bool = bool(kw.get("attachable"))
        self.options: dict[str, str] = dict(kw.get("options") or {})
        self.labels: dict[str, str] = dict(kw.get("labels") or {})
        self.ipam_options: dict[str, str] = dict(kw.get("ipam_options") or {})
        self.ipam_config: list[dict[str, str]] = list(kw.get("ipam_config") or [])
        self.bridge: str = kw.get("bridge", "")
        self.mtu: int = int(kw.get("mtu") or 1500)
        self.masquerade: bool = kw.get("masquerade", True) is not False
        self.default: bool = bool(kw.get("default"))
        self.space: ipam.AddressSpace | None = kw.get("space")
        self.dns_port = 0  # the embedded DNS listener's port (runtime only)
        self.removing = False

    @property
    def predefined(self) -> bool:
        return self.default or self.driver in ("host", "null")

    @property
    def user_defined(self) -> bool:
        """A network of the user's: its containers get DNS, aliases and static IPs."""
        return not self.predefined

    def to_doc(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def docker(self, containers: dict[str, Any] | None = None) -> dict[str, Any]:
        """Docker's Network JSON (``Containers``: the live endpoints, when given)."""
        config: list[dict[str, str]] = []
        if self.space is not None:
            entry = {"Subnet": str(self.space.subnet), "Gateway": str(self.space.gateway)}
            if self.space.ip_range is not None:
                entry["IPRange"] = str(self.space.ip_range)
            config.append(entry)
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": self.driver == "bridge",
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": self.ipam_options or None, "Config": config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers or {},
            "Options": dict(self.options),
            "Labels": dict(self.labels),
        }


def _new_id() -> str:
    return os.urandom(32).hex()


def _bool_option(value: str, key: str) -> bool:
    if value.lower() in ("1", "t", "true"):
        return True
    if value.lower() in ("0", "f", "false"):
        return False
    raise InvalidArgument(f"invalid value {value!r} for option {key}: expected a boolean")


class Networks:
    """Every network of the engine, and the container endpoints on them."""

    def __init__(self, config: NetworkConfig, db: Store, lc: Any, events: Any) -> None:
        self.config = config
        self.db = db
        self.lc = lc
        self.events = events
        self._nets: dict[str, Network] = {}  # by ID
        self._lock = threading.RLock()
        self._nft_lock = threading.Lock()
        self._held: dict[str, Any] = {}  # container ID -> ports.HeldPorts
        self._ready = False  # apply() waits for reconcile (daemon start)
        self._dns: Any = None
        self._dns_missing = False
        self._reaper: Any = None
        self._warnings: list[str] = []
        pools = config.address_pools
        self.pools = ipam.parse_pools(pools) if pools else ipam.DEFAULT_POOLS

    # --- records ------------------------------------------------------------------

    def _save(self, net: Network) -> None:
        space = net.space.to_dict() if net.space is not None else None
        self.db.save_network(net.id, net.name, net.to_doc(), space)

    def save_ipam(self, net: Network) -> None:
        assert net.space is not None
        self.db.save_ipam(net.id, net.space.to_dict())

    def all(self) -> list[Network]:
        with self._lock:
            return list(self._nets.values())

    def by_id(self, nid: str) -> Network | None:
        return self._nets.get(nid)

    def named(self, name: str) -> Network | None:
        with self._lock:
            return next((n for n in self._nets.values() if n.name == name), None)

    @property
    def default_bridge(self) -> Network | None:
        return next((n for n in self._nets.values() if n.default), None)

    def resolve(self, ref: str) -> Network:
        """A network by full ID, name or unique ID prefix (Docker's order)."""
        with self._lock:
            if ref in self._nets:
                return self._nets[ref]
            named = self.named(ref)
            if named is not None:
                return named
            found = [n for n in self._nets.values() if ref and n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(
                f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)"
            )
        raise NotFound(f"network {ref} not found")

    def exists(self, ref: str) -> bool:
        try:
            self.resolve(ref)
        except (NotFound, InvalidArgument):
            return False
        return True

    def host_gateway(self) -> str | None:
        """The address ``host-gateway`` in --add-host stands for: the default bridge's."""
        net = self.default_bridge
        return str(net.space.gateway) if net is not None and net.space is not None else None

    def warnings(self) -> list[str]:
        return list(self._warnings)

    # --- daemon start ---------------------------------------------------------------

    def load(self) -> None:
        """Read the networks, make the predefined ones and the default bridge, bring
        every bridge up. Before the containers are loaded (their exits release
        addresses)."""
        for doc, space in self.db.networks():
            net = Network(**doc)
            if space is not None:
                net.space = ipam.AddressSpace.from_dict(space)
            self._nets[net.id] = net
        for name, driver in (("host", "host"), ("none", "null")):
            if not any(n.driver == driver for n in self._nets.values()):
                net = Network(id=_new_id(), name=name, driver=driver)
                self._nets[net.id] = net
                self._save(net)
        self._load_default_bridge()
        bridges = [n for n in self._nets.values() if n.driver == "bridge"]
        if bridges:
            self._prepare_host()
        for net in bridges:
            self._bridge_up(net)

    def _load_default_bridge(self) -> None:
        current = self.default_bridge
        name = self.config.bridge
        if name == "none":
            if current is not None:
                if current.space is not None and current.space.allocated():
                    raise FailedPrecondition(
                        "--bridge none: the default bridge network still has endpoints"
                    )
                self._drop_record(current)
            return
        if current is not None and current.bridge == name and self._bip_matches(current):
            return
        if current is not None:
            if current.space is not None and current.space.allocated():
                raise FailedPrecondition(
                    f"the default bridge network is on {current.bridge} with endpoints;"
                    f" stop its containers before changing the bridge to {name}"
                )
            self._drop_record(current)
        self._nets_add(self._make_default_bridge(name, current.id if current else _new_id()))

    def _bip_matches(self, net: Network) -> bool:
        if not self.config.bridge_ip or net.space is None:
            return True
        bip = IPv4Interface(self.config.bridge_ip)
        return (bip.network, bip.ip) == (net.space.subnet, net.space.gateway)

    def _make_default_bridge(self, bridge: str, nid: str) -> Network:
        from portside.network import netlink

        if self.config.bridge_ip:
            try:
                bip = IPv4Interface(self.config.bridge_ip)
            except ValueError as exc:
                raise InvalidArgument(f"invalid --bip {self.config.bridge_ip}: {exc}") from exc
            space = ipam.AddressSpace(bip.network, bip.ip)
        else:
            taken = [*netlink.host_routes(), *self._subnets()]
            space = ipam.AddressSpace(ipam.choose_subnet(self.pools, taken))
        options = {
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            OPT_MASQUERADE: "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            OPT_BRIDGE: bridge,
            OPT_MTU: str(self.config.mtu),
        }
        return Network(
            id=nid, name="bridge", driver="bridge", options=options, bridge=bridge,
            mtu=self.config.mtu, default=True, space=space,
        )  # fmt: skip

    def _nets_add(self, net: Network) -> None:
        with self._lock:
            self._nets[net.id] = net
            self._save(net)

    def _drop_record(self, net: Network) -> None:
        with self._lock:
            self._nets.pop(net.id, None)
            self.db.delete_network(net.id)

    def _subnets(self) -> list[IPv4Network]:
        return [n.space.subnet for n in self._nets.values() if n.space is not None]

    def _prepare_host(self) -> None:
        """nftables usable, ip_forward on (as dockerd), Docker's FORWARD DROP noticed."""
        from portside.network import nft

        nft.require()
        if self.config.ip_forward and nft.enable_ip_forward():
            log.info("enabled IPv4 forwarding (net.ipv4.ip_forward=1): containers need it")
        if nft.forward_policy_drop():
            text = (
                "the iptables FORWARD chain's policy is DROP (Docker sets it): traffic"
                " between containers on Portside bridges and other networks is dropped by"
                " it; allow it, e.g. iptables -I DOCKER-USER -i <bridge> -j ACCEPT and"
                " -I DOCKER-USER -o <bridge> -j ACCEPT (see docs/network.md)"
            )
            self._warnings.append(text)
            log.warning("%s", text)

    def _bridge_up(self, net: Network) -> None:
        """The Linux bridge with the gateway address, up; route_localnet on it."""
        from portside.network import netlink, nft

        assert net.space is not None
        address = IPv4Interface((net.space.gateway, net.space.subnet.prefixlen))
        netlink.ensure_bridge(net.bridge, address, net.mtu)
        nft.route_localnet(net.bridge)
        if net.user_defined:
            self._start_dns(net)

    def reconcile(self) -> None:
        """After the containers are loaded: addresses of containers that are gone back
        to IPAM, ports of running containers held again, stale veths on our bridges
        deleted, DNS listeners, and the nftables table rebuilt from the DB."""
        live: dict[str, set[str]] = {}
        veths: set[str] = set()
        for c in self._containers():
            if c.state.status in ("running", "paused"):
                for ep in c.networks.values():
                    if ep.get("IPAddress"):
                        live.setdefault(ep.get("NetworkID", ""), set()).add(ep["IPAddress"])
                        veths.add(str(ep.get("_veth") or ""))
                self._rehold(c)
            elif _ep.has_live_state(c):  # killed between its attach and its start
                with self.lc.lock(c.id):
                    self.release(c)
                    self.lc.save(c)
                    if self.lc.runtime_status(c.id) == "created":
                        self.lc.runtime_delete(c.id)  # its namespace is half made
        with self._lock:
            for net in self._nets.values():
                if net.space is None:
                    continue
                stale = [a for a in net.space.allocated() if str(a) not in live.get(net.id, ())]
                for addr in stale:
                    net.space.release(addr)
                if stale:
                    log.info("network %s: released %d stale addresses", net.name, len(stale))
                    self.save_ipam(net)
        self._reap_stale_veths(veths)
        self._ready = True
        self.apply()

    def _rehold(self, c: Container) -> None:
        from portside.engine import ports

        if c.ports:
            try:
                self._held[c.id] = ports.rebind(ports.mapped_of(c.ports))
            except PortsideError as exc:
                log.warning("container %s: cannot hold its ports again: %s", c.id[:12], exc)

    def _reap_stale_veths(self, known: set[str]) -> None:
        from portside.network import netlink

        for net in self.all():
            if net.driver != "bridge":
                continue
            for name in netlink.bridge_ports(net.bridge):
                if _ep.is_our_veth(name) and name not in known:
                    self.reaper.delete_link_nowait(name)

    @property
    def reaper(self) -> Any:
        if self._reaper is None:
            from portside.network.netlink import LinkReaper

            self._reaper = LinkReaper()
        return self._reaper

    def close(self) -> None:
        if self._dns is not None:
            self._dns.close()
        if self._reaper is not None:
            self._reaper.close()
        with self._lock:
            for held in self._held.values():
                held.close()
            self._held.clear()

    # --- nftables -------------------------------------------------------------------

    def ruleset(self) -> Ruleset:
        """Portside's table as the networks and running containers say it should be."""
        from portside.network import nft

        with self._lock:
            bridges = [n for n in self._nets.values() if n.space is not None and not n.removing]
            nets = tuple(
                nft.BridgeNetwork(n.bridge, n.space.subnet, n.internal, n.masquerade, True)  # type: ignore[union-attr]
                for n in bridges
            )
            dns = tuple(
                nft.DnsRedirect(n.bridge, n.space.gateway, n.dns_port)  # type: ignore[union-attr]
                for n in bridges
                if n.dns_port and n.dns_port != 53
            )
            by_id = {n.id: n for n in bridges}
        published = []
        for c in self._containers():
            if c.ports and c.state.status in ("running", "paused", "restarting", "created"):
                published.extend(_ep.published(c, by_id))
        return nft.Ruleset(nets, tuple(published), table=self.config.table, dns=dns)

    def apply(self) -> None:
        """Replace Portside's nftables table with :meth:`ruleset`, atomically; serialised,
        so that the last caller's state wins."""
        if not self._ready:
            return
        from portside.network import nft

        with self._nft_lock:
            nft.apply(self.ruleset())

    # --- DNS --------------------------------------------------------------------------

    def _start_dns(self, net: Network) -> None:
        server = self._dns_server()
        if server is None or net.space is None:
            return
        try:
            gateway = str(net.space.gateway)
            net.dns_port = server.add_listener(net.id, gateway, 0, forward=not net.internal)
        except (OSError, PortsideError) as exc:
            log.warning("network %s: no embedded DNS: %s", net.name, exc)
            net.dns_port = 0

    def _stop_dns(self, net: Network) -> None:
        if self._dns is not None and net.dns_port:
            self._dns.remove_listener(net.id)
        net.dns_port = 0

    def _dns_server(self) -> Any:
        if self._dns is None and not self._dns_missing:
            try:
                from portside.network.dns import EmbeddedDNS
            except ImportError as exc:
                log.warning("no embedded DNS server (%s): container names do not resolve", exc)
                self._dns_missing = True
                return None
            self._dns = EmbeddedDNS(self.lookup)
        return self._dns

    def dns_address(self, net: Network) -> str | None:
        """The nameserver containers on ``net`` get: its gateway when the embedded DNS
        listens there (user networks), else None (the host's servers)."""
        if net.dns_port and net.space is not None:
            return str(net.space.gateway)
        return None

    def lookup(self, network_key: str, client_ip: str, name: str) -> list[str] | None:
        """The embedded DNS's callback: the IPv4 addresses of the running containers on
        network ``network_key`` called ``name`` (container name, alias, short ID, or
        ``name.<network>``), or None when no container is called so (forwarded)."""
        net = self._nets.get(network_key)
        if net is None:
            return None
        return _ep.lookup(net, self._containers(), name, client_ip)

    # --- containers -----------------------------------------------------------------

    def _containers(self) -> list[Container]:
        with self.lc.map_lock:
            return list(self.lc.containers.values())

    def for_create(
        self, host_config: dict[str, Any], networking: dict[str, Any] | None
    ) -> dict[str, dict[str, Any]]:
        """A new container's ``networks``: the mode's network (Docker's "default" is the
        default bridge) and NetworkingConfig.EndpointsConfig's, checked."""
        return _ep.for_create(self, host_config, networking)

    def attach(self, c: Container, pid: int) -> None:
        """Before the runtime starts ``c`` (created, its namespace at /proc/<pid>/ns/net):
        its endpoints, /etc/hosts and resolv.conf, published ports. All or nothing."""
        _ep.attach(self, c, pid)

    def release(self, c: Container) -> None:
        """``c`` stopped (or is going): addresses back, ports freed, live fields cleared.
        Its veths go with its namespace. Idempotent."""
        _ep.release(self, c)

    def hold_ports(self, cid: str, held: Any) -> None:
        with self._lock:
            old = self._held.pop(cid, None)
            if held is not None:
                self._held[cid] = held
        if old is not None:
            old.close()

    # --- the API ----------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /networks/create``: a user-defined bridge network."""
        net = self._new_network(body)
        with self._lock:
            if self.named(net.name) is not None:
                raise AlreadyExists(f"network with name {net.name} already exists")
            if any(n.bridge == net.bridge for n in self._nets.values() if n.bridge):
                raise Conflict(f"bridge name {net.bridge} is already used by another network")
            taken = self._subnets()
            assert net.space is not None
            if any(net.space.subnet.overlaps(s) for s in taken):
                raise PermissionDenied(
                    "invalid pool request: Pool overlaps with other one on this address space"
                )
            if not self._nets_has_bridges():
                self._prepare_host()
            self._bridge_up(net)
            self._nets[net.id] = net
            self._save(net)
        self.apply()
        self._event("create", net)
        return {"Id": net.id, "Warning": ""}

    def _nets_has_bridges(self) -> bool:
        return any(n.driver == "bridge" for n in self._nets.values())

    def _new_network(self, body: dict[str, Any]) -> Network:
        name = str(body.get("Name") or "")
        if not _NAME.match(name):
            raise InvalidArgument(f"invalid network name {name!r}")
        driver = str(body.get("Driver") or "bridge")
        if driver in ("host", "null"):
            raise PermissionDenied(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("EnableIPv6"):
            raise InvalidArgument("IPv6 networks are not supported yet")
        if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
            raise InvalidArgument("config-only networks are not supported")
        nid = _new_id()
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        bridge = options.get(OPT_BRIDGE) or "br-" + nid[:12]
        try:
            mtu = int(options.get(OPT_MTU) or self.config.mtu)
        except ValueError as exc:
            raise InvalidArgument(f"invalid value for {OPT_MTU}: {options[OPT_MTU]}") from exc
        if not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid value for {OPT_MTU}: {mtu}: must be 68-65535")
        masquerade = _bool_option(options.get(OPT_MASQUERADE, "true"), OPT_MASQUERADE)
        _check_bridge_name(bridge)
        net_ipam = body.get("IPAM") or {}
        space = self._space_for(net_ipam)
        return Network(
            id=nid, name=name, driver="bridge", internal=body.get("Internal"),
            attachable=body.get("Attachable"), options=options, labels=body.get("Labels"),
            ipam_options=net_ipam.get("Options"), bridge=bridge, mtu=mtu,
            masquerade=masquerade, space=space,
        )  # fmt: skip

    def _space_for(self, net_ipam: dict[str, Any]) -> ipam.AddressSpace:
        driver = net_ipam.get("Driver") or "default"
        if driver != "default":
            raise NotFound(f'plugin "{driver}" not found')
        configs = [c for c in net_ipam.get("Config") or [] if c]
        if len(configs) > 1:
            raise InvalidArgument("only one IPv4 subnet per network is supported")
        if configs and configs[0].get("Subnet"):
            c = configs[0]
            subnet, gateway, ip_range = ipam.parse_subnet(
                str(c["Subnet"]), str(c.get("Gateway") or ""), str(c.get("IPRange") or "")
            )
            return ipam.AddressSpace(subnet, gateway, ip_range)
        if configs and (configs[0].get("Gateway") or configs[0].get("IPRange")):
            raise InvalidArgument("invalid network config: a gateway or ip-range needs a subnet")
        from portside.network import netlink

        with self._lock:
            taken = [*netlink.host_routes(), *self._subnets()]
            return ipam.AddressSpace(ipam.choose_subnet(self.pools, taken))

    def list(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """``GET /networks`` with dockerd's filters."""
        filters = filters or {}
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        active = self._active_ids()
        out = []
        for net in sorted(self.all(), key=lambda n: n.created):
            if _matches(net, filters, net.id in active):
                out.append(net.docker())
        return out

    def inspect(self, ref: str, *, verbose: bool = False, scope: str = "") -> dict[str, Any]:
        """``GET /networks/{id}``: Docker's Network JSON with its live endpoints."""
        del verbose  # swarm services only
        if scope and scope != "local":
            raise NotFound(f"network {ref} not found")
        net = self.resolve(ref)
        return net.docker(_ep.endpoints_on(net, self._containers()))

    def _active_ids(self) -> set[str]:
        """The networks some running container has an endpoint on."""
        out = set()
        for c in self._containers():
            for ep in c.networks.values():
                if ep.get("EndpointID"):
                    out.add(str(ep.get("NetworkID")))
        return out

    def remove(self, ref: str) -> None:
        """``DELETE /networks/{id}``: refused for predefined or in-use networks."""
        net = self.resolve(ref)
        if net.predefined:
            raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be removed")
        with self._lock:
            if net.removing:
                raise NotFound(f"network {ref} not found")
            if (net.space is not None and net.space.allocated()) or net.id in self._active_ids():
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id}"
                    " has active endpoints"
                )
            net.removing = True
        try:
            self._stop_dns(net)
            self.apply()  # its rules go before its bridge
            from portside.network import netlink

            netlink.delete_link(net.bridge)
        except BaseException:
            net.removing = False
            raise
        self._drop_record(net)
        self._event("destroy", net)

    def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """``POST /networks/prune``: user networks without endpoints (label, until)."""
        from portside.engine.views import prunable_labels_until

        deleted = []
        active = self._active_ids()
        for net in self.all():
            if net.predefined or net.id in active:
                continue
            if not prunable_labels_until(net.labels, net.created, filters or {}):
                continue
            try:
                self.remove(net.id)
            except (Conflict, NotFound):
                continue
            deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}

    def connect(self, ref: str, container: str, config: dict[str, Any] | None) -> None:
        """``POST /networks/{id}/connect``: live when the container runs."""
        net = self.resolve(ref)
        c = self.lc.resolve(container)
        with self.lc.lock(c.id):
            _ep.connect(self, net, c, dict(config or {}))
            self.lc.save(c)
        self._event("connect", net, container=c.id)

    def disconnect(self, ref: str, container: str, *, force: bool = False) -> None:
        """``POST /networks/{id}/disconnect``: the interface goes at once when running."""
        try:
            net: Network | None = self.resolve(ref)
        except NotFound:
            if not force:
                raise
            net = None
        c = self.lc.resolve(container)
        with self.lc.lock(c.id):
            _ep.disconnect(self, net, ref, c)
            self.lc.save(c)
        if net is not None:
            self._event("disconnect", net, container=c.id)

    def _event(self, action: str, net: Network, **extra: str) -> None:
        attrs = {"name": net.name, "type": net.driver, **extra}
        try:
            self.events.publish("network", action, net.id, attrs)
        except PortsideError:
            pass


def _check_bridge_name(name: str) -> None:
    raw = name.encode()
    if not raw or len(raw) >= 16 or any(ch in name for ch in '/:"\\') or " " in name:
        raise InvalidArgument(f"invalid bridge name {name!r}: at most 15 characters, no / or :")


def _matches(net: Network, filters: dict[str, list[str]], active: bool) -> bool:
    def any_of(key: str, test: Any) -> bool:
        values = filters.get(key)
        return not values or any(test(v) for v in values)

    if not any_of("driver", net.driver.__eq__):
        return False
    if not any_of("id", net.id.startswith):
        return False
    if not any_of("name", lambda v: v in net.name):
        return False
    if not any_of("scope", lambda v: v == "local"):
        return False
    if not any_of("type", lambda v: _type_matches(v, net)):
        return False
    for v in filters.get("dangling") or []:
        if v.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f'invalid filter \'dangling={v}\': must be "true" or "false"')
        want = v.lower() in ("true", "1")
        if want != (not active and not net.predefined):
            return False
    return _labels_match(net.labels, filters.get("label") or [])


def _type_matches(value: str, net: Network) -> bool:
    if value not in ("builtin", "custom"):
        raise InvalidArgument(f"invalid filter: 'type'='{value}'")
    return (value == "builtin") == net.predefined


def _labels_match(labels: dict[str, str], wanted: Iterable[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True
