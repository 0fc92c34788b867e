"""The OCI distribution API (spec v1.1) over :class:`~portside.registry.storage.Storage`,
as an aiohttp application: ``make_app(config, storage, access, sink, extra_routes)``.

Every request under ``/v2/`` is authenticated and authorised through the
:class:`~portside.registry.interfaces.Access` it is given (the actions each route
needs: pull for reads, push for uploads and manifest PUTs, delete for DELETEs, pull on
the source too for a mount); what happened is published to the
:class:`~portside.registry.interfaces.EventSink` after it is committed: ``push`` (a
manifest), ``pull`` (a manifest GET), ``delete`` (a manifest, tag or blob), ``mount``
(a blob) and ``tag`` (a tag created or moved). Blob pushes and blob GETs publish
nothing (one event per layer would drown the hooks).

Blocking work (SQL, file I/O, hashing) runs in threads; blob bodies stream in batches
of about a MiB in both directions (GETs with sendfile), so memory stays flat whatever
the blob size. Errors are the spec's JSON bodies with its codes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid as uuidlib
from urllib.parse import urlencode

from aiohttp import web

from portside.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PortsideError,
    Unavailable,
)
from portside.oci import mediatypes as mt
from portside.registry.errors import (
    DigestInvalid,
    RangeInvalid,
    RegistryError,
    SizeInvalid,
    TooLarge,
    Unsupported,
)
from portside.registry.interfaces import AuthChallenge, NullSink, OpenAccess
from portside.registry.names import check_digest, check_name, is_digest
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from typing import Any

    from portside.registry.config import RegistryConfig
    from portside.registry.interfaces import Access, EventSink, Principal
    from portside.registry.storage import Storage, UploadWriter

__all__ = ["API_VERSION", "make_app"]

log = logging.getLogger("portside.registry")

API_VERSION = "registry/2.0"
#: bytes gathered from a request body before they are written (in a thread)
_BATCH = 1 << 20
#: smaller writes happen on the event loop: cheaper than a thread hop
_INLINE = 64 << 10
_ROUTES = [
    ("catalog", re.compile(r"_catalog")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/?")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
]
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")
_STATUS_OF = [
    (NotFound, 404),
    (InvalidArgument, 400),
    (FailedPrecondition, 400),
    (Conflict, 409),
    (Unavailable, 503),
]


def make_app(
    config: RegistryConfig,
    storage: Storage,
    access: Access,
    sink: EventSink,
    extra_routes: Iterable[tuple[str, str, Any]] = (),
) -> web.Application:
    """The registry's application: ``/v2/…`` plus ``extra_routes`` (method, path,
    handler), e.g. the token endpoint and the webhooks API."""
    api = _API(config, storage, access, sink)
    app = web.Application(middlewares=[_errors], client_max_size=config.max_manifest_size)
    app.router.add_route("GET", "/v2/", api.base)
    app.router.add_route("GET", "/v2", api.base)
    app.router.add_route("*", "/v2/{tail:.+}", api.dispatch)
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    return app


# --- errors ------------------------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    detail: object = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
    try:
        resp = await handler(request)
    except AuthChallenge as exc:
        headers = {"WWW-Authenticate": exc.www_authenticate} if exc.status == 401 else {}
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            headers["Retry-After"] = str(int(retry))
        resp = error_response(exc.status, exc.code, str(exc), None, headers)
    except RegistryError as exc:
        headers = getattr(exc, "headers", None)
        resp = error_response(exc.status, exc.code, str(exc), exc.detail, headers)
    except web.HTTPException as exc:
        exc.headers["Docker-Distribution-API-Version"] = API_VERSION
        raise
    except PortsideError as exc:
        resp = _portside_error(exc)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        resp = error_response(500, "UNKNOWN", "internal server error")
    resp.headers["Docker-Distribution-API-Version"] = API_VERSION
    return resp


def _portside_error(exc: PortsideError) -> web.Response:
    """Other errors (from an Access or EventSink, the database…), duck-typed for a
    ``code``/``status``/``retry_after`` of their own (a rate limit: 429)."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(int(retry))
    if isinstance(code, str) and isinstance(status, int):
        return error_response(status, code, str(exc), None, headers)
    for cls, mapped in _STATUS_OF:
        if isinstance(exc, cls):
            return error_response(
                mapped, "UNSUPPORTED" if mapped < 500 else "UNAVAILABLE", str(exc), None, headers
            )
    log.error("registry error: %s", exc)
    return error_response(500, "UNKNOWN", str(exc), None, headers)


