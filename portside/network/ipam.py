"""IPv4 address management, pure (no kernel): subnet pools, validation, one network's addresses.

- :class:`AddressPool` and :data:`DEFAULT_POOLS`: dockerd's ``default-address-pools``
  (172.17.0.0/16 ... 172.31.0.0/16 as /16s, then 192.168.0.0/16 split into /20s).
- :func:`choose_subnet`: the first pool subnet that overlaps nothing taken (host routes,
  other networks' subnets).
- :func:`validate` / :func:`parse_subnet`: ``--subnet``, ``--gateway``, ``--ip-range`` checked
  with Docker's messages (``ValidateIPAM``).
- :class:`AddressSpace`: one network's allocator, sequential like Docker's (a released
  address is not handed out again before the allocator wraps), saved as a small dict.

Only IPv4; IPv6 is later work.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from portside.errors import AlreadyExists, InvalidArgument, Unavailable
from portside.text import is_number

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "DEFAULT_POOLS",
    "AddressExhausted",
    "AddressInUse",
    "AddressPool",
    "AddressSpace",
    "InvalidNetworkConfig",
    "NoFreeSubnet",
    "choose_subnet",
    "parse_pools",
    "parse_subnet",
    "validate",
]

_ALL_ONES = 0xFFFFFFFF


class InvalidNetworkConfig(InvalidArgument):
    """``--subnet``, ``--gateway`` or ``--ip-range`` is malformed (Docker's message)."""


class NoFreeSubnet(Unavailable):
    """Every subnet of the pools overlaps something taken."""


class AddressInUse(AlreadyExists):
    """The requested address is allocated already or reserved."""


class AddressExhausted(Unavailable):
    """No free address is left in the network (or its ip-range)."""


class AddressPool:
    """``base`` split into subnets of prefix length ``size`` (one entry of dockerd's
    ``default-address-pools``)."""

    __slots__ = ("base", "size")

    def __init__(self, base: IPv4Network | str, size: int) -> None:
        net = base if isinstance(base, IPv4Network) else _parse_network("base", str(base))
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidArgument(f"address pool {net}: size {size!r} is not an integer")
        if not net.prefixlen <= size <= 30:
            raise InvalidArgument(
                f"address pool {net}: size {size} must be between {net.prefixlen} and 30"
            )
        self.base = net
        self.size = size

    def __repr__(self) -> str:
        return f"AddressPool({str(self.base)!r}, {self.size})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AddressPool):
            return NotImplemented
        return (self.base, self.size) == (other.base, other.size)

    def __hash__(self) -> int:
        return hash((self.base, self.size))

    def subnets(self) -> Iterator[IPv4Network]:
        """The pool's subnets, in address order."""
        return self.base.subnets(new_prefix=self.size)

    def to_dict(self) -> dict[str, object]:
        """``{"base": "172.17.0.0/16", "size": 16}``, as daemon.json writes it."""
        return {"base": str(self.base), "size": self.size}


#: dockerd's default ``default-address-pools``
DEFAULT_POOLS: tuple[AddressPool, ...] = (
    *(AddressPool(IPv4Network(f"172.{i}.0.0/16"), 16) for i in range(17, 32)),
    AddressPool(IPv4Network("192.168.0.0/16"), 20),
)


def parse_pools(items: Iterable[Mapping[str, object]]) -> tuple[AddressPool, ...]:
    """daemon.json's ``default-address-pools``: ``[{"base": "10.10.0.0/16", "size": 24}]``."""
    pools = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"base", "size"}:
            raise InvalidArgument(
                f"address pool {item!r}: expected an object with keys base and size"
            )
        base, size = item["base"], item["size"]
        if not isinstance(base, str):
            raise InvalidArgument(f"address pool {item!r}: base must be a string")
        pools.append(AddressPool(base, size))  # type: ignore[arg-type]
    if not pools:
        raise InvalidArgument("default-address-pools: the list is empty")
    return tuple(pools)


def _span(net: IPv4Network) -> tuple[int, int]:
    first = int(net.network_address)
    return first, first | (_ALL_ONES >> net.prefixlen)


