"""Container routes: create, lifecycle, inspect/list, logs, attach, wait, archive, prune."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

from aiohttp import web

from portside.api.errors import BadRequest
from portside.api.hijack import bridge_websocket, frame, hijack, stream_type
from portside.api.params import parse_filters, parse_timestamp, qbool, qint, split_create_body
from portside.api.server import (
    BodyReader,
    api_version,
    call,
    call_blocking,
    engine_of,
    iterate_in_thread,
    json_body,
    json_response,
    start_stream,
)
from portside.text import is_number


def _ref(request: web.Request) -> str:
    return request.match_info["id"]


async def create(request: web.Request) -> web.Response:
    body = await json_body(request, {})
    config, host_config, networking = split_create_body(body)
    name = request.query.get("name") or None
    platform = request.query.get("platform")
    if platform and platform.split("/")[0] not in ("linux", ""):
        raise BadRequest(f"unsupported platform {platform!r}: only linux containers run here")
    engine = engine_of(request)
    result = await call(request, engine.container_create, name, config, host_config, networking)
    result.setdefault("Warnings", [])
    return json_response(result, status=201)


async def list_(request: web.Request) -> web.Response:
    q = request.query
    result = await call(
        request,
        engine_of(request).container_list,
        all=qbool(q, "all"),
        limit=qint(q, "limit", -1),
        size=qbool(q, "size"),
        filters=parse_filters(q.get("filters")) or None,
    )
    return json_response(result)


async def inspect(request: web.Request) -> web.Response:
    size = qbool(request.query, "size")
    return json_response(
        await call(request, engine_of(request).container_inspect, _ref(request), size=size)
    )


async def _no_content(
    request: web.Request, fn: object, *args: object, **kw: object
) -> web.Response:
    await call(request, fn, *args, **kw)  # type: ignore[arg-type]
    return web.Response(status=204)


async def start(request: web.Request) -> web.Response:
    return await _no_content(request, engine_of(request).container_start, _ref(request))


def _stop_args(request: web.Request) -> dict[str, object]:
    return {"timeout": qint(request.query, "t"), "signal": request.query.get("signal") or None}


async def stop(request: web.Request) -> web.Response:
    engine = engine_of(request)
    return await _no_content(request, engine.container_stop, _ref(request), **_stop_args(request))


async def restart(request: web.Request) -> web.Response:
    engine = engine_of(request)
    return await _no_content(
        request, engine.container_restart, _ref(request), **_stop_args(request)
    )


async def kill(request: web.Request) -> web.Response:
    signal = request.query.get("signal") or "SIGKILL"
    return await _no_content(request, engine_of(request).container_kill, _ref(request), signal)


async def pause(request: web.Request) -> web.Response:
    return await _no_content(request, engine_of(request).container_pause, _ref(request))


async def unpause(request: web.Request) -> web.Response:
    return await _no_content(request, engine_of(request).container_unpause, _ref(request))


async def remove(request: web.Request) -> web.Response:
    q = request.query
    if qbool(q, "link"):
        raise BadRequest("links are not supported")
    engine = engine_of(request)
    return await _no_content(
        request,
        engine.container_remove,
        _ref(request),
        force=qbool(q, "force"),
        volumes=qbool(q, "v"),
    )


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise BadRequest("missing parameter: name")
    return await _no_content(request, engine_of(request).container_rename, _ref(request), name)


async def update(request: web.Request) -> web.Response:
    body = await json_body(request, {})
    result = await call(request, engine_of(request).container_update, _ref(request), body)
    return json_response(result or {"Warnings": []})


async def resize(request: web.Request) -> web.Response:
    h, w = qint(request.query, "h", 0), qint(request.query, "w", 0)
    await call(request, engine_of(request).container_resize, _ref(request), h, w)
    return web.Response(status=200)


async def changes(request: web.Request) -> web.Response:
    return json_response(await call(request, engine_of(request).container_changes, _ref(request)))


async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args") or "-ef"
    engine = engine_of(request)
    return json_response(await call(request, engine.container_top, _ref(request), ps_args))


async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise BadRequest(f"invalid condition: {condition!r}")
    engine = engine_of(request)
    ref = _ref(request)
    # registered before any header goes out (docker run starts the container once it
    # sees them); an unknown container is a 404 here
    waiter = await call(request, engine.container_waiter, ref, condition)
    resp = await start_stream(request, "application/json")
    try:
        result = await call_blocking(waiter)
    except Exception as exc:  # headers are out: report in the body, as Docker does
        result = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    body = {"Error": result.get("Error"), "StatusCode": result.get("StatusCode", 0)}
    await resp.write(json.dumps(body).encode() + b"\n")
    await resp.write_eof()
    return resp


async def _write_chunks(request: web.Request, tty: bool, chunks: object) -> web.StreamResponse:
    resp = await start_stream(request, stream_type(request, tty))
    try:
        async for item in iterate_in_thread(lambda: chunks):  # type: ignore[arg-type,return-value]
            if item is None:  # an idle follower's heartbeat: stop if the client is gone
                if request.transport is None or request.transport.is_closing():
                    return resp
                continue
            stream, data = item
            await resp.write(data if tty else frame(stream, data))
    except ConnectionResetError:
        return resp
    await resp.write_eof()
    return resp


async def logs(request: web.Request) -> web.StreamResponse:
    q = request.query
    stdout, stderr = qbool(q, "stdout"), qbool(q, "stderr")
    if not (stdout or stderr):
        raise BadRequest("Bad parameters: you must choose at least one stream")
    tail = q.get("tail") or "all"
    if tail != "all" and not is_number(tail.lstrip("-")):
        raise BadRequest(f"invalid tail value {tail!r}")
    tty, chunks = await call(
        request,
        engine_of(request).container_logs,
        _ref(request),
        follow=qbool(q, "follow"),
        stdout=stdout,
        stderr=stderr,
        since=parse_timestamp(q.get("since")) or 0.0,
        until=parse_timestamp(q.get("until")) or 0.0,
        timestamps=qbool(q, "timestamps"),
        tail=tail,
    )
    return await _write_chunks(request, tty, chunks)


async def _attach(
    request: web.Request, *, every_stream: bool = False
) -> tuple[bool, socket.socket]:
    """The engine's attach for the query: (tty, socket); ``every_stream``: stdin, stdout
    and stderr whatever the query says."""
    q = request.query
    streams = {name: every_stream or qbool(q, name) for name in ("stdin", "stdout", "stderr")}
    return await call(
        request,
        engine_of(request).container_attach,
        _ref(request),
        **streams,
        stream=qbool(q, "stream"),
        logs=qbool(q, "logs"),
        detach_keys=q.get("detachKeys") or None,
    )


async def attach(request: web.Request) -> web.StreamResponse:
    tty, sock = await _attach(request)
    return await hijack(request, sock, content_type=stream_type(request, tty))


async def attach_ws(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/attach/ws``: attach over a websocket, as Docker's: binary
    messages, output not multiplexed; before API 1.42 all three streams are attached
    whatever the query says."""
    tty, sock = await _attach(request, every_stream=api_version(request) < (1, 42))
    ws = web.WebSocketResponse(compress=False)
    try:
        await ws.prepare(request)
    except BaseException:
        sock.close()
        raise
    await bridge_websocket(ws, sock, multiplexed=not tty)
    return ws


