"""The embedded DNS server of user-defined networks.

:class:`EmbeddedDNS` runs in the daemon (the host's network namespace) and listens, UDP
and TCP, on each user network's gateway address. A query for a name the engine's
``lookup`` knows (a container name, alias, short ID...) is answered here: A records with
TTL 600 as Docker's embedded DNS, NOERROR with no answer for other types. Any other name
is forwarded, unchanged, to the host's resolvers (``nameserver`` lines of
/etc/resolv.conf, loopback ones included), and their answer is relayed unchanged.

One thread serves every socket through :mod:`selectors`; upstream sockets are
non-blocking and live in the same selector, so a slow upstream never delays a local
answer. Memory is bounded (pending forwards, TCP clients and their buffers are capped).
Hostile input never raises out of the serving thread: it is dropped (no header) or
answered FORMERR, and logged at debug level.

The codec (:func:`parse_message`, :func:`build_message`) is pure and lives in
:mod:`portside.network.dnsmsg`; its names are re-exported here.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from portside.errors import (
    Conflict,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    PermissionDenied,
)
from portside.network.dnsmsg import (
    CLASS_ANY,
    CLASS_IN,
    FLAG_AA,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    HEADER,
    LENGTH,
    OPCODE_MASK,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    TTL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_IXFR,
    TYPE_OPT,
    UDP_LIMIT,
    DNSFormatError,
    Message,
    Question,
    Record,
    build_message,
    header_reply,
    parse_header,
    parse_message,
    read_question,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CLASS_ANY",
    "CLASS_IN",
    "FLAG_AA",
    "FLAG_QR",
    "FLAG_RA",
    "FLAG_RD",
    "FLAG_TC",
    "RCODE_FORMERR",
    "RCODE_NOERROR",
    "RCODE_NOTIMP",
    "RCODE_NXDOMAIN",
    "RCODE_REFUSED",
    "RCODE_SERVFAIL",
    "TTL",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_ANY",
    "DNSFormatError",
    "EmbeddedDNS",
    "Lookup",
    "Message",
    "Question",
    "Record",
    "ServerClosed",
    "build_message",
    "parse_header",
    "parse_message",
    "parse_upstream",
    "read_resolv_conf",
]

log = logging.getLogger("portside.network.dns")

#: lookup(network_key, client_ip, name) -> IPv4 addresses; None: not a container name
Lookup = Callable[[str, str, str], "list[str] | None"]


class ServerClosed(FailedPrecondition):
    """The :class:`EmbeddedDNS` was closed."""


# -- upstream resolvers ------------------------------------------------------------------------


def parse_upstream(spec: str) -> tuple[str, int]:
    """``"1.2.3.4"``, ``"1.2.3.4:5353"``, ``"::1"``, ``"[::1]:53"`` -> (address, port)."""
    host, port = spec.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") if rest else "53"
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise InvalidArgument(f"invalid dns upstream {spec!r}: {exc}") from exc
    if not 0 < number < 65536:
        raise InvalidArgument(f"invalid dns upstream {spec!r}: port out of range")
    return str(address), number


def read_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The ``nameserver`` entries of a resolv.conf, in order (invalid ones left out); an
    unreadable file has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read(1 << 20).splitlines()
    except OSError as exc:
        log.debug("cannot read %s: %s", path, exc)
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:  # no port in resolv.conf: "::1" is an address, not host:port
                found.append((str(ipaddress.ip_address(fields[1])), 53))
            except ValueError:
                log.debug("%s: ignoring nameserver %r", path, fields[1])
    return found


# -- the server --------------------------------------------------------------------------------

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_INF = float("inf")
_MAX_QUERY = 4096  # a QUERY is small; a bigger one is refused before parsing (FORMERR)
_MAX_OUTBUF = 4 * 65537  # a TCP client that does not read its answers is dropped
_NOT_READ = object()


class _Listener:
    def __init__(
        self, key: str, address: str, port: int, socks: tuple[socket.socket, socket.socket]
    ) -> None:
        self.key, self.address, self.port, self.forward = key, address, port, True
        self.udp, self.tcp = socks
        self.conns: set[_Conn] = set()


class _Conn:
    """A client's TCP connection: length-prefixed queries in, answers out."""

    def __init__(self, listener: _Listener, sock: socket.socket, peer: Any, now: float) -> None:
        self.listener, self.sock, self.peer, self.last = listener, sock, peer, now
        self.inbuf, self.outbuf = bytearray(), bytearray()
        self.closed = self.eof = False
        self.events = self.pending = 0


