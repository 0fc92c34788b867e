"""A fake Docker Engine API server for tests: stdlib ``http.server`` on a unix
socket, recording every request and answering from routes the test sets.

    with FakeDaemon(tmp_path) as fake:
        fake.route("GET", "/containers/json", json=[...])
        fake.route("POST", "/containers/{id}/attach", hijack=handler)  # handler(sock)
        ... run the CLI against fake.host ...
        fake.requests[-1].query["all"] == ["1"]
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["FakeDaemon", "Recorded", "frame"]


def frame(stream: int, data: bytes) -> bytes:
    """One frame of docker's multiplexed stream."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


class Recorded:
    """One request as the fake saw it (``path`` without the /v1.NN prefix)."""

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} {self.query}>"


class _Route:
    def __init__(
        self,
        method: str,
        pattern: str,
        *,
        status: int,
        body: bytes,
        headers: dict[str, str],
        handler: Callable | None,
        hijack: Callable | None,
        chunks: Iterable[bytes] | None,
    ) -> None:
        self.method = method
        self.parts = pattern.strip("/").split("/")
        self.status = status
        self.body = body
        self.headers = headers
        self.handler = handler
        self.hijack = hijack
        self.chunks = chunks

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        parts = path.strip("/").split("/")
        if len(parts) != len(self.parts):
            return None
        params = {}
        for want, got in zip(self.parts, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeDaemon


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _handle(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        path = url.path
        parts = path.split("/")
        if len(parts) > 1 and parts[1].startswith("v1."):
            path = "/" + "/".join(parts[2:])
        body = self._read_body()
        rec = Recorded(
            self.command,
            path,
            parse_qs(url.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        fake.requests.append(rec)
        for route in reversed(fake.routes):
            params = route.match(self.command, path)
            if params is not None:
                return self._answer(route, rec, params)
        self._send(404, json.dumps({"message": f"page not found: {path}"}).encode(), {})
        return None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, route: _Route, rec: Recorded, params: dict[str, str]) -> None:
        if route.hijack is not None:
            self.wfile.write(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: "
                b"application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\n"
                b"Upgrade: tcp\r\n\r\n"
            )
            self.wfile.flush()
            route.hijack(self.connection, rec, params)
            self.close_connection = True
            return
        status, body, headers = route.status, route.body, dict(route.headers)
        if route.handler is not None:
            status, body, headers = route.handler(rec, params)
        if route.chunks is not None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in route.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class FakeDaemon:
    """The fake server on ``<dir>/docker.sock``; ``host`` is its unix:// address."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(str(directory), "docker.sock")
        self.host = f"unix://{self.path}"
        self.requests: list[Recorded] = []
        self.routes: list[_Route] = []
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def route(
        self,
        method: str,
        pattern: str,
        *,
        json_body: Any = None,
        status: int = 200,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        handler: Callable | None = None,
        hijack: Callable | None = None,
        chunks: Iterable[bytes] | None = None,
    ) -> None:
        """Answer ``method pattern`` (``{name}`` matches one segment); later routes win."""
        body = (
            raw
            if raw is not None
            else (json.dumps(json_body).encode() if json_body is not None else b"")
        )
        if status == 204:
            body = b""
        self.routes.append(
            _Route(
                method,
                pattern,
                status=status,
                body=body,
                headers=dict(headers or {}),
                handler=handler,
                hijack=hijack,
                chunks=chunks,
            )
        )

    def error(self, method: str, pattern: str, status: int, message: str) -> None:
        self.route(method, pattern, status=status, json_body={"message": message})

    def find(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def __enter__(self) -> FakeDaemon:
        self.server = _Server(self.path, _Handler)
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def close_stdin_reader(sock: socket.socket) -> bytes:
    """Read what the client sends until it half-closes (for hijack handlers)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
