"""The /networks routes over a fake engine: status codes, bodies, the arguments the
Engine gets, filter and body checks with dockerd's messages, error classes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from portside import errors
from portside.api import create_app
from portside.api.errors import BadRequest
from portside.api.routes_networks import LIST_FILTERS, check_filters, go_bool

NET_ID = "9f" * 32
BRIDGE = {"Name": "bridge", "Id": "b" * 64, "Driver": "bridge", "Scope": "local"}


class FakeNetworkEngine:
    """The Engine's network methods (issue 5's interface): canned answers, every call
    recorded, ``fail[method]`` raised instead when set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail: dict[str, Exception] = {}
        self.listed: list[dict] | None = [BRIDGE]

    def _call(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, args, kw))
        if name in self.fail:
            raise self.fail[name]

    def network_list(self, filters: dict[str, list[str]] | None = None) -> list[dict] | None:
        self._call("network_list", filters)
        return self.listed

    def network_inspect(self, ref: str, *, verbose: bool = False, scope: str = "") -> dict:
        self._call("network_inspect", ref, verbose=verbose, scope=scope)
        return {"Name": ref, "Id": NET_ID, "Containers": {}}

    def network_create(self, body: dict) -> dict:
        self._call("network_create", body)
        return {"Id": NET_ID, "Warning": ""}

    def network_remove(self, ref: str) -> None:
        self._call("network_remove", ref)

    def networks_prune(self, filters: dict[str, list[str]] | None = None) -> dict:
        self._call("networks_prune", filters)
        return {"NetworksDeleted": ["old"]}

    def network_connect(
        self, ref: str, container: str, endpoint_config: dict | None = None
    ) -> None:
        self._call("network_connect", ref, container, endpoint_config)

    def network_disconnect(self, ref: str, container: str, *, force: bool = False) -> None:
        self._call("network_disconnect", ref, container, force=force)


Body = Callable[[TestClient], Awaitable[Any]]


def run(engine: FakeNetworkEngine, body: Body) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(create_app(engine))) as client:
            return await body(client)

    return asyncio.run(main())


async def answer(response: Any) -> tuple[int, Any]:
    text = await response.text()
    return response.status, json.loads(text) if text else None


@pytest.fixture
def engine() -> FakeNetworkEngine:
    return FakeNetworkEngine()


def test_list_passes_filters_and_refuses_unknown_keys(engine: FakeNetworkEngine) -> None:
    new = json.dumps({"driver": ["bridge"], "label": ["a=b"]})
    old = json.dumps({"name": {"web": True, "db": False}})

    async def body(c: TestClient) -> list[Any]:
        return [
            await answer(await c.get("/v1.50/networks")),
            await answer(await c.get("/networks/")),
            await answer(await c.get("/networks", params={"filters": new})),
            await answer(await c.get("/networks", params={"filters": old})),
            await answer(await c.get("/networks", params={"filters": '{"bogus":["x"]}'})),
            await answer(await c.get("/networks", params={"filters": "{nope"})),
        ]

    results = run(engine, body)
    assert results[:4] == [(200, [BRIDGE])] * 4
    assert results[4] == (400, {"message": "invalid filter 'bogus'"})
    assert results[5][0] == 400 and "invalid filter" in results[5][1]["message"]
    assert [call[1][0] for call in engine.calls] == [
        None,
        None,
        {"driver": ["bridge"], "label": ["a=b"]},
        {"name": ["web"]},
    ]


def test_list_of_nothing_is_an_empty_array(engine: FakeNetworkEngine) -> None:
    engine.listed = None

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.get("/networks"))

    assert run(engine, body) == (200, [])


