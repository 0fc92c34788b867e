"""Docker's query conventions: booleans, filters (both forms), timestamps, create body."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.api.errors import BadRequest
from portside.api.params import (
    parse_filters,
    parse_timestamp,
    qbool,
    qint,
    split_create_body,
)


@pytest.mark.parametrize("value", ["1", "true", "True", "TRUE", "yes"])
def test_qbool_true(value: str) -> None:
    assert qbool({"all": value}, "all") is True


@pytest.mark.parametrize("value", ["0", "false", "False", "", "no"])
def test_qbool_false(value: str) -> None:
    assert qbool({"all": value}, "all", True) is False


def test_qbool_default() -> None:
    assert qbool({}, "stream", True) is True
    assert qbool({}, "stream") is False


def test_qint() -> None:
    assert qint({"t": "5"}, "t") == 5
    assert qint({"t": ""}, "t", 3) == 3
    with pytest.raises(BadRequest, match="invalid value for t"):
        qint({"t": "x"}, "t")


def test_filters_list_and_map_forms() -> None:
    assert parse_filters('{"status":["running","exited"]}') == {"status": ["running", "exited"]}
    assert parse_filters('{"status":{"running":true,"paused":false}}') == {"status": ["running"]}
    assert parse_filters("") == {}
    assert parse_filters(None) == {}


@pytest.mark.parametrize("raw", ["{", "[1]", '{"a": 1}'])
def test_filters_invalid(raw: str) -> None:
    with pytest.raises(BadRequest, match="invalid filter"):
        parse_filters(raw)


_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)


@given(st.dictionaries(_words, st.lists(_words, max_size=3), max_size=4))
def test_filters_roundtrip(data: dict[str, list[str]]) -> None:
    assert parse_filters(json.dumps(data)) == data
    as_map = {k: {v: True for v in vs} for k, vs in data.items()}
    assert {k: sorted(v) for k, v in parse_filters(json.dumps(as_map)).items()} == {
        k: sorted(set(vs)) for k, vs in data.items()
    }


def test_timestamps() -> None:
    assert parse_timestamp("1700000000.5") == 1700000000.5
    assert parse_timestamp("10m", now=1000.0) == 400.0
    assert parse_timestamp("2023-11-14T22:13:20.123456789Z") == pytest.approx(1700000000.123456)
    assert parse_timestamp("") is None
    with pytest.raises(BadRequest, match="invalid timestamp"):
        parse_timestamp("yesterday")


def test_split_create_body() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["true"],
        "HostConfig": {"Memory": 1},
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    config, host, net = split_create_body(body)
    assert config == {"Image": "busybox", "Cmd": ["true"]}
    assert host == {"Memory": 1}
    assert net == {"EndpointsConfig": {}}
    with pytest.raises(BadRequest):
        split_create_body({"HostConfig": []})