# --- helpers -----------------------------------------------------------------------------


def _content_range(value: str | None) -> tuple[int, int] | tuple[None, None]:
    if value is None:
        return None, None
    found = _CONTENT_RANGE.fullmatch(value.strip())
    if found is None:
        raise RangeInvalid(f"invalid Content-Range {value[:100]!r}", -1)
    start, end = int(found.group(1)), int(found.group(2))
    if end < start:
        raise RangeInvalid(f"invalid Content-Range {value[:100]!r}", -1)
    return start, end


def _range_header(offset: int) -> str:
    """distribution's ``Range: 0-<last byte>`` ("0-0" when empty)."""
    return f"0-{max(offset - 1, 0)}"


def _page(request: web.Request, limit: int) -> tuple[int, str]:
    """``n`` (capped at ``limit``; the whole page when absent) and ``last``."""
    raw = request.query.get("n")
    if raw is None or raw == "":
        n = limit
    else:
        if not is_number(raw):
            raise Unsupported(f"invalid page size n={raw[:20]!r}", status=400)
        n = min(int(raw), limit)
    return n, request.query.get("last", "")


class _API:
    def __init__(
        self, config: RegistryConfig, storage: Storage, access: Access, sink: EventSink
    ) -> None:
        self.config = config
        self.storage = storage
        self.access = access
        self.sink = sink
        self.open = isinstance(access, OpenAccess)
        self.quiet = isinstance(sink, NullSink)
        self.instance = uuidlib.uuid4().hex
        self.handlers: dict[tuple[str, str], Callable[..., Awaitable[web.StreamResponse]]] = {
            ("catalog", "GET"): self.catalog,
            ("upload", "POST"): self.post_upload,
            ("upload", "PATCH"): self.patch_upload,
            ("upload", "PUT"): self.put_upload,
            ("upload", "GET"): self.get_upload,
            ("upload", "DELETE"): self.delete_upload,
            ("blob", "GET"): self.get_blob,
            ("blob", "HEAD"): self.get_blob,
            ("blob", "DELETE"): self.delete_blob,
            ("manifest", "GET"): self.get_manifest,
            ("manifest", "HEAD"): self.get_manifest,
            ("manifest", "PUT"): self.put_manifest,
            ("manifest", "DELETE"): self.delete_manifest,
            ("tags", "GET"): self.list_tags,
            ("referrers", "GET"): self.list_referrers,
        }

    # --- plumbing ----------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        for kind, pattern in _ROUTES:
            found = pattern.fullmatch(tail)
            if found is None:
                continue
            handler = self.handlers.get((kind, request.method))
            if handler is None:
                raise Unsupported(f"method {request.method} not allowed on {kind}")
            params = found.groupdict()
            if "name" in params:
                check_name(params["name"], self._host(request))
            return await handler(request, **params)
        raise Unsupported(f"unknown endpoint {request.path[:200]!r}", status=404)

    def _host(self, request: web.Request) -> str:
        return self.config.external_host or request.host

    def _base_url(self, request: web.Request) -> str:
        return self.config.external_url or f"{request.scheme}://{request.host}"

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _principal(self, request: web.Request) -> Principal:
        if self.open:
            return self.access.authenticate(request.headers, request.remote or "")
        return await self._run(self.access.authenticate, request.headers, request.remote or "")

    async def _allow(
        self, request: web.Request, name: str, needed: set[str], ask: set[str] | None = None
    ) -> Principal:
        """The caller, when it may do ``needed`` on ``name``; else the challenge
        (asking for ``ask``, by default ``needed``)."""
        if self.open:
            return self.access.authenticate(request.headers, request.remote or "")
        principal, granted = await self._run(self._check, request, name, needed)
        if needed <= granted:
            return principal
        raise self._refusal(request, principal, [("repository", name, ask or needed)])

    def _check(
        self, request: web.Request, name: str, needed: set[str]
    ) -> tuple[Principal, set[str]]:
        principal = self.access.authenticate(request.headers, request.remote or "")
        return principal, set(self.access.authorize(principal, name, set(needed)))

    def _refusal(
        self, request: web.Request, principal: Principal, scopes: list[tuple[str, str, set[str]]]
    ) -> AuthChallenge:
        scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
        if scheme == "bearer":
            return AuthChallenge(
                "insufficient scope: the token does not grant the access this needs",
                self.access.challenge(scopes, error="insufficient_scope"),
            )
        if principal.anonymous and not scheme:
            return AuthChallenge("authentication required", self.access.challenge(scopes))
        return AuthChallenge(
            "requested access to the resource is denied",
            self.access.challenge(scopes),
            code="DENIED",
            status=403,
        )

    async def _publish(
        self,
        request: web.Request,
        principal: Principal,
        action: str,
        target: dict[str, object],
    ) -> None:
        if self.quiet:
            return
        base = self._base_url(request)
        repo = target.get("repository")
        digest = target.get("digest")
        if repo and digest and "url" not in target:
            kind = "manifests" if target.get("mediaType") != "application/octet-stream" else "blobs"
            target["url"] = f"{base}/v2/{repo}/{kind}/{digest}"
        event = {
            "id": str(uuidlib.uuid4()),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": action,
            "target": target,
            "request": {
                "id": request.get("request_id") or str(uuidlib.uuid4()),
                "addr": request.remote or "",
                "host": request.host,
                "method": request.method,
                "useragent": request.headers.get("User-Agent", ""),
            },
            "actor": {"name": principal.name},
            "source": {"addr": self._host(request), "instanceID": self.instance},
        }
        try:
            await self._run(self.sink.publish, event)
        except Exception:  # the sink must not fail a request that has been done
            log.exception("publishing a %s event failed", action)

    # --- base and listings ---------------------------------------------------------------

    async def base(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        if not self.open and principal.anonymous and "Authorization" not in request.headers:
            raise AuthChallenge("authentication required", self.access.challenge([]))
        resp = web.json_response({})
        resp.headers["Docker-Distribution-API-Version"] = API_VERSION
        return resp

    async def catalog(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        if not self.open and principal.anonymous and "Authorization" not in request.headers:
            raise AuthChallenge(
                "authentication required",
                self.access.challenge([("registry", "catalog", {"*"})]),
            )
        n, last = _page(request, self.config.max_page)
        names = await self._run(self._visible, principal, last, n + 1) if n else []
        resp = web.json_response({"repositories": names[:n]})
        if len(names) > n:
            query = urlencode({"n": n, "last": names[n - 1]})
            resp.headers["Link"] = f'</v2/_catalog?{query}>; rel="next"'
        return resp

    def _visible(self, principal: Principal, last: str, want: int) -> list[str]:
        out: list[str] = []
        batch = max(want, 100)
        while len(out) < want:
            page = self.storage.repositories(last, batch)
            if not page:
                break
            out += self.access.may_list(principal, page)
            last = page[-1]
            if len(page) < batch:
                break
        return out[:want]

    async def list_tags(self, request: web.Request, name: str) -> web.Response:
        await self._allow(request, name, {"pull"})
        n, last = _page(request, self.config.max_page)
        if n == 0:
            await self._run(self.storage.tags, name, "", 1)  # NAME_UNKNOWN still applies
            return web.json_response({"name": name, "tags": []})
        found = await self._run(self.storage.tags, name, last, n + 1)
        resp = web.json_response({"name": name, "tags": found[:n]})
        if len(found) > n:
            query = urlencode({"n": n, "last": found[n - 1]})
            resp.headers["Link"] = f'</v2/{name}/tags/list?{query}>; rel="next"'
        return resp

    async def list_referrers(self, request: web.Request, name: str, digest: str) -> web.Response:
        await self._allow(request, name, {"pull"})
        subject = check_digest(digest)
        artifact_type = request.query.get("artifactType") or None
        found = await self._run(self.storage.referrers, name, subject, artifact_type)
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
        resp = web.Response(body=json.dumps(body).encode(), content_type=mt.OCI_INDEX)
        if artifact_type:
            resp.headers["OCI-Filters-Applied"] = "artifactType"
        return resp

    # --- manifests ---------------------------------------------------------------------

    async def get_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        principal = await self._allow(request, name, {"pull"})
        head = request.method == "HEAD"

        def load() -> tuple[Any, bytes]:
            record = self.storage.manifest(name, reference)
            return record, b"" if head else self.storage.read_manifest(record)

        record, data = await self._run(load)
        headers = {
            "Docker-Content-Digest": record.digest,
            "ETag": f'"{record.digest}"',
            "Content-Type": record.media_type,
        }
        if head:
            headers["Content-Length"] = str(record.size)
            return web.Response(status=200, headers=headers)
        target = self._target(name, record.digest, record.media_type, record.size)
        if not is_digest(reference):
            target["tag"] = reference
        await self._publish(request, principal, "pull", target)
        return web.Response(status=200, body=data, headers=headers)

    async def put_manifest(self, request: web.Request, name: str, reference: str) -> web.Response:
        principal = await self._allow(request, name, {"push"}, {"pull", "push"})
        data = await self._read_limited(request, self.config.max_manifest_size)
        content_type = request.headers.get("Content-Type", "")
        result = await self._run(self.storage.put_manifest, name, reference, data, content_type)
        headers = {
            "Location": f"/v2/{name}/manifests/{result.digest}",
            "Docker-Content-Digest": result.digest,
        }
        if result.subject:
            headers["OCI-Subject"] = result.subject
        target = self._target(name, result.digest, result.media_type, result.size)
        if result.tag:
            target["tag"] = result.tag
        await self._publish(request, principal, "push", target)
        if result.tag and result.previous != result.digest:
            await self._publish(request, principal, "tag", dict(target))
        return web.Response(status=201, headers=headers)

    async def _read_limited(self, request: web.Request, limit: int) -> bytes:
        length = request.content_length
        if length is not None and length > limit:
            raise TooLarge(
                f"manifest of {length} bytes is over the limit of {limit}", {"limit": limit}
            )
        parts: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"manifest is over the limit of {limit} bytes", {"limit": limit})
            parts.append(chunk)
        if length is not None and size != length:
            raise SizeInvalid(f"got {size} bytes of a {length}-byte manifest")
        return b"".join(parts)

    async def delete_manifest(
        self, request: web.Request, name: str, reference: str
    ) -> web.Response:
        principal = await self._allow(request, name, {"delete"})
        record, _gone = await self._run(self.storage.delete_manifest, name, reference)
        target = self._target(name, record.digest, record.media_type, record.size)
        if not is_digest(reference):
            target["tag"] = reference
        await self._publish(request, principal, "delete", target)
        return web.Response(status=202)

    @staticmethod
    def _target(name: str, digest: str, media_type: str, size: int) -> dict[str, object]:
        return {"mediaType": media_type, "size": size, "digest": digest, "repository": name}

    # --- blobs -------------------------------------------------------------------------

    async def get_blob(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        await self._allow(request, name, {"pull"})
        blob = check_digest(digest)
        size = await self._run(self.storage.stat_blob, name, blob)
        headers = {
            "Docker-Content-Digest": blob,
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000",
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(size)
            headers["Content-Type"] = "application/octet-stream"
            return web.Response(status=200, headers=headers)
        return web.FileResponse(self.storage.blob_path(blob), chunk_size=256 << 10, headers=headers)

    async def delete_blob(self, request: web.Request, name: str, digest: str) -> web.Response:
        principal = await self._allow(request, name, {"delete"})
        blob = check_digest(digest)
        await self._run(self.storage.delete_blob, name, blob)
        target = self._target(name, blob, "application/octet-stream", 0)
        await self._publish(request, principal, "delete", target)
        return web.Response(status=202)

    # --- uploads -----------------------------------------------------------------------

    def _upload_headers(self, name: str, uuid: str, offset: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{uuid}",
            "Range": _range_header(offset),
            "Docker-Upload-UUID": uuid,
        }

    def _created(self, name: str, digest: str) -> web.Response:
        headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        return web.Response(status=201, headers=headers)

    async def post_upload(self, request: web.Request, name: str, uuid: str = "") -> web.Response:
        principal = await self._allow(request, name, {"push"}, {"pull", "push"})
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source:
            done = await self._mount(request, principal, name, mount, source)
            if done is not None:
                return done
        digest = request.query.get("digest")
        if digest is not None:
            check_digest(digest)
        uuid = await self._run(self.storage.start_upload, name)
        if digest is None:
            return web.Response(status=202, headers=self._upload_headers(name, uuid, 0))
        try:
            writer = await self._run(self.storage.open_writer, name, uuid, None)
            await self._receive(request, writer, None, None)
        except BaseException:
            await self._run(self.storage.cancel_upload, name, uuid)
            raise
        await self._run(writer.finish, digest)
        return self._created(name, digest)

    async def _mount(
        self, request: web.Request, principal: Principal, name: str, mount: str, source: str
    ) -> web.Response | None:
        """Link a blob of ``source`` when the caller may pull it there; None to fall
        back to an upload session."""
        blob = check_digest(mount)
        try:
            check_name(source, self._host(request))
        except RegistryError:
            return None
        if not self.open:
            granted = await self._run(self.access.authorize, principal, source, {"pull"})
            if "pull" not in granted:
                return None
        size = await self._run(self.storage.mount_blob, name, blob, source)
        if size is None:
            return None
        target = self._target(name, blob, "application/octet-stream", size)
        target["fromRepository"] = source
        await self._publish(request, principal, "mount", target)
        return self._created(name, blob)

    async def patch_upload(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._allow(request, name, {"push"}, {"pull", "push"})
        try:
            start, end = _content_range(request.headers.get("Content-Range"))
            self._check_length(request, start, end)
            writer = await self._run(self.storage.open_writer, name, uuid, start)
            await self._receive(request, writer, start, end)
            offset = await self._run(writer.commit)
        except RangeInvalid as exc:
            await self._annotate(exc, name, uuid)
            raise
        return web.Response(status=202, headers=self._upload_headers(name, uuid, offset))

    async def put_upload(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._allow(request, name, {"push"}, {"pull", "push"})
        digest = request.query.get("digest")
        if not digest:
            raise DigestInvalid("the digest query parameter is required to finish an upload")
        blob = check_digest(digest)
        try:
            start, end = _content_range(request.headers.get("Content-Range"))
            self._check_length(request, start, end)
            writer = await self._run(self.storage.open_writer, name, uuid, start)
            await self._receive(request, writer, start, end)
        except RangeInvalid as exc:
            await self._annotate(exc, name, uuid)
            raise
        await self._run(writer.finish, blob)
        return self._created(name, blob)

    async def _annotate(self, exc: RangeInvalid, name: str, uuid: str) -> None:
        """A 416 tells where the upload stands (``Range``, ``Location``)."""
        offset = exc.offset
        if offset < 0:
            try:
                offset = await self._run(self.storage.upload_offset, name, uuid)
            except RegistryError:
                return
        exc.headers = self._upload_headers(name, uuid, offset)  # type: ignore[attr-defined]

    @staticmethod
    def _check_length(request: web.Request, start: int | None, end: int | None) -> None:
        length = request.content_length
        if start is None or end is None or length is None:
            return
        if length != end - start + 1:
            raise RangeInvalid(
                f"Content-Range {start}-{end} does not match Content-Length {length}", -1
            )

    async def _receive(
        self, request: web.Request, writer: UploadWriter, start: int | None, end: int | None
    ) -> None:
        """Stream the request body into ``writer`` (aborted on any failure, so a
        truncated or refused body leaves the upload where it was)."""
        try:
            received = await self._stream(request, writer)
            length = request.content_length
            if length is not None and received != length:
                raise SizeInvalid(f"got {received} bytes of a {length}-byte body")
            if start is not None and end is not None and received != end - start + 1:
                raise RangeInvalid(
                    f"got {received} bytes for Content-Range {start}-{end}", writer.start
                )
        except BaseException:
            await self._run(writer.abort)
            raise

    async def _stream(self, request: web.Request, writer: UploadWriter) -> int:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        parts: list[bytes] = []
        held = received = 0
        try:
            while chunk := await request.content.readany():
                parts.append(chunk)
                held += len(chunk)
                received += len(chunk)
                if held >= _BATCH:
                    if pending is not None:
                        await pending
                    data = b"".join(parts)
                    parts, held = [], 0
                    pending = loop.run_in_executor(None, writer.write, data)
            if pending is not None:
                await pending
                pending = None
            if parts:
                data = b"".join(parts)
                if len(data) <= _INLINE:
                    writer.write(data)
                else:
                    await loop.run_in_executor(None, writer.write, data)
        finally:
            if pending is not None:  # a failed read: let the write end before an abort
                await asyncio.gather(pending, return_exceptions=True)
        return received

    async def get_upload(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._allow(request, name, {"push"}, {"pull", "push"})
        offset = await self._run(self.storage.upload_offset, name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid, offset))

    async def delete_upload(self, request: web.Request, name: str, uuid: str) -> web.Response:
        await self._allow(request, name, {"push"}, {"pull", "push"})
        await self._run(self.storage.cancel_upload, name, uuid)
        return web.Response(status=204)
