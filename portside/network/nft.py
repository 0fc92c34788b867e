"""Portside's own nftables table: NAT, published ports and isolation, replaced atomically.

A declarative :class:`Ruleset` (bridge networks and published ports) becomes one JSON
batch (:func:`build`, pure) that ``add``s, ``delete``s and re-``add``s the table with all
its chains and rules, applied by libnftables in one transaction (:func:`apply`): the
kernel swaps the old table for the new one at once, and a failure leaves the old one.
libnftables is called through ctypes (``nft_run_cmd_from_buffer`` with JSON in and out),
never through the ``nft`` program. The table (``table ip portside`` by default)::

    prerouting  nat hook prerouting (dstnat)   fib daddr type local jump ports
    output      nat hook output (-100)         fib daddr type local jump ports
    ports       per port: [ip daddr HOST] tcp dport HP dnat to CIP:CP
    postrouting nat hook postrouting (srcnat)  per network: ip saddr NET oifname != BR masquerade
                                               oifname BR ip saddr 127.0.0.0/8 masquerade
                                               oifname BR ip saddr NET ct status dnat masquerade
    forward     filter hook forward (filter)   established/related to a bridge: accept;
                                               published ports (ct status dnat): accept;
                                               bridge to another Portside bridge: drop;
                                               internal: leaving the subnet: drop;
                                               from a bridge: accept; into a bridge: drop

Where nftables is missing, :func:`require` says so; an iptables fallback is detected and
reported as not supported yet. :func:`enable_ip_forward` and :func:`route_localnet` are the
two sysctls NAT needs (DNAT of 127.0.0.1 needs ``route_localnet`` on the bridge).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from portside.errors import (
    Conflict,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

if TYPE_CHECKING:
    import ctypes
    from collections.abc import Sequence

__all__ = [
    "DEFAULT_TABLE",
    "BridgeNetwork",
    "DnsRedirect",
    "Nftables",
    "NftablesError",
    "NftablesUnavailable",
    "PublishedPort",
    "Ruleset",
    "apply",
    "available",
    "build",
    "delete_table",
    "enable_ip_forward",
    "forward_policy_drop",
    "list_table",
    "require",
    "route_localnet",
    "shared_context",
]

DEFAULT_TABLE = "portside"
LIBRARY = "libnftables.so.1"
PROTOCOLS = ("tcp", "udp", "sctp")
_FAMILY = "ip"
_LOOPBACK = IPv4Network("127.0.0.0/8")
_NFT_CTX_OUTPUT_JSON = 1 << 4
_IFNAMSIZ = 16


class NftablesError(Internal):
    """libnftables refused a command; the message carries its error output."""


class NftablesUnavailable(Unavailable):
    """nftables cannot be used on this host (library or kernel support missing)."""


# -- the model -------------------------------------------------------------------------------


def _check_ifname(name: str) -> None:
    raw = name.encode() if isinstance(name, str) else b""
    bad = not raw or len(raw) >= _IFNAMSIZ or name in (".", "..")
    if bad or any(c in name for c in '/:"\\') or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid interface name {name!r}")


def _check_port(what: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgument(f"invalid {what} {port!r}: must be 1-65535")


@dataclass(frozen=True)
class BridgeNetwork:
    """One Portside bridge network: traffic leaving ``subnet`` is masqueraded unless
    ``masquerade`` is off; an ``internal`` network reaches nothing outside its subnet."""

    bridge: str
    subnet: IPv4Network
    internal: bool = False
    masquerade: bool = True
    #: ``route_localnet`` is on for the bridge (ports published on 127.0.0.1): drop
    #: what comes in from it addressed to 127.0.0.0/8 (a container must not reach the
    #: host's loopback services through it; chain ``guard``, before conntrack)
    guard_localnet: bool = False

    def __post_init__(self) -> None:
        _check_ifname(self.bridge)
        if not isinstance(self.subnet, IPv4Network):
            raise InvalidArgument(f"bridge {self.bridge}: subnet {self.subnet!r} is not IPv4")


@dataclass(frozen=True)
class DnsRedirect:
    """DNS (udp and tcp port 53) from ``bridge`` to ``address`` DNAT'd to
    ``address:port``, where the embedded DNS server of that network listens."""

    bridge: str
    address: IPv4Address
    port: int

    def __post_init__(self) -> None:
        _check_ifname(self.bridge)
        _check_port("dns port", self.port)
        if not isinstance(self.address, IPv4Address):
            raise InvalidArgument(f"dns address {self.address!r} is not IPv4")


@dataclass(frozen=True)
class PublishedPort:
    """``host_ip:host_port/proto`` DNAT'd to ``container_ip:container_port``; no
    ``host_ip`` (or 0.0.0.0) means every host address, 127.0.0.1 included."""

    proto: str
    host_port: int
    container_ip: IPv4Address
    container_port: int
    host_ip: IPv4Address | None = None

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise InvalidArgument(f"invalid protocol {self.proto!r}: expected tcp, udp or sctp")
        _check_port("host port", self.host_port)
        _check_port("container port", self.container_port)
        if not isinstance(self.container_ip, IPv4Address):
            raise InvalidArgument(f"container address {self.container_ip!r} is not IPv4")
        if self.host_ip is not None and not isinstance(self.host_ip, IPv4Address):
            raise InvalidArgument(f"host address {self.host_ip!r} is not IPv4")

    @property
    def all_addresses(self) -> bool:
        return self.host_ip is None or self.host_ip == IPv4Address(0)

    def __str__(self) -> str:
        host = "0.0.0.0" if self.host_ip is None else str(self.host_ip)
        return f"{host}:{self.host_port}/{self.proto}"


@dataclass(frozen=True)
class Ruleset:
    """Everything Portside's table holds: its networks and published ports."""

    networks: tuple[BridgeNetwork, ...] = ()
    ports: tuple[PublishedPort, ...] = ()
    table: str = DEFAULT_TABLE
    dns: tuple[DnsRedirect, ...] = ()

    def __post_init__(self) -> None:
        t = self.table
        if not (0 < len(t) <= 64 and t.isascii() and t[0].isalpha()) or not all(
            c.isalnum() or c in "_-" for c in t
        ):
            raise InvalidArgument(f"invalid nftables table name {t!r}")
        object.__setattr__(self, "networks", tuple(self.networks))
        object.__setattr__(self, "ports", tuple(self.ports))
        object.__setattr__(self, "dns", tuple(self.dns))


