"""Volume routes: create, list, inspect, remove, prune."""

from __future__ import annotations

from aiohttp import web

from portside.api.errors import BadRequest
from portside.api.params import parse_filters, qbool
from portside.api.server import call, engine_of, json_body, json_response


async def list_(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters")) or None
    return json_response(await call(request, engine_of(request).volume_list, filters))


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, {}) or {}
    if not isinstance(body, dict):
        raise BadRequest("invalid JSON: the body must be an object")
    result = await call(
        request,
        engine_of(request).volume_create,
        body.get("Name") or None,
        body.get("Driver") or "local",
        body.get("DriverOpts") or None,
        body.get("Labels") or None,
    )
    return json_response(result, status=201)


async def inspect(request: web.Request) -> web.Response:
    return json_response(
        await call(request, engine_of(request).volume_inspect, request.match_info["name"])
    )


async def remove(request: web.Request) -> web.Response:
    force = qbool(request.query, "force")
    await call(request, engine_of(request).volume_remove, request.match_info["name"], force=force)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters")) or None
    return json_response(await call(request, engine_of(request).volumes_prune, filters))


ROUTES = [
    ("GET", "/volumes", list_),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", remove),
]