def test_inspect_verbose_and_scope(engine: FakeNetworkEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        return [
            await answer(await c.get("/networks/web")),
            await answer(await c.get("/networks/web?verbose=true&scope=local")),
            await answer(await c.get("/networks/web?verbose=0")),
            await answer(await c.get("/networks/web?verbose=yes")),
        ]

    results = run(engine, body)
    assert results[0] == (200, {"Name": "web", "Id": NET_ID, "Containers": {}})
    assert results[3] == (
        400,
        {
            "message": 'invalid value for verbose: yes: strconv.ParseBool: parsing "yes": '
            "invalid syntax"
        },
    )
    assert [(c[1], c[2]) for c in engine.calls] == [
        (("web",), {"verbose": False, "scope": ""}),
        (("web",), {"verbose": True, "scope": "local"}),
        (("web",), {"verbose": False, "scope": ""}),
    ]


def test_inspect_not_found_is_404(engine: FakeNetworkEngine) -> None:
    engine.fail["network_inspect"] = errors.NotFound("network nope not found")

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.get("/networks/nope"))

    assert run(engine, body) == (404, {"message": "network nope not found"})


def test_create_is_201_with_the_whole_request(engine: FakeNetworkEngine) -> None:
    request = {
        "Name": "web",
        "Driver": "bridge",
        "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24"}]},
        "Internal": True,
        "Labels": {"a": "b"},
        "Options": {"com.docker.network.bridge.name": "br-web"},
    }

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.post("/v1.47/networks/create", json=request))

    assert run(engine, body) == (201, {"Id": NET_ID, "Warning": ""})
    assert engine.calls == [("network_create", (request,), {})]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "invalid name: "),
        (b"null", "invalid name: "),
        (b"{}", "invalid name: "),
        (b'{"Name": "  "}', "invalid name:   "),
        (
            b"[]",
            "invalid JSON: json: cannot unmarshal array into Go value of type "
            "network.CreateRequest",
        ),
        (
            b'"web"',
            "invalid JSON: json: cannot unmarshal string into Go value of type "
            "network.CreateRequest",
        ),
        (
            b'{"Name": 5}',
            "invalid JSON: json: cannot unmarshal number into Go struct field "
            "CreateRequest.Name of type string",
        ),
    ],
)
def test_create_refuses_a_body_without_a_name(
    engine: FakeNetworkEngine, raw: bytes, message: str
) -> None:
    async def body(c: TestClient) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        return await answer(await c.post("/networks/create", data=raw, headers=headers))

    assert run(engine, body) == (400, {"message": message})
    assert engine.calls == []


def test_create_bad_json_is_400(engine: FakeNetworkEngine) -> None:
    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.post("/networks/create", data=b"{invalid json"))

    status, data = run(engine, body)
    assert status == 400 and data["message"].startswith("invalid JSON: ")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.AlreadyExists("network with name web already exists"), 409),
        (errors.PermissionDenied("bridge is a pre-defined network and cannot be created"), 403),
        (errors.InvalidArgument("invalid subnet 300.0.0.0/8"), 400),
        (errors.NotFound('plugin "macvlan" not found'), 404),
    ],
)
def test_create_errors_keep_their_class_status(
    engine: FakeNetworkEngine, error: Exception, status: int
) -> None:
    engine.fail["network_create"] = error

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.post("/networks/create", json={"Name": "web"}))

    assert run(engine, body) == (status, {"message": str(error)})


