"""The OCI distribution client: manifests, blobs, uploads and tags of one registry.

A :class:`Registry` is one registry as seen through its endpoints (``hosts.endpoints``):
Docker Hub's mirrors before the hub on pulls, ``https`` then plain ``http`` for an
insecure registry. An endpoint that fails (a mirror, for any error; an insecure
registry's https, for a TLS or connection failure) hands over to the next, and the one
that answered is kept for the rest of the pull.

Errors on pulls use Docker's words: ``manifest for X:T not found: ...``, and ``pull
access denied for X, repository does not exist or may require 'portside login': ...``
for an unknown repository or missing rights (the class stays by cause:
RegistryNotFound, RegistryUnauthorized or RegistryDenied). A ``Registry(push=True)``
asks for push rights from the start and never uses mirrors.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from portside.distribution.auth import TokenCache, scope
from portside.distribution.errors import (
    BadContent,
    RegistryDenied,
    RegistryError,
    RegistryNotFound,
    RegistryTLSError,
    RegistryUnauthorized,
    RegistryUnavailable,
)
from portside.distribution.transport import CHUNK, Session
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest, DigestMismatch, InvalidDigest
from portside.oci.image_spec import Descriptor
from portside.oci.reference import Reference
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, BinaryIO, TypeVar

    from portside.distribution.config import AuthConfig, RegistryConfig
    from portside.distribution.hosts import Endpoint
    from portside.distribution.transport import Response

    T = TypeVar("T")


class BlobSink(Protocol):
    """Where a fetched blob goes (the content store's ingest writer is one): ``offset``
    is how much it holds, ``truncate()`` empties it."""

    @property
    def offset(self) -> int: ...
    def write(self, data: bytes, /) -> object: ...
    def truncate(self) -> None: ...


__all__ = ["ALL_MANIFEST_TYPES", "MAX_MANIFEST", "BlobSink", "Fetched", "Registry"]

ALL_MANIFEST_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
#: manifests larger than this are refused (as containerd's limit)
MAX_MANIFEST = 4 << 20
_MAX_TAG_PAGES = 10_000
#: what a dropped connection raises while a body is read
_BODY_ERRORS = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Fetched:
    """A manifest as the registry sent it; ``digest`` is verified."""

    data: bytes
    media_type: str
    digest: str


def _media_type(header: str | None, data: bytes) -> str:
    """The Content-Type, else the document's own ``mediaType`` (for registries that
    answer ``application/json`` or nothing)."""
    value = (header or "").partition(";")[0].strip()
    if value and value not in ("application/json", "text/plain", "application/octet-stream"):
        return value
    try:
        doc = json.loads(data)
    except ValueError:
        return value
    if isinstance(doc, dict):
        if isinstance(doc.get("mediaType"), str) and doc["mediaType"]:
            return str(doc["mediaType"])
        if doc.get("schemaVersion") == 1:
            return (
                mt.DOCKER_SCHEMA1_SIGNED_MANIFEST
                if "signatures" in doc
                else mt.DOCKER_SCHEMA1_MANIFEST
            )
        if "manifests" in doc:
            return mt.OCI_INDEX
        if "layers" in doc:
            return mt.OCI_MANIFEST
    return value


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _next_link(value: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header."""
    for part in (value or "").split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if (
            target.startswith("<")
            and target.endswith(">")
            and "next" in params.replace('"', " ").split()
        ):
            return target[1:-1]
        if target.startswith("<") and 'rel="next"' in params.replace(" ", ""):
            return target[1:-1]
    return None


class _Counting:
    """A file that reports how much has been read from it."""

    def __init__(self, f: BinaryIO, progress: Callable[[int], None], limit: int = -1) -> None:
        self._f = f
        self._progress = progress
        self._left = limit
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        if self._left >= 0:
            n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n) if n else b""
        if self._left >= 0:
            self._left -= len(data)
        if data:
            self.done += len(data)
            self._progress(self.done)
        return data


