"""The aiohttp application serving the Docker Engine API over an Engine.

Every route is registered twice, unversioned and under ``/v{version}``; a middleware
refuses versions outside 1.41-1.50 with Docker's message. Engine calls are
synchronous: short ones go through the loop's executor, blocking iterators
(logs follow, events, stats, exports) are drained by a dedicated thread.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aiohttp import web

from portside import __version__
from portside.api.errors import UnsupportedVersion, error_middleware

API_VERSION = "1.50"
MIN_API_VERSION = "1.41"
ENGINE_KEY = web.AppKey("engine", object)

_SENTINEL = object()


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def check_version(version: str) -> None:
    """Refuse an API version outside the supported range, as Docker does."""
    try:
        wanted = _vtuple(version)
    except ValueError as exc:
        raise UnsupportedVersion(f"invalid API version {version!r}") from exc
    if wanted < _vtuple(MIN_API_VERSION):
        raise UnsupportedVersion(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if wanted > _vtuple(API_VERSION):
        raise UnsupportedVersion(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )


def api_version(request: web.Request) -> tuple[int, ...]:
    """The version the request speaks (the path's, or the newest)."""
    return _vtuple(request.match_info.get("version") or API_VERSION)


@web.middleware
async def version_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version is not None:
        check_version(version)
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Api-Version", API_VERSION)
        response.headers.setdefault("Server", f"Portside/{__version__} (linux)")
        response.headers.setdefault("Docker-Experimental", "false")
        response.headers.setdefault("Ostype", "linux")
    return response


def engine_of(request: web.Request) -> Any:
    return request.app[ENGINE_KEY]


async def call(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run a synchronous Engine method off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


async def call_blocking(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run a call that may block for long (wait) in its own thread, not the pool."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def done(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def run() -> None:
        try:
            value = fn(*args, **kw)
        except BaseException as exc:  # handed to the loop, re-raised there
            loop.call_soon_threadsafe(done, False, exc)
        else:
            loop.call_soon_threadsafe(done, True, value)

    _WAITERS.submit(run)
    return await fut


class _Waiters:
    """Daemon threads for calls that may block for long (a wait that never ends must
    not hold up the daemon's exit, as an executor's threads would), reused while
    idle: a thread costs ~0.1 ms to start, and every ``run`` makes a wait."""

    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that thread is spoken for
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name="portside-api-wait", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                continue  # a job was promised to an idle thread: stay for it
            job()
            with self._lock:
                self._idle += 1


_WAITERS = _Waiters()


async def iterate_in_thread(
    produce: Callable[[], Iterator[Any]], *, maxsize: int = 16
) -> AsyncIterator[Any]:
    """Drain a blocking iterator in a dedicated thread, handing items to the loop.

    The producer stops (and closes its iterator) at its next item once the consumer
    is gone; an iterator blocked forever keeps only its thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item: Any) -> bool:
        if stop.is_set():
            return False
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except (RuntimeError, asyncio.CancelledError):  # loop closed
            return False
        return not stop.is_set()

    def run() -> None:
        it: Iterator[Any] | None = None
        try:
            it = produce()
            for item in it:
                if not put(item):
                    break
        except BaseException as exc:  # handed to the consumer
            put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # closing is best effort
                    pass
            put(_SENTINEL)

    threading.Thread(target=run, name="portside-api-stream", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _SENTINEL:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class BodyReader:
    """A blocking, file-like view of a request body for Engine calls run in a thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        coro = self._content.read(n if n is not None and n >= 0 else -1)
        data = asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        self.count += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


async def json_body(request: web.Request, default: Any = None) -> Any:
    """The request's JSON body; an empty body gives ``default``."""
    from portside.api.errors import BadRequest

    raw = await request.read()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc


def json_response(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data).encode() + b"\n"
    return web.Response(status=status, body=body, content_type="application/json")


async def start_stream(
    request: web.Request, content_type: str, status: int = 200
) -> web.StreamResponse:
    """Send the headers of a streamed response now (clients wait for them)."""
    resp = web.StreamResponse(status=status)
    resp.content_type = content_type
    resp.headers["Api-Version"] = API_VERSION
    resp.headers["Server"] = f"Portside/{__version__} (linux)"
    writer = await resp.prepare(request)
    send = getattr(writer, "send_headers", None)
    if send is not None:
        send()
    return resp


Route = tuple[str, str, Callable[[web.Request], Any]]


def create_app(engine: Any) -> web.Application:
    """The Docker Engine API over ``engine`` (the Engine facade or a fake)."""
    from portside.api import (
        routes_containers,
        routes_exec,
        routes_images,
        routes_networks,
        routes_system,
        routes_volumes,
    )

    app = web.Application(
        middlewares=[error_middleware, version_middleware], client_max_size=1 << 40
    )
    app[ENGINE_KEY] = engine
    routes: list[Route] = []
    for module in (
        routes_system,
        routes_containers,
        routes_exec,
        routes_images,
        routes_volumes,
        routes_networks,
    ):
        routes.extend(module.ROUTES)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{version:[0-9]+[.][0-9]+}" + path, handler)
    return app