def _check_ruleset(rs: Ruleset) -> dict[PublishedPort, BridgeNetwork]:
    """Bridges and subnets unique, ports not published twice; each port's network."""
    seen: dict[str, BridgeNetwork] = {}
    for net in rs.networks:
        if net.bridge in seen:
            raise InvalidArgument(f"bridge {net.bridge} is listed twice")
        for other in seen.values():
            if net.subnet.overlaps(other.subnet):
                raise Conflict(
                    f"subnet {net.subnet} of {net.bridge} overlaps {other.subnet} of {other.bridge}"
                )
        seen[net.bridge] = net
    owner: dict[PublishedPort, BridgeNetwork] = {}
    bound: dict[tuple[str, int], list[PublishedPort]] = {}
    for port in rs.ports:
        for other in bound.get((port.proto, port.host_port), []):
            if port.all_addresses or other.all_addresses or port.host_ip == other.host_ip:
                raise Conflict(f"host port {port} is published twice (also as {other})")
        bound.setdefault((port.proto, port.host_port), []).append(port)
        net = next((n for n in rs.networks if port.container_ip in n.subnet), None)
        if net is None:
            raise InvalidArgument(
                f"port {port}: container address {port.container_ip} is on no network"
            )
        owner[port] = net
    return owner


# -- JSON building blocks ----------------------------------------------------------------------


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _field(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(net: IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _names(names: Sequence[str]) -> Any:
    return names[0] if len(names) == 1 else {"set": list(names)}


_LOCAL_DST = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_DNAT_STATUS = _match({"ct": {"key": "status"}}, "dnat", "in")
_ACCEPT: dict[str, Any] = {"accept": None}
_DROP: dict[str, Any] = {"drop": None}
_MASQUERADE: dict[str, Any] = {"masquerade": None}

#: name -> (type, hook, priority) of the base chains; "ports" is a regular chain
_CHAINS: tuple[tuple[str, str | None, str | None, int], ...] = (
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("ports", None, None, 0),
    ("postrouting", "nat", "postrouting", 100),
    ("forward", "filter", "forward", 0),
)
_GUARD_CHAIN = ("guard", "filter", "prerouting", -300)  # raw: before conntrack and NAT


def _port_rules(owner: dict[PublishedPort, BridgeNetwork]) -> list[list[dict[str, Any]]]:
    rules = []
    for port, net in owner.items():
        if net.internal:
            continue  # as Docker: ports of an internal network are not published
        expr = [] if port.all_addresses else [_match(_field("ip", "daddr"), str(port.host_ip))]
        expr.append(_match(_field(port.proto, "dport"), port.host_port))
        expr.append({"dnat": {"addr": str(port.container_ip), "port": port.container_port}})
        rules.append(expr)
    return rules


def _postrouting_rules(networks: Sequence[BridgeNetwork]) -> list[list[dict[str, Any]]]:
    rules = []
    for net in networks:
        if net.internal:
            continue
        out, src = _meta("oifname"), _field("ip", "saddr")
        if net.masquerade:
            rules.append(
                [_match(src, _prefix(net.subnet)), _match(out, net.bridge, "!="), _MASQUERADE]
            )
        rules.append([_match(out, net.bridge), _match(src, _prefix(_LOOPBACK)), _MASQUERADE])
        rules.append(
            [_match(out, net.bridge), _match(src, _prefix(net.subnet)), _DNAT_STATUS, _MASQUERADE]
        )
    return rules


def _forward_rules(
    networks: Sequence[BridgeNetwork], owner: dict[PublishedPort, BridgeNetwork]
) -> list[list[dict[str, Any]]]:
    if not networks:
        return []
    bridges = [n.bridge for n in networks]
    inp, out = _meta("iifname"), _meta("oifname")
    state = _match({"ct": {"key": "state"}}, ["established", "related"], "in")
    rules = [[_match(out, _names(bridges)), state, _ACCEPT]]
    targets = {  # one accept per container endpoint, however many host ports map to it
        (net.bridge, str(port.container_ip), port.proto, port.container_port): None
        for port, net in owner.items()
        if not net.internal
    }
    for bridge, addr, proto, cport in targets:
        daddr, dport = _match(_field("ip", "daddr"), addr), _match(_field(proto, "dport"), cport)
        rules.append([_match(out, bridge), daddr, dport, _DNAT_STATUS, _ACCEPT])
    for net in networks:
        others = [b for b in bridges if b != net.bridge]
        if others:
            rules.append([_match(inp, net.bridge), _match(out, _names(others)), _DROP])
    for net in networks:
        if net.internal:
            daddr = _match(_field("ip", "daddr"), _prefix(net.subnet), "!=")
            rules.append([_match(inp, net.bridge), daddr, _DROP])
    rules.extend([_match(inp, net.bridge), _ACCEPT] for net in networks)
    rules.extend([_match(out, net.bridge), _DROP] for net in networks)
    return rules


def _dns_rules(redirects: Sequence[DnsRedirect]) -> list[list[dict[str, Any]]]:
    rules = []
    for r in redirects:
        for proto in ("udp", "tcp"):
            rules.append(
                [
                    _match(_meta("iifname"), r.bridge),
                    _match(_field("ip", "daddr"), str(r.address)),
                    _match(_field(proto, "dport"), 53),
                    {"dnat": {"addr": str(r.address), "port": r.port}},
                ]
            )
    return rules


def _guard_rules(networks: Sequence[BridgeNetwork]) -> list[list[dict[str, Any]]]:
    guarded = [n.bridge for n in networks if n.guard_localnet]
    if not guarded:
        return []
    local = _match(_field("ip", "daddr"), _prefix(_LOOPBACK))
    return [[_match(_meta("iifname"), _names(guarded)), local, _DROP]]


def build(ruleset: Ruleset) -> dict[str, Any]:
    """The JSON batch that replaces the table with ``ruleset``'s, in one transaction.

    ``add table`` (a no-op when it exists) lets ``delete table`` succeed on a first apply.
    The ``guard`` chain exists only when a network asks for it (``guard_localnet``).
    """
    owner = _check_ruleset(ruleset)
    guard = _guard_rules(ruleset.networks)
    table = {"family": _FAMILY, "name": ruleset.table}
    batch: list[dict[str, Any]] = [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    chains = (*_CHAINS, _GUARD_CHAIN) if guard else _CHAINS
    for name, ctype, hook, prio in chains:
        chain: dict[str, Any] = {"family": _FAMILY, "table": ruleset.table, "name": name}
        if ctype is not None:
            chain.update(type=ctype, hook=hook, prio=prio, policy="accept")
        batch.append({"add": {"chain": chain}})
    by_chain = {
        "guard": guard,
        "prerouting": [*_dns_rules(ruleset.dns), [_LOCAL_DST, {"jump": {"target": "ports"}}]],
        "output": [[_LOCAL_DST, {"jump": {"target": "ports"}}]],
        "ports": _port_rules(owner),
        "postrouting": _postrouting_rules(ruleset.networks),
        "forward": _forward_rules(ruleset.networks, owner),
    }
    for chain_name, rules in by_chain.items():
        for expr in rules:
            rule = {"family": _FAMILY, "table": ruleset.table, "chain": chain_name, "expr": expr}
            batch.append({"add": {"rule": rule}})
    return {"nftables": batch}


# -- libnftables through ctypes --------------------------------------------------------------

_lib_cache: list[ctypes.CDLL] = []
_lib_lock = threading.Lock()


def _lib() -> ctypes.CDLL:
    """libnftables, loaded once, with its prototypes declared."""
    with _lib_lock:
        if _lib_cache:
            return _lib_cache[0]
        import ctypes

        try:
            lib = ctypes.CDLL(LIBRARY, use_errno=True)
        except OSError as exc:
            raise NftablesUnavailable(f"cannot load {LIBRARY}: {exc}") from exc
        vp, cp, ci, cu = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
        for name, res, args in (
            ("nft_ctx_new", vp, [ctypes.c_uint32]),
            ("nft_ctx_free", None, [vp]),
            ("nft_ctx_output_set_flags", None, [vp, cu]),
            ("nft_ctx_buffer_output", ci, [vp]),
            ("nft_ctx_buffer_error", ci, [vp]),
            ("nft_ctx_get_output_buffer", cp, [vp]),
            ("nft_ctx_get_error_buffer", cp, [vp]),
            ("nft_run_cmd_from_buffer", ci, [vp, cp]),
        ):
            func = getattr(lib, name)
            func.restype, func.argtypes = res, args
        _lib_cache.append(lib)
        return lib


class Nftables:
    """One libnftables context with JSON output and captured output/error buffers.

    Thread-safe (a lock per context); close it, or use it as a context manager.
    """

    def __init__(self) -> None:
        self._lib = _lib()
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NftablesUnavailable("nft_ctx_new failed")
        self._ctx: int | None = ctx
        self._lock = threading.Lock()
        self._lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)
        if self._lib.nft_ctx_buffer_output(ctx) or self._lib.nft_ctx_buffer_error(ctx):
            self.close()
            raise NftablesError("libnftables: cannot buffer output")

    def __enter__(self) -> Nftables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def run(self, command: str, what: str = "") -> str:
        """Run ``command`` (nft syntax or a JSON document); its (JSON) output.

        A failure raises :class:`NftablesError` (PermissionDenied without CAP_NET_ADMIN:
        libnftables reports only text, so this is the one place that reads it).
        """
        with self._lock:
            if self._ctx is None:
                raise NftablesError("nftables context is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            detail = " ".join(line.strip() for line in err.splitlines() if line.strip())
            message = f"nftables: {what or command[:80]}: {detail or f'error {rc}'}"
            if "Operation not permitted" in err:
                raise PermissionDenied(message)
            raise NftablesError(message)
        return out

    def run_json(self, document: dict[str, Any], what: str = "") -> dict[str, Any] | None:
        """Run a JSON batch; the parsed JSON output, or None when there is none."""
        out = self.run(json.dumps(document, separators=(",", ":")), what)
        return json.loads(out) if out.strip() else None


_shared: list[Nftables] = []
_shared_lock = threading.Lock()


def shared_context() -> Nftables:
    """The process's long-lived context, made on first use. Reuse matters: freeing a
    context that applied a large batch costs as much as the apply (~16 ms, its cache)."""
    with _shared_lock:
        if not _shared:
            _shared.append(Nftables())
        return _shared[0]


def apply(ruleset: Ruleset, nft: Nftables | None = None) -> None:
    """Replace the table with ``ruleset``'s, atomically (one transaction)."""
    document = build(ruleset)
    ctx = nft if nft is not None else shared_context()
    ctx.run_json(document, f"apply table {_FAMILY} {ruleset.table}")


def delete_table(table: str = DEFAULT_TABLE, nft: Nftables | None = None) -> None:
    """Remove the table and everything in it; nothing to do when it does not exist."""
    name = Ruleset(table=table).table
    spec = {"table": {"family": _FAMILY, "name": name}}
    ctx = nft if nft is not None else shared_context()
    ctx.run_json({"nftables": [{"add": spec}, {"delete": spec}]}, f"delete table {name}")


def list_table(table: str = DEFAULT_TABLE, nft: Nftables | None = None) -> list[dict[str, Any]]:
    """The table as libnftables lists it: the JSON objects (table, chains, rules)."""
    name = Ruleset(table=table).table
    ctx = nft if nft is not None else shared_context()
    try:
        doc = ctx.run(f"list table {_FAMILY} {name}", f"list table {name}")
    except NftablesError as exc:
        if "No such file or directory" in str(exc):
            raise NotFound(f"nftables table {_FAMILY} {name} does not exist") from exc
        raise
    items = json.loads(doc)["nftables"]
    return [item for item in items if "metainfo" not in item]


def forward_policy_drop(nft: Nftables | None = None) -> bool:
    """Whether the iptables(-nft) ``filter`` table's ``FORWARD`` chain drops by default
    (dockerd sets that policy): an accept in Portside's table does not override it, so
    containers' forwarded traffic is dropped. Legacy iptables cannot be seen from here."""
    ctx = nft if nft is not None else shared_context()
    try:
        doc = ctx.run("list chain ip filter FORWARD", "list chain ip filter FORWARD")
    except (NftablesError, PermissionDenied):
        return False
    for item in json.loads(doc or "{}").get("nftables", []):
        chain = item.get("chain")
        if chain and chain.get("hook") == "forward":
            return str(chain.get("policy")) == "drop"
    return False


def available() -> bool:
    """Whether nftables works here: libnftables loads and the kernel lists tables."""
    try:
        require()
    except (Unavailable, PermissionDenied, Internal):
        return False
    return True


def _iptables() -> str | None:
    import shutil

    return shutil.which("iptables") or shutil.which("iptables-legacy")


def require() -> None:
    """Raise :class:`NftablesUnavailable` saying why nftables cannot be used, and that
    the iptables fallback is not supported yet when iptables is what the host has."""
    try:
        with Nftables() as ctx:
            ctx.run("list tables", "list tables")
    except (NftablesUnavailable, NftablesError) as exc:
        found = _iptables()
        fallback = (
            f"; iptables was found ({found}) but the iptables fallback is not supported yet"
            if found
            else "; no iptables either"
        )
        raise NftablesUnavailable(f"nftables is not usable on this host ({exc}){fallback}") from exc


# -- sysctls ---------------------------------------------------------------------------------


def _set_sysctl(path: str, what: str) -> bool:
    """Write 1 to ``path`` unless it holds it; whether it changed."""
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return False
        with open(path, "w") as f:
            f.write("1")
    except FileNotFoundError as exc:
        raise NotFound(f"{what}: {path} does not exist") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"{what}: cannot write {path}") from exc
    except OSError as exc:
        raise Internal(f"{what}: {path}: {exc.strerror}") from exc
    return True


def enable_ip_forward(proc_sys: str = "/proc/sys") -> bool:
    """Turn on IPv4 forwarding (``net.ipv4.ip_forward``) if it is off; whether it changed.

    Host-wide, as Docker does: it also makes the host route between its other interfaces.
    """
    return _set_sysctl(os.path.join(proc_sys, "net/ipv4/ip_forward"), "enable ip forwarding")


def route_localnet(bridge: str, proc_sys: str = "/proc/sys") -> bool:
    """Allow 127.0.0.0/8 sources routed out of ``bridge`` (``route_localnet``), so that a
    port published on 127.0.0.1 can be DNAT'd to a container; whether it changed."""
    _check_ifname(bridge)
    path = os.path.join(proc_sys, "net/ipv4/conf", bridge, "route_localnet")
    return _set_sysctl(path, f"route_localnet on {bridge}")