class Registry:
    """One registry (``domain`` of a reference) for ``auth``. Thread-safe.

    ``endpoints`` replaces ``hosts.endpoints(domain, config, push=push)`` (tests);
    ``session_options`` go to each :class:`Session` (timeouts, back-off, sleep)."""

    def __init__(
        self,
        domain: str,
        config: RegistryConfig,
        auth: AuthConfig,
        *,
        cache: TokenCache | None = None,
        push: bool = False,
        endpoints: Sequence[Endpoint] | None = None,
        **session_options: Any,
    ) -> None:
        if endpoints is None:
            from portside.distribution.hosts import endpoints as find_endpoints

            endpoints = find_endpoints(domain, config, push=push)
        if not endpoints:
            raise RegistryError(f"no endpoint for registry {domain}")
        self.domain = domain
        self.config = config
        self.auth = auth
        self.push = push
        self.cache = cache if cache is not None else TokenCache()
        self.endpoints = list(endpoints)
        self._options = session_options
        self._lock = threading.Lock()
        self._sessions: dict[int, Session] = {}
        self._active = 0

    def __repr__(self) -> str:
        return f"<Registry {self.domain} via {self.endpoint.base}>"

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint in use (the one that last answered)."""
        return self.endpoints[self._active]

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints and fallback -----------------------------------------------------------

    def _has_http_fallback(self, i: int) -> bool:
        ep = self.endpoints[i]
        nxt = self.endpoints[i + 1] if i + 1 < len(self.endpoints) else None
        return (
            ep.scheme == "https"
            and nxt is not None
            and nxt.scheme == "http"
            and nxt.host == ep.host
        )

    def _session(self, i: int) -> Session:
        with self._lock:
            session = self._sessions.get(i)
            if session is None:
                options = dict(self._options)
                if self._has_http_fallback(i):
                    options["retry_connect"] = False
                session = Session(self.endpoints[i], self.config, self.auth, self.cache, **options)
                self._sessions[i] = session
            return session

    def _falls_back(self, i: int, exc: RegistryError) -> bool:
        if i + 1 >= len(self.endpoints):
            return False
        if self.endpoints[i].mirror and not self.push:
            return True
        connection = isinstance(exc, RegistryTLSError | RegistryUnavailable) and exc.status == 0
        return connection and self._has_http_fallback(i)

    def _call(self, op: Callable[[Session], T]) -> T:
        """``op`` on the active endpoint, then on the next ones while it fails in a way
        that allows falling back; the endpoint that answers becomes the active one."""
        i = self._active
        while True:
            try:
                result = op(self._session(i))
            except RegistryError as exc:
                if not self._falls_back(i, exc):
                    raise
                i += 1
                continue
            if i != self._active:
                with self._lock:
                    self._active = max(self._active, i)
            return result

    # --- names and errors -----------------------------------------------------------------

    def _name(self, repo: str) -> str:
        return Reference(self.domain, repo).familiar_name

    def _scopes(self, repo: str) -> list[str]:
        return [scope(repo, "pull,push" if self.push else "pull")]

    def _pull_error(self, exc: RegistryError, repo: str, ref: str | None) -> RegistryError:
        """Docker's wording of ``exc`` for a pull of ``repo`` (``ref``: a manifest)."""
        name = self._name(repo)
        if ref is not None and (
            exc.code == "MANIFEST_UNKNOWN" or (exc.status == 404 and not exc.code)
        ):
            shown = f"{name}@{ref}" if ":" in ref else f"{name}:{ref}"
            return RegistryNotFound(
                f"manifest for {shown} not found: {exc}", code=exc.code, status=404
            )
        denied = exc.code in ("NAME_UNKNOWN", "DENIED", "UNAUTHORIZED") or exc.status in (401, 403)
        if (
            denied
            and not self.push
            and isinstance(exc, RegistryNotFound | RegistryDenied | RegistryUnauthorized)
        ):
            return type(exc)(
                f"pull access denied for {name}, repository does not exist or may require "
                f"'portside login': {exc}",
                code=exc.code,
                status=exc.status,
            )
        return exc

    def _reword(self, call: Callable[[], T], repo: str, ref: str | None) -> T:
        try:
            return call()
        except RegistryError as exc:
            new = self._pull_error(exc, repo, ref)
            if new is exc:
                raise
            raise new from exc

    # --- API ------------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` with the credentials (what ``login`` checks)."""
        self._call(lambda s: s.request("GET", "/v2/", scopes=[]))

    def get_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = ALL_MANIFEST_TYPES
    ) -> Fetched:
        """The manifest ``ref`` (a tag or a digest) of ``repo``, verified against the
        digest asked for, else the ``Docker-Content-Digest`` the registry gave."""
        return self._reword(
            lambda: self._call(lambda s: self._get_manifest(s, repo, ref, accept)), repo, ref
        )

    def _get_manifest(self, s: Session, repo: str, ref: str, accept: Sequence[str]) -> Fetched:
        what = f"manifest {ref} of {self._name(repo)}"
        resp = s.request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            headers={"Accept": ", ".join(accept)},
            scopes=self._scopes(repo),
            stream=True,
        )
        with resp:
            length = resp.headers.get("Content-Length")
            if length and is_number(length) and int(length) > MAX_MANIFEST:
                raise BadContent(f"{what}: {length} bytes, more than the limit of {MAX_MANIFEST}")
            data = resp.read(MAX_MANIFEST + 1)
            while len(data) <= MAX_MANIFEST and (more := resp.read(MAX_MANIFEST + 1 - len(data))):
                data += more
        if len(data) > MAX_MANIFEST:
            raise BadContent(f"{what}: more than the limit of {MAX_MANIFEST} bytes")
        media_type = _media_type(resp.headers.get("Content-Type"), data)
        header = resp.headers.get("Docker-Content-Digest")
        if mt.is_schema1(media_type):
            header = None  # a signed schema 1 digest is over the payload only; refused later
        return Fetched(data, media_type, _verify_manifest(data, ref, header, what))

    def head_manifest(
        self, repo: str, ref: str, accept: Sequence[str] = ALL_MANIFEST_TYPES
    ) -> Descriptor | None:
        """The descriptor of manifest ``ref``, None when there is none (404). A registry
        that gives no digest on HEAD is asked with GET."""

        def op(s: Session) -> Descriptor | None:
            try:
                resp = s.request(
                    "HEAD",
                    f"/v2/{repo}/manifests/{ref}",
                    headers={"Accept": ", ".join(accept)},
                    scopes=self._scopes(repo),
                )
            except RegistryNotFound:
                return None
            digest = resp.headers.get("Docker-Content-Digest") or (ref if ":" in ref else "")
            length = resp.headers.get("Content-Length", "")
            media_type = (resp.headers.get("Content-Type") or "").partition(";")[0].strip()
            if not digest or not is_number(length) or not media_type:
                fetched = self._get_manifest(s, repo, ref, accept)
                return Descriptor.of(fetched.media_type, fetched.data)
            try:
                return Descriptor(media_type=media_type, digest=Digest(digest), size=int(length))
            except InvalidDigest as exc:
                raise BadContent(f"manifest {ref} of {self._name(repo)}: {exc}") from exc

        return self._reword(lambda: self._call(op), repo, ref)

    def blob_exists(self, repo: str, digest: str) -> int | None:
        """``HEAD`` of a blob: its size, or None when the registry does not have it."""

        def op(s: Session) -> int | None:
            try:
                resp = s.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=self._scopes(repo))
            except RegistryNotFound:
                return None
            length = resp.headers.get("Content-Length", "")
            return int(length) if is_number(length) else 0

        return self._call(op)

    def tags(self, repo: str) -> list[str]:
        """Every tag of ``repo``, following ``Link`` pagination."""

        def op(s: Session) -> list[str]:
            out: list[str] = []
            url: str | None = s.url(f"/v2/{repo}/tags/list")
            seen: set[str] = set()
            while url is not None and url not in seen and len(seen) < _MAX_TAG_PAGES:
                seen.add(url)
                resp = s.request("GET", url, scopes=self._scopes(repo))
                doc = resp.json()
                tags = doc.get("tags") if isinstance(doc, dict) else None
                out.extend(t for t in tags or [] if isinstance(t, str))
                link = _next_link(resp.headers.get("Link"))
                url = urljoin(url, link) if link else None
            return out

        return self._reword(lambda: self._call(op), repo, None)

    # --- blobs ----------------------------------------------------------------------------

    def fetch_blob(
        self, repo: str, desc: Descriptor, sink: BlobSink, progress: Callable[[int], None]
    ) -> None:
        """Stream blob ``desc`` into ``sink`` from ``sink.offset`` on (a resumed ingest),
        calling ``progress(bytes held)`` as it goes. A dropped connection resumes with
        ``Range``; a registry that ignores it (200, not 206) makes the sink start over
        (``sink.truncate()``). The caller verifies the digest; the size is checked here."""
        try:
            self._call(lambda s: self._fetch_blob(s, repo, desc, sink, progress))
        except RegistryNotFound as exc:
            raise RegistryNotFound(
                f"blob {desc.digest} of {self._name(repo)} not found: {exc}",
                code=exc.code,
                status=exc.status,
            ) from exc

    def _fetch_blob(
        self,
        s: Session,
        repo: str,
        desc: Descriptor,
        sink: BlobSink,
        progress: Callable[[int], None],
    ) -> None:
        failures = 0
        while True:
            if desc.size and sink.offset >= desc.size:
                break
            try:
                self._fetch_blob_once(s, repo, desc, sink, progress)
                break
            except _BODY_ERRORS as exc:
                failures += 1
                if failures >= s.attempts:
                    raise RegistryUnavailable(
                        f"failed to download blob {desc.digest} of {self._name(repo)} from "
                        f"{s.endpoint.host}: {exc or type(exc).__name__} "
                        f"(after {failures} attempts)"
                    ) from exc
                s.sleep(s.backoff(failures))
        if sink.offset != desc.size:
            raise BadContent(
                f"blob {desc.digest} of {self._name(repo)}: got {sink.offset} bytes, "
                f"the descriptor says {desc.size}"
            )

    def _fetch_blob_once(
        self,
        s: Session,
        repo: str,
        desc: Descriptor,
        sink: BlobSink,
        progress: Callable[[int], None],
    ) -> None:
        offset = sink.offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = s.request(
            "GET",
            f"/v2/{repo}/blobs/{desc.digest}",
            headers=headers,
            scopes=self._scopes(repo),
            stream=True,
        )
        with resp:
            if offset and resp.status == 206:
                start = _range_start(resp.headers.get("Content-Range"))
                if start != offset:
                    raise BadContent(
                        f"blob {desc.digest}: asked for bytes from {offset}, "
                        f"got a range from {start}"
                    )
            elif offset:  # the registry ignored Range: the whole blob again
                sink.truncate()
                progress(0)
            while data := resp.read(CHUNK):
                if sink.offset + len(data) > desc.size:
                    raise BadContent(
                        f"blob {desc.digest} of {self._name(repo)}: more than the "
                        f"{desc.size} bytes its descriptor says"
                    )
                sink.write(data)
                progress(sink.offset)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link blob ``digest`` of ``from_repo`` into ``repo``: True
        on 201; False when it would rather have an upload (202; that upload is cancelled)."""
        path = "/v2/{}/blobs/uploads/?{}".format(
            repo, urlencode({"mount": digest, "from": from_repo})
        )
        scopes = [scope(repo, "pull,push"), scope(from_repo, "pull")]

        def op(s: Session) -> bool:
            resp = s.request("POST", path, scopes=scopes)
            if resp.status == 201:
                return True
            location = resp.headers.get("Location")
            if resp.status == 202 and location:
                try:
                    s.request(
                        "DELETE",
                        urljoin(s.url(f"/v2/{repo}/blobs/uploads/"), location),
                        scopes=scopes,
                    )
                except RegistryError:
                    pass  # an abandoned upload session expires on the registry
            return False

        return self._call(op)

    def upload_blob(
        self,
        repo: str,
        desc: Descriptor,
        open_: Callable[[], BinaryIO],
        progress: Callable[[int], None],
        *,
        chunk_size: int | None = None,
    ) -> None:
        """Upload blob ``desc`` read from ``open_()`` (called again for each attempt):
        one PUT (monolithic), or PATCHes of ``chunk_size`` bytes (at least the
        registry's ``OCI-Chunk-Min-Length``) and a final PUT. ``progress(bytes sent)``.
        Connection failures and 5xx start over, up to ``max_download_attempts``."""
        self._call(
            lambda s: self._upload_retrying(s, repo, desc, open_, progress, chunk_size=chunk_size)
        )

    def _upload_retrying(
        self,
        s: Session,
        repo: str,
        desc: Descriptor,
        open_: Callable[[], BinaryIO],
        progress: Callable[[int], None],
        *,
        chunk_size: int | None,
    ) -> None:
        failures = 0
        while True:
            try:
                self._upload_once(s, repo, desc, open_, progress, chunk_size=chunk_size)
                return
            except RegistryUnavailable:
                failures += 1
                if failures >= s.attempts:
                    raise
                s.sleep(s.backoff(failures))

    def _upload_once(
        self,
        s: Session,
        repo: str,
        desc: Descriptor,
        open_: Callable[[], BinaryIO],
        progress: Callable[[int], None],
        *,
        chunk_size: int | None,
    ) -> None:
        scopes = [scope(repo, "pull,push")]
        resp = s.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes)
        location = self._location(s, resp, repo)
        minimum = resp.headers.get("OCI-Chunk-Min-Length", "")
        if chunk_size and is_number(minimum):
            chunk_size = max(chunk_size, int(minimum))
        octets = {"Content-Type": "application/octet-stream"}
        with open_() as f:
            if chunk_size and desc.size > chunk_size:
                location = self._patch_chunks(
                    s, repo, location, desc.size, f, progress=progress, chunk_size=chunk_size
                )
                body: Any = b""
                headers = {**octets, "Content-Length": "0"}
            else:
                body = _Counting(f, progress, desc.size)
                headers = {**octets, "Content-Length": str(desc.size)}
            url = _with_query(location, digest=str(desc.digest))
            resp = s.request(
                "PUT", url, headers=headers, body=body, scopes=scopes, idempotent=False
            )
        answered = resp.headers.get("Docker-Content-Digest")
        if resp.status != 201 or (answered and answered != desc.digest):
            raise BadContent(
                f"upload of blob {desc.digest} to {self._name(repo)}: the registry answered "
                f"{resp.status} with digest {answered or 'none'}"
            )

    def _patch_chunks(
        self,
        s: Session,
        repo: str,
        location: str,
        size: int,
        f: BinaryIO,
        *,
        progress: Callable[[int], None],
        chunk_size: int,
    ) -> str:
        """PATCH ``f`` in chunks of ``chunk_size``; the Location to finish at."""
        sent = 0
        while sent < size:
            n = min(chunk_size, size - sent)
            body = _Counting(f, lambda k, base=sent: progress(base + k), n)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{sent}-{sent + n - 1}",
                "Content-Length": str(n),
            }
            resp = s.request(
                "PATCH",
                location,
                headers=headers,
                body=body,
                scopes=[scope(repo, "pull,push")],
                idempotent=False,
            )
            location = self._location(s, resp, repo)
            sent += n
        return location

    @staticmethod
    def _location(s: Session, resp: Response, repo: str) -> str:
        location = resp.headers.get("Location")
        if resp.status != 202 or not location:
            raise BadContent(
                f"upload to {repo} on {s.endpoint.host}: expected 202 with a Location, "
                f"got {resp.status}"
            )
        return urljoin(s.url(f"/v2/{repo}/blobs/uploads/"), location)

    # --- manifests ------------------------------------------------------------------------

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """Store manifest ``data`` as ``ref`` (a tag or its digest); the digest the
        registry gives (else the sha256 of ``data``)."""

        def op(s: Session) -> str:
            resp = s.request(
                "PUT",
                f"/v2/{repo}/manifests/{ref}",
                headers={"Content-Type": media_type},
                body=data,
                scopes=[scope(repo, "pull,push")],
            )
            return resp.headers.get("Docker-Content-Digest") or str(Digest.of(data))

        return self._call(op)


def _range_start(value: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``."""
    if not value:
        return None
    unit, _, rest = value.strip().partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and is_number(start) else None


def _verify_manifest(data: bytes, ref: str, header: str | None, what: str) -> str:
    """The digest of ``data``, checked against ``ref`` when it is a digest, else against
    the registry's ``Docker-Content-Digest`` when it gave one."""
    expected = ref if ":" in ref else header
    if not expected:
        return str(Digest.of(data))
    try:
        want = Digest(expected)
        got = Digest.of(data, want.algorithm)
    except (InvalidDigest, DigestMismatch) as exc:
        raise BadContent(f"{what}: {exc}") from exc
    if got != want:
        raise BadContent(f"{what}: digest mismatch: expected {want}, got {got}")
    return str(want)
