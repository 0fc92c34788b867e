"""An in-memory OCI distribution registry for tests, on 127.0.0.1 (threaded, HTTP or
HTTPS): enough of the API for pull and push, verifying digests as a real registry does,
with knobs for what goes wrong.

::

    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as reg:   # reg.host "127.0.0.1:PORT"
        digest = reg.add_blob("app", b"layer")
        reg.fail_next(429, 2, {"Retry-After": "0"})
        reg.cut_blob_after(1000)        # the next blob body stops after 1000 bytes, once
        reg.ignore_range = True         # answer Range requests with 200 and everything
        reg.redirect_blobs = True       # blob GETs: 307 to http://localhost:PORT/_blobs/...
        reg.log / reg.requests("GET", "/blobs/")   # what clients sent (headers lowercased)
        reg.token_requests                          # the token endpoint's calls (bearer)

``auth``: None (open), ``"basic"`` or ``"bearer"`` (a token endpoint at ``/token`` on the
same server issues opaque tokens valid ``token_ttl`` seconds; ``refresh_tokens`` maps
OAuth refresh tokens to users; anonymous clients get pull rights when
``anonymous_pull``). Repositories in ``deny`` answer 403 DENIED.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from portside.oci.digest import Digest, InvalidDigest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["FakeRegistry", "LoggedRequest"]

SERVICE = "fake-registry"
_ROUTES = [
    ("base", re.compile(r"/v2/?")),
    ("token", re.compile(r"/token")),
    ("redirected", re.compile(r"/_blobs/(?P<digest>[^/]+)")),
    ("upload", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list")),
]
_DEFAULT_CODES = {400: "UNKNOWN", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND",
                  429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNAVAILABLE",
                  503: "UNAVAILABLE", 504: "UNAVAILABLE"}  # fmt: skip


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    #: the client's port: requests on one keep-alive connection share it
    peer: int = 0


@dataclass
class _Token:
    user: str | None
    grants: dict[str, set[str]]
    expires: float


class _Reply(Exception):
    """Answer the request with this status, error code and headers."""

    def __init__(self, status: int, code: str = "", message: str = "", headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class _Upload:
    repo: str
    data: bytearray = field(default_factory=bytearray)


class FakeRegistry:
    def __init__(
        self,
        *,
        auth: str | None = None,
        users: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        token_ttl: int = 300,
        anonymous_pull: bool = False,
        chunk_min: int | None = None,
        tags_page: int | None = None,
    ) -> None:
        if auth not in (None, "basic", "bearer"):
            raise ValueError(f"auth must be None, 'basic' or 'bearer', not {auth!r}")
        self.auth = auth
        self.users = dict(users or {})
        self.token_ttl = token_ttl
        self.anonymous_pull = anonymous_pull
        self.chunk_min = chunk_min
        self.tags_page = tags_page
        self.refresh_tokens: dict[str, str] = {}
        self.deny: set[str] = set()
        self.ignore_range = False
        self.redirect_blobs = False
        self.log: list[LoggedRequest] = []
        self.token_requests: list[dict[str, object]] = []
        self.lock = threading.RLock()
        self.blobs: dict[str, bytes] = {}
        self.repo_blobs: dict[str, set[str]] = {}
        self.manifests: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self._uploads: dict[str, _Upload] = {}
        self._tokens: dict[str, _Token] = {}
        self._failures: list[tuple[int, dict[str, str], str]] = []
        self._cut: int | None = None
        self._ctx: ssl.SSLContext | None = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(*tls)
        self.scheme = "https" if tls else "http"
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{self.scheme}://{self.host}"
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeRegistry:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"fakeregistry-{self.port}",
        )  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeRegistry:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- knobs and content --------------------------------------------------------------

    def fail_next(
        self, status: int, n: int = 1, headers: dict[str, str] | None = None, path: str = ""
    ) -> None:
        """The next ``n`` API requests (whose path contains ``path``) get ``status``."""
        with self.lock:
            self._failures.extend([(status, dict(headers or {}), path)] * n)

    def cut_blob_after(self, n: int) -> None:
        """The next blob body longer than ``n`` bytes stops after ``n`` (the connection
        is closed), once."""
        with self.lock:
            self._cut = n

    def revoke_tokens(self) -> None:
        """Every token issued so far becomes invalid (``error="invalid_token"``)."""
        with self.lock:
            self._tokens.clear()

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = str(Digest.of(data))
        with self.lock:
            self.blobs[digest] = bytes(data)
            self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def add_manifest(
        self,
        repo: str,
        data: bytes,
        media_type: str,
        tag: str | None = None,
        digest: str | None = None,
    ) -> str:
        """Store a manifest as it is (no checks); ``digest`` may lie (a tampered one)."""
        digest = digest or str(Digest.of(data))
        with self.lock:
            self.manifests.setdefault(repo, {})[digest] = (media_type, bytes(data))
            if tag is not None:
                self.tags.setdefault(repo, {})[tag] = digest
        return digest

    def requests(self, method: str | None = None, contains: str = "") -> list[LoggedRequest]:
        with self.lock:
            return [
                r for r in self.log if (method is None or r.method == method) and contains in r.path
            ]

    # --- auth ---------------------------------------------------------------------------

    def _basic_user(self, header: str) -> str | None:
        """The user whose valid Basic credentials ``header`` carries."""
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user if user in self.users and self.users[user] == pw else None

    def _challenge(self, scope: str, error: str = "") -> dict[str, str]:
        if self.auth == "basic":
            return {"WWW-Authenticate": f'Basic realm="{SERVICE}"'}
        value = f'Bearer realm="{self.url}/token",service="{SERVICE}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return {"WWW-Authenticate": value}

    def _authorize(self, header: str, repo: str | None, actions: set[str]) -> None:
        """Raise the 401/403 a real registry answers when ``header`` does not allow
        ``actions`` on ``repo`` (None: the ``/v2/`` ping)."""
        if repo is not None and repo in self.deny:
            raise _Reply(403, "DENIED", "requested access to the resource is denied")
        if self.auth is None:
            return
        wanted = f"repository:{repo}:{','.join(sorted(actions))}" if repo else ""
        if self.auth == "basic":
            if self._basic_user(header) is None:
                raise _Reply(401, "UNAUTHORIZED", "authentication required", self._challenge(""))
            return
        if not header.lower().startswith("bearer "):
            raise _Reply(401, "UNAUTHORIZED", "authentication required", self._challenge(wanted))
        with self.lock:
            token = self._tokens.get(header[7:])
        if token is None or token.expires < time.time():
            challenge = self._challenge(wanted, "invalid_token")
            raise _Reply(401, "UNAUTHORIZED", "authentication required", challenge)
        if repo is not None and not actions <= token.grants.get(repo, set()):
            challenge = self._challenge(wanted, "insufficient_scope")
            raise _Reply(401, "UNAUTHORIZED", "authentication required", challenge)

    def _issue_token(self, h: _Handler, params: dict[str, list[str]], body: bytes) -> None:
        user: str | None = None
        if h.command == "POST":
            form = parse_qs(body.decode())
            params = {**params, **form}
            grant = form.get("grant_type", [""])[0]
            if grant == "refresh_token":
                user = self.refresh_tokens.get(form.get("refresh_token", [""])[0])
            elif grant == "password":
                name, pw = form.get("username", [""])[0], form.get("password", [""])[0]
                user = name if self.users.get(name) == pw and name else None
            if user is None:
                raise _Reply(400, "", "invalid_grant", {"X-Body": '{"error": "invalid_grant"}'})
        elif h.headers.get("Authorization"):
            user = self._basic_user(h.headers["Authorization"])
            if user is None:
                body = b'{"details": "incorrect username or password"}'
                raise _Reply(401, "", "", {"X-Body": body.decode()})
        scopes = [s for v in params.get("scope", []) for s in v.split()]
        grants: dict[str, set[str]] = {}
        for s in scopes:
            kind, _, rest = s.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind != "repository" or repo in self.deny:
                continue
            allowed = (
                set(actions.split(",")) if user else ({"pull"} if self.anonymous_pull else set())
            )
            grants.setdefault(repo, set()).update(allowed & set(actions.split(",")))
        token = secrets.token_urlsafe(16)
        with self.lock:
            self._tokens[token] = _Token(user, grants, time.time() + self.token_ttl)
            self.token_requests.append({"method": h.command, "user": user, "scopes": scopes,
                                        "service": params.get("service", [""])[0]})  # fmt: skip
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc = {
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl,
            "issued_at": issued,
        }
        h.reply(200, json.dumps(doc).encode())

    # --- the API ------------------------------------------------------------------------

    def _repo_known(self, repo: str) -> bool:
        return repo in self.repo_blobs or repo in self.manifests or repo in self.tags

    def handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query)
        body = h.read_body()
        route, match = next(((r, m) for r, rx in _ROUTES if (m := rx.fullmatch(parts.path))),
                            ("", None))  # fmt: skip
        if route not in ("token", "redirected"):
            with self.lock:
                failure = next((f for f in self._failures if f[2] in h.path), None)
                if failure is not None:
                    self._failures.remove(failure)
            if failure is not None:
                status, headers, _ = failure
                raise _Reply(status, _DEFAULT_CODES.get(status, "UNKNOWN"), "injected", headers)
        if match is None:
            raise _Reply(404, "NOT_FOUND", f"no route for {parts.path}")
        args = match.groupdict()
        auth = h.headers.get("Authorization", "")
        if route == "token":
            return self._issue_token(h, query, body)
        if route == "redirected":
            return self._serve_blob(h, args["digest"])
        if route == "base":
            self._authorize(auth, None, set())
            return h.reply(200, b"{}")
        repo = args["name"]
        write = h.command not in ("GET", "HEAD")
        self._authorize(auth, repo, {"pull", "push"} if write else {"pull"})
        getattr(self, f"_{route}")(h, repo, args, query, body)

    def _manifest(self, h: _Handler, repo: str, args: dict, query: dict, body: bytes) -> None:
        ref = args["ref"]
        if h.command == "PUT":
            return self._put_manifest(h, repo, ref, body)
        with self.lock:
            digest = self.tags.get(repo, {}).get(ref, ref)
            found = self.manifests.get(repo, {}).get(digest)
        if found is None:
            if not self._repo_known(repo):
                raise _Reply(404, "NAME_UNKNOWN", "repository name not known to registry")
            raise _Reply(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, data = found
        h.reply(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest})

    def _put_manifest(self, h: _Handler, repo: str, ref: str, body: bytes) -> None:
        digest = str(Digest.of(body))
        if ":" in ref and ref != digest:
            raise _Reply(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        try:
            doc = json.loads(body)
        except ValueError:
            raise _Reply(400, "MANIFEST_INVALID", "manifest invalid") from None
        with self.lock:
            if "manifests" in doc:
                wanted = [m.get("digest") for m in doc["manifests"]]
                have = set(self.manifests.get(repo, {}))
            else:
                wanted = [d.get("digest") for d in [doc.get("config", {}), *doc.get("layers", [])]]
                have = self.repo_blobs.get(repo, set())
            if any(d not in have for d in wanted):
                raise _Reply(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
        media_type = h.headers.get("Content-Type") or doc.get("mediaType", "")
        self.add_manifest(repo, body, media_type, tag=None if ":" in ref else ref)
        headers = {"Location": f"/v2/{repo}/manifests/{digest}", "Docker-Content-Digest": digest}
        h.reply(201, b"", headers)

    def _blob(self, h: _Handler, repo: str, args: dict, query: dict, body: bytes) -> None:
        digest = args["digest"]
        with self.lock:
            known = digest in self.repo_blobs.get(repo, set())
        if not known:
            raise _Reply(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if self.redirect_blobs and h.command == "GET":
            location = f"{self.scheme}://localhost:{self.port}/_blobs/{digest}"
            return h.reply(307, b"", {"Location": location})
        self._serve_blob(h, digest)

    def _serve_blob(self, h: _Handler, digest: str) -> None:
        with self.lock:
            data = self.blobs.get(digest)
        if data is None:
            raise _Reply(404, "BLOB_UNKNOWN", "blob unknown to registry")
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        status, start = 200, 0
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if m and not self.ignore_range:
            start = int(m[1])
            end = int(m[2]) if m[2] else len(data) - 1
            if start >= len(data) or end < start:
                raise _Reply(
                    416, "RANGE_INVALID", "invalid range", {"Content-Range": f"bytes */{len(data)}"}
                )
            status, data = 206, data[start : end + 1]
            headers["Content-Range"] = (
                f"bytes {start}-{start + len(data) - 1}/{len(self.blobs[digest])}"
            )
        with self.lock:
            cut = (
                self._cut
                if h.command == "GET" and self._cut is not None and len(data) > self._cut
                else None
            )
            if cut is not None:
                self._cut = None
        h.reply(status, data, headers, cut=cut)

    def _upload(self, h: _Handler, repo: str, args: dict, query: dict, body: bytes) -> None:
        uuid = args["uuid"]
        if not uuid:
            if h.command != "POST":
                raise _Reply(405, "UNSUPPORTED", "the operation is unsupported")
            return self._start_upload(h, repo, query, body)
        with self.lock:
            upload = self._uploads.get(uuid)
        if upload is None or upload.repo != repo:
            raise _Reply(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if h.command == "DELETE":
            with self.lock:
                self._uploads.pop(uuid, None)
            return h.reply(204, b"")
        if h.command == "PATCH":
            m = re.fullmatch(r"(\d+)-(\d+)", h.headers.get("Content-Range", "").strip())
            if m and int(m[1]) != len(upload.data):
                raise _Reply(416, "BLOB_UPLOAD_INVALID", "blob upload invalid")
            upload.data += body
        elif h.command == "PUT":
            upload.data += body
            digest = query.get("digest", [""])[0]
            self._commit(repo, bytes(upload.data), digest)
            with self.lock:
                self._uploads.pop(uuid, None)
            return self._created(h, repo, digest)
        elif h.command != "GET":
            raise _Reply(405, "UNSUPPORTED", "the operation is unsupported")
        self._accepted(h, repo, uuid, upload, 202 if h.command == "PATCH" else 204)

    def _start_upload(self, h: _Handler, repo: str, query: dict, body: bytes) -> None:
        mount, source = query.get("mount", [""])[0], query.get("from", [""])[0]
        if mount and source:
            try:
                self._authorize(h.headers.get("Authorization", ""), source, {"pull"})
                with self.lock:
                    present = mount in self.repo_blobs.get(source, set())
            except _Reply:
                present = False
            if present:
                with self.lock:
                    self.repo_blobs.setdefault(repo, set()).add(mount)
                return self._created(h, repo, mount)
        digest = query.get("digest", [""])[0]
        if digest:  # monolithic POST
            self._commit(repo, body, digest)
            return self._created(h, repo, digest)
        uuid = secrets.token_hex(8)
        upload = _Upload(repo)
        with self.lock:
            self._uploads[uuid] = upload
        self._accepted(h, repo, uuid, upload, 202)

    def _commit(self, repo: str, data: bytes, digest: str) -> None:
        try:
            want = Digest(digest)
        except InvalidDigest:
            raise _Reply(
                400, "DIGEST_INVALID", "provided digest did not match uploaded content"
            ) from None
        if Digest.of(data, want.algorithm) != want:
            raise _Reply(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        with self.lock:
            self.blobs[want] = data
            self.repo_blobs.setdefault(repo, set()).add(want)

    def _created(self, h: _Handler, repo: str, digest: str) -> None:
        headers = {"Location": f"/v2/{repo}/blobs/{digest}", "Docker-Content-Digest": digest}
        h.reply(201, b"", headers)

    def _accepted(self, h: _Handler, repo: str, uuid: str, upload: _Upload, status: int) -> None:
        headers = {
            "Location": f"/v2/{repo}/blobs/uploads/{uuid}?_state={secrets.token_hex(4)}",
            "Range": f"0-{max(0, len(upload.data) - 1)}",
            "Docker-Upload-UUID": uuid,
        }
        if self.chunk_min:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min)
        h.reply(status, b"", headers)

    def _tags(self, h: _Handler, repo: str, args: dict, query: dict, body: bytes) -> None:
        if not self._repo_known(repo):
            raise _Reply(404, "NAME_UNKNOWN", "repository name not known to registry")
        with self.lock:
            tags = sorted(self.tags.get(repo, {}))
        last = query.get("last", [""])[0]
        if last:
            tags = [t for t in tags if t > last]
        n = int(query["n"][0]) if "n" in query else self.tags_page
        headers = {}
        if n is not None and len(tags) > n:
            tags = tags[:n]
            link = f"/v2/{repo}/tags/list?" + urlencode({"n": n, "last": tags[-1]})
            headers["Link"] = f'<{link}>; rel="next"'
        h.reply(200, json.dumps({"name": repo, "tags": tags}).encode(), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # a client going away is no news
            super().handle_error(request, client_address)

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        ctx = self.registry._ctx
        if ctx is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            conn = ctx.wrap_socket(request, server_side=True)
        except OSError:
            return  # a failed handshake: the client sees it
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass
            return bytes(out)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(
        self, status: int, body: bytes, headers: dict | None = None, *, cut: int | None = None
    ) -> None:
        self._entry.status = status
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _dispatch(self) -> None:
        registry = self.server.registry
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._entry = LoggedRequest(self.command, self.path, headers, peer=self.client_address[1])
        with registry.lock:
            registry.log.append(self._entry)
        try:
            registry.handle(self)
        except _Reply as r:
            extra = dict(r.headers)
            raw = extra.pop("X-Body", None)
            if raw is not None:
                body = raw.encode()
            elif r.code:
                body = json.dumps(
                    {"errors": [{"code": r.code, "message": r.message, "detail": None}]}
                ).encode()
            else:
                body = b""
            self.reply(r.status, body, extra)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch
