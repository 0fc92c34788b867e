"""Network routes: list, inspect, create, connect, disconnect, remove, prune.

Translation only, as dockerd's network router: the filter keys each route accepts, the
body decoding (an empty body is the zero request; JSON that is not an object is a 400
naming Go's type), then one Engine call. The Engine returns Docker's JSON shapes.
"""

from __future__ import annotations

from aiohttp import web

from portside import errors
from portside.api.errors import BadRequest, error_response
from portside.api.params import parse_filters
from portside.api.server import call, engine_of, json_body, json_response

# dockerd's network.ValidateFilters and the prune's networksAcceptedFilters
LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"label", "label!", "until"})

_GO_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def check_filters(filters: dict[str, list[str]], accepted: frozenset[str]) -> None:
    """Refuse a filter key the route does not know, with dockerd's message."""
    for key in filters:
        if key not in accepted:
            raise BadRequest(f"invalid filter '{key}'")


def go_bool(value: str, what: str) -> bool:
    """Go's strconv.ParseBool, its error wrapped as dockerd wraps it."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise BadRequest(
        f'invalid value for {what}: {value}: strconv.ParseBool: parsing "{value}": invalid syntax'
    )


def go_type(value: object) -> str:
    """The JSON kind as Go's decoder names it in an unmarshal error."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


async def _object_body(request: web.Request, go_name: str) -> dict:
    """dockerd's ReadJSON into a struct: no body (or ``null``) is the zero value."""
    body = await json_body(request, {})
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest(
            f"invalid JSON: json: cannot unmarshal {go_type(body)} into Go value of type {go_name}"
        )
    return body


def _field(body: dict, key: str, kind: type, go_struct: str, go_kind: str) -> object:
    """``body[key]`` when it has the JSON kind the Go struct field wants (None if absent)."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise BadRequest(
        f"invalid JSON: json: cannot unmarshal {go_type(value)} into Go struct field "
        f"{go_struct}.{key} of type {go_kind}"
    )


def _container(body: dict, go_struct: str) -> str:
    container = _field(body, "Container", str, go_struct, "string")
    if not container:  # the daemon's GetContainer("")
        raise BadRequest('invalid name or ID supplied: ""')
    return str(container)


async def list_(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    check_filters(filters, LIST_FILTERS)
    result = await call(request, engine_of(request).network_list, filters or None)
    return json_response(result if result is not None else [])


async def inspect(request: web.Request) -> web.Response:
    raw = request.query.get("verbose", "")
    verbose = go_bool(raw, "verbose") if raw else False
    scope = request.query.get("scope", "")
    ref = request.match_info["id"]
    return json_response(
        await call(request, engine_of(request).network_inspect, ref, verbose=verbose, scope=scope)
    )


async def create(request: web.Request) -> web.Response:
    body = await _object_body(request, "network.CreateRequest")
    name = _field(body, "Name", str, "CreateRequest", "string") or ""
    if not str(name).strip():
        raise BadRequest(f"invalid name: {name}")
    result = await call(request, engine_of(request).network_create, body)
    return json_response(result, status=201)


async def connect(request: web.Request) -> web.Response:
    body = await _object_body(request, "network.ConnectOptions")
    container = _container(body, "ConnectOptions")
    endpoint = _field(body, "EndpointConfig", dict, "ConnectOptions", "network.EndpointSettings")
    ref = request.match_info["id"]
    await call(request, engine_of(request).network_connect, ref, container, endpoint or None)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await _object_body(request, "network.DisconnectOptions")
    container = _container(body, "DisconnectOptions")
    force = bool(_field(body, "Force", bool, "DisconnectOptions", "bool"))
    ref = request.match_info["id"]
    await call(request, engine_of(request).network_disconnect, ref, container, force=force)
    return web.Response(status=200)


async def remove(request: web.Request) -> web.Response:
    try:
        await call(request, engine_of(request).network_remove, request.match_info["id"])
    except errors.Conflict as exc:
        # dockerd answers a network with active endpoints 403 (libnetwork's
        # ActiveEndpointsError is Forbidden), not 409
        return error_response(exc, 403)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters"))
    check_filters(filters, PRUNE_FILTERS)
    return json_response(await call(request, engine_of(request).networks_prune, filters or None))


ROUTES = [
    ("GET", "/networks", list_),
    ("GET", "/networks/", list_),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    ("DELETE", "/networks/{id}", remove),
]