def test_connect_and_disconnect(engine: FakeNetworkEngine) -> None:
    endpoint = {"IPAMConfig": {"IPv4Address": "10.9.0.7"}, "Aliases": ["db"]}

    async def body(c: TestClient) -> list[Any]:
        out = []
        for path, payload in [
            ("/networks/web/connect", {"Container": "c1", "EndpointConfig": endpoint}),
            ("/networks/web/connect", {"Container": "c2"}),
            ("/networks/web/disconnect", {"Container": "c1", "Force": True}),
            ("/networks/web/disconnect", {"Container": "c2"}),
        ]:
            r = await c.post(path, json=payload)
            out.append((r.status, await r.read()))
        return out

    assert run(engine, body) == [(200, b"")] * 4
    assert engine.calls == [
        ("network_connect", ("web", "c1", endpoint), {}),
        ("network_connect", ("web", "c2", None), {}),
        ("network_disconnect", ("web", "c1"), {"force": True}),
        ("network_disconnect", ("web", "c2"), {"force": False}),
    ]


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        ("connect", b"", 'invalid name or ID supplied: ""'),
        ("disconnect", b'{"Force": true}', 'invalid name or ID supplied: ""'),
        (
            "connect",
            b'{"Container": "c1", "EndpointConfig": []}',
            "invalid JSON: json: cannot unmarshal array into Go struct field "
            "ConnectOptions.EndpointConfig of type network.EndpointSettings",
        ),
        (
            "disconnect",
            b'{"Container": "c1", "Force": "yes"}',
            "invalid JSON: json: cannot unmarshal string into Go struct field "
            "DisconnectOptions.Force of type bool",
        ),
        (
            "disconnect",
            b"[1]",
            "invalid JSON: json: cannot unmarshal array into Go value of type "
            "network.DisconnectOptions",
        ),
    ],
)
def test_connect_bodies_checked_as_dockerd(
    engine: FakeNetworkEngine, path: str, raw: bytes, message: str
) -> None:
    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.post(f"/networks/web/{path}", data=raw))

    assert run(engine, body) == (400, {"message": message})
    assert engine.calls == []


def test_connect_to_a_missing_container_is_404(engine: FakeNetworkEngine) -> None:
    engine.fail["network_connect"] = errors.NotFound("No such container: ghost")

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.post("/networks/web/connect", json={"Container": "ghost"}))

    assert run(engine, body) == (404, {"message": "No such container: ghost"})


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, 204),
        (errors.NotFound("network nope not found"), 404),
        (errors.PermissionDenied("bridge is a pre-defined network and cannot be removed"), 403),
        # active endpoints: dockerd's libnetwork error is Forbidden, whatever our class
        (errors.Conflict("error while removing network: network web has active endpoints"), 403),
    ],
)
def test_remove(engine: FakeNetworkEngine, error: Exception | None, status: int) -> None:
    if error is not None:
        engine.fail["network_remove"] = error

    async def body(c: TestClient) -> tuple[int, Any]:
        return await answer(await c.delete("/v1.44/networks/web"))

    expected = None if error is None else {"message": str(error)}
    assert run(engine, body) == (status, expected)
    assert engine.calls == [("network_remove", ("web",), {})]


def test_prune_filters(engine: FakeNetworkEngine) -> None:
    good = json.dumps({"label!": ["keep"], "until": ["24h"], "label": ["a"]})

    async def body(c: TestClient) -> list[Any]:
        return [
            await answer(await c.post("/networks/prune")),
            await answer(await c.post("/networks/prune", params={"filters": good})),
            await answer(await c.post("/networks/prune", params={"filters": '{"driver":["x"]}'})),
        ]

    assert run(engine, body) == [
        (200, {"NetworksDeleted": ["old"]}),
        (200, {"NetworksDeleted": ["old"]}),
        (400, {"message": "invalid filter 'driver'"}),
    ]
    assert [c[1][0] for c in engine.calls] == [
        None,
        {"label!": ["keep"], "until": ["24h"], "label": ["a"]},
    ]


_GO_BOOLS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True}
_GO_BOOLS |= {"0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}


@given(st.text(max_size=6) | st.sampled_from(sorted(_GO_BOOLS)))
def test_go_bool_is_strconv_parsebool(text: str) -> None:
    if text in _GO_BOOLS:
        assert go_bool(text, "verbose") is _GO_BOOLS[text]
    else:
        with pytest.raises(BadRequest, match=r"strconv\.ParseBool"):
            go_bool(text, "verbose")


@given(st.dictionaries(st.text(max_size=8) | st.sampled_from(sorted(LIST_FILTERS)), st.just([])))
def test_check_filters_accepts_exactly_the_known_keys(filters: dict[str, list[str]]) -> None:
    unknown = [key for key in filters if key not in LIST_FILTERS]
    if unknown:
        with pytest.raises(BadRequest) as caught:
            check_filters(filters, LIST_FILTERS)
        assert str(caught.value) == f"invalid filter '{unknown[0]}'"
    else:
        check_filters(filters, LIST_FILTERS)
