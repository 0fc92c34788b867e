"""Container names, references, and the /etc files of a container."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine import names
from portside.engine.etcfiles import hosts_file, resolv_conf
from portside.errors import Conflict, InvalidArgument, NotFound


@pytest.mark.parametrize("name", ["a1", "/web", "my_app.v2-1", "A-b"])
def test_valid_names(name: str) -> None:
    assert names.validate_name(name) == name.lstrip("/")


@pytest.mark.parametrize("name", ["a", "", "-x", "_x", "has space", "a/b", "//x", "é1"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        names.validate_name(name)
    assert str(info.value) == (
        f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    )


@given(st.text(max_size=20))
def test_validate_agrees_with_docker_regex(name: str) -> None:
    import re

    ok = re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", name) is not None
    try:
        names.validate_name(name)
    except InvalidArgument:
        assert not ok
    else:
        assert ok


def test_conflict_message() -> None:
    err = names.NameConflict("web", "f" * 64)
    assert isinstance(err, Conflict)
    assert str(err) == (
        'Conflict. The container name "/web" is already in use by container'
        f' "{"f" * 64}". You have to remove (or rename) that container to be able to'
        " reuse that name."
    )


def test_random_names() -> None:
    rng = random.Random(7)
    name = names.random_name(lambda n: False, rng)
    adjective, surname = name.split("_")
    assert adjective in names.ADJECTIVES and surname in names.SURNAMES
    assert len(names.ADJECTIVES) >= 40 and len(names.SURNAMES) >= 40
    names.validate_name(name)
    # every plain name taken: a digit is appended, as Docker does
    taken = names.random_name(lambda n: not n[-1].isdigit(), rng)
    assert taken[-1].isdigit()
    with pytest.raises(Conflict):
        names.random_name(lambda n: True, rng)


IDS = ["abc" + "0" * 61, "abd" + "0" * 61, "ff" + "1" * 62]


def test_resolve_order() -> None:
    by_name = {"web": IDS[2], IDS[0][:5]: IDS[1]}
    assert names.resolve(IDS[0], IDS, by_name) == IDS[0]  # full ID first
    assert names.resolve("web", IDS, by_name) == IDS[2]
    assert names.resolve("/web", IDS, by_name) == IDS[2]
    assert names.resolve(IDS[0][:5], IDS, by_name) == IDS[1]  # a name beats a prefix
    assert names.resolve("ff", IDS, by_name) == IDS[2]
    assert names.resolve("abc", IDS, by_name) == IDS[0]


def test_resolve_errors() -> None:
    with pytest.raises(
        names.AmbiguousReference, match="multiple IDs found with provided prefix: ab"
    ):
        names.resolve("ab", IDS, {})
    with pytest.raises(NotFound) as info:
        names.resolve("nope", IDS, {})
    assert str(info.value) == "No such container: nope"
    with pytest.raises(NotFound):
        names.resolve("", IDS, {})


def test_hosts_file() -> None:
    text = hosts_file("abc123", "example.com", ["db:10.0.0.2", "v6:[::2]"])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    assert "10.0.0.2\tdb" in lines and "::2\tv6" in lines
    assert lines[-1] == "127.0.1.1\tabc123.example.com abc123"
    with pytest.raises(InvalidArgument, match="invalid extra host"):
        hosts_file("h", "", ["nocolon"])


HOST = (
    "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver ::1\n"
    "search a.b c.d\noptions edns0\n"
)


def test_resolv_conf() -> None:
    assert resolv_conf(HOST) == "nameserver 10.1.1.1\nsearch a.b c.d\noptions edns0\n"
    local_only = "nameserver 127.0.0.1\n"
    assert resolv_conf(local_only) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert resolv_conf(local_only, host_network=True) == "nameserver 127.0.0.1\n"
    assert resolv_conf(HOST, dns=["1.1.1.1"], search=["x.y"], options=["ndots:2"]) == (
        "nameserver 1.1.1.1\nsearch x.y\noptions ndots:2\n"
    )
    assert "search" not in resolv_conf(HOST, search=["."])
