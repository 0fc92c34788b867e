"""TLS termination for the TCP listeners, with half-close.

asyncio's own TLS transport closes the connection when the peer sends close_notify,
but the docker CLI half-closes a hijacked attach (``CloseWrite``) and still reads the
container's output. So each TLS connection is terminated here with an ``SSLObject``
over memory BIOs, and its plaintext is relayed to aiohttp through a socketpair,
whose unix transport half-closes the way the attach bridge needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

log = logging.getLogger("portside.api")
_CHUNK = 65536
HANDSHAKE_TIMEOUT = 30.0


class TLSConnection:
    """One client connection: TLS on ``tcp``, plaintext on ``plain``."""

    def __init__(self, tcp: socket.socket, plain: socket.socket, ctx: ssl.SSLContext) -> None:
        self.tcp, self.plain = tcp, plain
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self._send_lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    async def _flush(self) -> None:
        async with self._send_lock:
            data = self.outgoing.read()
            if data:
                await self.loop.sock_sendall(self.tcp, data)

    async def _fill(self) -> bool:
        """Read TLS records from the client; False at its EOF."""
        data = await self.loop.sock_recv(self.tcp, _CHUNK)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise ConnectionResetError("client closed during the TLS handshake") from None
        await self._flush()

    async def tls_to_plain(self) -> None:
        while True:
            try:
                data = self.tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()  # post-handshake messages (tickets, key updates)
                if await self._fill():
                    continue
                data = b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            if not data:  # close_notify or EOF: half-close towards the server
                with contextlib.suppress(OSError):
                    self.plain.shutdown(socket.SHUT_WR)
                return
            await self.loop.sock_sendall(self.plain, data)

    async def plain_to_tls(self) -> None:
        while True:
            data = await self.loop.sock_recv(self.plain, _CHUNK)
            if not data:
                with contextlib.suppress(ssl.SSLError):
                    self.tls.unwrap()  # queue our close_notify
                await self._flush()
                return
            self.tls.write(data)
            await self._flush()

    async def run(self) -> None:
        inbound = asyncio.ensure_future(self.tls_to_plain())
        try:
            await self.plain_to_tls()
        finally:
            inbound.cancel()
            await asyncio.gather(inbound, return_exceptions=True)


async def serve_tls(
    listener: socket.socket, ctx: ssl.SSLContext, protocol_factory: Callable[[], asyncio.Protocol]
) -> None:
    """Accept TLS clients on ``listener`` forever; each one's plaintext goes to a new
    protocol from ``protocol_factory`` (aiohttp's server)."""
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            tcp, _ = await loop.sock_accept(listener)
            task = asyncio.ensure_future(_connection(tcp, ctx, protocol_factory))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _connection(
    tcp: socket.socket, ctx: ssl.SSLContext, protocol_factory: Callable[[], asyncio.Protocol]
) -> None:
    loop = asyncio.get_running_loop()
    tcp.setblocking(False)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = TLSConnection(tcp, ours, ctx)
    try:
        await asyncio.wait_for(conn.handshake(), HANDSHAKE_TIMEOUT)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        log.info("TLS handshake failed: %s", exc)
        with contextlib.suppress(OSError, ssl.SSLError):
            await conn._flush()  # the alert, so the client learns why
        for s in (tcp, ours, theirs):
            s.close()
        return
    try:
        await loop.connect_accepted_socket(protocol_factory, theirs)
        await conn.run()
    except (OSError, ssl.SSLError) as exc:
        log.debug("TLS connection ended: %s", exc)
    finally:
        tcp.close()
        ours.close()
