"""portside.network.netlink on the real kernel: bridges, veths born in a namespace,
configuration inside it, traffic between the test's own namespaces, teardown.

Every name is unique (``pst`` + 8 hex), every subnet a free /24 of 10.213.0.0/16 (not
overlapping any host route); bridges, links and namespaces go in finalizers. The helpers
at the top are shared with test_network_nftables.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from portside.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from portside.linux._libc import libc
from portside.network import netlink
from portside.network.ipam import AddressPool, choose_subnet

pytestmark = pytest.mark.root

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
TEST_POOL = AddressPool("10.213.0.0/16", 24)


def unique(prefix: str = "pst") -> str:
    """A link name of our own: ``pst`` + 8 hex (11 bytes, under IFNAMSIZ)."""
    return prefix + uuid.uuid4().hex[:8]


class Netns:
    """A network namespace held by a bind mount of its nsfs file, and an fd on it."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, unique("ns"))
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        pid = os.fork()
        if pid == 0:  # child: a new netns, bind-mounted where the parent can find it
            ok = libc.unshare(CLONE_NEWNET) == 0 and (
                libc.mount(b"/proc/self/ns/net", self.path.encode(), None, MS_BIND, None) == 0
            )
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            os.unlink(self.path)
            raise OSError(f"cannot make a network namespace at {self.path}")
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        """Drop our fd and the bind mount: the namespace (and its links) goes."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        libc.umount2(self.path.encode(), MNT_DETACH)
        if os.path.exists(self.path):
            os.unlink(self.path)


#: children started by start_in_netns and not waited for yet: reaped by netns_factory
_children: set[int] = set()


def start_in_netns(ns: Netns, func: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Run ``func(*args)`` in a forked child inside ``ns``; a function that waits (10 s at
    most) and returns its JSON-able result, or raises what it raised, as AssertionError.
    A child nobody waited for (a failed test) is killed by the netns_factory finalizer."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns into pytest, whatever happens
        try:
            os.close(r)
            try:
                if libc.setns(ns.fd, CLONE_NEWNET) != 0:
                    raise OSError("setns failed")
                out = {"ok": func(*args)}
            except BaseException as exc:  # everything crosses back to the test
                out = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    _children.add(pid)

    def wait() -> Any:
        deadline = time.monotonic() + 10
        chunks = []
        try:
            while True:
                ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise AssertionError(f"{func.__name__} in {ns.path} timed out")
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(r)
            _reap(pid)
        out = json.loads(b"".join(chunks))
        if "error" in out:
            raise AssertionError(f"{func.__name__} in {ns.path}: {out['error']}")
        return out["ok"]

    return wait


def _reap(pid: int) -> None:
    """Kill (if still running) and reap a child of start_in_netns."""
    _children.discard(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def in_netns(ns: Netns, func: Callable[..., Any], *args: Any) -> Any:
    return start_in_netns(ns, func, *args)()


# -- things run inside a namespace -----------------------------------------------------------


def read_config() -> dict[str, Any]:
    """What a container would see: links (name, up, mtu, mac), addresses, default route."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = {
            link.get_attr("IFLA_IFNAME"): {
                "up": bool(link["flags"] & 1),
                "mtu": link.get_attr("IFLA_MTU"),
                "mac": link.get_attr("IFLA_ADDRESS"),
            }
            for link in ipr.get_links()
        }
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2)]
        gateways = [
            r.get_attr("RTA_GATEWAY")
            for r in ipr.get_routes(family=2, table=254)
            if r["dst_len"] == 0
        ]
    return {"links": links, "addrs": sorted(addrs), "gateways": gateways}


def serve_once(addr: str, port: int, proto: str = "tcp") -> str:
    """Answer one TCP connection or UDP datagram with b"pong:" + what came; what came."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.settimeout(8)
        if proto == "udp":
            data, peer = s.recvfrom(100)
            s.sendto(b"pong:" + data, peer)
            return data.decode()
        s.listen(1)
        conn, _ = s.accept()
        with conn:
            data = conn.recv(100)
            conn.sendall(b"pong:" + data)
        return data.decode()


def ask(addr: str, port: int, message: str, proto: str = "tcp", timeout: float = 3.0) -> str:
    """Send ``message`` and return the answer (retrying a refused TCP connect briefly,
    while the server starts); raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if proto == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(0.2)
                    s.sendto(message.encode(), (addr, port))
                    return s.recvfrom(100)[0].decode()
            with socket.create_connection((addr, port), timeout=timeout) as s:
                s.sendall(message.encode())
                return s.recv(100).decode()
        except (ConnectionRefusedError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], Netns]]:
    made: list[Netns] = []
    directory = tempfile.mkdtemp(prefix="pst-netns-")

    def make() -> Netns:
        ns = Netns(directory)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for pid in list(_children):
            _reap(pid)
        for ns in made:
            ns.close()
        os.rmdir(directory)


