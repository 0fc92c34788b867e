"""System routes: /_ping, /version, /info, /events, /system/df, /auth."""

from __future__ import annotations

import json
import time

from aiohttp import web

from portside import __version__
from portside.api.errors import BadRequest, error_response
from portside.api.params import parse_filters, parse_timestamp
from portside.api.server import (
    API_VERSION,
    MIN_API_VERSION,
    call,
    engine_of,
    iterate_in_thread,
    json_body,
    json_response,
    start_stream,
)
from portside.distribution.errors import RegistryUnauthorized


def _ping_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Builder-Version": "1",
        "Docker-Experimental": "false",
        "Ostype": "linux",
        "Server": f"Portside/{__version__} (linux)",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


async def ping(request: web.Request) -> web.Response:
    await call(request, engine_of(request).ping)
    if request.method == "HEAD":
        headers = _ping_headers() | {"Content-Type": "text/plain; charset=utf-8"}
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, text="OK", headers=_ping_headers())


async def version(request: web.Request) -> web.Response:
    data = dict(await call(request, engine_of(request).version))
    data.setdefault("ApiVersion", API_VERSION)
    data.setdefault("MinAPIVersion", MIN_API_VERSION)
    data.setdefault("Version", __version__)
    data.setdefault("Os", "linux")
    return json_response(data)


async def info(request: web.Request) -> web.Response:
    return json_response(await call(request, engine_of(request).info))


async def df(request: web.Request) -> web.Response:
    return json_response(await call(request, engine_of(request).df))


def _subscription_items(
    engine: object, since: float | None, until: float | None, filters: dict[str, list[str]]
) -> object:
    """A blocking iterator over the events bus; ends at ``until`` (if given)."""
    sub = engine.events.subscribe(since=since, until=until, filters=filters or None)  # type: ignore[attr-defined]

    def items():  # type: ignore[no-untyped-def]
        try:
            while True:
                if until is not None and time.time() >= until:
                    # drain what was already queued up to ``until``
                    event = sub.get(0)
                    if event is None:
                        return
                else:
                    event = sub.get(0.5)
                    if event is None:
                        yield None  # a heartbeat: lets the consumer notice a disconnect
                        continue
                if until is not None and _event_time(event) > until:
                    return
                yield event
        finally:
            sub.close()

    return items()


def _event_time(event: dict) -> float:
    nano = event.get("timeNano")
    if nano:
        return nano / 1e9
    return float(event.get("time", 0))


async def events(request: web.Request) -> web.StreamResponse:
    q = request.query
    since = parse_timestamp(q.get("since"))
    until = parse_timestamp(q.get("until"))
    filters = parse_filters(q.get("filters"))
    engine = engine_of(request)
    resp = await start_stream(request, "application/json")
    try:
        async for event in iterate_in_thread(
            lambda: _subscription_items(engine, since, until, filters)  # type: ignore[arg-type,return-value]
        ):
            if event is None:
                if request.transport is None or request.transport.is_closing():
                    break
                continue
            await resp.write(json.dumps(event).encode() + b"\n")
    except ConnectionResetError:
        return resp
    await resp.write_eof()
    return resp


async def auth(request: web.Request) -> web.Response:
    """``POST /auth`` (``docker login``): an AuthConfig body, checked against its
    registry; ``{"Status": "Login Succeeded", "IdentityToken": ""}``, else 401 (or the
    status of the failure's class) with the registry's message."""
    from portside.api.routes_images import auth_from_body

    body = await json_body(request, None)
    if not isinstance(body, dict):
        raise BadRequest("invalid auth config: want a JSON object")
    try:
        result = await call(request, engine_of(request).registry_login, auth_from_body(body))
    except RegistryUnauthorized as exc:  # moby's errdefs.Unauthorized: "login failed"
        return error_response(exc, 401)
    return json_response(result)


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/events", events),
    ("GET", "/system/df", df),
    ("POST", "/auth", auth),
]
