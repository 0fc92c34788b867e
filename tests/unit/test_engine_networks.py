"""The engine's networking without the kernel: port bindings, endpoint settings and
create-time checks, the DNS lookup, NetworkSettings views, /etc files, the nftables
additions (DNS redirects, the localnet guard), the daemon's network options."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from portside.api.config import load_config
from portside.engine import endpoints, ports, views
from portside.engine.etcfiles import hosts_file, resolv_conf, write_etc_files
from portside.engine.model import Container, ContainerState, NetworkConfig
from portside.engine.networks import Network, _matches
from portside.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from portside.network import ipam, nft

# --- ports ------------------------------------------------------------------------------


def test_wanted_bindings_and_publish_all() -> None:
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}}}
    host = {
        "PortBindings": {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "", "HostPort": ""}],
            "9000": [{"HostIp": "::", "HostPort": "9000"}],  # IPv6 wildcard: skipped
        },
        "PublishAllPorts": True,
    }
    got = [(b.key, b.host_ip, b.host_port) for b in ports.wanted(config, host)]
    assert got == [
        ("80/tcp", "127.0.0.1", "8080"),
        ("80/tcp", "0.0.0.0", ""),
        ("53/udp", "0.0.0.0", ""),
        ("9000/tcp", "0.0.0.0", ""),
    ]
    assert ports.wanted(config, {}) == []


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ({"HostPort": "70000"}, "invalid hostPort: 70000"),
        ({"HostPort": "9-1"}, "invalid hostPort: 9-1"),
        ({"HostPort": "x"}, "invalid hostPort: x"),
        ({"HostIp": "::1", "HostPort": "1"}, "IPv6 is not supported"),
        ({"HostIp": "999.1.1.1", "HostPort": "1"}, "invalid host IP address"),
    ],
)
def test_bad_bindings(binding: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ports.wanted({}, {"PortBindings": {"80/tcp": [binding]}})


@given(st.text(max_size=12))
@example(text="²")  # a digit to str.isdigit(), not to int(): it crashed the parse once
def test_parse_port_never_crashes(text: str) -> None:
    try:
        port, proto = ports.parse_port(text)
    except InvalidArgument:
        return
    assert 0 < port < 65536 and proto in ("tcp", "udp", "sctp")
    assert ports.parse_port(f"{port}/{proto}") == (port, proto)


def test_allocate_binds_and_conflicts() -> None:
    held = ports.allocate([ports.Binding(80, "tcp", "127.0.0.1", "")], "web")
    try:
        [(proto, ip, host_port, port)] = held.mapped
        assert (proto, ip, port) == ("tcp", "127.0.0.1", 80) and host_port > 0
        assert held.docker_ports({"80/tcp": {}, "81/tcp": {}}) == {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}],
            "81/tcp": None,
        }
        again = ports.Binding(81, "tcp", "0.0.0.0", str(host_port))
        with pytest.raises(Conflict, match=f"0.0.0.0:{host_port} failed: port is already"):
            ports.allocate([again], "other")
        ranged = ports.allocate(
            [ports.Binding(82, "tcp", "127.0.0.1", f"{host_port}-{host_port + 20}")], "r"
        )
        assert ranged.mapped[0][2] != host_port
        ranged.close()
    finally:
        held.close()
    with socket.socket() as s:  # closed: the port is free again
        s.bind(("127.0.0.1", host_port))


def test_summary_ports_and_mapped() -> None:
    shown = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    assert ports.summary_ports(shown) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
    ]
    assert ports.mapped_of(shown) == [("tcp", "0.0.0.0", 8080, 80)]


# --- endpoints ----------------------------------------------------------------------------


def _net(name: str, default: bool = False, **kw: Any) -> Network:
    space = ipam.AddressSpace(IPv4Network(kw.pop("subnet", "10.9.0.0/24")))
    return Network(id=name * 8, name=name, default=default, bridge="br" + name, space=space, **kw)


class _Nets:
    """What endpoints.for_create asks of Networks."""

    def __init__(self, *nets: Network) -> None:
        self.nets = {n.name: n for n in nets}

    def resolve(self, ref: str) -> Network:
        if ref not in self.nets:
            raise NotFound(f"network {ref} not found")
        return self.nets[ref]


def _container(name: str, networks: dict[str, Any], cid: str = "ab" * 32) -> Container:
    return Container(
        id=cid, name=name, image="busybox", image_id="sha256:" + "0" * 64, created="",
        config={}, host_config={"NetworkMode": "app"}, state=ContainerState(status="running"),
        networks=networks,
    )  # fmt: skip


def test_for_create_modes_and_checks() -> None:
    bridge, app = _net("bridge", default=True), _net("app", subnet="10.8.0.0/24")
    host = Network(id="h" * 64, name="host", driver="host")
    nets: Any = _Nets(bridge, app, host)
    out = endpoints.for_create(
        nets, {"NetworkMode": "bridge"}, {"EndpointsConfig": {"default": {}}}
    )
    assert list(out) == ["bridge"] and out["bridge"]["NetworkID"] == bridge.id
    assert "_user" not in out["bridge"]
    config = {
        "EndpointsConfig": {"app": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.8.0.9"}}}
    }
    out = endpoints.for_create(nets, {"NetworkMode": "app"}, config)
    assert out["app"]["Aliases"] == ["db"] and out["app"]["IPAMConfig"] == {
        "IPv4Address": "10.8.0.9"
    }
    assert out["app"]["_user"] is True
    both = {"EndpointsConfig": {"bridge": {}, "app": {}}}
    assert list(endpoints.for_create(nets, {"NetworkMode": "bridge"}, both)) == ["bridge", "app"]
    assert endpoints.for_create(nets, {"NetworkMode": "container:x"}, None) == {}
    with pytest.raises(InvalidArgument, match="port publishing and the container type"):
        endpoints.for_create(nets, {"NetworkMode": "container:x", "PublishAllPorts": True}, None)
    static = {"IPAMConfig": {"IPv4Address": "10.9.0.5"}}
    with pytest.raises(InvalidArgument, match="user specified IP address is supported on user"):
        endpoints.for_create(
            nets, {"NetworkMode": "bridge"}, {"EndpointsConfig": {"bridge": static}}
        )
    with pytest.raises(InvalidArgument, match="network-scoped alias is supported only"):
        endpoints.for_create(nets, {"NetworkMode": "bridge"},
                             {"EndpointsConfig": {"bridge": {"Aliases": ["x"]}}})  # fmt: skip
    outside = {"IPAMConfig": {"IPv4Address": "10.7.0.1"}}
    with pytest.raises(InvalidArgument, match="no configured subnet or ip-range contain"):
        endpoints.for_create(nets, {"NetworkMode": "app"}, {"EndpointsConfig": {"app": outside}})
    with pytest.raises(InvalidArgument, match="in host mode"):
        endpoints.for_create(nets, {"NetworkMode": "host"}, {"EndpointsConfig": {"app": {}}})
    with pytest.raises(NotFound, match="network nope not found"):
        endpoints.for_create(nets, {"NetworkMode": "nope"}, None)
    with pytest.raises(InvalidArgument, match="invalid MAC address"):
        endpoints.settings(app, {"MacAddress": "zz"})


def test_connect_refusals() -> None:
    app = _net("app")
    c = _container("web", {"app": endpoints.settings(app, {})})
    nets: Any = None
    with pytest.raises(PermissionDenied, match="already exists in network app"):
        endpoints.connect(nets, app, c, {})
    c.host_config["NetworkMode"] = "host"
    with pytest.raises(PermissionDenied, match="connected to host network"):
        endpoints.connect(nets, _net("other"), c, {})
    c.host_config["NetworkMode"] = "container:x"
    with pytest.raises(PermissionDenied, match="sharing network namespace"):
        endpoints.connect(nets, _net("other"), c, {})


def _live(net: Network, ip: str, aliases: list[str] | None = None) -> dict[str, Any]:
    ep = endpoints.settings(net, {"Aliases": aliases} if aliases else {})
    ep.update(IPAddress=ip, IPPrefixLen=24, EndpointID="e" * 64, MacAddress="02:42:0a:09:00:02")
    return ep


def test_lookup_names_aliases_short_ids_and_scope() -> None:
    app, other = _net("app"), _net("other", subnet="10.8.0.0/24")
    web = _container("web", {"app": _live(app, "10.9.0.2", ["www"])}, "a1" * 32)
    db = _container("db", {"other": _live(other, "10.8.0.3")}, "b2" * 32)
    both = _container("cli", {"app": _live(app, "10.9.0.4"), "other": _live(other, "10.8.0.4")})
    stopped = _container("old", {"app": endpoints.settings(app, {})}, "c3" * 32)
    everyone = [web, db, both, stopped]
    assert endpoints.lookup(app, everyone, "web") == ["10.9.0.2"]
    assert endpoints.lookup(app, everyone, "WWW.") == ["10.9.0.2"]
    assert endpoints.lookup(app, everyone, "a1a1a1a1a1a1") == ["10.9.0.2"]
    assert endpoints.lookup(app, everyone, "web.app") == ["10.9.0.2"]
    assert endpoints.lookup(app, everyone, "old") is None  # not running: forwarded
    assert endpoints.lookup(app, everyone, "example.com") is None
    # db is on another network: only a client on both networks sees it
    assert endpoints.lookup(app, everyone, "db", "10.9.0.2") is None
    assert endpoints.lookup(app, everyone, "db", "10.9.0.4") == ["10.8.0.3"]


def test_public_views_and_network_settings() -> None:
    app, bridge = _net("app"), _net("bridge", default=True, subnet="10.10.0.0/16")
    c = _container(
        "web", {"bridge": _live(bridge, "10.10.0.2"), "app": _live(app, "10.9.0.2", ["w"])}
    )
    c.networks["bridge"].update(Gateway="10.10.0.1", _veth="ps12345678", _gw=True)
    c.state.pid = 42
    c.ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    ns = views._network_settings(c)
    assert (ns["IPAddress"], ns["Gateway"], ns["IPPrefixLen"]) == ("10.10.0.2", "10.10.0.1", 24)
    assert ns["SandboxKey"] == "/proc/42/ns/net" and ns["Ports"] == c.ports
    assert not any(k.startswith("_") for ep in ns["Networks"].values() for k in ep)
    assert ns["Networks"]["app"]["DNSNames"] == ["web", "w", c.id[:12]]
    assert ns["Networks"]["bridge"]["DNSNames"] is None
    assert endpoints.endpoints_on(app, [c]) == {
        c.id: {"Name": "web", "EndpointID": "e" * 64, "MacAddress": "02:42:0a:09:00:02",
               "IPv4Address": "10.9.0.2/24", "IPv6Address": ""}
    }  # fmt: skip
    c.state.status = "exited"
    assert views._network_settings(c)["Ports"] == {} and views._summary_ports(c) == []
    assert views._on_network(c, "app") and views._on_network(c, app.id[:5])
    assert not views._on_network(c, "nope")


def test_published_targets_the_first_non_internal_endpoint() -> None:
    inner, app = _net("inner", internal=True), _net("app", subnet="10.8.0.0/24")
    c = _container("web", {"inner": _live(inner, "10.9.0.2"), "app": _live(app, "10.8.0.2")})
    c.ports = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    [port] = endpoints.published(c, {inner.id: inner, app.id: app})
    assert port == nft.PublishedPort(
        "tcp", 8080, IPv4Address("10.8.0.2"), 80, IPv4Address("127.0.0.1")
    )
    assert endpoints.published(c, {}) == []


def test_network_filters() -> None:
    net = _net("app", labels={"team": "a"})
    assert _matches(net, {"name": ["ap"], "driver": ["bridge"], "label": ["team=a"]}, False)
    assert _matches(net, {"type": ["custom"], "dangling": ["true"]}, False)
    assert not _matches(net, {"dangling": ["true"]}, True)
    assert not _matches(net, {"type": ["builtin"]}, False)
    with pytest.raises(InvalidArgument):
        _matches(net, {"type": ["odd"]}, False)


# --- /etc files ---------------------------------------------------------------------------


def test_hosts_and_resolv_with_a_network(tmp_path: Path) -> None:
    text = hosts_file(
        "abc", extra_hosts=["gw:host-gateway"], address="10.9.0.2", host_gateway="10.9.0.1"
    )
    assert text.endswith("10.9.0.1\tgw\n10.9.0.2\tabc\n")
    with pytest.raises(InvalidArgument, match="host-gateway"):
        hosts_file("abc", extra_hosts=["gw:host-gateway"])
    host = "nameserver 10.1.1.1\nsearch a.b\noptions edns0\n"
    assert resolv_conf(host, embedded="10.9.0.1", dns=["1.1.1.1"]) == (
        "nameserver 10.9.0.1\nnameserver 1.1.1.1\nsearch a.b\noptions edns0\n"
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("old")
    inode = hosts.stat().st_ino
    write_etc_files(str(tmp_path), {}, {"Hostname": "abc"}, address="10.9.0.2", in_place=True)
    assert hosts.stat().st_ino == inode  # bind-mounted files are rewritten in place
    assert hosts.read_text().endswith("10.9.0.2\tabc\n")


# --- nftables additions -------------------------------------------------------------------


def test_dns_redirects_and_the_localnet_guard() -> None:
    net = nft.BridgeNetwork("psbrA", IPv4Network("10.9.0.0/24"), guard_localnet=True)
    dns = nft.DnsRedirect("psbrA", IPv4Address("10.9.0.1"), 40053)
    doc = nft.build(nft.Ruleset((net,), (), "pstest", dns=(dns,)))
    chains = {
        i["add"]["chain"]["name"]: i["add"]["chain"]
        for i in doc["nftables"]
        if "chain" in i.get("add", {})
    }
    assert (chains["guard"]["hook"], chains["guard"]["prio"]) == ("prerouting", -300)
    rules = [i["add"]["rule"] for i in doc["nftables"] if "rule" in i.get("add", {})]
    pre = [r["expr"] for r in rules if r["chain"] == "prerouting"]
    assert [e[-1] for e in pre[:2]] == [{"dnat": {"addr": "10.9.0.1", "port": 40053}}] * 2
    assert [e[2]["match"]["left"]["payload"]["protocol"] for e in pre[:2]] == ["udp", "tcp"]
    assert "jump" in pre[2][-1]
    [guard] = [r["expr"] for r in rules if r["chain"] == "guard"]
    assert guard[-1] == {"drop": None}
    assert guard[1]["match"]["right"] == {"prefix": {"addr": "127.0.0.0", "len": 8}}
    plain = nft.build(nft.Ruleset((nft.BridgeNetwork("psbrA", IPv4Network("10.9.0.0/24")),)))
    assert not any(
        i.get("add", {}).get("chain", {}).get("name") == "guard" for i in plain["nftables"]
    )
    with pytest.raises(InvalidArgument):
        nft.DnsRedirect("psbrA", IPv4Address("10.9.0.1"), 0)


# --- daemon options -----------------------------------------------------------------------


def test_daemon_network_options(tmp_path: Path) -> None:
    pool = "base=10.30.0.0/16,size=24"
    cfg = load_config(["--bridge", "br7", "--bip", "10.20.0.1/16", "--mtu", "1400",
                       "--default-address-pool", pool, "--ip-forward=false"])  # fmt: skip
    net = cfg.network_config()
    assert net == NetworkConfig(bridge="br7", bridge_ip="10.20.0.1/16", mtu=1400, ip_forward=False,
                                address_pools=({"base": "10.30.0.0/16", "size": 24},))  # fmt: skip
    assert net.table == "portside_br7" and NetworkConfig().table == "portside"
    conf = tmp_path / "daemon.json"
    conf.write_text('{"bridge": "none", "mtu": 9000, "ip-forward": true}')
    assert load_config(["--config-file", str(conf)]).network_config().bridge == "none"
    for bad in (["--mtu", "20"], ["--bridge", "x" * 16], ["--bip", "10.0.0.1"]):
        with pytest.raises(InvalidArgument):
            load_config(bad)
    with pytest.raises(SystemExit):
        load_config(["--default-address-pool", "10.0.0.0/8"])
