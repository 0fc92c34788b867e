"""Image routes: list, inspect, history, tag, delete, prune, save, load, import, commit.

Pull and push come with the registry client; ``/images/create?fromImage=`` answers 501.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from portside.api.errors import BadRequest, NotImplementedYet
from portside.api.params import parse_filters, qbool
from portside.api.routes_containers import stream_bytes
from portside.api.server import (
    BodyReader,
    call,
    engine_of,
    json_body,
    json_response,
    start_stream,
)


def _name(request: web.Request) -> str:
    return request.match_info["name"]


async def list_(request: web.Request) -> web.Response:
    q = request.query
    result = await call(
        request,
        engine_of(request).image_list,
        all=qbool(q, "all"),
        filters=parse_filters(q.get("filters")) or None,
        digests=qbool(q, "digests"),
    )
    return json_response(result)


async def inspect(request: web.Request) -> web.Response:
    return json_response(await call(request, engine_of(request).image_inspect, _name(request)))


async def history(request: web.Request) -> web.Response:
    return json_response(await call(request, engine_of(request).image_history, _name(request)))


async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    if not repo:
        raise BadRequest("missing parameter: repo")
    tag_ = request.query.get("tag") or None
    await call(request, engine_of(request).image_tag, _name(request), repo, tag_)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    q = request.query
    result = await call(
        request,
        engine_of(request).image_remove,
        _name(request),
        force=qbool(q, "force"),
        noprune=qbool(q, "noprune"),
    )
    return json_response(result)


async def prune(request: web.Request) -> web.Response:
    filters = parse_filters(request.query.get("filters")) or None
    return json_response(await call(request, engine_of(request).images_prune, filters))


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [_name(request)])


async def save_many(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise BadRequest("missing parameter: names")
    return await _save(request, names)


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    chunks = await call(request, engine_of(request).images_save, names)
    return await stream_bytes(request, chunks, "application/x-tar")


async def load(request: web.Request) -> web.Response:
    quiet = qbool(request.query, "quiet")
    reader = BodyReader(request, asyncio.get_running_loop())
    lines = await call(request, engine_of(request).images_load, reader, quiet=quiet)
    body = b"".join(json.dumps({"stream": line + "\n"}).encode() + b"\n" for line in lines)
    return web.Response(status=200, body=body, content_type="application/json")


async def create(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q.get("fromImage"):
        raise NotImplementedYet(
            f"pulling {q['fromImage']!r} is not supported yet: load the image with `load`"
        )
    source = q.get("fromSrc", "")
    if source != "-":
        raise NotImplementedYet(f"importing from {source!r} is not supported: send the tar body")
    return await _import(request)


def _message(status: str, **extra: object) -> bytes:
    return json.dumps({"status": status, **extra}).encode() + b"\r\n"


async def _import(request: web.Request) -> web.StreamResponse:
    q = request.query
    changes = [c for c in q.getall("changes", []) if c]
    reader = BodyReader(request, asyncio.get_running_loop())
    engine = engine_of(request)
    task = asyncio.ensure_future(
        call(
            request,
            engine.image_import,
            reader,
            repo=q.get("repo") or None,
            tag=q.get("tag") or None,
            changes=changes,
            message=q.get("message", ""),
        )
    )
    resp = await start_stream(request, "application/json")
    shown = -1
    while not task.done():
        await asyncio.wait({task}, timeout=0.2)
        if reader.count != shown:
            shown = reader.count
            progress = {"current": shown}
            await resp.write(_message("Importing", progressDetail=progress, id=""))
    try:
        image_id = task.result()
    except Exception as exc:  # headers are out: a JSON error message the CLI shows
        error = json.dumps({"errorDetail": {"message": str(exc)}, "error": str(exc)})
        await resp.write(error.encode() + b"\r\n")
    else:
        await resp.write(_message(image_id))
    await resp.write_eof()
    return resp


async def commit(request: web.Request) -> web.Response:
    q = request.query
    container = q.get("container", "")
    if not container:
        raise BadRequest("missing parameter: container")
    config = await json_body(request, None)
    image_id = await call(
        request,
        engine_of(request).commit,
        container,
        repo=q.get("repo") or None,
        tag=q.get("tag") or None,
        comment=q.get("comment", ""),
        author=q.get("author", ""),
        pause=qbool(q, "pause", True),
        changes=[c for c in q.getall("changes", []) if c],
        config=config or None,
    )
    return json_response({"Id": image_id}, status=201)


_I = "/images/{name:.+}"
ROUTES = [
    ("GET", "/images/json", list_),
    ("POST", "/images/create", create),
    ("POST", "/images/load", load),
    ("POST", "/images/prune", prune),
    ("GET", "/images/get", save_many),
    ("POST", "/commit", commit),
    ("GET", _I + "/json", inspect),
    ("GET", _I + "/history", history),
    ("GET", _I + "/get", save_one),
    ("POST", _I + "/tag", tag),
    ("DELETE", _I, remove),
]