def choose_subnet(pools: Iterable[AddressPool], taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first subnet of ``pools`` (in order) that overlaps none of ``taken``.

    ``taken`` is what the host routes to (:func:`portside.network.netlink.host_routes`,
    without the default route) and the subnets of the other networks. The search jumps
    over each taken block, so a large pool costs O(len(taken)) per pool, not per subnet.
    """
    spans = sorted(_span(net) for net in taken)
    for pool in pools:
        block = 1 << (32 - pool.size)
        pos, end = _span(pool.base)
        while pos + block - 1 <= end:
            last = pos + block - 1
            blocker = max((hi for lo, hi in spans if lo <= last and hi >= pos), default=None)
            if blocker is None:
                return IPv4Network((pos, pool.size))
            pos = (blocker + block) & ~(block - 1)  # the next block boundary past it
    raise NoFreeSubnet(
        "could not find an available, non-overlapping IPv4 address pool among the "
        "defaults to assign to the network"
    )


# -- validation, after moby's api/types/network ValidateIPAM (IPv4 only) -------------------


def _parse_address(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text)
    except ValueError:
        return None


def _parse_prefix(text: str) -> tuple[IPv4Address, int] | None:
    """``a.b.c.d/n`` as Go's ``netip.ParsePrefix`` reads it (no netmask form), or None."""
    addr, sep, bits = text.partition("/")
    if not sep or not is_number(bits) or (len(bits) > 1 and bits[0] == "0"):
        return None
    ip = _parse_address(addr)
    if ip is None or int(bits) > 32:
        return None
    return ip, int(bits)


def _parse_network(what: str, text: str) -> IPv4Network:
    parsed = _parse_prefix(text)
    if parsed is None:
        raise InvalidArgument(f"invalid {what} {text}: invalid CIDR block notation")
    net = IPv4Network(parsed, strict=False)
    if net.network_address != parsed[0]:
        raise InvalidArgument(f"invalid {what} {text}: it should be {net}")
    return net


def _range_errors(ip_range: str, subnet: IPv4Network) -> list[str]:
    parsed = _parse_prefix(ip_range)
    if parsed is None:
        if ":" in ip_range and "/" in ip_range:
            return [f"invalid ip-range {ip_range}: parent subnet is an IPv4 block"]
        return [f"invalid ip-range {ip_range}: invalid CIDR block notation"]
    net = IPv4Network(parsed, strict=False)
    errs = []
    if parsed[1] < subnet.prefixlen:
        errs.append(
            f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {subnet}"
        )
    if net.network_address != parsed[0]:
        errs.append(f"invalid ip-range {parsed[0]}/{parsed[1]}: it should be {net}")
    if not subnet.overlaps(net):
        errs.append(f"invalid ip-range {ip_range}: parent subnet {subnet} doesn't contain ip-range")
    return errs


def _gateway_error(gateway: str, subnet: IPv4Network) -> str | None:
    addr = _parse_address(gateway)
    if addr is None:
        if ":" in gateway:
            return f"invalid gateway {gateway}: parent subnet is an IPv4 block"
        return f"invalid gateway {gateway}: invalid address"
    if addr not in subnet:
        return f"invalid gateway {gateway}: parent subnet {subnet} doesn't contain this address"
    if subnet.prefixlen <= 30 and addr in (subnet.network_address, subnet.broadcast_address):
        return f"invalid gateway {gateway}: it is the network or broadcast address of {subnet}"
    return None


def validate(subnet: str, gateway: str = "", ip_range: str = "") -> None:
    """Check one IPAM config as Docker does; raise :class:`InvalidNetworkConfig` with all
    the problems, formatted as dockerd formats them (``invalid network config:\\n* ...``)."""
    parse_subnet(subnet, gateway, ip_range)


def parse_subnet(
    subnet: str, gateway: str = "", ip_range: str = ""
) -> tuple[IPv4Network, IPv4Address | None, IPv4Network | None]:
    """Validate (:func:`validate`) and parse: ``(subnet, gateway or None, ip_range or None)``."""
    errs: list[str] = []
    parsed = _parse_prefix(subnet)
    net: IPv4Network | None = None
    if parsed is None:
        if ":" in subnet and "/" in subnet:
            errs.append(f"invalid subnet {subnet}: IPv6 is not supported yet")
        else:
            errs.append(f"invalid subnet {subnet}: invalid CIDR block notation")
    else:
        net = IPv4Network(parsed, strict=False)
        if net.network_address != parsed[0]:
            errs.append(f"invalid subnet {parsed[0]}/{parsed[1]}: it should be {net}")
        elif net.prefixlen > 30:
            errs.append(f"invalid subnet {subnet}: a network needs a /30 or larger subnet")
        if ip_range:
            errs.extend(_range_errors(ip_range, net))
        if gateway:
            err = _gateway_error(gateway, net)
            if err is not None:
                errs.append(err)
    if errs:
        raise InvalidNetworkConfig("invalid network config:\n* " + "\n* ".join(errs))
    assert net is not None
    gw = IPv4Address(gateway) if gateway else None
    rng = IPv4Network(ip_range) if ip_range else None
    return net, gw, rng


# -- one network's addresses -----------------------------------------------------------------


class AddressSpace:
    """The addresses of one network: ``subnet``, its ``gateway`` (default: the first host)
    and an optional ``ip_range`` that dynamic allocation is limited to.

    The network, broadcast and gateway addresses are reserved. Dynamic allocation is
    sequential, as Docker's: it continues after the last address it handed out and wraps
    to the start of the range, so a just-released address is reused only after a wrap.
    An explicit address (``allocate(preferred)``) may be anywhere in the subnet, also
    outside ``ip_range`` (as Docker's ``--ip``). Not thread-safe: the engine serialises
    changes to one network (and persists :meth:`to_dict` after each).
    """

    __slots__ = (
        "_allocated",
        "_first",
        "_last",
        "_next",
        "_reserved",
        "gateway",
        "ip_range",
        "subnet",
    )

    def __init__(
        self,
        subnet: IPv4Network,
        gateway: IPv4Address | None = None,
        ip_range: IPv4Network | None = None,
    ) -> None:
        if subnet.prefixlen > 30:
            raise InvalidArgument(f"subnet {subnet}: a network needs a /30 or larger subnet")
        if gateway is None:
            gateway = subnet.network_address + 1
        elif gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"gateway {gateway} is not a host address of subnet {subnet}")
        if ip_range is not None and not ip_range.subnet_of(subnet):
            raise InvalidArgument(f"ip-range {ip_range} is not inside subnet {subnet}")
        self.subnet = subnet
        self.gateway = gateway
        self.ip_range = ip_range
        self._reserved = {
            int(subnet.network_address),
            int(subnet.broadcast_address),
            int(gateway),
        }
        self._first, self._last = _span(ip_range if ip_range is not None else subnet)
        self._allocated: set[int] = set()
        self._next = self._first

    def __repr__(self) -> str:
        rng = f", ip_range={self.ip_range}" if self.ip_range is not None else ""
        return (
            f"AddressSpace({self.subnet}, gateway={self.gateway}{rng}, used={len(self._allocated)})"
        )

    def __contains__(self, addr: object) -> bool:
        """Whether ``addr`` is allocated (reserved addresses are not)."""
        return isinstance(addr, IPv4Address) and int(addr) in self._allocated

    def allocated(self) -> list[IPv4Address]:
        """The allocated addresses, in address order."""
        return [IPv4Address(n) for n in sorted(self._allocated)]

    def allocate(self, preferred: IPv4Address | None = None) -> IPv4Address:
        """Allocate ``preferred`` (in the subnet, free, not reserved) or the next free one."""
        if preferred is not None:
            return self._allocate_exact(preferred)
        size = self._last - self._first + 1
        start = self._next if self._first <= self._next <= self._last else self._first
        for i in range(size):
            n = start + i
            if n > self._last:
                n -= size
            if n not in self._allocated and n not in self._reserved:
                self._allocated.add(n)
                self._next = n + 1
                return IPv4Address(n)
        where = (
            f"ip-range {self.ip_range}" if self.ip_range is not None else f"subnet {self.subnet}"
        )
        raise AddressExhausted(f"no available addresses on this pool: {where} is full")

    def _allocate_exact(self, addr: IPv4Address) -> IPv4Address:
        if not isinstance(addr, IPv4Address):
            raise InvalidArgument(f"address {addr!r} is not an IPv4 address")
        if addr not in self.subnet:
            raise InvalidArgument(
                f"requested address {addr} is out of range: not in subnet {self.subnet}"
            )
        n = int(addr)
        if n in self._reserved:
            what = "gateway" if addr == self.gateway else "network or broadcast address"
            raise AddressInUse(f"address {addr} is reserved: it is the {what} of {self.subnet}")
        if n in self._allocated:
            raise AddressInUse(f"address {addr} is already in use in {self.subnet}")
        self._allocated.add(n)
        return addr

    def release(self, addr: IPv4Address) -> None:
        """Free ``addr``; releasing an address that is not allocated is an error."""
        if not isinstance(addr, IPv4Address) or addr not in self.subnet:
            raise InvalidArgument(f"address {addr} is not in subnet {self.subnet}")
        try:
            self._allocated.remove(int(addr))
        except KeyError:
            raise InvalidArgument(f"address {addr} is not allocated in {self.subnet}") from None

    def statistics(self) -> dict[str, int]:
        """``{"allocated", "free"}``: counts for the ip-range (or subnet) of dynamic use."""
        in_range = sum(1 for n in self._allocated if self._first <= n <= self._last)
        reserved = sum(1 for n in self._reserved if self._first <= n <= self._last)
        size = self._last - self._first + 1
        return {"allocated": len(self._allocated), "free": size - reserved - in_range}

    def to_dict(self) -> dict[str, object]:
        """A small JSON-able dict; :meth:`from_dict` restores the same state and cursor."""
        return {
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "ip_range": str(self.ip_range) if self.ip_range is not None else None,
            "allocated": [str(a) for a in self.allocated()],
            "next": str(IPv4Address(self._next & _ALL_ONES)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AddressSpace:
        """The space :meth:`to_dict` saved; a malformed dict is an :class:`InvalidArgument`."""
        try:
            ip_range = data.get("ip_range")
            space = cls(
                IPv4Network(str(data["subnet"])),
                IPv4Address(str(data["gateway"])),
                IPv4Network(str(ip_range)) if ip_range is not None else None,
            )
            allocated = data.get("allocated", [])
            if not isinstance(allocated, list):
                raise TypeError("allocated is not a list")
            for text in allocated:
                space._allocate_exact(IPv4Address(str(text)))
            space._next = int(IPv4Address(str(data.get("next", space.subnet.network_address))))
        except (KeyError, TypeError, ValueError, AlreadyExists) as exc:
            raise InvalidArgument(f"address space {dict(data)!r}: {exc}") from exc
        return space
