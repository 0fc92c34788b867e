"""Published ports: HostConfig.PortBindings and PublishAllPorts → host ports held open.

A container's bindings (:func:`wanted`) are Docker's ``{"80/tcp": [{"HostIp", "HostPort"}]}``;
``-P`` adds every exposed port with an empty HostPort. At start each one gets a host port
(:func:`allocate`): checked free **by binding it**, as dockerd's port allocator does, and
the bound socket is kept (not listening) until the container stops, so no other program
(nor another container) can take the port meanwhile. An empty HostPort binds port 0 (the
kernel's ephemeral range, like dockerd's ``-P``); ``8000-8010`` takes the first free
one. Traffic never reaches these sockets: nftables DNATs it to the container first.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address

from portside.errors import Conflict, InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Binding",
    "HeldPorts",
    "allocate",
    "mapped_of",
    "parse_port",
    "rebind",
    "summary_ports",
    "wanted",
]

_PROTOS = ("tcp", "udp", "sctp")
_ANY = "0.0.0.0"


class Binding:
    """One requested mapping: container ``port/proto`` ← ``host_ip:host_port``
    (``host_port`` "" for any free port, or "a-b" for the first free one in a range)."""

    __slots__ = ("host_ip", "host_port", "port", "proto")

    def __init__(self, port: int, proto: str, host_ip: str, host_port: str) -> None:
        self.port, self.proto, self.host_ip, self.host_port = port, proto, host_ip, host_port

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"

    def __repr__(self) -> str:
        return f"Binding({self.host_ip}:{self.host_port} -> {self.key})"


def parse_port(key: str) -> tuple[int, str]:
    """``"80/tcp"`` (or ``"80"``) → (80, "tcp"); Docker's messages for bad ones."""
    number, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOS:
        raise InvalidArgument(f"invalid proto: {proto}")
    if not is_number(number) or not 0 < int(number) < 65536:
        raise InvalidArgument(f"invalid port: {number}")
    return int(number), proto


def _host_port(value: Any) -> str:
    text = str(value or "").strip()
    if text in ("", "0"):
        return ""
    low, sep, high = text.partition("-")
    if not is_number(low) or (sep and not is_number(high)):
        raise InvalidArgument(f"invalid hostPort: {text}")
    if not 0 < int(low) < 65536 or (sep and not int(low) <= int(high) < 65536):
        raise InvalidArgument(f"invalid hostPort: {text}")
    return text


def _host_ip(value: Any) -> str | None:
    """The binding's IPv4 address ("0.0.0.0" for all); None for an IPv6 wildcard
    (skipped: IPv6 is later work); another IPv6 address is refused."""
    text = str(value or "").strip().strip("[]")
    if text in ("", _ANY):
        return _ANY
    if text == "::":
        return None
    try:
        return str(IPv4Address(text))
    except ValueError:
        if ":" in text:
            raise InvalidArgument(f"cannot publish on {text}: IPv6 is not supported") from None
        raise InvalidArgument(f"invalid host IP address: {text}") from None


def wanted(config: dict[str, Any], host_config: dict[str, Any]) -> list[Binding]:
    """The bindings a container asks for: PortBindings, and with PublishAllPorts every
    exposed port that has none (on any free port), in port order."""
    bindings: list[Binding] = []
    given = host_config.get("PortBindings") or {}
    for key in sorted(given, key=parse_port):
        port, proto = parse_port(key)
        for item in given[key] or [{}]:
            ip = _host_ip((item or {}).get("HostIp"))
            if ip is not None:
                bindings.append(Binding(port, proto, ip, _host_port((item or {}).get("HostPort"))))
    if host_config.get("PublishAllPorts"):
        taken = {b.key for b in bindings}
        for key in sorted(config.get("ExposedPorts") or {}, key=parse_port):
            port, proto = parse_port(key)
            if f"{port}/{proto}" not in taken:
                bindings.append(Binding(port, proto, _ANY, ""))
    return bindings


