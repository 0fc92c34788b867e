"""portside.network.ipam: pools, subnet choice, Docker's validation messages, the allocator."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.errors import AlreadyExists, InvalidArgument, Unavailable
from portside.network.ipam import (
    DEFAULT_POOLS,
    AddressExhausted,
    AddressInUse,
    AddressPool,
    AddressSpace,
    InvalidNetworkConfig,
    NoFreeSubnet,
    choose_subnet,
    parse_pools,
    parse_subnet,
    validate,
)

N = IPv4Network
A = IPv4Address

# -- pools and subnet choice -----------------------------------------------------------------


def test_default_pools_are_dockers() -> None:
    subnets = [s for pool in DEFAULT_POOLS for s in pool.subnets()]
    assert subnets[:2] == [N("172.17.0.0/16"), N("172.18.0.0/16")]
    assert N("172.31.0.0/16") in subnets and N("172.16.0.0/16") not in subnets
    assert subnets[15:17] == [N("192.168.0.0/20"), N("192.168.16.0/20")]
    assert subnets[-1] == N("192.168.240.0/20")
    assert len(subnets) == 31  # dockerd's "31 networks" with the default pools


def test_choose_subnet_skips_what_is_taken() -> None:
    assert choose_subnet(DEFAULT_POOLS, []) == N("172.17.0.0/16")
    docker0 = N("172.17.0.0/16")
    assert choose_subnet(DEFAULT_POOLS, [docker0, N("192.0.2.0/24")]) == N("172.18.0.0/16")
    # a host route inside a pool subnet takes the whole subnet
    assert choose_subnet(DEFAULT_POOLS, [N("172.17.5.0/24")]) == N("172.18.0.0/16")
    # a route covering all the 172 pools sends us to 192.168, past a taken /24 there
    taken = [N("172.16.0.0/12"), N("192.168.1.0/24")]
    assert choose_subnet(DEFAULT_POOLS, taken) == N("192.168.16.0/20")


def test_choose_subnet_exhausted_says_what_docker_says() -> None:
    with pytest.raises(NoFreeSubnet) as info:
        choose_subnet(DEFAULT_POOLS, [N("172.16.0.0/12"), N("192.168.0.0/16")])
    assert isinstance(info.value, Unavailable)
    assert str(info.value) == (
        "could not find an available, non-overlapping IPv4 address pool among the "
        "defaults to assign to the network"
    )


def test_choose_subnet_large_pool_is_fast() -> None:
    pool = AddressPool("10.0.0.0/8", 24)  # 65536 candidates
    taken = [N(f"10.{i}.0.0/16") for i in range(255)]
    assert choose_subnet([pool], taken) == N("10.255.0.0/24")


def _brute_force(pools: list[AddressPool], taken: list[IPv4Network]) -> IPv4Network | None:
    for pool in pools:
        for subnet in pool.subnets():
            if not any(subnet.overlaps(t) for t in taken):
                return subnet
    return None


_small_nets = st.builds(
    lambda addr, plen: N((addr, plen), strict=False),
    st.integers(0x0A000000, 0x0A00FFFF),
    st.integers(16, 30),
)
_pools = st.builds(
    lambda net, extra: AddressPool(net, min(30, net.prefixlen + extra)),
    st.builds(
        lambda a, p: N((a, p), strict=False),
        st.integers(0x0A000000, 0x0A00FFFF),
        st.integers(20, 28),
    ),
    st.integers(0, 4),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_pools, min_size=1, max_size=3), st.lists(_small_nets, max_size=8))
def test_choose_subnet_is_the_first_free_one(
    pools: list[AddressPool], taken: list[IPv4Network]
) -> None:
    expected = _brute_force(pools, taken)
    if expected is None:
        with pytest.raises(NoFreeSubnet):
            choose_subnet(pools, taken)
    else:
        assert choose_subnet(pools, taken) == expected


def test_parse_pools() -> None:
    pools = parse_pools([{"base": "10.10.0.0/16", "size": 24}])
    assert pools == (AddressPool(N("10.10.0.0/16"), 24),)
    assert pools[0].to_dict() == {"base": "10.10.0.0/16", "size": 24}
    for bad, message in [
        ([], "the list is empty"),
        ([{"base": "10.10.0.0/16"}], "expected an object with keys base and size"),
        ([{"base": "10.10.0.0/16", "size": 8}], "size 8 must be between 16 and 30"),
        ([{"base": "10.10.0.1/16", "size": 24}], "invalid base 10.10.0.1/16: it should be"),
        ([{"base": "nope", "size": 24}], "invalid base nope: invalid CIDR block notation"),
        ([{"base": "10.10.0.0/16", "size": "24"}], "size '24' is not an integer"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            parse_pools(bad)


# -- validation: Docker's messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "gateway", "ip_range", "errors"),
    [
        ("10.0.0.1/24", "", "", ["invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"]),
        ("10.0.0.0", "", "", ["invalid subnet 10.0.0.0: invalid CIDR block notation"]),
        (
            "10.0.0.0/255.0.0.0",
            "",
            "",
            ["invalid subnet 10.0.0.0/255.0.0.0: invalid CIDR block notation"],
        ),
        ("10.0.0.0/33", "", "", ["invalid subnet 10.0.0.0/33: invalid CIDR block notation"]),
        ("10.0.0.0/08", "", "", ["invalid subnet 10.0.0.0/08: invalid CIDR block notation"]),
        (
            "10.0.0.0/24",
            "10.0.1.1",
            "",
            ["invalid gateway 10.0.1.1: parent subnet 10.0.0.0/24 doesn't contain this address"],
        ),
        ("10.0.0.0/24", "x", "", ["invalid gateway x: invalid address"]),
        (
            "10.0.0.0/24",
            "",
            "10.0.0.0/16",
            [
                "invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet"
                " 10.0.0.0/24"
            ],
        ),
        (
            "10.0.0.0/24",
            "",
            "10.0.0.5/28",
            ["invalid ip-range 10.0.0.5/28: it should be 10.0.0.0/28"],
        ),
        (
            "10.0.0.0/24",
            "",
            "10.1.0.0/28",
            ["invalid ip-range 10.1.0.0/28: parent subnet 10.0.0.0/24 doesn't contain ip-range"],
        ),
        (
            "10.0.0.0/24",
            "10.9.9.9",
            "10.1.0.0/28",
            [
                "invalid ip-range 10.1.0.0/28: parent subnet 10.0.0.0/24 doesn't contain ip-range",
                "invalid gateway 10.9.9.9: parent subnet 10.0.0.0/24 doesn't contain this address",
            ],
        ),
        ("fd00::/64", "", "", ["invalid subnet fd00::/64: IPv6 is not supported yet"]),
    ],
)
def test_validate_messages(subnet: str, gateway: str, ip_range: str, errors: list[str]) -> None:
    with pytest.raises(InvalidNetworkConfig) as info:
        validate(subnet, gateway, ip_range)
    assert str(info.value) == "invalid network config:\n* " + "\n* ".join(errors)


def test_parse_subnet_values() -> None:
    assert parse_subnet("10.0.0.0/24") == (N("10.0.0.0/24"), None, None)
    assert parse_subnet("10.0.0.0/16", "10.0.0.254", "10.0.5.0/24") == (
        N("10.0.0.0/16"),
        A("10.0.0.254"),
        N("10.0.5.0/24"),
    )


@given(st.integers(0, 2**32 - 1), st.integers(0, 30))
def test_parse_subnet_round_trips(addr: int, prefixlen: int) -> None:
    net = N((addr, prefixlen), strict=False)
    assert parse_subnet(str(net))[0] == net
    if int(net.network_address) != addr:
        with pytest.raises(InvalidNetworkConfig, match=re.escape(f"it should be {net}") + "$"):
            parse_subnet(f"{A(addr)}/{prefixlen}")


@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=40))
def test_parse_subnet_rejects_garbage_cleanly(subnet: str, gateway: str, ip_range: str) -> None:
    try:
        net, gw, rng = parse_subnet(subnet, gateway, ip_range)
    except InvalidNetworkConfig as exc:
        assert str(exc).startswith("invalid network config:\n* ")
    else:
        assert gw is None or gw in net
        assert rng is None or rng.subnet_of(net)


# -- the allocator ------------------------------------------------------------------------------


def test_allocation_is_sequential_and_skips_reserved() -> None:
    space = AddressSpace(N("10.1.0.0/29"))  # hosts .1-.6, .1 the gateway
    assert space.gateway == A("10.1.0.1")
    assert [space.allocate() for _ in range(3)] == [A("10.1.0.2"), A("10.1.0.3"), A("10.1.0.4")]
    space.release(A("10.1.0.3"))
    # a released address comes back only after the allocator wraps
    assert space.allocate() == A("10.1.0.5")
    assert space.allocate() == A("10.1.0.6")
    assert space.allocate() == A("10.1.0.3")
    with pytest.raises(AddressExhausted, match="no available addresses on this pool"):
        space.allocate()
    assert space.statistics() == {"allocated": 5, "free": 0}


def test_explicit_gateway_and_ip_range() -> None:
    space = AddressSpace(N("10.2.0.0/24"), A("10.2.0.254"), N("10.2.0.16/30"))
    got = [space.allocate() for _ in range(4)]
    assert got == [A("10.2.0.16"), A("10.2.0.17"), A("10.2.0.18"), A("10.2.0.19")]
    with pytest.raises(AddressExhausted, match=re.escape("ip-range 10.2.0.16/30 is full")):
        space.allocate()
    # an explicit address may lie outside the range, as Docker's --ip
    assert space.allocate(A("10.2.0.100")) == A("10.2.0.100")
    assert A("10.2.0.100") in space and A("10.2.0.101") not in space


def test_explicit_address_errors() -> None:
    space = AddressSpace(N("10.3.0.0/24"))
    space.allocate(A("10.3.0.7"))
    with pytest.raises(AddressInUse, match=re.escape("10.3.0.7 is already in use")) as info:
        space.allocate(A("10.3.0.7"))
    assert isinstance(info.value, AlreadyExists)
    with pytest.raises(AddressInUse, match=re.escape("it is the gateway of 10.3.0.0/24")):
        space.allocate(A("10.3.0.1"))
    with pytest.raises(AddressInUse, match="network or broadcast"):
        space.allocate(A("10.3.0.255"))
    with pytest.raises(InvalidArgument, match=re.escape("10.4.0.1 is out of range")):
        space.allocate(A("10.4.0.1"))
    with pytest.raises(InvalidArgument, match=re.escape("10.3.0.9 is not allocated")):
        space.release(A("10.3.0.9"))
    with pytest.raises(InvalidArgument, match="not in subnet"):
        space.release(A("10.9.0.9"))


def test_bad_spaces() -> None:
    with pytest.raises(InvalidArgument, match="/30 or larger"):
        AddressSpace(N("10.0.0.0/31"))
    with pytest.raises(InvalidArgument, match="not a host address"):
        AddressSpace(N("10.0.0.0/24"), A("10.0.0.0"))
    with pytest.raises(InvalidArgument, match="not inside subnet"):
        AddressSpace(N("10.0.0.0/24"), None, N("10.0.1.0/28"))


def test_to_dict_is_small_json_and_round_trips() -> None:
    space = AddressSpace(N("10.5.0.0/24"), None, N("10.5.0.128/25"))
    for _ in range(3):
        space.allocate()
    space.release(A("10.5.0.129"))
    data = json.loads(json.dumps(space.to_dict()))
    assert data == {
        "subnet": "10.5.0.0/24",
        "gateway": "10.5.0.1",
        "ip_range": "10.5.0.128/25",
        "allocated": ["10.5.0.128", "10.5.0.130"],
        "next": "10.5.0.131",
    }
    again = AddressSpace.from_dict(data)
    assert again.allocate() == space.allocate() == A("10.5.0.131")


def test_from_dict_rejects_malformed() -> None:
    for bad in [
        {},
        {"subnet": "10.0.0.0/24", "gateway": "zz"},
        {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "allocated": "10.0.0.2"},
        {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "allocated": ["10.0.0.2", "10.0.0.2"]},
    ]:
        with pytest.raises(InvalidArgument):
            AddressSpace.from_dict(bad)


_ops = st.lists(st.one_of(st.just("alloc"), st.integers(0, 40)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(_ops, st.booleans())
def test_allocator_follows_the_serial_spec(ops: list[object], with_range: bool) -> None:
    """Random allocate/release sequences against the spec: the next address is the first
    free one at or after the cursor (one past the last handed out), else the first free
    one from the start of the range (the wrap); unique, in range, never reserved; a space
    restored from its dict continues identically."""
    rng = N("10.7.0.8/29") if with_range else None
    space = AddressSpace(N("10.7.0.0/27"), None, rng)
    reserved = {0, 31, 1}  # host numbers within 10.7.0.0/27
    first, last = (8, 15) if rng else (0, 31)
    held: list[int] = []
    cursor = first
    for op in ops:
        if op == "alloc":
            free = [n for n in range(first, last + 1) if n not in held and n not in reserved]
            after = [n for n in free if n >= cursor]
            if not free:
                with pytest.raises(AddressExhausted):
                    space.allocate()
                continue
            expected = after[0] if after else free[0]
            assert space.allocate() == A(f"10.7.0.{expected}")
            held.append(expected)
            cursor = expected + 1
        elif held:
            victim = held.pop(int(op) % len(held))  # type: ignore[call-overload]
            space.release(A(f"10.7.0.{victim}"))
        restored = AddressSpace.from_dict(space.to_dict())
        assert restored.to_dict() == space.to_dict()
    assert space.allocated() == [A(f"10.7.0.{n}") for n in sorted(held)]