async def stats(request: web.Request) -> web.StreamResponse:
    q = request.query
    stream = qbool(q, "stream", True) and not qbool(q, "one-shot")
    items = await call(request, engine_of(request).container_stats, _ref(request), stream=stream)
    if not stream:
        first = await call(request, next, iter(items), None)
        return json_response(first if first is not None else {})
    resp = await start_stream(request, "application/json")
    try:
        async for item in iterate_in_thread(lambda: items):
            await resp.write(json.dumps(item).encode() + b"\n")
    except ConnectionResetError:
        return resp
    await resp.write_eof()
    return resp


async def export(request: web.Request) -> web.StreamResponse:
    chunks = await call(request, engine_of(request).container_export, _ref(request))
    return await stream_bytes(request, chunks, "application/x-tar")


async def stream_bytes(
    request: web.Request, chunks: object, content_type: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream a blocking iterator of bytes as the response body."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = content_type
    await resp.prepare(request)
    try:
        async for data in iterate_in_thread(lambda: chunks):  # type: ignore[arg-type,return-value]
            await resp.write(data)
    except ConnectionResetError:
        return resp
    await resp.write_eof()
    return resp


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("missing parameter: path")
    return path


def _stat_header(stat: dict) -> dict[str, str]:
    raw = json.dumps(stat).encode()
    return {"X-Docker-Container-Path-Stat": base64.b64encode(raw).decode()}


async def archive_head(request: web.Request) -> web.Response:
    stat = await call(request, engine_of(request).archive_head, _ref(request), _path(request))
    return web.Response(status=200, headers=_stat_header(stat))


async def archive_get(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    stat, chunks = await call(request, engine.archive_get, _ref(request), _path(request))
    return await stream_bytes(request, chunks, "application/x-tar", _stat_header(stat))


async def archive_put(request: web.Request) -> web.Response:
    q = request.query
    reader = BodyReader(request, asyncio.get_running_loop())
    await call(
        request,
        engine_of(request).archive_put,
        _ref(request),
        _path(request),
        reader,
        no_overwrite_dir_non_dir=qbool(q, "noOverwriteDirNonDir"),
        copy_uid_gid=qbool(q, "copyUIDGID"),
    )
    return web.Response(status=200)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters")) or None
    return json_response(await call(request, engine_of(request).containers_prune, filters))


_C = "/containers/{id}"
ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_),
    ("POST", "/containers/prune", prune),
    ("GET", _C + "/json", inspect),
    ("POST", _C + "/start", start),
    ("POST", _C + "/stop", stop),
    ("POST", _C + "/restart", restart),
    ("POST", _C + "/kill", kill),
    ("POST", _C + "/pause", pause),
    ("POST", _C + "/unpause", unpause),
    ("DELETE", _C, remove),
    ("POST", _C + "/rename", rename),
    ("POST", _C + "/update", update),
    ("POST", _C + "/resize", resize),
    ("GET", _C + "/changes", changes),
    ("GET", _C + "/top", top),
    ("POST", _C + "/wait", wait),
    ("GET", _C + "/logs", logs),
    ("POST", _C + "/attach", attach),
    ("GET", _C + "/attach/ws", attach_ws),
    ("GET", _C + "/stats", stats),
    ("GET", _C + "/export", export),
    ("HEAD", _C + "/archive", archive_head),
    ("GET", _C + "/archive", archive_get),
    ("PUT", _C + "/archive", archive_put),
]
