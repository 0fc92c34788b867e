"""Hijacked attach and exec start: 101 UPGRADED, raw bidirectional bytes, half-close."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from aiohttp.test_utils import TestServer

from portside.api import create_app
from tests.unit.fake_engine import FakeEngine


async def raw_request(
    port: int, method: str, path: str, *, body: bytes = b"", upgrade: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = [
        f"{method} {path} HTTP/1.1",
        "Host: docker",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if upgrade:
        headers += ["Connection: Upgrade", "Upgrade: tcp"]
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def with_server(engine: FakeEngine, body: Any) -> Any:
    server = TestServer(create_app(engine))
    await server.start_server()
    try:
        return await asyncio.wait_for(body(server.port), 10)
    finally:
        await server.close()


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def _create(engine: FakeEngine, cmd: list[str], tty: bool = False) -> str:
    return engine.container_create(None, {"Image": "busybox", "Cmd": cmd, "Tty": tty}, {})["Id"]


def test_attach_upgrade_stdin_half_close() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["sponge"])  # answers only after stdin's EOF

    async def body(port: int) -> tuple[bytes, bytes]:
        path = f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1"
        reader, writer, head = await raw_request(port, "POST", path)
        writer.write(b"ping\n")
        await writer.drain()
        writer.write_eof()  # the CLI's CloseWrite: output must still arrive
        out = await reader.read()
        writer.close()
        return head, out

    head, out = asyncio.run(with_server(engine, body))
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Upgrade: tcp" in head
    assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
    assert read_frames(out) == [(1, b"ping\n")]


def test_attach_before_start_sees_output_then_eof() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["echo", "hi"], tty=True)

    async def body(port: int) -> tuple[bytes, bytes]:
        reader, writer, head = await raw_request(
            port, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", upgrade=False
        )
        await asyncio.to_thread(engine.container_start, cid)
        out = await reader.read()
        writer.close()
        return head, out

    head, out = asyncio.run(with_server(engine, body))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"application/vnd.docker.raw-stream" in head
    assert out == b"hi\n"


def test_attach_unknown_container_is_404_json() -> None:
    async def body(port: int) -> bytes:
        reader, writer, head = await raw_request(port, "POST", "/containers/nope/attach?stream=1")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        rest = await reader.readexactly(length)
        writer.close()
        return head + rest

    out = asyncio.run(with_server(FakeEngine(), body))
    assert out.startswith(b"HTTP/1.1 404")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {"message": "No such container: nope"}


def test_exec_start_hijack_echoes_stdin() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["sleep", "9"])
    engine.container_start(cid)
    eid = engine.exec_create(cid, {"Cmd": ["cat"], "AttachStdin": True})["Id"]

    async def body(port: int) -> tuple[bytes, bytes]:
        reader, writer, head = await raw_request(
            port, "POST", f"/exec/{eid}/start", body=json.dumps({"Detach": False}).encode()
        )
        writer.write(b"abc")
        writer.write_eof()
        out = await reader.read()
        writer.close()
        return head, out

    head, out = asyncio.run(with_server(engine, body))
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert read_frames(out) == [(1, b"abc"), (2, b"EOF\n")]


def test_client_disconnect_closes_engine_socket() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["cat"])
    sockets: list[Any] = []
    original = engine.container_attach

    def attach(*args: Any, **kw: Any) -> Any:
        tty, sock = original(*args, **kw)
        sockets.append(sock)
        return tty, sock

    engine.container_attach = attach  # type: ignore[method-assign]

    async def body(port: int) -> None:
        _, writer, _ = await raw_request(port, "POST", f"/containers/{cid}/attach?stream=1&stdin=1")
        writer.close()
        for _ in range(100):
            if sockets and sockets[0].fileno() == -1:
                return
            await asyncio.sleep(0.02)

    asyncio.run(with_server(engine, body))
    assert sockets[0].fileno() == -1


def test_logs_follow_stops_when_the_client_goes(tmp_path: Any) -> None:
    """A client leaving ``logs -f`` cancels its handler and closes the engine's iterator."""
    import http.client
    import socket
    import time

    from tests.unit.fake_engine import ServerThread

    engine = FakeEngine()
    cid = engine.container_create(
        None, {"Image": "busybox", "Cmd": ["echo", "x"], "Labels": {"tick": "1"}}, {}
    )["Id"]
    engine.container_start(cid)
    path = str(tmp_path / "d.sock")
    with ServerThread(engine, [f"unix://{path}"]):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        conn = http.client.HTTPConnection("x")
        conn.sock = sock
        conn.request("GET", f"/containers/{cid}/logs?follow=1&stdout=1")
        resp = conn.getresponse()
        first = resp.read(8 + 2)
        conn.close()
        sock.close()
        deadline = time.monotonic() + 3
        while engine.followers_closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert first == b"\x01\x00\x00\x00\x00\x00\x00\x02x\n"
    assert engine.followers_closed == 1


