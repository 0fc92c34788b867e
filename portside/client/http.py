"""HTTP/1.1 over a unix socket, TCP or TLS, for the Docker Engine API.

Deliberately small (no ``http.client``, no ``urllib``): bodies read by
Content-Length, chunked encoding or until close, and ``hijack`` for attach/exec,
which hands back the raw socket after a ``101 UPGRADED`` with any bytes already
read. A connection whose response was read to its end is kept for the next
request, as docker's clients do (a new connection costs the daemon ~0.15 ms).
"""

from __future__ import annotations

import os

from portside.errors import InvalidArgument, PortsideError, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket as Socket  # what every connection is, TLS or not
    from collections.abc import Iterator

__all__ = [
    "APIError",
    "ConnectionFailed",
    "Response",
    "TLSOptions",
    "Transport",
    "encode_query",
    "parse_host",
]

DEFAULT_HOST = "unix:///run/portside.sock"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class ConnectionFailed(Unavailable):
    """The daemon's socket does not answer."""

    def __init__(self, host: str, cause: str = "") -> None:
        super().__init__(f"Cannot connect to the Portside daemon at {host}. Is the daemon running?")
        self.host = host
        self.cause = cause


class APIError(PortsideError):
    """The daemon answered with an error status; ``message`` is its text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def quote(text: str) -> str:
    """Percent-encode ``text`` for a URL path segment or query value."""
    out = []
    for byte in text.encode():
        out.append(chr(byte) if byte in _SAFE else f"%{byte:02X}")
    return "".join(out)


def encode_query(query: dict[str, object] | None) -> str:
    """``?a=1&b=x`` from a dict; lists repeat the key, None values are left out,
    booleans become 1/0."""
    if not query:
        return ""
    parts = []
    for key, value in query.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            text = str(int(item)) if item is True or item is False else str(item)
            parts.append(f"{quote(key)}={quote(text)}")
    return "?" + "&".join(parts) if parts else ""


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path`` → ("unix", "/path"); ``tcp://h:p`` → ("tcp", "h:p")."""
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not path:
            raise InvalidArgument(f"invalid host {host!r}: missing socket path")
        return "unix", path
    for scheme in ("tcp://", "https://", "http://"):
        if host.startswith(scheme):
            address = host[len(scheme) :].rstrip("/")
            if not address:
                raise InvalidArgument(f"invalid host {host!r}: missing address")
            return "tcp", address
    if host.startswith("/"):
        return "unix", host
    raise InvalidArgument(f"invalid host {host!r}: unsupported scheme (use unix:// or tcp://)")


class TLSOptions:
    """Client TLS: CA to verify the daemon with, our certificate and key."""

    def __init__(
        self,
        *,
        verify: bool = True,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
    ) -> None:
        self.verify = verify
        self.ca = ca
        self.cert = cert
        self.key = key

    def context(self) -> object:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            if self.ca:
                ctx.load_verify_locations(self.ca)
            else:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert and self.key:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


class Transport:
    """Opens connections to one daemon address."""

    def __init__(self, host: str = DEFAULT_HOST, tls: TLSOptions | None = None) -> None:
        self.host = host
        self.scheme, self.address = parse_host(host)
        self.tls = tls
        self.timeout: float | None = None
        self.idle: list[Socket] = []  # kept-alive connections, the newest last

    def _reuse(self) -> Socket | None:
        """An idle connection the daemon has not closed since, or None."""
        import select

        while self.idle:
            try:
                sock = self.idle.pop()
            except IndexError:  # another thread took the last one
                return None
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):  # nothing to read: neither EOF nor stray bytes
                sock.settimeout(self.timeout)
                return sock
            sock.close()
        return None

    def connect(self) -> Socket:
        try:
            if self.scheme == "unix":
                # the C module: `socket` costs a CLI command ~5 ms of imports (enum)
                import _socket

                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(self.address)
                except BaseException:
                    sock.close()
                    raise
                return sock
            name, _, port = self.address.rpartition(":")
            if not name:
                name, port = self.address, ("2376" if self.tls else "2375")
            name = name.strip("[]")
            import socket

            sock = socket.create_connection((name, int(port)), timeout=self.timeout)
        except (OSError, ValueError) as exc:
            raise ConnectionFailed(self.host, str(exc)) from exc
        if self.tls is None:
            return sock
        import ssl

        try:
            return self.tls.context().wrap_socket(sock, server_hostname=name)  # type: ignore[attr-defined]
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ConnectionFailed(self.host, str(exc)) from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, object] | None = None,
        body: bytes | None = None,
        stream: Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        hijack: bool = False,
    ) -> Response:
        """Send one request and read the status line and headers."""
        head = [f"{method} {path}{encode_query(query)} HTTP/1.1", "Host: docker"]
        head.append("User-Agent: portside-cli")
        for key, value in (headers or {}).items():
            head.append(f"{key}: {value}")
        if hijack:
            head += ["Connection: Upgrade", "Upgrade: tcp"]
        if stream is not None:
            head.append("Transfer-Encoding: chunked")
        elif body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body or b'')}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        sock = None if hijack or stream is not None else self._reuse()
        if sock is not None:
            try:
                return self._exchange(sock, method, message, None, hijack)
            except ConnectionFailed:
                # the daemon closed it as we sent (its idle timeout, 75 s) and may not
                # have seen the request: only what is safe to repeat goes again
                if method not in ("GET", "HEAD"):
                    raise
        return self._exchange(self.connect(), method, message, stream, hijack)

    def _exchange(
        self,
        sock: Socket,
        method: str,
        message: bytes,
        stream: Iterator[bytes] | None,
        hijack: bool,
    ) -> Response:
        try:
            sock.sendall(message)
            if stream is not None:
                for chunk in stream:
                    if chunk:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
            return Response(sock, method, idle=None if hijack else self.idle)
        except OSError as exc:
            sock.close()
            raise ConnectionFailed(self.host, str(exc)) from exc
        except BaseException:
            sock.close()
            raise