class Bridge:
    def __init__(self, name: str, subnet: IPv4Network) -> None:
        self.name = name
        self.subnet = subnet
        self.gateway = subnet.network_address + 1
        self.interface = IPv4Interface(f"{self.gateway}/{subnet.prefixlen}")

    def address(self, n: int) -> IPv4Interface:
        return IPv4Interface(f"{self.subnet.network_address + n}/{self.subnet.prefixlen}")


@pytest.fixture
def bridge_factory() -> Iterator[Callable[..., Bridge]]:
    """``make(mtu=1500)``: a bridge with a free /24 of 10.213.0.0/16 and its gateway."""
    made: list[str] = []

    def make(mtu: int = 1500) -> Bridge:
        subnet = choose_subnet([TEST_POOL], netlink.host_routes())
        bridge = Bridge(unique(), subnet)
        made.append(bridge.name)
        netlink.ensure_bridge(bridge.name, bridge.interface, mtu)
        return bridge

    try:
        yield make
    finally:
        for name in made:
            netlink.delete_link(name)


@pytest.fixture
def veths() -> Iterator[list[str]]:
    """Host veth names a test made: deleted at the end whatever happened."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            netlink.delete_link(name)


def attach(bridge: Bridge, ns: Netns, veths: list[str], n: int, mtu: int = 1500) -> IPv4Address:
    """Plug ``ns`` into ``bridge`` with host address number ``n``; its address."""
    host = unique()
    veths.append(host)
    netlink.create_veth(host, ns.fd, "eth0", bridge=bridge.name, mtu=mtu)
    address = bridge.address(n)
    netlink.configure_inside(ns.fd, "eth0", address, bridge.gateway, mtu)
    return address.ip


# -- the tests ---------------------------------------------------------------------------------


def _link(name: str) -> dict[str, Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        (link,) = ipr.get_links(ifname=name)
        addrs = [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=link["index"], family=2)
        ]
        return {
            "up": bool(link["flags"] & 1),
            "mtu": link.get_attr("IFLA_MTU"),
            "master": link.get_attr("IFLA_MASTER"),
            "index": link["index"],
            "addrs": addrs,
            "mac": link.get_attr("IFLA_ADDRESS"),
        }


def test_ensure_bridge_is_idempotent(bridge_factory: Callable[..., Bridge]) -> None:
    bridge = bridge_factory(mtu=1400)
    link = _link(bridge.name)
    assert link["up"] and link["mtu"] == 1400
    assert link["addrs"] == [str(bridge.interface)]
    assert link["mac"].startswith("02:42:")
    assert bridge.name in netlink.link_names("bridge")
    assert bridge.name not in netlink.link_names("veth")
    assert bridge.subnet in netlink.host_routes()
    # again, with another MTU: same link, MTU changed, the address not doubled
    assert netlink.ensure_bridge(bridge.name, bridge.interface, 1450) == link["index"]
    again = _link(bridge.name)
    assert again["mtu"] == 1450 and again["addrs"] == [str(bridge.interface)]
    assert again["mac"] == link["mac"]


def test_ensure_bridge_refuses_another_kind(veths: list[str]) -> None:
    from pyroute2 import IPRoute

    name = unique()
    veths.append(name)
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=unique())
    with pytest.raises(FailedPrecondition, match="is not a bridge"):
        netlink.ensure_bridge(name, IPv4Interface("10.213.255.1/30"), 1500)


def test_host_routes_leave_out_the_default() -> None:
    routes = netlink.host_routes()
    assert IPv4Network("0.0.0.0/0") not in routes
    assert all(isinstance(r, IPv4Network) for r in routes)


@pytest.mark.parametrize("method", netlink.NETNS_SOCKET_METHODS)
def test_veth_born_inside_and_configured(
    method: str,
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory(mtu=1450)
    ns = netns_factory()
    host = unique()
    veths.append(host)
    netlink.create_veth(host, ns.fd, "eth0", bridge=bridge.name, mtu=1450, mac="02:42:0a:d5:00:07")
    host_end = _link(host)
    assert host_end["up"] and host_end["mtu"] == 1450
    assert host_end["master"] == _link(bridge.name)["index"]
    seen = in_netns(ns, read_config)
    assert seen["links"]["eth0"] == {"up": False, "mtu": 1450, "mac": "02:42:0a:d5:00:07"}
    own_netns, threads = os.readlink("/proc/thread-self/ns/net"), threading.active_count()
    netlink.configure_inside(
        ns.fd, "eth0", bridge.address(7), bridge.gateway, 1450, netns_socket=method
    )
    # the caller stays where it was, and no helper thread or child is left behind
    assert os.readlink("/proc/thread-self/ns/net") == own_netns
    assert threading.active_count() == threads
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    seen = in_netns(ns, read_config)
    assert seen["links"]["eth0"]["up"] and seen["links"]["lo"]["up"]
    assert seen["addrs"] == sorted(["127.0.0.1/8", str(bridge.address(7))])
    assert seen["gateways"] == [str(bridge.gateway)]
    # teardown deletes both ends; a second one finds nothing
    assert netlink.teardown_veth(host) is True
    assert host not in netlink.link_names()
    assert "eth0" not in in_netns(ns, read_config)["links"]
    assert netlink.teardown_veth(host) is False


def test_traffic_between_namespaces_and_with_the_host(
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory()
    a, b = netns_factory(), netns_factory()
    attach(bridge, a, veths, 2)
    b_ip = attach(bridge, b, veths, 3)
    for proto in ("tcp", "udp"):
        server = start_in_netns(b, serve_once, str(b_ip), 7000, proto)
        answer = in_netns(a, ask, str(b_ip), 7000, "from-a", proto)
        assert answer == "pong:from-a" and server() == "from-a"
    # the host reaches a container over the bridge, and a container the host's gateway address
    server = start_in_netns(b, serve_once, str(b_ip), 7001)
    assert ask(str(b_ip), 7001, "from-host") == "pong:from-host"
    server()
    with socket.socket() as listener:
        listener.bind((str(bridge.gateway), 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = start_in_netns(a, ask, str(bridge.gateway), port, "to-host")
        conn, peer = listener.accept()
        with conn:
            assert peer[0] == str(bridge.address(2).ip)
            assert conn.recv(100) == b"to-host"
            conn.sendall(b"ok")
        assert client() == "ok"


def test_namespace_removal_takes_the_veth(
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory()
    ns = netns_factory()
    host = attach(bridge, ns, veths, 2) and veths[-1]
    assert host in netlink.link_names("veth")
    ns.close()
    deadline = time.monotonic() + 5
    while host in netlink.link_names() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host not in netlink.link_names()


def test_link_reaper_deletes_in_the_background(
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory()
    hosts = []
    for _ in range(3):
        host = unique()
        veths.append(host)
        netlink.create_veth(host, netns_factory().fd, "eth0", bridge=bridge.name)
        hosts.append(host)
    with netlink.LinkReaper() as reaper:
        start = time.perf_counter()
        for host in hosts:
            reaper.delete_link_nowait(host)
        reaper.delete_link_nowait(unique())  # missing: counted, not an error
        queued_in = time.perf_counter() - start
        reaper.wait_idle()
        stats = reaper.statistics()
    assert queued_in < 0.01  # the caller does not wait for the kernel
    assert stats == {
        "queued": 4,
        "deleted": 3,
        "missing": 1,
        "failed": 0,
        "pending": 0,
        "last_error": "",
    }
    assert not set(hosts) & set(netlink.link_names())
    with pytest.raises(FailedPrecondition, match="reaper is closed"):
        reaper.delete_link_nowait(hosts[0])


def test_errors_name_what_failed(
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory()
    ns = netns_factory()
    host = unique()
    with pytest.raises(NotFound, match="bridge pstnone0 does not exist"):
        netlink.create_veth(host, ns.fd, bridge="pstnone0")
    veths.append(host)
    netlink.create_veth(host, ns.fd, bridge=bridge.name)
    with pytest.raises(AlreadyExists, match=f"create veth {host}"):
        netlink.create_veth(host, netns_factory().fd, bridge=bridge.name)
    with pytest.raises(NotFound, match="configure eth9"):
        netlink.configure_inside(ns.fd, "eth9", bridge.address(2), bridge.gateway)
    with pytest.raises(InvalidArgument, match="not in"):
        netlink.configure_inside(ns.fd, "eth0", bridge.address(2), IPv4Address("192.0.2.1"))
    with pytest.raises(InvalidArgument, match="expected fork or thread"):
        netlink.configure_inside(ns.fd, "eth0", bridge.address(2), None, netns_socket="vfork")
    with pytest.raises(InvalidArgument, match="invalid interface name"):
        netlink.create_veth("x" * 16, ns.fd, bridge=bridge.name)
    with pytest.raises(InvalidArgument, match="invalid mtu"):
        netlink.ensure_bridge(bridge.name, bridge.interface, 20)
