"""HTTP to one registry endpoint, on the standard library: pooled keep-alive
connections, authorization (the first try with what the :class:`Authorizer` knows, one
answer to a 401), redirects (Authorization never leaves the endpoint's host), retries
with back-off (connection errors and 5xx when idempotent, 429 after ``Retry-After``),
and registry errors mapped to :mod:`portside.distribution.errors` with Docker's words.

Thread-safe: a pull fetches several layers at once through one :class:`Session`.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urljoin, urlsplit

from portside.distribution.auth import Authorizer, TokenCache, parse_challenges
from portside.distribution.errors import (
    BadContent,
    RateLimited,
    RegistryDenied,
    RegistryError,
    RegistryNotFound,
    RegistryTLSError,
    RegistryUnauthorized,
    RegistryUnavailable,
    UnsupportedContent,
)
from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from email.message import Message
    from typing import Any, BinaryIO

    from portside.distribution.config import AuthConfig, RegistryConfig
    from portside.distribution.hosts import Endpoint

__all__ = ["CHUNK", "Response", "Session", "error_from_response", "retry_after"]

#: reads and writes of bodies go by this much
CHUNK = 1 << 20
MAX_REDIRECTS = 10
#: a body read in full (not streamed) may be this large
MAX_BODY = 16 << 20
_ERROR_BODY_MAX = 64 << 10
_REDIRECTS = (301, 302, 303, 307, 308)
_RETRY_STATUSES = (500, 502, 503, 504)
#: TLS errors that are a dropped connection, not a failed handshake
_SSL_CLOSED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)

_CODE_CLASSES: dict[str, type[RegistryError]] = {
    "NAME_UNKNOWN": RegistryNotFound,
    "MANIFEST_UNKNOWN": RegistryNotFound,
    "BLOB_UNKNOWN": RegistryNotFound,
    "BLOB_UPLOAD_UNKNOWN": RegistryNotFound,
    "UNAUTHORIZED": RegistryUnauthorized,
    "DENIED": RegistryDenied,
    "TOOMANYREQUESTS": RateLimited,
    "UNAVAILABLE": RegistryUnavailable,
    "UNSUPPORTED": UnsupportedContent,
    "DIGEST_INVALID": BadContent,
    "SIZE_INVALID": BadContent,
    "MANIFEST_INVALID": BadContent,
    "MANIFEST_UNVERIFIED": BadContent,
    "MANIFEST_BLOB_UNKNOWN": BadContent,
    "BLOB_UPLOAD_INVALID": BadContent,
    "NAME_INVALID": BadContent,
    "TAG_INVALID": BadContent,
    "RANGE_INVALID": BadContent,
}
_STATUS_CLASSES: dict[int, type[RegistryError]] = {
    400: BadContent,
    401: RegistryUnauthorized,
    403: RegistryDenied,
    404: RegistryNotFound,
    405: UnsupportedContent,
    429: RateLimited,
}
_STATUS_WORDS = {
    401: "unauthorized: authentication required",
    403: "denied: requested access to the resource is denied",
    404: "not found",
    429: "toomanyrequests: too many requests",
}


class Response:
    """A registry's answer. ``headers`` is case-insensitive (``get``, ``get_all``). The
    body is read with :meth:`read` / :meth:`iter_chunks`; the connection returns to the
    pool once the body has been read to its end, and is dropped by :meth:`close` before."""

    def __init__(
        self,
        raw: http.client.HTTPResponse,
        url: str,
        release: Callable[[bool], None],
    ) -> None:
        self.status: int = raw.status
        self.reason: str = raw.reason
        self.headers: Message = raw.headers
        self.url = url
        self._raw = raw
        self._release: Callable[[bool], None] | None = release
        self._buffer: bytes | None = None
        self._pos = 0
        #: how many times the request was sent for this answer (retries included)
        self.attempts = 1

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all when negative); b"" at the end."""
        if self._buffer is not None:
            end = len(self._buffer) if n < 0 else self._pos + n
            data = self._buffer[self._pos : end]
            self._pos += len(data)
            return data
        if self._release is None:
            return b""
        try:
            data = self._raw.read() if n < 0 else self._raw.read(n)
        except BaseException:
            self._finish(reusable=False)
            raise
        if not data and n != 0 and self._raw.length:
            # http.client ends a short body quietly: a cut connection must not pass for
            # the end of the blob
            self._finish(reusable=False)
            raise http.client.IncompleteRead(b"", self._raw.length)
        if self._raw.isclosed():
            self._finish(reusable=not self._raw.will_close)
        return data

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while data := self.read(size):
            yield data

    def buffer(self, limit: int = MAX_BODY) -> bytes:
        """Read the whole body (at most ``limit`` bytes, BadContent beyond) into memory,
        releasing the connection; :meth:`read` then serves from it."""
        if self._buffer is None:
            data = self.read(limit + 1)
            while len(data) <= limit and (more := self.read(limit + 1 - len(data))):
                data += more
            if len(data) > limit:
                self.close()
                raise BadContent(f"{self.url}: answer larger than {limit} bytes")
            self._buffer = data
        return self._buffer

    def json(self) -> Any:
        try:
            return json.loads(self.buffer())
        except ValueError as exc:
            raise BadContent(f"{self.url}: invalid JSON in the answer: {exc}") from exc

    def close(self) -> None:
        """Done with it: an unread body closes the connection."""
        if self._release is not None:
            self._raw.close()
            self._finish(reusable=False)

    def _finish(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(reusable)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


# --- connections ----------------------------------------------------------------------


def _host_port(netloc: str, scheme: str) -> tuple[str, int]:
    parts = urlsplit(f"{scheme}://{netloc}")
    port = parts.port or (443 if scheme == "https" else 80)
    return parts.hostname or "", port


class _Pool:
    """Idle keep-alive connections to one ``scheme://netloc``."""

    def __init__(
        self,
        scheme: str,
        netloc: str,
        ctx: Callable[[], ssl.SSLContext],
        timeouts: tuple[float, float],
    ) -> None:
        self.scheme, self.netloc = scheme, netloc
        self._ctx = ctx
        self._connect_timeout, self._read_timeout = timeouts
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    def get(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it is a reused one (which may have gone stale)."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.sock is not None:
                    return conn, True
        host, port = _host_port(self.netloc, self.scheme)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._connect_timeout, context=self._ctx(), blocksize=CHUNK
            )
        else:
            conn = http.client.HTTPConnection(
                host, port, timeout=self._connect_timeout, blocksize=CHUNK
            )
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        conn.sock.settimeout(self._read_timeout)
        # headers and a file body go in separate writes: no Nagle delay on the last one
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# --- errors ---------------------------------------------------------------------------


def _words(code: str) -> str:
    """Docker's text of an error code: ``MANIFEST_UNKNOWN`` -> ``manifest unknown``."""
    return code.lower().replace("_", " ")


def error_from_response(status: int, body: bytes, *, host: str = "") -> RegistryError:
    """The error for a registry's answer ``status`` with ``body`` (distribution's
    ``{"errors": [{"code", "message", "detail"}]}``, or anything): Docker's text,
    ``manifest unknown: manifest unknown``; a 401/403 names the registry ``host``."""
    errors: list[dict[str, Any]] = []
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        errors = [e for e in doc["errors"] if isinstance(e, dict)]
    code = str(errors[0].get("code") or "") if errors else ""
    if errors:
        parts = []
        for e in errors:
            words = _words(str(e.get("code") or "unknown"))
            parts.append(f"{words}: {e.get('message') or words}")
        text = "; ".join(parts)
    elif status in _STATUS_WORDS:
        text = _STATUS_WORDS[status]
    else:
        text = f"received unexpected HTTP status: {status} {http.client.responses.get(status, '')}"
        text = text.rstrip()
    cls = _CODE_CLASSES.get(code) or _STATUS_CLASSES.get(status)
    if cls is None:
        cls = RegistryUnavailable if status >= 500 else RegistryError
    if host and cls in (RegistryUnauthorized, RegistryDenied, RegistryUnavailable):
        text = f"{text} ({host})"
    return cls(text, code=code, status=status)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if is_number(value):
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _connection_detail(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the registry closed the connection without an answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _not_tls(exc: ssl.SSLError) -> bool:
    """An answer that is not TLS at all: a plain-http server."""
    reason = str(getattr(exc, "reason", "") or "")
    return reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")


def _drain(resp: Response) -> None:
    """Read a small (error) body into the response and release the connection."""
    try:
        resp.buffer(_ERROR_BODY_MAX)
    except (OSError, http.client.HTTPException, BadContent):
        resp._buffer = b""
        resp.close()


def _rewind(body: bytes | BinaryIO | None, start: int | None) -> bool:
    """Put a file body back at ``start`` for another try; False when it cannot be."""
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        return True
    if start is None:
        return False
    try:
        body.seek(start)
    except OSError:
        return False
    return True


def _tell(body: bytes | BinaryIO | None) -> int | None:
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        return None
    try:
        return body.tell() if body.seekable() else None
    except (AttributeError, OSError):
        return None


# --- the session ----------------------------------------------------------------------


class Session:
    """Requests to one :class:`Endpoint`, with its TLS settings, an :class:`Authorizer`
    for ``auth`` and connection pools (the endpoint's host, and the hosts redirects and
    token realms lead to: all with the endpoint's TLS context, as Docker's transport).

    ``backoff`` is the first retry's wait (doubling each time), ``max_wait`` the cap of
    any wait (back-off or ``Retry-After``); ``sleep`` is injectable for tests.
    ``retry_connect=False``: a connection failure is reported at once (the caller has a
    fallback endpoint)."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: RegistryConfig,
        auth: AuthConfig,
        cache: TokenCache | None = None,
        *,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        retry_connect: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.attempts = max(1, config.max_download_attempts)
        self.backoff_base = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.retry_connect = retry_connect
        self._timeouts = (connect_timeout, read_timeout)
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str], _Pool] = {}
        self.authorizer = Authorizer(
            auth, cache if cache is not None else TokenCache(), self._fetch, host=endpoint.host
        )

    # --- plumbing -----------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            from portside.distribution.hosts import ssl_context

            ep = self.endpoint
            self._ssl = ssl_context(ep.host, self.config, verify=not ep.insecure)
        return self._ssl

    def _pool(self, scheme: str, netloc: str) -> _Pool:
        key = (scheme, netloc.lower())
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(scheme, netloc, self._context, self._timeouts)
            return pool

    def close(self) -> None:
        """Close the idle connections (responses still being read keep theirs)."""
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith("/"):
            return self.endpoint.url(path_or_url)
        return path_or_url

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1, 2...)."""
        return min(self.max_wait, self.backoff_base * 2 ** (attempt - 1))

    def _fetch(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Response:
        """The Authorizer's way to a token server: no auth, errors not mapped."""
        return self.request(method, url, headers=headers, body=body, auth=False, check=False)

    def _send_once(
        self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RegistryError(f"unsupported URL {url!r} (from registry {self.endpoint.host})")
        pool = self._pool(parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        start = _tell(body)
        while True:
            conn, reused = pool.get()
            try:
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused and _rewind(body, start):
                    continue  # an idle connection the server had closed: once more, fresh
                raise

            def release(reusable: bool, conn: http.client.HTTPConnection = conn) -> None:
                if reusable and conn.sock is not None:
                    pool.put(conn)
                else:
                    conn.close()

            resp = Response(raw, url, release)
            if method == "HEAD":
                resp.buffer()
            return resp

    # --- requests -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        scopes: list[str] | None = None,
        idempotent: bool = True,
        stream: bool = False,
        auth: bool = True,
        check: bool = True,
    ) -> Response:
        """Send a request to the endpoint (``/v2/...``) or to a URL it gave.

        ``scopes`` are the token scopes it needs. ``stream``: the body is left to read
        (close the response); else it is read in full. ``check``: a status >= 400 raises
        the mapped :class:`RegistryError` (else it is returned). A file ``body`` needs
        ``Content-Length`` in ``headers``; it is retried only when seekable."""
        url = self.url(path_or_url)
        scopes = list(scopes or [])
        authorization = self.authorizer.header(scopes) if auth else None
        start = _tell(body)
        failures = redirects = tries = 0
        answered = False
        while True:
            same_host = urlsplit(url).netloc.lower() == self.endpoint.host.lower()
            sent = dict(headers or {})
            if authorization and same_host:
                sent["Authorization"] = authorization
            if tries and not _rewind(body, start):
                raise RegistryUnavailable(f"cannot send the body to {url} again")
            tries += 1
            retry = idempotent and self.retry_connect and _rewind(body, start)
            resp = self._send_or_wait(method, url, sent, body, failures + 1, retry=retry)
            if resp is None:
                failures += 1
                continue
            status = resp.status
            if status == 401 and auth and same_host and not answered:
                challenges = parse_challenges(resp.headers.get_all("WWW-Authenticate") or [])
                _drain(resp)
                answered = True
                retry_with = self.authorizer.answer(challenges, scopes, rejected=authorization)
                if retry_with is None:
                    return self._finish(resp, check)
                authorization = retry_with
                continue
            if status in _REDIRECTS and resp.headers.get("Location"):
                resp.close()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryError(f"too many redirects from {self.url(path_or_url)}")
                url = urljoin(url, resp.headers["Location"])
                if status == 303 and method != "HEAD":  # see other: GET it
                    method, body, start = "GET", None, None
                continue
            wait = self._retry_wait(resp, idempotent, failures + 1)
            if wait is not None and _rewind(body, start):
                resp.close()
                failures += 1
                self.sleep(wait)
                continue
            resp.attempts = failures + 1
            return self._finish(resp, check, stream)

    def _send_or_wait(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | BinaryIO | None,
        attempt: int,
        *,
        retry: bool,
    ) -> Response | None:
        """Send once; on a connection failure that may be retried, wait the back-off
        and return None. A failed TLS handshake is never retried."""
        try:
            return self._send_once(method, url, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, ssl.SSLError) and not isinstance(exc, _SSL_CLOSED):
                raise self._tls_error(url, exc) from exc
            if not retry or attempt >= self.attempts:
                raise self._connection_error(method, url, exc, attempt) from exc
            self.sleep(self.backoff(attempt))
            return None

    def _retry_wait(self, resp: Response, idempotent: bool, attempt: int) -> float | None:
        """How long to wait before trying again, or None: no retry."""
        if attempt >= self.attempts:
            return None
        if resp.status == 429:
            after = retry_after(resp.headers.get("Retry-After"))
            return min(self.max_wait, after if after is not None else self.backoff(attempt))
        if resp.status in _RETRY_STATUSES and idempotent:
            return self.backoff(attempt)
        return None

    def _finish(self, resp: Response, check: bool, stream: bool = False) -> Response:
        if resp.status >= 400 and check:
            raise self._status_error(resp)
        if not stream:
            resp.buffer()
        return resp

    def _status_error(self, resp: Response) -> RegistryError:
        try:
            body = resp.read(_ERROR_BODY_MAX)
        except (OSError, http.client.HTTPException):
            body = b""
        resp.close()
        err = error_from_response(resp.status, body, host=self.endpoint.host)
        tries = resp.attempts
        if isinstance(err, RateLimited) or (err.status >= 500 and tries > 1):
            text = str(err).removesuffix(f" ({self.endpoint.host})")
            err = type(err)(
                f"{text} (registry {self.endpoint.host}, after {tries} attempts)",
                code=err.code,
                status=err.status,
            )
        return err

    def _connection_error(
        self, method: str, url: str, exc: BaseException, tries: int
    ) -> RegistryError:
        netloc = urlsplit(url).netloc
        text = f'{method.lower()} "{url}": dial tcp {netloc}: {_connection_detail(exc)}'
        if isinstance(exc, http.client.HTTPException | ConnectionResetError):
            text = f'{method.lower()} "{url}": {_connection_detail(exc)}'
        if tries > 1:
            text += f" (after {tries} attempts)"
        return RegistryUnavailable(text)

    def _tls_error(self, url: str, exc: ssl.SSLError) -> RegistryTLSError:
        netloc = urlsplit(url).netloc
        if isinstance(exc, ssl.SSLCertVerificationError):
            from portside.distribution.hosts import certs_path

            reason = exc.verify_message or exc.reason or str(exc)
            try:
                where = certs_path(netloc, self.config) + "/ca.crt"
            except InvalidArgument:
                where = f"{self.config.certs_dir}/HOST/ca.crt"
            return RegistryTLSError(
                f"tls: failed to verify certificate for {netloc}: {reason} (add its CA to {where})"
            )
        if _not_tls(exc):
            return RegistryTLSError(
                f"http: server gave HTTP response to HTTPS client ({netloc}: a plain-http "
                "registry must be listed in insecure-registries)"
            )
        return RegistryTLSError(f"tls: handshake with {netloc} failed: {exc.reason or exc}")
