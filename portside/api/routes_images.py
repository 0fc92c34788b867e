"""Image routes: list, inspect, history, tag, delete, prune, save, load, import, commit,
pull (``/images/create?fromImage=``), push, and ``/distribution/{name}/json``.

Pull and push stream Docker's JSON progress messages as moby does: an error raised
before the first message becomes an ordinary HTTP error (status from its class),
one raised later an ``{"errorDetail": …, "error": …}`` line of a 200 answer.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from portside.api.errors import BadRequest, NotImplementedYet, log
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
from portside.errors import PortsideError


class ClientGone(PortsideError):
    """The client of a streamed pull or push disconnected: the call is abandoned."""


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
        return await _pull(request)
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


# --- pull and push -----------------------------------------------------------------------


def _auth(request: web.Request, *, strict: bool) -> object:
    """The request's X-Registry-Auth credentials (anonymous when absent). A pull
    ignores a malformed header, as moby; a push (``strict``) refuses it."""
    from portside.distribution.config import AuthConfig
    from portside.distribution.credentials import decode_registry_auth
    from portside.errors import InvalidArgument

    try:
        return decode_registry_auth(request.headers.get("X-Registry-Auth"))
    except InvalidArgument:
        if strict:
            raise
        return AuthConfig()


class _Done:
    """The end of a streamed engine call: its error, if any."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def _encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\r\n"


def _error_line(exc: BaseException) -> bytes:
    text = str(exc) or type(exc).__name__
    return _encode({"errorDetail": {"message": text}, "error": text})


#: how long a streamed call's messages gather before the next write (seconds): a
#: pull of hundreds of layers sends thousands; one write (and one wake-up of the
#: event loop and the client) each would compete with the pull for the CPU
FLUSH_INTERVAL = 0.025


class _Outbox:
    """Messages handed over from a worker thread to the event loop: the loop is woken
    once per batch, not once per message."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[dict | _Done] = []
        self.ready = asyncio.Event()  # the loop's: items wait
        self.finished = asyncio.Event()  # the loop's: the _Done is among them
        self.woken = False  # a wake-up is on its way
        self.gone = threading.Event()  # the loop is closed: nobody listens any more

    def post(self, item: dict | _Done) -> None:
        """From any thread."""
        last = isinstance(item, _Done)
        with self.lock:
            self.items.append(item)
            if self.woken and not last:
                return
            self.woken = True
        try:
            self.loop.call_soon_threadsafe(self._wake, last)
        except RuntimeError:
            self.gone.set()

    def _wake(self, last: bool) -> None:
        self.ready.set()
        if last:
            self.finished.set()

    async def take(self) -> list[dict | _Done]:
        """What has been posted (at least one item; waits for it)."""
        await self.ready.wait()
        with self.lock:
            items, self.items, self.woken = self.items, [], False
            self.ready.clear()
        return items

    async def gather(self, seconds: float) -> None:
        """Let messages gather for ``seconds``, unless the last one comes first."""
        if not self.finished.is_set():
            try:
                await asyncio.wait_for(self.finished.wait(), seconds)
            except TimeoutError:
                pass


async def stream_progress(request: web.Request, run: object) -> web.StreamResponse:
    """Run ``run(progress)`` (a blocking engine call) in its own thread and stream the
    messages it hands ``progress`` (from any thread), a batch per write at most every
    :data:`FLUSH_INTERVAL`. The headers wait for the first message, so an early error
    is an HTTP error. When the client goes away, the next ``progress`` call raises,
    which ends the call."""
    outbox = _Outbox(asyncio.get_running_loop())

    def progress(message: dict) -> None:
        if outbox.gone.is_set():
            raise ClientGone("the client went away")
        outbox.post(message)

    def target() -> None:
        try:
            run(progress)  # type: ignore[operator]
        except BaseException as exc:  # handed to the loop
            outbox.post(_Done(exc))
        else:
            outbox.post(_Done(None))

    threading.Thread(target=target, name="portside-api-registry", daemon=True).start()
    try:
        items = await outbox.take()
        if isinstance(items[0], _Done) and items[0].error is not None:
            raise items[0].error
        resp = await start_stream(request, "application/json")
        while True:
            done = next((i for i in items if isinstance(i, _Done)), None)
            batch = [_encode(i) for i in items if not isinstance(i, _Done)]
            if batch:
                await resp.write(b"".join(batch))
            if done is not None:
                break
            await outbox.gather(FLUSH_INTERVAL)
            items = await outbox.take()
        if done.error is not None:
            if not isinstance(done.error, PortsideError):
                log.error("streamed call failed", exc_info=done.error)
            await resp.write(_error_line(done.error))
        await resp.write_eof()
        return resp
    finally:
        outbox.gone.set()


async def _pull(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=NAME[&tag=TAG|DIGEST][&platform=os/arch]``;
    no tag in either: every tag (moby's ``pull -a``)."""
    q = request.query
    engine = engine_of(request)
    tag = q.get("tag") or None
    name = q["fromImage"]
    auth = _auth(request, strict=False)

    def run(progress: object) -> None:
        engine.image_pull(
            name,
            tag=tag,
            platform=q.get("platform") or None,
            auth=auth,
            all_tags=tag is None,
            progress=progress,
        )

    return await stream_progress(request, run)


async def push(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push[?tag=TAG]``; no tag: every local tag of the
    repository (``docker push -a``). Credentials: X-Registry-Auth, or (old clients)
    an AuthConfig JSON body; neither is anonymous."""
    engine = engine_of(request)
    tag = request.query.get("tag") or None
    name = _name(request)
    auth = _auth(request, strict=True)
    if request.headers.get("X-Registry-Auth") is None:
        body = await json_body(request, None)
        if isinstance(body, dict):
            auth = auth_from_body(body)

    def run(progress: object) -> None:
        engine.image_push(name, tag=tag, auth=auth, all_tags=tag is None, progress=progress)

    return await stream_progress(request, run)


def auth_from_body(body: dict) -> object:
    """An AuthConfig JSON body (``/auth``; a push without X-Registry-Auth): Docker's
    field names, any case, as Go decodes them."""
    from portside.distribution.config import AuthConfig

    fields = {
        "username": "username",
        "password": "password",
        "serveraddress": "server",
        "identitytoken": "identity_token",
        "registrytoken": "registry_token",
    }
    values: dict[str, str] = {}
    for key, value in body.items():
        attr = fields.get(str(key).lower())
        if attr is None or value is None:
            continue
        if not isinstance(value, str):
            raise BadRequest(f"invalid auth config: {key} is not a string")
        values[attr] = value
    return AuthConfig(**values)


async def distribution_inspect(request: web.Request) -> web.Response:
    """``GET /distribution/{name}/json``: the registry's descriptor and platforms."""
    engine = engine_of(request)
    auth = _auth(request, strict=False)
    result = await call(request, engine.distribution_inspect, _name(request), auth=auth)
    return json_response(result)


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
    ("POST", _I + "/push", push),
    ("GET", "/distribution/{name:.+}/json", distribution_inspect),
    ("DELETE", _I, remove),
]
