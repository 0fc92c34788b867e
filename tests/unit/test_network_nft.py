"""portside.network.nft without the kernel: the JSON batch, the model's checks, the sysctls."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from portside.errors import Conflict, InvalidArgument, NotFound
from portside.network import nft
from portside.network.nft import BridgeNetwork, PublishedPort, Ruleset, build

N = IPv4Network
A = IPv4Address


def _text(expr: list[dict[str, Any]]) -> str:
    """One rule's expressions as nft would print them (enough for what build() emits)."""

    def value(v: Any) -> str:
        if isinstance(v, dict) and "prefix" in v:
            return f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if isinstance(v, dict) and "set" in v:
            return "{ " + ", ".join(f'"{x}"' for x in v["set"]) + " }"
        if isinstance(v, list):
            return ",".join(v)
        return f'"{v}"' if isinstance(v, str) and v.startswith("psbr") else str(v)

    def left(e: dict[str, Any]) -> str:
        if "meta" in e:
            return e["meta"]["key"]
        if "payload" in e:
            return f"{e['payload']['protocol']} {e['payload']['field']}"
        if "ct" in e:
            return f"ct {e['ct']['key']}"
        if "fib" in e:
            return f"fib {e['fib']['flags'][0]} {e['fib']['result']}"
        raise AssertionError(e)

    words = []
    for e in expr:
        if "match" in e:
            m = e["match"]
            op = "!= " if m["op"] == "!=" else ""
            words.append(f"{left(m['left'])} {op}{value(m['right'])}")
        elif "dnat" in e:
            words.append(f"dnat to {e['dnat']['addr']}:{e['dnat']['port']}")
        elif "jump" in e:
            words.append(f"jump {e['jump']['target']}")
        else:
            (verdict,) = e
            words.append(verdict)
    return " ".join(words)


def _chains(document: dict[str, Any]) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for item in document["nftables"]:
        if "chain" in item.get("add", {}):
            rules[item["add"]["chain"]["name"]] = []
        if "rule" in item.get("add", {}):
            rule = item["add"]["rule"]
            rules[rule["chain"]].append(_text(rule["expr"]))
    return rules


WEB = BridgeNetwork("psbrA", N("172.30.0.0/16"))
DB = BridgeNetwork("psbrB", N("172.29.0.0/24"), internal=True)
QUIET = BridgeNetwork("psbrC", N("10.9.0.0/24"), masquerade=False)