class _Forward:
    """One query on its way to the upstreams, tried in order, UDP then (TC or a TCP
    client) TCP."""

    def __init__(
        self,
        client: tuple[_Listener, Any, _Conn | None],
        raw: bytes,
        query: Message,
        upstreams: list[tuple[str, int]],
    ) -> None:
        self.listener, self.addr, self.conn = client  # where the answer goes
        self.raw, self.query, self.upstreams = raw, query, upstreams
        self.index, self.tcp = 0, self.conn is not None
        self.limit = _udp_limit(query)
        self.sock: socket.socket | None = None
        self.deadline = _INF
        self.out, self.buf = bytearray(), bytearray()
        self.truncated: bytes | None = None


def _udp_limit(query: Message) -> int:
    """The largest UDP answer the client takes: its EDNS payload size, at least 512."""
    for record in query.additional:
        if record.rtype == TYPE_OPT:
            return max(UDP_LIMIT, record.rclass)
    return UDP_LIMIT


def _error_reply(query: Message, rcode: int) -> bytes:
    flags = FLAG_QR | FLAG_RA | (query.flags & (OPCODE_MASK | FLAG_RD)) | rcode
    return build_message(Message(query.id, flags, query.questions[:1]))


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket, int]:
    """A UDP and a TCP socket on ``address``:``port`` (0: the same free port for both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for attempt in range(16):
        udp = tcp = None
        try:
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((address, port))
            chosen = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, chosen))
            tcp.listen(64)
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp, chosen
        except OSError as exc:
            for sock in (udp, tcp):
                if sock is not None:
                    sock.close()
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt < 15:
                continue  # the UDP port is taken for TCP: try another
            raise _bind_error(f"dns listener on {address}:{port}", exc) from exc
    raise AssertionError("unreachable")


def _bind_error(what: str, exc: OSError) -> Exception:
    if exc.errno == errno.EADDRINUSE:
        return Conflict(f"{what}: address already in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return FailedPrecondition(f"{what}: the address is not on this host")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"{what}: {exc.strerror}")
    return Internal(f"{what}: {exc}")


class EmbeddedDNS:
    """Answers container names on each network's listener, forwards everything else.

    ``lookup(network_key, client_ip, name)`` is called on the server's thread with the
    lowercased name (no final dot): it must be quick and thread-safe; it returns IPv4
    addresses, or None for a name that is not a container's (then forwarded); an
    exception is logged and answered SERVFAIL. ``upstreams`` (``"1.2.3.4"``,
    ``"1.2.3.4:5353"``, ``"[::1]:53"``) replaces the ``nameserver`` lines of
    ``resolv_conf``, which is otherwise re-read when it changes (checked every second).
    ``timeout`` is per upstream attempt.
    """

    max_pending = 256  # forwards in flight; more are answered SERVFAIL
    max_tcp_clients = 128  # TCP connections of clients; more are closed at once
    tcp_idle_timeout = 10.0  # seconds a client's idle TCP connection is kept
    resolv_conf_recheck = 1.0  # seconds between checks whether resolv_conf changed

    def __init__(
        self,
        lookup: Lookup,
        *,
        upstreams: list[str] | None = None,
        resolv_conf: str = "/etc/resolv.conf",
        timeout: float = 2.0,
    ) -> None:
        if not timeout > 0:
            raise InvalidArgument(f"invalid dns forwarding timeout {timeout!r}: must be > 0")
        self._lookup = lookup
        self._fixed = None if upstreams is None else [parse_upstream(u) for u in upstreams]
        self._resolv_conf, self._timeout = resolv_conf, timeout
        self._resolv: tuple[object, float, list[tuple[str, int]]] = (_NOT_READ, -_INF, [])
        self._lock = threading.Lock()
        self._commands: deque[
            tuple[Callable[..., Any], tuple[Any, ...], threading.Event, list[Any]]
        ] = deque()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, (self._on_wake, None))
        self._listeners: dict[str, _Listener] = {}  # these three: the serving thread's only
        self._conns: set[_Conn] = set()
        self._pending: set[_Forward] = set()
        self._next_check = _INF
        self._thread: threading.Thread | None = None
        self._closed = self._released = self._stopping = False
        counters = "queries answered forwarded relayed servfail formerr refused nxdomain dropped"
        self._stats = dict.fromkeys([*counters.split(), "lookup_errors"], 0)

    def __enter__(self) -> EmbeddedDNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public ----------------------------------------------------------------------------

    def add_listener(
        self, network_key: str, address: str, port: int = 0, *, forward: bool = True
    ) -> int:
        """Serve ``network_key`` on ``address``:``port``, UDP and TCP (port 0: a free one,
        the same for both); the port. Adding the same key and address again returns the
        port it has. ``forward=False`` (internal networks): unknown names get NXDOMAIN.
        Errors: the address in use -> Conflict, not on this host -> FailedPrecondition."""
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError as exc:
            raise InvalidArgument(f"invalid dns listener address {address!r}") from exc
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise InvalidArgument(f"invalid dns listener port {port!r}")
        return self._call(self._add, network_key, address, port, forward)

    def remove_listener(self, network_key: str) -> None:
        """Stop serving ``network_key``: its sockets, client connections and forwards
        are closed before this returns. Unknown keys (and a closed server) are ignored."""
        try:
            self._call(self._remove, network_key)
        except ServerClosed:
            pass

    def listeners(self) -> dict[str, tuple[str, int]]:
        """network key -> (address, port) of every listener; none once closed."""
        try:
            return self._call(lambda: {k: (v.address, v.port) for k, v in self._listeners.items()})
        except ServerClosed:
            return {}

    def upstreams(self) -> list[tuple[str, int]]:
        """The resolvers unknown names go to now, in order."""
        if self._fixed is not None:
            return list(self._fixed)
        with self._lock:
            key, checked, servers = self._resolv
            now = time.monotonic()
            if now - checked >= self.resolv_conf_recheck:
                try:
                    st = os.stat(self._resolv_conf)
                    stamp: object = (st.st_ino, st.st_mtime_ns, st.st_size)
                except OSError:
                    stamp = None
                if stamp != key:
                    servers = read_resolv_conf(self._resolv_conf)
                self._resolv = (stamp, now, servers)
            return list(servers)

    def statistics(self) -> dict[str, int]:
        """Counters since start, and what is open now (a snapshot for debugging)."""
        return {
            **self._stats,
            "pending": len(self._pending),
            "tcp_clients": len(self._conns),
            "listeners": len(self._listeners),
        }

    def close(self) -> None:
        """Stop and join the thread, close every socket. Idempotent."""
        with self._lock:
            self._closed = self._stopping = True
            thread = self._thread
        if thread is not None:
            if thread is threading.current_thread():
                raise FailedPrecondition("the dns server cannot be closed from its own thread")
            self._wake()
            thread.join()
        with self._lock:
            if self._released:
                return
            self._released = True
        for listener in list(self._listeners.values()):
            self._close_listener(listener)
        for fwd in list(self._pending):
            self._drop_socket(fwd)
        self._pending.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the serving thread ----------------------------------------------------------------

    def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` on the serving thread (started on first use); its result."""
        if threading.current_thread() is self._thread:
            return func(*args)
        done, box = threading.Event(), []
        with self._lock:
            if self._closed:
                raise ServerClosed("the embedded dns server is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="portside-dns", daemon=True)
                self._thread.start()
            self._commands.append((func, args, done, box))
        self._wake()
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already, or we are closing

    def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    self._step()
                except Exception:  # never let the server die
                    log.warning("embedded dns: unexpected error", exc_info=True)
        finally:
            self._run_commands()

    def _step(self) -> None:
        timeout = None if self._next_check == _INF else self._next_check - time.monotonic()
        for key, mask in self._selector.select(None if timeout is None else max(0.0, timeout)):
            handler, obj = key.data
            try:
                handler(obj, key.fileobj, mask)
            except Exception:
                log.debug("embedded dns: error on %r", key.fileobj, exc_info=True)
        now = time.monotonic()
        if now >= self._next_check:
            self._expire(now)

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                func, args, done, box = self._commands.popleft()
            try:
                box.append((True, func(*args)))
            except Exception as exc:
                box.append((False, exc))
            finally:
                done.set()

    def _on_wake(self, _obj: None, sock: socket.socket, _mask: int) -> None:
        try:
            while sock.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._run_commands()

    def _schedule(self, when: float) -> None:
        self._next_check = min(self._next_check, when)

    def _expire(self, now: float) -> None:
        """Move timed-out forwards on to their next upstream, close idle TCP clients."""
        self._next_check = _INF
        for fwd in list(self._pending):
            if fwd.deadline <= now:
                log.debug("dns upstream %s timed out", fwd.upstreams[fwd.index])
                self._next_upstream(fwd)
            if fwd in self._pending:
                self._schedule(fwd.deadline)
        for conn in list(self._conns):
            idle = conn.last + self.tcp_idle_timeout
            if conn.pending:
                continue  # its forwards wake us; answering them touches it
            if idle <= now:
                self._close_conn(conn)
            else:
                self._schedule(idle)

    # -- listeners and client connections --------------------------------------------------

    def _add(self, key: str, address: str, port: int, forward: bool) -> int:
        existing = self._listeners.get(key)
        if existing is not None:
            if existing.address == address and port in (0, existing.port):
                existing.forward = forward
                return existing.port
            raise Conflict(
                f"network {key} has a dns listener on {existing.address}:{existing.port} already"
            )
        udp, tcp, chosen = _bind(address, port)
        listener = _Listener(key, address, chosen, (udp, tcp))
        listener.forward = forward
        self._selector.register(udp, _READ, (self._on_udp, listener))
        self._selector.register(tcp, _READ, (self._on_accept, listener))
        self._listeners[key] = listener
        log.debug("dns listener for %s on %s:%d", key, address, chosen)
        return chosen

    def _remove(self, key: str) -> None:
        listener = self._listeners.pop(key, None)
        if listener is not None:
            self._close_listener(listener)
            for fwd in [f for f in self._pending if f.listener is listener]:
                self._drop_socket(fwd)
                self._pending.discard(fwd)

    def _close_listener(self, listener: _Listener) -> None:
        for conn in list(listener.conns):
            self._close_conn(conn)
        for sock in (listener.udp, listener.tcp):
            self._unregister(sock)
            sock.close()

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_udp(self, listener: _Listener, sock: socket.socket, _mask: int) -> None:
        for _ in range(64):  # then let the other sockets have their turn
            if listener.udp is not sock or sock.fileno() < 0:
                return
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("dns listener %s: %s", listener.key, exc)
                continue
            self._handle(listener, addr, None, data)

    def _on_accept(self, listener: _Listener, sock: socket.socket, _mask: int) -> None:
        for _ in range(16):
            if listener.tcp is not sock or sock.fileno() < 0:
                return
            try:
                client, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("dns listener %s: accept: %s", listener.key, exc)
                return
            if len(self._conns) >= self.max_tcp_clients:
                self._stats["dropped"] += 1
                client.close()
                continue
            client.setblocking(False)
            conn = _Conn(listener, client, peer, time.monotonic())
            self._conns.add(conn)
            listener.conns.add(conn)
            self._update_events(conn)
            self._schedule(conn.last + self.tcp_idle_timeout)

    def _on_conn(self, conn: _Conn, sock: socket.socket, mask: int) -> None:
        if conn.closed:
            return
        if mask & _WRITE:
            self._flush(conn)
        if not mask & _READ or conn.closed:
            return
        try:
            chunk = sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_conn(conn)
            return
        conn.last = time.monotonic()
        if not chunk:  # half-closed: answer what is in flight, then close
            conn.eof = True
            self._update_events(conn)
            self._maybe_finish(conn)
            return
        conn.inbuf += chunk
        while len(conn.inbuf) >= 2 and not conn.closed:
            (size,) = LENGTH.unpack_from(conn.inbuf)
            if len(conn.inbuf) < 2 + size:
                break
            data = bytes(conn.inbuf[2 : 2 + size])
            del conn.inbuf[: 2 + size]
            self._handle(conn.listener, conn.peer, conn, data)

    def _update_events(self, conn: _Conn) -> None:
        events = (0 if conn.eof else _READ) | (_WRITE if conn.outbuf else 0)
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, (self._on_conn, conn))
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, (self._on_conn, conn))
        conn.events = events

    def _send_tcp(self, conn: _Conn, data: bytes) -> None:
        if conn.closed:
            return
        conn.outbuf += LENGTH.pack(len(data))
        conn.outbuf += data
        if len(conn.outbuf) > _MAX_OUTBUF:
            log.debug("dns tcp client %s does not read its answers: closed", conn.peer)
            self._close_conn(conn)
            return
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf) if conn.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close_conn(conn)
            return
        del conn.outbuf[:sent]
        conn.last = time.monotonic()
        self._schedule(conn.last + self.tcp_idle_timeout)
        self._update_events(conn)
        self._maybe_finish(conn)

    def _maybe_finish(self, conn: _Conn) -> None:
        if conn.eof and not conn.pending and not conn.outbuf:
            self._close_conn(conn)

    def _close_conn(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.events:
            self._unregister(conn.sock)
        conn.sock.close()
        self._conns.discard(conn)
        conn.listener.conns.discard(conn)

    def _reply(self, listener: _Listener, addr: Any, conn: _Conn | None, data: bytes) -> None:
        if conn is not None:
            self._send_tcp(conn, data)
        elif self._listeners.get(listener.key) is listener:
            try:
                listener.udp.sendto(data, addr)
            except OSError as exc:
                log.debug("dns answer to %s: %s", addr, exc)

    # -- queries ---------------------------------------------------------------------------

    def _handle(self, listener: _Listener, addr: Any, conn: _Conn | None, data: bytes) -> None:
        """One query from a client: drop, refuse, answer here, or forward."""
        self._stats["queries"] += 1
        if len(data) < HEADER.size:
            self._stats["dropped"] += 1
            return
        ident, flags, qdcount = HEADER.unpack_from(data)[:3]
        if flags & FLAG_QR:  # an answer sent to us: never answer it (no loops)
            self._stats["dropped"] += 1
            return
        if flags & OPCODE_MASK:
            self._reply(listener, addr, conn, header_reply(ident, flags, RCODE_NOTIMP))
            return
        try:
            if qdcount != 1 or len(data) > _MAX_QUERY:
                raise DNSFormatError(f"query of {len(data)} bytes with {qdcount} questions")
            query = parse_message(data)
        except DNSFormatError as exc:
            log.debug("dns query from %s: %s", addr, exc)
            self._stats["formerr"] += 1
            self._reply(listener, addr, conn, header_reply(ident, flags, RCODE_FORMERR))
            return
        question = query.questions[0]
        if question.qtype in (TYPE_AXFR, TYPE_IXFR):
            self._stats["refused"] += 1
            self._reply(listener, addr, conn, _error_reply(query, RCODE_REFUSED))
            return
        known = None
        if question.qclass in (CLASS_IN, CLASS_ANY) and question.name != ".":
            try:
                known = self._lookup(listener.key, addr[0], question.name.lower())
            except Exception:
                log.debug("dns lookup of %s failed", question.name, exc_info=True)
                self._stats["lookup_errors"] += 1
                self._reply(listener, addr, conn, _error_reply(query, RCODE_SERVFAIL))
                return
        if known is not None:
            self._stats["answered"] += 1
            self._reply(listener, addr, conn, _local_answer(query, known, conn is not None))
        elif listener.forward:
            self._forward(listener, addr, conn, data, query)
        else:
            self._stats["nxdomain"] += 1
            self._reply(listener, addr, conn, _error_reply(query, RCODE_NXDOMAIN))

    def _forward(
        self, listener: _Listener, addr: Any, conn: _Conn | None, data: bytes, query: Message
    ) -> None:
        own = {(other.address, other.port) for other in self._listeners.values()}
        upstreams = [server for server in self.upstreams() if server not in own]
        if not upstreams or len(self._pending) >= self.max_pending:
            log.debug(
                "dns query %s not forwarded: %d upstreams, %d pending",
                query.questions[0].name,
                len(upstreams),
                len(self._pending),
            )
            self._stats["servfail"] += 1
            self._reply(listener, addr, conn, _error_reply(query, RCODE_SERVFAIL))
            return
        fwd = _Forward((listener, addr, conn), data, query, upstreams)
        self._pending.add(fwd)
        if conn is not None:
            conn.pending += 1
        self._stats["forwarded"] += 1
        self._attempt(fwd)

    def _attempt(self, fwd: _Forward) -> None:
        """Send ``fwd`` to its current upstream, or the next that takes it; SERVFAIL (or the
        truncated UDP answer) when none is left."""
        while fwd.index < len(fwd.upstreams):
            address, port = fwd.upstreams[fwd.index]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = None
            try:
                sock = socket.socket(family, socket.SOCK_STREAM if fwd.tcp else socket.SOCK_DGRAM)
                sock.setblocking(False)
                if fwd.tcp:
                    code = sock.connect_ex((address, port))
                    if code not in (0, errno.EINPROGRESS):
                        raise OSError(code, os.strerror(code))
                    fwd.out = bytearray(LENGTH.pack(len(fwd.raw)) + fwd.raw)
                    fwd.buf = bytearray()
                else:
                    sock.connect((address, port))
                    sock.send(fwd.raw)
                events = _WRITE if fwd.tcp else _READ
                self._selector.register(sock, events, (self._on_upstream, fwd))
            except OSError as exc:
                if sock is not None:
                    sock.close()
                log.debug("dns upstream %s:%d: %s", address, port, exc)
                fwd.index += 1
                continue
            fwd.sock = sock
            fwd.deadline = time.monotonic() + self._timeout
            self._schedule(fwd.deadline)
            return
        self._finish(fwd, fwd.truncated)

    def _next_upstream(self, fwd: _Forward) -> None:
        self._drop_socket(fwd)
        fwd.index += 1
        self._attempt(fwd)

    def _drop_socket(self, fwd: _Forward) -> None:
        if fwd.sock is not None:
            self._unregister(fwd.sock)
            fwd.sock.close()
            fwd.sock = None

    def _on_upstream(self, fwd: _Forward, sock: socket.socket, mask: int) -> None:
        if fwd.sock is not sock:
            return
        try:
            answer = self._read_tcp_upstream(fwd, sock, mask) if fwd.tcp else sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("dns upstream %s: %s", fwd.upstreams[fwd.index], exc)
            self._next_upstream(fwd)
            return
        if answer is None:
            return
        if not _answers(fwd.query, answer):
            log.debug("dns upstream %s: an answer to another query", fwd.upstreams[fwd.index])
            if fwd.tcp:
                self._next_upstream(fwd)
            return  # UDP: perhaps spoofed; the real answer may still come
        if answer[2] & (FLAG_TC >> 8) and not fwd.tcp:
            fwd.truncated, fwd.tcp = answer, True  # ask the same upstream again over TCP
            self._drop_socket(fwd)
            self._attempt(fwd)
            return
        self._finish(fwd, answer)

    def _read_tcp_upstream(self, fwd: _Forward, sock: socket.socket, mask: int) -> bytes | None:
        if mask & _WRITE and fwd.out:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            del fwd.out[: sock.send(fwd.out)]
            if not fwd.out:
                self._selector.modify(sock, _READ, (self._on_upstream, fwd))
            return None
        chunk = sock.recv(65537 - len(fwd.buf))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "closed before answering")
        fwd.buf += chunk
        size = LENGTH.unpack_from(fwd.buf)[0] if len(fwd.buf) >= 2 else 65536
        return bytes(fwd.buf[2 : 2 + size]) if len(fwd.buf) >= 2 + size else None

    def _finish(self, fwd: _Forward, answer: bytes | None) -> None:
        self._drop_socket(fwd)
        self._pending.discard(fwd)
        if answer is None:
            self._stats["servfail"] += 1
            answer = _error_reply(fwd.query, RCODE_SERVFAIL)
        else:
            self._stats["relayed"] += 1
            if fwd.conn is None and len(answer) > fwd.limit and fwd.truncated is not None:
                answer = fwd.truncated  # too big for the client: it retries over TCP
        self._reply(fwd.listener, fwd.addr, fwd.conn, answer)
        if fwd.conn is not None:
            fwd.conn.pending -= 1
            self._maybe_finish(fwd.conn)


