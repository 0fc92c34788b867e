"""Exec routes: create, start (hijacked), inspect, resize."""

from __future__ import annotations

from aiohttp import web

from portside.api.errors import BadRequest
from portside.api.hijack import hijack, stream_type
from portside.api.params import qint
from portside.api.server import call, engine_of, json_body, json_response


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, {})
    if not isinstance(body, dict):
        raise BadRequest("invalid JSON: the body must be an object")
    if not body.get("Cmd"):
        raise BadRequest("No exec command specified")
    result = await call(request, engine_of(request).exec_create, request.match_info["id"], body)
    return json_response(result, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, {}) or {}
    detach, tty = bool(body.get("Detach")), bool(body.get("Tty"))
    engine = engine_of(request)
    result = await call(
        request, engine.exec_start, request.match_info["id"], detach=detach, tty=tty
    )
    if detach or result is None:
        return web.Response(status=200, content_type="application/json")
    is_tty, sock = result
    console = body.get("ConsoleSize")
    if is_tty and isinstance(console, list) and len(console) == 2 and all(console):
        await call(request, engine.exec_resize, request.match_info["id"], console[0], console[1])
    return await hijack(request, sock, content_type=stream_type(request, is_tty))


async def inspect(request: web.Request) -> web.Response:
    return json_response(
        await call(request, engine_of(request).exec_inspect, request.match_info["id"])
    )


async def resize(request: web.Request) -> web.Response:
    h, w = qint(request.query, "h", 0), qint(request.query, "w", 0)
    await call(request, engine_of(request).exec_resize, request.match_info["id"], h, w)
    return web.Response(status=200)


ROUTES = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("GET", "/exec/{id}/json", inspect),
    ("POST", "/exec/{id}/resize", resize),
]
