"""Container networking through the Engine on the real kernel: the default bridge, user
networks with DNS and isolation, published ports, modes, live connect/disconnect,
reconcile after a crash, and nothing left behind.

Every engine has its own bridge (``pst`` + 8 hex) and nftables table (engine_helpers);
user networks get bridges of their own. Traffic only between the test's containers, on
its own bridges, and on loopback; everything goes in the fixtures' finalizers.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from engine_helpers import add_busybox, demux, engine_roots, read_stream, until

from portside.engine.engine import Engine
from portside.engine.model import EngineConfig
from portside.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from portside.network import netlink, nft
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]

HTTPD = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture
def roots() -> Iterator[EngineConfig]:
    with engine_roots() as config:
        add_busybox(config)
        yield config


@pytest.fixture
def engine(roots: EngineConfig) -> Iterator[Engine]:
    eng = Engine(roots)
    try:
        yield eng
    finally:
        eng.close()


def _run(engine: Engine, cmd: list[str] | str, name: str | None = None, **host: Any) -> str:
    networking = host.pop("networking", None)
    config: dict[str, Any] = {
        "Image": "busybox",
        "Cmd": ["sh", "-c", cmd] if isinstance(cmd, str) else cmd,
    }
    config.update(host.pop("config", {}))
    cid = engine.container_create(name, config, dict(host), networking)["Id"]
    engine.container_start(cid)
    return str(cid)


def _output(engine: Engine, cid: str, timeout: float = 20) -> tuple[int, str]:
    code = engine.container_wait(cid, timeout=timeout)["StatusCode"]
    _, chunks = engine.container_logs(cid, stdout=True, stderr=True)
    return code, b"".join(data for _, data in chunks).decode()


def _exec(engine: Engine, cid: str, cmd: str) -> tuple[int, str]:
    exec_id = engine.exec_create(cid, {"Cmd": ["sh", "-c", cmd]})["Id"]
    result = engine.exec_start(exec_id)
    assert result is not None
    with result[1] as sock:
        streams = demux(read_stream(sock, 20))
    until(lambda: engine.exec_inspect(exec_id)["ExitCode"] is not None, 10, "the exec's exit")
    return int(engine.exec_inspect(exec_id)["ExitCode"]), (streams[1] + streams[2]).decode()


def _ip(engine: Engine, cid: str, network: str = "bridge") -> str:
    return str(engine.container_inspect(cid)["NetworkSettings"]["Networks"][network]["IPAddress"])


def _http_get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _httpd_up(engine: Engine, cid: str) -> None:
    until(lambda: _exec(engine, cid, "timeout 1 wget -qO- http://127.0.0.1/")[0] == 0, 10, "httpd")


def _table_rules(table: str) -> list[dict[str, Any]]:
    return [item["rule"] for item in nft.list_table(table) if "rule" in item]


def test_default_bridge_endpoint(engine: Engine, roots: EngineConfig) -> None:
    [bridge] = [n for n in engine.network_list() if n["Name"] == "bridge"]
    subnet = IPv4Network(bridge["IPAM"]["Config"][0]["Subnet"])
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert bridge["Options"]["com.docker.network.bridge.name"] == roots.network.bridge
    script = "ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; sleep 100"
    cid = _run(engine, script, "web1")
    doc = engine.container_inspect(cid)
    ns = doc["NetworkSettings"]
    assert doc["HostConfig"]["NetworkMode"] == "bridge"
    ip = IPv4Address(ns["IPAddress"])
    assert ip in subnet and ns["Gateway"] == gateway and ns["IPPrefixLen"] == subnet.prefixlen
    assert ns["MacAddress"] == "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
    endpoint = ns["Networks"]["bridge"]
    assert endpoint["NetworkID"] == bridge["Id"] and len(endpoint["EndpointID"]) == 64
    assert ns["SandboxKey"] == f"/proc/{doc['State']['Pid']}/ns/net"
    until(lambda: "sleep" not in _logs(engine, cid) and "nameserver" in _logs(engine, cid), 10)
    out = _logs(engine, cid)
    assert f"inet {ip}/{subnet.prefixlen}" in out
    assert f"default via {gateway} dev eth0" in out
    assert f"{ip}\t{cid[:12]}" in out
    inspected = engine.network_inspect("bridge")
    assert inspected["Containers"][cid]["IPv4Address"] == f"{ip}/{subnet.prefixlen}"
    veth = [p for p in netlink.bridge_ports(roots.network.bridge) if p.startswith("ps")]
    assert len(veth) == 1
    engine.container_kill(cid)
    engine.container_wait(cid)
    assert engine.network_inspect("bridge")["Containers"] == {}
    after = engine.container_inspect(cid)["NetworkSettings"]
    assert after["IPAddress"] == "" and after["Networks"]["bridge"]["NetworkID"] == bridge["Id"]
    # the veth dies with the namespace: nothing deletes it on the stop path
    until(lambda: netlink.bridge_ports(roots.network.bridge) == [], 10, "the veth to go")


def _logs(engine: Engine, cid: str) -> str:
    _, chunks = engine.container_logs(cid, stdout=True, stderr=True)
    return b"".join(data for _, data in chunks).decode()


def test_container_to_container_and_to_the_host(engine: Engine) -> None:
    server = _run(engine, HTTPD, "srv1")
    _httpd_up(engine, server)
    gateway = engine.container_inspect(server)["NetworkSettings"]["Gateway"]
    client = _run(engine, f"timeout 5 wget -qO- http://{_ip(engine, server)}/", "cli1")
    assert _output(engine, client) == (0, f"hello-{server[:12]}\n")

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"from the host\n")

        def log_message(self, *args: object) -> None:
            pass

    host = http.server.ThreadingHTTPServer((gateway, 0), Hello)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        port = host.server_address[1]
        cid = _run(engine, f"timeout 5 wget -qO- http://{gateway}:{port}/")
        assert _output(engine, cid) == (0, "from the host\n")
    finally:
        host.shutdown()
        host.server_close()
    engine.container_remove(server, force=True)


def test_published_port_on_loopback_and_conflicts(engine: Engine, roots: EngineConfig) -> None:
    port = _free_port()
    bindings = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    cid = _run(engine, HTTPD, "pub1", PortBindings=bindings)
    assert _http_get(f"http://127.0.0.1:{port}/") == f"hello-{cid[:12]}\n"
    ns = engine.container_inspect(cid)["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    [row] = [r for r in engine.container_list() if r["Id"] == cid]
    assert row["Ports"] == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"}
    ]
    dnat = [r for r in _table_rules(roots.network.table) if r["chain"] == "ports"]
    assert len(dnat) == 1
    # the same host port again: a clear error at start, and nothing of it stays
    other = engine.container_create(None, {"Image": "busybox", "Cmd": ["true"]}, {
        "PortBindings": {"81/tcp": [{"HostIp": "", "HostPort": str(port)}]}
    })["Id"]  # fmt: skip
    with pytest.raises(Conflict, match=f"Bind for 0.0.0.0:{port} failed: port is already"):
        engine.container_start(other)
    assert engine.container_inspect(other)["State"]["Status"] == "exited"
    assert (
        engine.container_inspect(other)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    )
    # a port a host program holds
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        third = engine.container_create(None, {"Image": "busybox", "Cmd": ["true"]}, {
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(taken)}]}
        })["Id"]  # fmt: skip
        with pytest.raises(Conflict, match="port is already allocated"):
            engine.container_start(third)
    engine.container_remove(cid, force=True)
    assert [r for r in _table_rules(roots.network.table) if r["chain"] == "ports"] == []
    with socket.socket() as again:  # released: the port can be bound again
        again.bind(("127.0.0.1", port))


def test_publish_all_picks_free_ports(engine: Engine) -> None:
    cid = _run(engine, HTTPD, config={"ExposedPorts": {"80/tcp": {}, "81/tcp": {}}},
               PublishAllPorts=True)  # fmt: skip
    ports = engine.container_inspect(cid)["NetworkSettings"]["Ports"]
    assert set(ports) == {"80/tcp", "81/tcp"}
    host_port = int(ports["80/tcp"][0]["HostPort"])
    assert ports["80/tcp"][0]["HostIp"] == "0.0.0.0" and host_port >= 1024
    assert host_port != int(ports["81/tcp"][0]["HostPort"])
    assert _http_get(f"http://127.0.0.1:{host_port}/") == f"hello-{cid[:12]}\n"
    engine.container_remove(cid, force=True)


def _network(engine: Engine, name: str, **body: Any) -> str:
    return str(engine.network_create({"Name": name, **body})["Id"])


def test_user_networks_dns_isolation_and_live_connect(engine: Engine) -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip() == "1"
    if not forwarding:
        pytest.skip("net.ipv4.ip_forward is 0: traffic between bridges is not routed anyway")
    one = _network(engine, "netone")
    _network(engine, "nettwo")
    _network(engine, "netint", Internal=True)
    srv = _run(engine, HTTPD, "websrv", NetworkMode="netone",
               networking={"EndpointsConfig": {"netone": {"Aliases": ["www"]}}})  # fmt: skip
    _httpd_up(engine, srv)
    srv_ip = _ip(engine, srv, "netone")
    endpoint = engine.container_inspect(srv)["NetworkSettings"]["Networks"]["netone"]
    assert endpoint["DNSNames"] == ["websrv", "www", srv[:12]]
    # by name, alias and name.network on the same network (the embedded DNS)
    names = "websrv www websrv.netone"
    cmd = f"cat /etc/resolv.conf; for n in {names}; do timeout 5 wget -qO- http://$n/; done"
    cid = _run(engine, cmd, NetworkMode="netone")
    code, out = _output(engine, cid)
    gateway = engine.network_inspect(one)["IPAM"]["Config"][0]["Gateway"]
    assert code == 0 and out.startswith(f"nameserver {gateway}\n"), out
    assert out.count(f"hello-{srv[:12]}") == 3
    # another network: neither the address nor the name reaches it
    other = _run(engine, "sleep 100", "othercli", NetworkMode="nettwo")
    code, out = _exec(engine, other, f"timeout 2 wget -qO- http://{srv_ip}/")
    assert code != 0, out
    code, _ = _exec(engine, other, "nslookup websrv")
    assert code != 0
    # an internal network: no default route, nothing outside its subnet
    inner = _run(engine, f"ip route; timeout 2 wget -qO- http://{srv_ip}/", NetworkMode="netint")
    code, out = _output(engine, inner)
    assert code != 0 and "default" not in out, out
    # connected live (static IP, alias): now it reaches the server; disconnected: not
    subnet = IPv4Network(engine.network_inspect(one)["IPAM"]["Config"][0]["Subnet"])
    static = str(subnet.network_address + 200)
    engine.network_connect("netone", other, {"IPAMConfig": {"IPv4Address": static},
                                            "Aliases": ["side"]})  # fmt: skip
    assert _ip(engine, other, "netone") == static
    script = f"ip -o -4 addr show eth1; timeout 5 wget -qO- http://{srv_ip}/"
    code, out = _exec(engine, other, script)
    assert code == 0 and f"inet {static}/" in out and f"hello-{srv[:12]}" in out, out
    code, out = _exec(engine, srv, "nslookup side")
    assert code == 0 and static in out, out
    assert set(engine.network_inspect("netone")["Containers"]) == {srv, other}
    engine.network_disconnect("netone", other)
    code, out = _exec(engine, other, "ip link show eth1")
    assert code != 0
    assert "netone" not in engine.container_inspect(other)["NetworkSettings"]["Networks"]
    with pytest.raises(Conflict, match="has active endpoints"):
        engine.network_remove("netone")
    for c in (srv, other):
        engine.container_remove(c, force=True)
    engine.network_remove("netone")
    assert sorted(engine.networks_prune()["NetworksDeleted"]) == ["netint", "nettwo"]


def test_network_api_errors(engine: Engine) -> None:
    with pytest.raises(PermissionDenied, match="bridge is a pre-defined network"):
        engine.network_remove("bridge")
    nid = _network(engine, "errnet", IPAM={"Config": [{"Subnet": "10.213.77.0/24"}]},
                   Labels={"team": "a"})  # fmt: skip
    with pytest.raises(Exception, match="network with name errnet already exists"):
        _network(engine, "errnet")
    with pytest.raises(PermissionDenied, match="Pool overlaps"):
        _network(engine, "errnet2", IPAM={"Config": [{"Subnet": "10.213.77.128/25"}]})
    with pytest.raises(NotFound, match='plugin "macvlan" not found'):
        _network(engine, "mv", Driver="macvlan")
    with pytest.raises(InvalidArgument, match="user specified IP address is supported"):
        engine.container_create(None, {"Image": "busybox"}, {}, {
            "EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}
        })  # fmt: skip
    with pytest.raises(NotFound, match="network nosuch not found"):
        engine.container_create(None, {"Image": "busybox"}, {"NetworkMode": "nosuch"})
    assert engine.network_inspect(nid[:6])["Name"] == "errnet"
    assert [n["Name"] for n in engine.network_list({"label": ["team=a"]})] == ["errnet"]
    assert {n["Name"] for n in engine.network_list({"type": ["builtin"]})} == {
        "bridge", "host", "none",
    }  # fmt: skip
    assert [n["Name"] for n in engine.network_list({"dangling": ["true"]})] == ["errnet"]
    engine.network_remove(nid)
    with pytest.raises(NotFound):
        engine.network_inspect(nid)


def test_modes_none_host_and_container(engine: Engine, roots: EngineConfig) -> None:
    cid = _run(engine, "ls /sys/class/net", NetworkMode="none")
    assert _output(engine, cid) == (0, "lo\n")
    cid = _run(engine, "ls /sys/class/net", NetworkMode="host")
    code, out = _output(engine, cid)
    assert code == 0 and set(out.split()) == set(netlink.link_names())
    assert roots.network.bridge in out.split()
    assert engine.container_inspect(cid)["NetworkSettings"]["Networks"].keys() == {"host"}
    owner = _run(engine, "sleep 100", "owner1")
    ip = _ip(engine, owner)
    cid = _run(engine, "ip -o -4 addr show eth0; cat /etc/hosts", NetworkMode="container:owner1")
    code, out = _output(engine, cid)
    assert code == 0 and f"inet {ip}/" in out and f"{ip}\t{owner[:12]}" in out
    assert engine.container_inspect(cid)["NetworkSettings"]["Networks"] == {}
    engine.container_remove(owner, force=True)


def test_reconcile_after_a_crash_and_nothing_left(roots: EngineConfig) -> None:
    bridge, table = roots.network.bridge, roots.network.table
    port = _free_port()
    eng = Engine(roots)
    try:
        _network(eng, "keepnet")
        bindings = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        web = _run(eng, HTTPD, "keepweb", PortBindings=bindings)
        assert _http_get(f"http://127.0.0.1:{port}/").startswith("hello-")
        gone = _run(eng, "sleep 100", "gone1")
        gone_ip = _ip(eng, gone)
    finally:
        eng.close()  # as if the daemon died: containers keep running
    nft.delete_table(table)  # a table lost, a stale veth on our bridge, a dead container
    stale = "ps" + os.urandom(4).hex()
    _stale_veth(stale, bridge)
    os.kill(_pid_of(roots, gone), 9)
    eng = Engine(roots)
    try:
        assert _http_get(f"http://127.0.0.1:{port}/").startswith("hello-")  # table rebuilt
        until(lambda: stale not in netlink.link_names(), 10, "the stale veth to be reaped")
        until(lambda: eng.container_inspect(gone)["State"]["Status"] == "exited", 10)
        net = eng.networks.named("bridge")
        assert net is not None and net.space is not None
        assert gone_ip not in {str(a) for a in net.space.allocated()}
        assert {str(a) for a in net.space.allocated()} == {_ip(eng, web)}
        for c in eng.container_list(all=True):
            eng.container_remove(c["Id"], force=True)
        user_bridge = eng.networks.named("keepnet").bridge  # type: ignore[union-attr]
        eng.network_remove("keepnet")
        assert user_bridge not in netlink.link_names()
        assert net.space.allocated() == []
        rules = _table_rules(table)
        assert [r for r in rules if r["chain"] == "ports"] == []
        assert {r["chain"] for r in rules} <= {
            "prerouting",
            "output",
            "postrouting",
            "forward",
            "guard",
        }
        until(lambda: netlink.bridge_ports(bridge) == [], 10, "every veth to go")
    finally:
        eng.close()


def _pid_of(roots: EngineConfig, cid: str) -> int:
    from portside.runtime.container import Runtime

    return int(Runtime(roots.paths.runtime_root).load(cid).pid)


def _stale_veth(name: str, bridge: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        master = ipr.link_lookup(ifname=bridge)[0]
        ipr.link("add", ifname=name, kind="veth", peer="x" + name[2:])
        ipr.link("set", ifname=name, master=master)