def test_hijacked_connection_is_released() -> None:
    """aiohttp must not keep counting a hijacked connection once it has ended."""
    engine = FakeEngine()
    cid = _create(engine, ["sponge"])

    async def main() -> int:
        server = TestServer(create_app(engine))
        await server.start_server()
        try:
            path = f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1"
            reader, writer, _ = await raw_request(server.port, "POST", path)
            writer.write_eof()
            await reader.read()
            writer.close()
            connections = server.runner.server.connections  # type: ignore[union-attr]
            for _ in range(100):
                if not connections:
                    break
                await asyncio.sleep(0.01)
            return len(connections)
        finally:
            await server.close()

    assert asyncio.run(main()) == 0


# --- attach over a websocket --------------------------------------------------------------


async def ws_session(port: int, path: str, body: Any) -> Any:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}{path}") as ws,
    ):
        return await body(ws)


async def ws_read_all(ws: Any) -> list[tuple[Any, bytes]]:
    """Every message until the daemon closes the websocket: (type, payload)."""
    import aiohttp

    out = []
    async for msg in ws:
        if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            out.append((msg.type, msg.data))
    return out


def test_attach_ws_sends_raw_binary_output_and_takes_text_or_binary_input() -> None:
    import aiohttp

    engine = FakeEngine()
    cid = _create(engine, ["cat"])  # no TTY: the engine's stream is multiplexed

    async def body(port: int) -> list[tuple[Any, bytes]]:
        async def talk(ws: Any) -> list[tuple[Any, bytes]]:
            await ws.send_str("ping\n")
            first = await ws.receive(timeout=5)
            await ws.send_bytes(b"pong\n")
            second = await ws.receive(timeout=5)
            await ws.close()
            return [(first.type, first.data), (second.type, second.data)]

        path = f"/v1.50/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1"
        return await ws_session(port, path, talk)

    got = asyncio.run(with_server(engine, body))
    assert got == [(aiohttp.WSMsgType.BINARY, b"ping\n"), (aiohttp.WSMsgType.BINARY, b"pong\n")]


def test_attach_ws_ends_with_the_output_and_honours_the_streams_asked_for() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["echo", "hi"], tty=True)

    async def body(port: int) -> list[tuple[Any, bytes]]:
        async def listen(ws: Any) -> list[tuple[Any, bytes]]:
            await asyncio.to_thread(engine.container_start, cid)
            return await ws_read_all(ws)

        path = f"/v1.50/containers/{cid}/attach/ws?stream=1&stdout=1"
        return await ws_session(port, path, listen)

    got = asyncio.run(with_server(engine, body))
    assert b"".join(data for _, data in got) == b"hi\n"
    call = [c for c in engine.calls if c[0] == "container_attach"][-1]
    assert call[2] == {"stdin": False, "stdout": True, "stderr": False}


def test_attach_ws_before_1_42_attaches_every_stream() -> None:
    engine = FakeEngine()
    cid = _create(engine, ["echo", "hi"], tty=True)

    async def body(port: int) -> None:
        async def listen(ws: Any) -> None:
            await asyncio.to_thread(engine.container_start, cid)
            await ws_read_all(ws)

        await ws_session(port, f"/v1.41/containers/{cid}/attach/ws?stream=1&stdout=1", listen)

    asyncio.run(with_server(engine, body))
    call = [c for c in engine.calls if c[0] == "container_attach"][-1]
    assert call[2] == {"stdin": True, "stdout": True, "stderr": True}


def test_attach_ws_to_an_unknown_container_is_refused_before_the_upgrade() -> None:
    import aiohttp

    async def body(port: int) -> int:
        try:
            await ws_session(
                port, "/v1.50/containers/nope/attach/ws?stream=1", lambda ws: ws.close()
            )
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return 0

    assert asyncio.run(with_server(FakeEngine(), body)) == 404


def test_demux_takes_frames_split_anywhere() -> None:
    from portside.api.hijack import Demux

    frames = [(1, b"out"), (2, b"err!"), (1, b""), (1, b"x" * 70000)]
    data = b"".join(struct.pack(">BxxxL", s, len(p)) + p for s, p in frames)
    for step in (1, 3, 7, 8, 9, 65536):
        demux = Demux()
        got: list[bytes] = []
        for i in range(0, len(data), step):
            got.extend(demux.feed(data[i : i + step]))
        assert got == [b"out", b"err!", b"x" * 70000]  # an empty frame carries nothing