def test_batch_replaces_the_table_in_one_transaction() -> None:
    doc = build(Ruleset(table="pstest"))
    table = {"family": "ip", "name": "pstest"}
    assert doc["nftables"][:4] == [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    chains = {
        i["add"]["chain"]["name"]: i["add"]["chain"]
        for i in doc["nftables"]
        if "chain" in i.get("add", {})
    }
    assert {k: (v.get("type"), v.get("hook"), v.get("prio")) for k, v in chains.items()} == {
        "prerouting": ("nat", "prerouting", -100),
        "output": ("nat", "output", -100),
        "ports": (None, None, None),
        "postrouting": ("nat", "postrouting", 100),
        "forward": ("filter", "forward", 0),
    }
    assert all(c["table"] == "pstest" for c in chains.values())
    # every later item adds into the same table
    assert all(next(iter(i["add"].values()))["table"] == "pstest" for i in doc["nftables"][4:])
    json.dumps(doc)  # JSON-able as is


def test_rules_of_a_full_ruleset() -> None:
    ports = (
        PublishedPort("tcp", 8080, A("172.30.0.2"), 80, A("127.0.0.1")),
        PublishedPort("tcp", 8081, A("172.30.0.2"), 80),  # same endpoint: one forward accept
        PublishedPort("udp", 5353, A("10.9.0.5"), 53, A("0.0.0.0")),
        PublishedPort("tcp", 5432, A("172.29.0.2"), 5432),  # internal: not published
    )
    rules = _chains(build(Ruleset((WEB, DB, QUIET), ports)))
    local = "fib daddr type local jump ports"
    assert rules["prerouting"] == [local]
    assert rules["output"] == [local]
    assert rules["ports"] == [
        "ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.30.0.2:80",
        "tcp dport 8081 dnat to 172.30.0.2:80",
        "udp dport 5353 dnat to 10.9.0.5:53",
    ]
    assert rules["postrouting"] == [
        'ip saddr 172.30.0.0/16 oifname != "psbrA" masquerade',
        'oifname "psbrA" ip saddr 127.0.0.0/8 masquerade',
        'oifname "psbrA" ip saddr 172.30.0.0/16 ct status dnat masquerade',
        'oifname "psbrC" ip saddr 127.0.0.0/8 masquerade',
        'oifname "psbrC" ip saddr 10.9.0.0/24 ct status dnat masquerade',
    ]
    assert rules["forward"] == [
        'oifname { "psbrA", "psbrB", "psbrC" } ct state established,related accept',
        'oifname "psbrA" ip daddr 172.30.0.2 tcp dport 80 ct status dnat accept',
        'oifname "psbrC" ip daddr 10.9.0.5 udp dport 53 ct status dnat accept',
        'iifname "psbrA" oifname { "psbrB", "psbrC" } drop',
        'iifname "psbrB" oifname { "psbrA", "psbrC" } drop',
        'iifname "psbrC" oifname { "psbrA", "psbrB" } drop',
        'iifname "psbrB" ip daddr != 172.29.0.0/24 drop',
        'iifname "psbrA" accept',
        'iifname "psbrB" accept',
        'iifname "psbrC" accept',
        'oifname "psbrA" drop',
        'oifname "psbrB" drop',
        'oifname "psbrC" drop',
    ]


def test_one_network_has_no_isolation_rules_and_a_plain_name() -> None:
    rules = _chains(build(Ruleset((WEB,))))
    assert rules["forward"] == [
        'oifname "psbrA" ct state established,related accept',
        'iifname "psbrA" accept',
        'oifname "psbrA" drop',
    ]
    assert _chains(build(Ruleset()))["forward"] == []


def test_ports_published_twice_conflict() -> None:
    cip = A("172.30.0.2")
    for a, b in [
        (PublishedPort("tcp", 80, cip, 80), PublishedPort("tcp", 80, cip, 81, A("127.0.0.1"))),
        (PublishedPort("tcp", 80, cip, 80, A("0.0.0.0")), PublishedPort("tcp", 80, cip, 81)),
        (
            PublishedPort("udp", 80, cip, 80, A("10.0.0.1")),
            PublishedPort("udp", 80, cip, 8, A("10.0.0.1")),
        ),
    ]:
        with pytest.raises(Conflict, match="is published twice"):
            build(Ruleset((WEB,), (a, b)))
    # different host addresses or protocols share a port number
    fine = (
        PublishedPort("tcp", 80, cip, 80, A("127.0.0.1")),
        PublishedPort("tcp", 80, cip, 81, A("127.0.0.2")),
        PublishedPort("udp", 80, cip, 80),
    )
    assert len(_chains(build(Ruleset((WEB,), fine)))["ports"]) == 3


def test_model_checks() -> None:
    with pytest.raises(InvalidArgument, match="on no network"):
        build(Ruleset((WEB,), (PublishedPort("tcp", 80, A("10.0.0.2"), 80),)))
    with pytest.raises(InvalidArgument, match="listed twice"):
        build(Ruleset((WEB, BridgeNetwork("psbrA", N("10.1.0.0/24")))))
    with pytest.raises(Conflict, match="overlaps"):
        build(Ruleset((WEB, BridgeNetwork("psbrX", N("172.30.5.0/24")))))
    for name in ["", "a" * 16, "a/b", "a b", "..", 'a"b']:
        with pytest.raises(InvalidArgument, match="invalid interface name"):
            BridgeNetwork(name, N("10.0.0.0/24"))
    with pytest.raises(InvalidArgument, match="invalid protocol"):
        PublishedPort("icmp", 1, A("10.0.0.2"), 1)
    for port in [0, 65536, True]:
        with pytest.raises(InvalidArgument, match="invalid host port"):
            PublishedPort("tcp", port, A("10.0.0.2"), 1)
    with pytest.raises(InvalidArgument, match="not IPv4"):
        PublishedPort("tcp", 1, "10.0.0.2", 1)  # type: ignore[arg-type]
    for table in ["", "1abc", "a b", "a;b", "x" * 65]:
        with pytest.raises(InvalidArgument, match="invalid nftables table name"):
            Ruleset(table=table)


def test_missing_library_is_reported_with_the_iptables_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nft, "LIBRARY", "libnftables-not-here.so.9")
    monkeypatch.setattr(nft, "_lib_cache", [])
    monkeypatch.setattr(nft, "_iptables", lambda: "/usr/sbin/iptables")
    with pytest.raises(nft.NftablesUnavailable) as info:
        nft.require()
    message = str(info.value)
    assert "libnftables-not-here.so.9" in message
    assert "iptables was found (/usr/sbin/iptables)" in message
    assert "iptables fallback is not supported yet" in message
    assert nft.available() is False
    monkeypatch.setattr(nft, "_iptables", lambda: None)
    with pytest.raises(nft.NftablesUnavailable, match="no iptables either"):
        nft.require()


def _proc(tmp_path: Path, ip_forward: str, bridge: str | None = None) -> str:
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text(ip_forward)
    if bridge is not None:
        (tmp_path / "net/ipv4/conf" / bridge).mkdir(parents=True)
        (tmp_path / "net/ipv4/conf" / bridge / "route_localnet").write_text("0\n")
    return str(tmp_path)


def test_enable_ip_forward_only_when_off(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0\n")
    assert nft.enable_ip_forward(proc) is True
    assert (tmp_path / "net/ipv4/ip_forward").read_text() == "1"
    assert nft.enable_ip_forward(proc) is False


def test_route_localnet(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "1\n", bridge="psbrA")
    assert nft.route_localnet("psbrA", proc) is True
    assert (tmp_path / "net/ipv4/conf/psbrA/route_localnet").read_text() == "1"
    assert nft.route_localnet("psbrA", proc) is False
    with pytest.raises(NotFound, match="route_localnet on psbrZ"):
        nft.route_localnet("psbrZ", proc)
    with pytest.raises(InvalidArgument):
        nft.route_localnet("../../x", proc)