class HeldPorts:
    """The sockets holding one container's host ports; :meth:`close` frees them."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        #: (proto, host_ip, host_port, container_port), in binding order
        self.mapped: list[tuple[str, str, int, int]] = []

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def docker_ports(self, exposed: dict[str, Any] | None) -> dict[str, Any]:
        """NetworkSettings.Ports: every exposed or published port, its bindings or None."""
        out: dict[str, Any] = {}
        for key in exposed or {}:
            port, proto = parse_port(key)
            out[f"{port}/{proto}"] = None
        for proto, ip, host_port, port in self.mapped:
            entry = {"HostIp": ip, "HostPort": str(host_port)}
            out[f"{port}/{proto}"] = [*(out.get(f"{port}/{proto}") or []), entry]
        return out


def _socket_for(proto: str) -> socket.socket:
    if proto == "udp":
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if proto == "sctp":
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _bind(proto: str, ip: str, port: int) -> socket.socket | None:
    """A socket bound to ``ip:port`` (port 0: any), or None when it is taken."""
    try:
        sock = _socket_for(proto)
    except OSError as exc:
        if proto == "sctp":  # no SCTP in this kernel: nothing to hold the port with
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raise InvalidArgument(f"cannot publish {proto} ports: {exc.strerror}") from exc
    sock.set_inheritable(False)
    try:
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(
                f"cannot publish on {ip}:{port}/{proto}: the host has no address {ip}"
            ) from exc
        raise InvalidArgument(f"cannot publish on {ip}:{port}/{proto}: {exc.strerror}") from exc
    return sock


def _take(b: Binding, held: HeldPorts, endpoint: str) -> None:
    if not b.host_port:
        candidates = [0]
    else:
        low, _, high = b.host_port.partition("-")
        candidates = list(range(int(low), int(high or low) + 1))
    for port in candidates:
        sock = _bind(b.proto, b.host_ip, port)
        if sock is not None:
            held.sockets.append(sock)
            held.mapped.append((b.proto, b.host_ip, sock.getsockname()[1], b.port))
            return
    raise Conflict(
        f"driver failed programming external connectivity on endpoint {endpoint}: "
        f"Bind for {b.host_ip}:{b.host_port} failed: port is already allocated"
    )


def allocate(bindings: list[Binding], endpoint: str) -> HeldPorts:
    """Bind a host port for each of ``bindings`` (Conflict, naming the first one taken,
    with dockerd's message; nothing is left held then)."""
    held = HeldPorts()
    try:
        for b in bindings:
            _take(b, held, endpoint)
    except BaseException:
        held.close()
        raise
    return held


def rebind(mapped: list[tuple[str, str, int, int]]) -> HeldPorts:
    """Hold the ports a running container had (after a daemon restart); the ones
    something else took meanwhile are skipped (their DNAT still wins over it)."""
    held = HeldPorts()
    for proto, ip, host_port, port in mapped:
        sock = _bind(proto, ip, host_port)
        if sock is not None:
            held.sockets.append(sock)
        held.mapped.append((proto, ip, host_port, port))
    return held


def mapped_of(ports: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """NetworkSettings.Ports → the (proto, host_ip, host_port, container_port) list."""
    out = []
    for key, entries in (ports or {}).items():
        port, proto = parse_port(key)
        for e in entries or []:
            out.append((proto, str(e.get("HostIp") or _ANY), int(e["HostPort"]), port))
    return out


def summary_ports(ports: dict[str, Any]) -> list[dict[str, Any]]:
    """``docker ps``'s Ports: [{"IP", "PrivatePort", "PublicPort", "Type"}] (exposed
    but unpublished ports without IP and PublicPort)."""
    out: list[dict[str, Any]] = []
    for key, entries in (ports or {}).items():
        port, proto = parse_port(key)
        if not entries:
            out.append({"PrivatePort": port, "Type": proto})
        for e in entries or []:
            out.append(
                {
                    "IP": e.get("HostIp") or _ANY,
                    "PrivatePort": port,
                    "PublicPort": int(e.get("HostPort") or 0),
                    "Type": proto,
                }
            )
    return out
