"""EmbeddedDNS on the real kernel: the server listens on a test bridge's gateway address and
a process inside a network namespace plugged into that bridge asks it (a small Python
client, and busybox nslookup when port 53 on the gateway is free); unknown names go to a
fake upstream on the host's 127.0.0.1. Traffic only on loopback and the test's own
bridge; the bridge, veth and namespace go in finalizers (test_network_netlink's fixtures).
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_network_netlink import (  # shared helpers (namespaces, bridges)
    Bridge,
    Netns,
    attach,
    bridge_factory,
    in_netns,
    netns_factory,
    veths,
)

from portside.errors import Conflict
from portside.network.dns import (
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    TYPE_A,
    TYPE_AAAA,
    EmbeddedDNS,
    Message,
    Question,
    Record,
    build_message,
    parse_message,
)

pytestmark = pytest.mark.root

__all__ = ["bridge_factory", "netns_factory", "veths"]  # fixtures used through their names

UPSTREAM_ANSWER = "192.0.2.44"  # what the fake upstream says; never contacted


def resolve(server: str, port: int, name: str, proto: str = "udp", qtype: int = TYPE_A) -> Any:
    """Run inside the namespace: ask ``server``:``port``; what came back (JSON-able)."""
    query = build_message(Message(4321, FLAG_RD, [Question(name, qtype)]))
    if proto == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.connect((server, port))
            s.send(query)
            try:
                data = s.recv(65535)
            except ConnectionRefusedError:
                return "refused"
    else:
        with socket.create_connection((server, port), timeout=3) as s:
            s.sendall(struct.pack("!H", len(query)) + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    raise ConnectionError("closed before the answer")
                data += chunk
            data = data[2:]
    answer = parse_message(data)
    ips = sorted(socket.inet_ntoa(r.rdata) for r in answer.answers if r.rtype == TYPE_A)
    return {"id": answer.id, "rcode": answer.rcode, "ips": ips}


def nslookup(name: str, server: str) -> str:
    """Run inside the namespace: busybox nslookup's output."""
    done = subprocess.run(
        ["busybox", "nslookup", name, server],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return done.stdout + done.stderr


class FakeUpstream:
    """A resolver on the host's 127.0.0.1 answering every UDP query with one A record."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.received: list[str] = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            query = parse_message(data)
            self.received.append(query.questions[0].name)
            ip = socket.inet_aton(UPSTREAM_ANSWER)
            answer = Record(query.questions[0].name, TYPE_A, 1, 30, ip)
            flags = FLAG_QR | FLAG_RA | FLAG_RD
            self.sock.sendto(
                build_message(Message(query.id, flags, query.questions, [answer])), peer
            )

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def network(
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
    fake_upstream: FakeUpstream,
) -> Iterator[tuple[Bridge, Netns, str, EmbeddedDNS, list[tuple[str, str, str]]]]:
    """A bridge, a namespace on it (address .2, "web" resolves to it) and a server on the
    gateway, forwarding to the fake upstream: (bridge, ns, client ip, server, lookups)."""
    bridge = bridge_factory()
    ns = netns_factory()
    client = str(attach(bridge, ns, veths, 2))
    calls: list[tuple[str, str, str]] = []

    def lookup(network_key: str, client_ip: str, name: str) -> list[str] | None:
        calls.append((network_key, client_ip, name))
        return [client] if name in ("web", f"web.{bridge.name}") else None

    with EmbeddedDNS(lookup, upstreams=[f"127.0.0.1:{fake_upstream.sock.getsockname()[1]}"]) as srv:
        yield bridge, ns, client, srv, calls
    assert not [t for t in threading.enumerate() if t.name == "portside-dns"]


def test_names_answered_and_forwarded_for_a_namespace(
    network: tuple[Bridge, Netns, str, EmbeddedDNS, list[Any]], fake_upstream: FakeUpstream
) -> None:
    bridge, ns, client, srv, calls = network
    gateway = str(bridge.gateway)
    port = srv.add_listener(bridge.name, gateway)
    for proto in ("udp", "tcp"):
        got = in_netns(ns, resolve, gateway, port, f"WEB.{bridge.name}.", proto)
        assert got == {"id": 4321, "rcode": 0, "ips": [client]}
    assert calls[0] == (bridge.name, client, f"web.{bridge.name}")  # key and client's address
    aaaa = in_netns(ns, resolve, gateway, port, "web", "udp", TYPE_AAAA)
    assert aaaa == {"id": 4321, "rcode": 0, "ips": []}
    # not a container: forwarded to the host's (fake) resolver on 127.0.0.1, and back
    far = in_netns(ns, resolve, gateway, port, "example.org")
    assert far == {"id": 4321, "rcode": 0, "ips": [UPSTREAM_ANSWER]}
    assert fake_upstream.received == ["example.org"]
    # the listener goes: the port is closed (ICMP port unreachable from the gateway)
    srv.remove_listener(bridge.name)
    assert in_netns(ns, resolve, gateway, port, "web") == "refused"
    stats = srv.statistics()
    assert (stats["answered"], stats["relayed"], stats["listeners"]) == (3, 1, 0)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox")
def test_busybox_nslookup_from_a_namespace(
    network: tuple[Bridge, Netns, str, EmbeddedDNS, list[Any]],
) -> None:
    bridge, ns, client, srv, _ = network
    gateway = str(bridge.gateway)
    try:  # port 53 of the test's own gateway address: nothing else is disturbed
        srv.add_listener(bridge.name, gateway, 53)
    except Conflict:
        pytest.skip(f"port 53 on {gateway} is taken (a resolver on 0.0.0.0:53?)")
    out = in_netns(ns, nslookup, "web", gateway)
    assert f"Address: {client}" in out, out
    out = in_netns(ns, nslookup, "example.org", gateway)
    assert f"Address: {UPSTREAM_ANSWER}" in out, out