def _answers(query: Message, data: bytes) -> bool:
    """Whether ``data`` is an answer to ``query``: same ID and question (any case)."""
    try:
        ident, flags, qdcount = parse_header(data)[:3]
        if ident != query.id or not flags & FLAG_QR:
            return False
        if qdcount == 0:  # some servers send errors without the question
            return flags & 0xF != RCODE_NOERROR
        question, _ = read_question(data, HEADER.size, {})
    except DNSFormatError:
        return False
    mine = query.questions[0]
    return (question.qtype, question.qclass, question.name.lower()) == (
        mine.qtype,
        mine.qclass,
        mine.name.lower(),
    )


def _local_answer(query: Message, addresses: list[str], tcp: bool) -> bytes:
    """A records for ``addresses`` (shuffled, as Docker's round robin) when the question
    asks for A or ANY, none otherwise; over UDP, what fits in 512 bytes, TC set if cut."""
    question = query.questions[0]
    flags = FLAG_QR | FLAG_RA | (query.flags & FLAG_RD)
    packed: list[bytes] = []
    if question.qtype in (TYPE_A, TYPE_ANY):
        for address in addresses:
            try:
                raw = socket.inet_pton(socket.AF_INET, address)
            except (OSError, TypeError):
                log.debug("dns lookup of %s gave a bad address %r", question.name, address)
                continue
            if raw not in packed:
                packed.append(raw)
        random.shuffle(packed)
    records = [Record(question.name, TYPE_A, CLASS_IN, TTL, raw) for raw in packed]
    answer = build_message(Message(query.id, flags, (question,), records))
    if not tcp and len(answer) > UDP_LIMIT:
        fit = (UDP_LIMIT - (len(answer) - 16 * len(records))) // 16  # 16: pointer + fixed + 4
        answer = build_message(Message(query.id, flags | FLAG_TC, (question,), records[:fit]))
    return answer
