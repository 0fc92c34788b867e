"""Docker's hijacked connections (attach, exec start) and multiplexed frames.

The handler answers ``101 UPGRADED`` (with ``Upgrade: tcp``) or ``200``, then takes the
client's transport away from aiohttp and bridges it with the Engine's socket both
ways: client bytes → the process's stdin; client EOF → ``shutdown(SHUT_WR)``; the
socket's EOF → the client connection is flushed and closed.

:func:`bridge_websocket` does the same over a websocket (``attach/ws``), as Docker's:
output never multiplexed, one binary message per chunk; every message's payload, text
or binary, goes to stdin; either side's end ends both.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator

from aiohttp import web

from portside import __version__

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
_HIGH_WATER = 1 << 20
_DOCKER_PY_GRACE = 0.05


def stream_type(request: web.Request, tty: bool) -> str:
    """The Content-Type of a log/attach/exec stream: multiplexed (no TTY) since API 1.42."""
    version = request.match_info.get("version") or "1.50"
    if tty or tuple(int(p) for p in version.split(".")) < (1, 42):
        return RAW_STREAM
    return MULTIPLEXED_STREAM


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: 8-byte header, then the payload."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def wants_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "tcp"


def response_head(upgrade: bool, content_type: str) -> bytes:
    """The raw status line and headers of a hijacked response."""
    if upgrade:
        lines = ["HTTP/1.1 101 UPGRADED", "Connection: Upgrade", "Upgrade: tcp"]
    else:
        lines = ["HTTP/1.1 200 OK"]
    lines += [
        f"Content-Type: {content_type}",
        "Api-Version: 1.50",
        f"Server: Portside/{__version__} (linux)",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _ClientSide(asyncio.Protocol):
    """Takes over the client transport: incoming bytes to a queue, flow control out."""

    def __init__(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol | None) -> None:
        self.transport = transport
        self.previous = previous  # aiohttp's handler: told when the connection ends
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.lost = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def eof_received(self) -> bool:
        self.incoming.put_nowait(b"")  # half-close: keep sending output
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.put_nowait(None)
        self.lost.set()
        self._can_write.set()
        if self.previous is not None:  # else aiohttp keeps counting the connection as open
            previous, self.previous = self.previous, None
            previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        await self._can_write.wait()


async def hijack(
    request: web.Request, sock: socket.socket, *, content_type: str = RAW_STREAM
) -> web.StreamResponse:
    """Answer the request and bridge its connection with ``sock`` until either ends."""
    transport = request.transport
    if transport is None or transport.is_closing():
        sock.close()
        return web.Response(status=204)
    upgrade = wants_upgrade(request)
    # bytes the client sent after its headers, already read by aiohttp
    tail = bytes(getattr(request.protocol, "_message_tail", b"") or b"")
    client = _ClientSide(transport, request.protocol)  # type: ignore[arg-type]
    transport.set_protocol(client)
    transport.set_write_buffer_limits(high=_HIGH_WATER)
    if tail:
        client.incoming.put_nowait(tail)
    transport.write(response_head(upgrade, content_type))
    sock.setblocking(False)
    if request.headers.get("User-Agent", "").startswith("docker-sdk-python"):
        # docker-py reads the response head through a buffered reader, then the stream
        # from the raw socket: output that arrives with the head would be lost
        await asyncio.sleep(_DOCKER_PY_GRACE)
    try:
        await _bridge(client, sock)
    finally:
        sock.close()
        if not transport.is_closing():
            transport.close()  # flushes what is buffered, then closes
    resp = web.StreamResponse(status=200)
    resp.force_close()
    return resp


async def _received(sock: socket.socket) -> AsyncIterator[bytes]:
    """What arrives on non-blocking ``sock`` until its EOF or an error."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await loop.sock_recv(sock, 65536)
        except OSError:
            return
        if not data:
            return
        yield data


async def _bridge(client: _ClientSide, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()

    async def client_to_sock() -> None:
        while True:
            data = await client.incoming.get()
            if not data:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
            try:
                await loop.sock_sendall(sock, data)
            except OSError:
                return

    async def sock_to_client() -> None:
        async for data in _received(sock):
            if client.lost.is_set():
                return
            client.transport.write(data)
            await client.drain()

    inbound = asyncio.ensure_future(client_to_sock())
    outbound = asyncio.ensure_future(sock_to_client())
    lost = asyncio.ensure_future(client.lost.wait())
    try:
        await asyncio.wait({outbound, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (inbound, outbound, lost):
            task.cancel()
        await asyncio.gather(inbound, outbound, lost, return_exceptions=True)


class Demux:
    """Payloads out of Docker's multiplexed stream, fed in chunks of any size."""

    __slots__ = ("_buf",)

    _HEADER = struct.Struct(">BxxxL")

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out = []
        size, start = self._HEADER.size, 0
        while len(buf) - start >= size:
            _stream, length = self._HEADER.unpack_from(buf, start)
            end = start + size + length
            if len(buf) < end:
                break
            if length:
                out.append(bytes(buf[start + size : end]))
            start = end
        del buf[:start]  # once per feed: a frame split over many chunks is not recopied
        return out


async def bridge_websocket(
    ws: web.WebSocketResponse, sock: socket.socket, *, multiplexed: bool
) -> None:
    """Bridge a prepared websocket with the Engine's attach socket until either ends
    (the container's output ends, or the client closes); ``multiplexed``: the socket
    carries Docker's frames (no TTY), whose payloads are sent raw."""
    from aiohttp import WSMsgType

    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def sock_to_ws() -> None:
        demux = Demux() if multiplexed else None
        async for data in _received(sock):
            for payload in demux.feed(data) if demux is not None else (data,):
                await ws.send_bytes(payload)

    async def ws_to_sock() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                break
            try:
                await loop.sock_sendall(sock, data)
            except OSError:
                return

    tasks = {asyncio.ensure_future(sock_to_ws()), asyncio.ensure_future(ws_to_sock())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sock.close()
        await ws.close()