class Response:
    """Status, headers (lower-case names) and a body readable once."""

    def __init__(self, sock: Socket, method: str = "GET", idle: list[Socket] | None = None) -> None:
        self.sock = sock
        self._buf = b""
        self._eof = False
        self._ended = False  # the body was read to its end
        line = self._readline()
        if not line:
            raise ConnectionFailed("daemon", "connection closed before a response")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError) as exc:
            raise APIError(502, f"malformed status line {line!r}") from exc
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        while True:
            line = self._readline().rstrip(b"\r\n")
            if not line:
                break
            key, _, value = line.decode("latin-1").partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else -1
        if method == "HEAD" or self.status in (204, 304) or self.status < 200:
            self._remaining = 0
            self._chunked = False
        # where the connection goes back once the body is read: only for a framed
        # body of an HTTP/1.1 answer that does not close
        keep = parts[0] == "HTTP/1.1" and self.headers.get("connection", "").lower() != "close"
        self._idle = idle if keep and (self._chunked or self._remaining >= 0) else None

    # -- low-level buffered reads
    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _readline(self) -> bytes:
        while b"\n" not in self._buf:
            if not self._fill():
                line, self._buf = self._buf, b""
                return line
        line, _, self._buf = self._buf.partition(b"\n")
        return line + b"\n"

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size and self._fill():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    # -- body
    def iter_chunks(self) -> Iterator[bytes]:
        """The body as it arrives (de-chunked)."""
        try:
            if self._chunked:
                while True:
                    size_line = self._readline()
                    if not size_line:
                        return
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self._ended = self._readline() == b"\r\n"  # no trailers
                        return
                    data = self._read_exact(size)
                    self._read_exact(2)
                    yield data
            elif self._remaining >= 0:
                while self._remaining > 0:
                    if not self._buf and not self._fill():
                        return
                    data = self._buf[: self._remaining]
                    self._buf = self._buf[len(data) :]
                    self._remaining -= len(data)
                    yield data
                self._ended = True
            else:
                while True:
                    if self._buf:
                        data, self._buf = self._buf, b""
                        yield data
                    if not self._fill():
                        return
        finally:
            pass

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def iter_lines(self) -> Iterator[bytes]:
        """Newline-delimited records of the body (JSON streams)."""
        pending = b""
        for chunk in self.iter_chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    def iter_json(self) -> Iterator[object]:
        """A stream of JSON values, one per line or concatenated."""
        import json

        decoder = json.JSONDecoder()
        pending = ""
        for chunk in self.iter_chunks():
            pending += chunk.decode("utf-8", "replace")
            while True:
                pending = pending.lstrip()
                if not pending:
                    break
                try:
                    value, end = decoder.raw_decode(pending)
                except ValueError:
                    break
                pending = pending[end:]
                yield value

    def json(self) -> object:
        from portside.oci import fastjson

        data = self.read()
        return fastjson.loads(data) if data.strip() else None

    def error_message(self) -> str:
        data = self.read()
        try:
            from portside.oci import fastjson

            message = fastjson.loads(data).get("message")
            if isinstance(message, str):
                return message
        except (ValueError, AttributeError):
            pass
        text = data.decode("utf-8", "replace").strip()
        return text or f"{self.status} {self.reason}".strip()

    def detach(self) -> tuple[Socket, bytes]:
        """The raw socket of a hijacked connection and the bytes already buffered."""
        sock, buf = self.sock, self._buf
        self._buf = b""
        self._idle = None
        return sock, buf

    def close(self) -> None:
        """Give the connection back for the next request when the body was read to
        its end (and nothing more arrived); close it otherwise."""
        idle, self._idle = self._idle, None
        if idle is not None and self._ended and not self._buf:
            idle.append(self.sock)
            return
        try:
            self.sock.close()
        except OSError:
            pass


def default_cert_path() -> str:
    """Where ca.pem, cert.pem and key.pem are looked for."""
    return (
        os.environ.get("PORTSIDE_CERT_PATH")
        or os.environ.get("DOCKER_CERT_PATH")
        or os.path.join(os.path.expanduser("~"), ".portside")
    )
