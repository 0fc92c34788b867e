"""portside.network.nft on the real kernel: a unique table applied, read back through
libnftables, replaced atomically, deleted; DNAT from 127.0.0.1 to a namespace and the
isolation between two bridges, with traffic only on loopback and the test's own bridges.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from test_network_netlink import (  # shared helpers (namespaces, bridges, traffic)
    Bridge,
    Netns,
    ask,
    attach,
    bridge_factory,
    in_netns,
    netns_factory,
    serve_once,
    start_in_netns,
    unique,
    veths,
)

from portside.errors import NotFound
from portside.network import nft
from portside.network.nft import BridgeNetwork, PublishedPort, Ruleset

pytestmark = pytest.mark.root

__all__ = ["bridge_factory", "netns_factory", "veths"]  # fixtures used through their names

A = IPv4Address
N = IPv4Network


@pytest.fixture
def table() -> Iterator[str]:
    """A unique table name; the table is deleted afterwards whatever happened."""
    name = unique("pstt")
    try:
        yield name
    finally:
        nft.delete_table(name)


def _listed_rules(items: list[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    chains: dict[str, list[list[dict[str, Any]]]] = {
        i["chain"]["name"]: [] for i in items if "chain" in i
    }
    for item in items:
        if "rule" in item:
            chains[item["rule"]["chain"]].append(item["rule"]["expr"])
    return chains


def _built_rules(ruleset: Ruleset) -> dict[str, list[list[dict[str, Any]]]]:
    chains: dict[str, list[list[dict[str, Any]]]] = {}
    for item in nft.build(ruleset)["nftables"]:
        added = item.get("add", {})
        if "chain" in added:
            chains[added["chain"]["name"]] = []
        if "rule" in added:
            chains[added["rule"]["chain"]].append(added["rule"]["expr"])
    return chains


def _ruleset(table: str, n: int) -> Ruleset:
    networks = tuple(
        BridgeNetwork(f"psbr{i}", N(f"10.214.{i}.0/24"), internal=(i == 2)) for i in range(n)
    )
    ports = (
        PublishedPort("tcp", 18080, A("10.214.0.2"), 80, A("127.0.0.1")),
        PublishedPort("udp", 18053, A("10.214.1.2"), 53),
    )
    return Ruleset(networks, ports[: min(n, 2)], table)


def test_apply_read_back_replace_delete(table: str) -> None:
    assert nft.available()
    first = _ruleset(table, 3)
    nft.apply(first)
    items = nft.list_table(table)
    assert items[0]["table"]["name"] == table
    # what the kernel holds is exactly what we built, rule for rule
    assert _listed_rules(items) == _built_rules(first)
    # replace with a smaller ruleset: nothing of the first one is left
    second = _ruleset(table, 1)
    nft.apply(second)
    assert _listed_rules(nft.list_table(table)) == _built_rules(second)
    nft.delete_table(table)
    with pytest.raises(NotFound, match=f"table ip {table} does not exist"):
        nft.list_table(table)
    nft.delete_table(table)  # idempotent


def test_a_failed_batch_leaves_the_old_table(table: str) -> None:
    rules = _ruleset(table, 2)
    nft.apply(rules)
    before = nft.list_table(table)
    broken = nft.build(rules)  # the same batch, plus a rule for a chain that does not exist
    rule = {"family": "ip", "table": table, "chain": "nosuchchain", "expr": [{"accept": None}]}
    broken["nftables"].append({"add": {"rule": rule}})
    with nft.Nftables() as ctx, pytest.raises(nft.NftablesError) as info:
        ctx.run_json(broken, "broken batch")
    assert "broken batch" in str(info.value) and "No such file or directory" in str(info.value)
    assert nft.list_table(table) == before


def test_published_port_on_loopback_reaches_the_namespace(
    table: str,
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    bridge = bridge_factory()
    ns = netns_factory()
    cip = attach(bridge, ns, veths, 2)
    assert nft.route_localnet(bridge.name) is True
    with open(f"/proc/sys/net/ipv4/conf/{bridge.name}/route_localnet") as f:
        assert f.read().strip() == "1"
    host_port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    ports = (
        PublishedPort("tcp", host_port, cip, 80, A("127.0.0.1")),
        PublishedPort("udp", host_port, cip, 53, A("127.0.0.1")),
    )
    nft.apply(Ruleset((BridgeNetwork(bridge.name, bridge.subnet),), ports, table))
    server = start_in_netns(ns, serve_once, "0.0.0.0", 80)
    assert ask("127.0.0.1", host_port, "via-dnat") == "pong:via-dnat"
    assert server() == "via-dnat"
    server = start_in_netns(ns, serve_once, "0.0.0.0", 53, "udp")
    assert ask("127.0.0.1", host_port, "via-udp", "udp") == "pong:via-udp"
    assert server() == "via-udp"


def _forwarding_on() -> bool:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"


def test_two_bridges_are_isolated_but_published_ports_are_not(
    table: str,
    bridge_factory: Callable[..., Bridge],
    netns_factory: Callable[[], Netns],
    veths: list[str],
) -> None:
    if not _forwarding_on():
        pytest.skip("net.ipv4.ip_forward is 0 on this host; the test does not change it")
    red, blue = bridge_factory(), bridge_factory()
    a, b, c = netns_factory(), netns_factory(), netns_factory()
    attach(red, a, veths, 2)
    b_ip = attach(blue, b, veths, 2)
    c_ip = attach(red, c, veths, 3)
    # control: without Portside's table, a routes to b through the host
    server = start_in_netns(b, serve_once, str(b_ip), 7100)
    assert in_netns(a, ask, str(b_ip), 7100, "routed") == "pong:routed"
    server()
    networks = (BridgeNetwork(red.name, red.subnet), BridgeNetwork(blue.name, blue.subnet))
    published = PublishedPort("tcp", 7180, b_ip, 7102, red.gateway)  # on red's host address
    nft.apply(Ruleset(networks, (published,), table))
    server = start_in_netns(b, serve_once, str(b_ip), 7101)
    with pytest.raises(AssertionError, match=r"TimeoutError|timed out"):
        in_netns(a, ask, str(b_ip), 7101, "isolated", "tcp", 0.5)
    # the host itself still reaches b (output path, not forwarded)
    assert ask(str(b_ip), 7101, "from-host") == "pong:from-host"
    server()
    # a neighbour on the same bridge is reachable
    server = start_in_netns(c, serve_once, str(c_ip), 7103)
    assert in_netns(a, ask, str(c_ip), 7103, "neighbour") == "pong:neighbour"
    server()
    # b's published port is reachable from a through the host address (DNAT, masqueraded)
    server = start_in_netns(b, serve_once, "0.0.0.0", 7102)
    assert in_netns(a, ask, str(red.gateway), 7180, "published") == "pong:published"
    server()
