"""portside.network.dns: the codec (hypothesis: garbage, round trips, compression pointers)
and EmbeddedDNS on 127.0.0.x with fake upstream resolvers run by the test (UDP and TCP
sockets on loopback; nothing else is touched)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portside.errors import Conflict, FailedPrecondition, InvalidArgument
from portside.network import dnsmsg
from portside.network.dns import (
    CLASS_IN,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    DNSFormatError,
    EmbeddedDNS,
    Message,
    Question,
    Record,
    build_message,
    parse_message,
    parse_upstream,
    read_resolv_conf,
)

TYPE_MX, TYPE_AXFR, TYPE_OPT = 15, 252, 41
HEADER = struct.Struct("!6H")

# -- the codec ---------------------------------------------------------------------------------


def test_parse_a_known_query_and_answer() -> None:
    # dig's query for example.com A (RD, EDNS payload 1232), byte for byte
    wire = bytes.fromhex(
        "abcd01200001000000000001076578616d706c6503636f6d000001000100002904d0000000000000"
    )
    query = parse_message(wire)
    assert query.id == 0xABCD and query.opcode == 0 and query.flags & FLAG_RD
    assert query.questions == (Question("example.com", TYPE_A, CLASS_IN),)
    assert query.additional == (Record(".", TYPE_OPT, 1232, 0, b""),)
    assert build_message(query) == wire
    # an answer whose record name is a pointer to the question (0xc00c)
    answer = wire[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + wire[12:29]
    answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x02\x58\x00\x04\x5d\xb8\xd7\x0e"
    parsed = parse_message(answer)
    assert parsed.rcode == RCODE_NOERROR and parsed.flags & FLAG_QR
    assert parsed.answers == (Record("example.com", TYPE_A, CLASS_IN, 600, b"\x5d\xb8\xd7\x0e"),)
    assert build_message(parsed) == answer  # compressed the same way


def test_names_case_escapes_and_the_final_dot() -> None:
    wire = build_message(Message(1, 0, [Question("WWW.Example.COM.")]))
    assert parse_message(wire).questions[0].name == "WWW.Example.COM"
    odd = build_message(Message(1, 0, [Question(r"a\.b.c\\d.\000\255.x y")]))
    assert b"\x03a.b\x03c\\d\x02\x00\xff\x03x y\x00" in odd
    assert parse_message(odd).questions[0].name == r"a\.b.c\\d.\000\255.x\032y"
    root = build_message(Message(1, 0, [Question(".", 2)]))
    assert root[12:] == b"\x00\x00\x02\x00\x01" and parse_message(root).questions[0].name == "."
    for bad in ("a..b", "x" * 64 + ".com", ".".join(["abcdefg"] * 40), "a\\", "a\\256", "é.com"):
        with pytest.raises(InvalidArgument, match="invalid dns name"):
            build_message(Message(1, 0, [Question(bad)]))
    with pytest.raises(InvalidArgument, match="cannot encode"):
        build_message(Message(1 << 16, 0, [Question("a")]))


def test_compression_pointers_are_used_and_checked() -> None:
    message = Message(
        9,
        FLAG_QR,
        [Question("web.net1")],
        [Record("web.net1", TYPE_A, CLASS_IN, 600, b"\x0a\x00\x00\x02")],
        additional=[Record("db.net1", TYPE_A, CLASS_IN, 600, b"\x0a\x00\x00\x03")],
    )
    wire = build_message(message)
    assert wire.count(b"\x03web\x04net1\x00") == 1
    assert b"\xc0\x0c" in wire and b"\x02db\xc0\x10" in wire
    assert parse_message(wire) == message
    header = HEADER.pack(1, 0, 1, 0, 0, 0)
    for name, why in [
        (b"\xc0\x0c", "does not point back"),  # to itself
        (b"\xc0\x20", "does not point back"),  # forwards
        (b"\x01a\xc0\x0c", "does not point back"),  # a.a.a.a... through its own start
        (b"\x01a\xc0", "cut short"),
        (b"\x01a\x80", "unknown label type"),
        (b"\x05ab", "cut short"),
    ]:
        with pytest.raises(DNSFormatError, match=why):
            parse_message(header + name + b"\x00\x01\x00\x01")
    # a loop between two names: the second points at the first, which points at the second
    two = (
        HEADER.pack(1, 0, 2, 0, 0, 0)
        + b"\x01a\xc0\x13\x00\x01\x00\x01"
        + b"\xc0\x0c\x00\x01\x00\x01"
    )
    with pytest.raises(DNSFormatError, match="does not point back"):
        parse_message(two)
    # a long chain of pointers that ends in a name over 255 bytes
    chain = bytearray(HEADER.pack(1, 0, 60, 0, 0, 0))
    previous = None
    for _ in range(60):
        start = len(chain)
        chain += b"\x04abcd" + (struct.pack("!H", 0xC000 | previous) if previous else b"\x00")
        chain += b"\x00\x01\x00\x01"
        previous = start
    with pytest.raises(DNSFormatError, match="longer than 255"):
        parse_message(bytes(chain))


def test_malformed_messages() -> None:
    ok = build_message(Message(1, 0, [Question("a.b")], [Record("a.b", 1, 1, 5, b"1234")]))
    for data, why in [
        (b"", "shorter than a header"),
        (ok[:11], "shorter than a header"),
        (ok[:-1], "runs past the end"),
        (ok[:-6], "cut short"),
        (ok + b"\x00", "1 bytes after the last record"),
        (HEADER.pack(1, 0, 1, 0, 0, 0) + b"\x01a", "runs past the end"),
        (HEADER.pack(1, 0, 0xFFFF, 0, 0, 0), "runs past the end"),
    ]:
        with pytest.raises(DNSFormatError, match=why):
            parse_message(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_raise_only_the_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except DNSFormatError:
        return
    assert build_message(message)  # whatever parsed can be written again


@settings(max_examples=300, deadline=None)
@given(
    counts=st.tuples(*[st.integers(0, 3)] * 4),
    body=st.lists(
        st.one_of(
            st.binary(max_size=8),
            st.builds(lambda p: struct.pack("!H", 0xC000 | p), st.integers(0, 80)),
            st.sampled_from([b"\x01a", b"\x03www\x00", b"\x00\x01\x00\x01", b"\x00" * 10]),
        ),
        max_size=16,
    ),
)
def test_structured_garbage_with_pointers(counts: tuple[int, ...], body: list[bytes]) -> None:
    data = HEADER.pack(7, 0, *counts) + b"".join(body)
    try:
        message = parse_message(data)
    except DNSFormatError:
        return
    assert parse_message(build_message(message)) == message


LABELS = [b"a", b"B", b"www", b"net1", b"Example", b"com", b"x-y_z", b"\x00\xff", b"a.b"]
names = st.lists(st.sampled_from(LABELS), max_size=5).map(
    lambda labels: ".".join(dnsmsg._label_text(label) for label in labels) or "."
)
records = st.builds(
    Record,
    names,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=20),
)
messages = st.builds(
    Message,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.lists(
        st.builds(Question, names, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=3
    ),
    st.lists(records, max_size=4),
    authority=st.lists(records, max_size=2),
    additional=st.lists(records, max_size=2),
)


def _plain_size(message: Message) -> int:
    """The size of ``message`` with every name written out in full."""

    def name(text: str) -> int:
        return sum(len(label) + 1 for label in dnsmsg._name_labels(text)) + 1

    records = (*message.answers, *message.authority, *message.additional)
    return (
        12
        + sum(name(q.name) + 4 for q in message.questions)
        + sum(name(r.name) + 10 + len(r.rdata) for r in records)
    )


@settings(max_examples=200, deadline=None)
@given(messages)
def test_parse_build_round_trip(message: Message) -> None:
    wire = build_message(message)
    assert parse_message(wire) == message
    assert len(wire) <= _plain_size(message)
    if len({q.name for q in message.questions} - {"."}) < len(
        [q for q in message.questions if q.name != "."]
    ):
        assert len(wire) < _plain_size(message)  # a repeated name is a pointer


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=63), max_size=4))
def test_any_label_bytes_survive_text_and_back(labels: list[bytes]) -> None:
    raw = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    wire = HEADER.pack(3, 0, 1, 0, 0, 0) + raw + b"\x00\x01\x00\x01"
    message = parse_message(wire)
    assert build_message(message) == wire
    assert message.questions[0].name.isascii()


def test_upstream_specs_and_resolv_conf(tmp_path: Path) -> None:
    assert parse_upstream("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_upstream("::1") == ("::1", 53)
    assert parse_upstream("[2001:db8::0001]:54") == ("2001:db8::1", 54)
    for bad in ("example.com", "1.2.3.4:0", "1.2.3.4:x", "[::1]:99999", ""):
        with pytest.raises(InvalidArgument, match="invalid dns upstream"):
            parse_upstream(bad)
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\nsearch example.com\nnameserver 127.0.0.53\n; comment\n"
        "nameserver   192.0.2.1 # trailing\nnameserver bogus\nnameserver ::1\n"
        "options ndots:2\nnameserver\n"
    )
    assert read_resolv_conf(str(conf)) == [("127.0.0.53", 53), ("192.0.2.1", 53), ("::1", 53)]
    assert read_resolv_conf(str(tmp_path / "missing")) == []


# -- the server: helpers -----------------------------------------------------------------------


def query(name: str, qtype: int = TYPE_A, ident: int = 0x4242, **extra: Any) -> bytes:
    return build_message(Message(ident, FLAG_RD, [Question(name, qtype)], **extra))


def ask_udp(
    port: int,
    data: bytes,
    *,
    host: str = "127.0.0.1",
    source: str = "127.0.0.1",
    timeout: float = 3.0,
) -> bytes | None:
    """Send one datagram and return the answer, or None when none came in ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def recv_frame(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    (size,) = struct.unpack("!H", exactly(2))
    return exactly(size)


def frame(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def ask_tcp(port: int, *datas: bytes, host: str = "127.0.0.1") -> list[bytes]:
    with socket.create_connection((host, port), timeout=3) as s:
        s.sendall(b"".join(frame(d) for d in datas))  # pipelined in one write
        return [recv_frame(s) for _ in datas]


def reply_to(data: bytes, *ips: str, flags: int = FLAG_QR | FLAG_RA | FLAG_RD) -> bytes:
    """What a real resolver would answer: the question echoed, A records for ``ips``."""
    q = parse_message(data)
    name = q.questions[0].name
    answers = [Record(name, TYPE_A, CLASS_IN, 30, socket.inet_aton(ip)) for ip in ips]
    return build_message(Message(q.id, flags, q.questions, answers))


Responder = Callable[[bytes], "bytes | list[bytes] | None"]


class FakeUpstream:
    """A resolver on 127.0.0.1 (UDP, and TCP on the same port when ``tcp`` is given):
    each answers with what its responder returns (None: silence; a list: several
    datagrams). What it received is in ``received`` as (proto, bytes)."""

    def __init__(self, udp: Responder | None, tcp: Responder | None = None) -> None:
        self.responders = {"udp": udp, "tcp": tcp}
        self.received: list[tuple[str, bytes]] = []
        self.udp, self.tcp = self.bind(with_tcp=tcp is not None)
        self.port = self.udp.getsockname()[1]
        self.stop_r, self.stop_w = socket.socketpair()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def bind(with_tcp: bool) -> tuple[socket.socket, socket.socket | None]:
        """A UDP socket on a free port of 127.0.0.1, and a TCP one on the same port."""
        while True:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            if not with_tcp:
                return udp, None
            tcp = socket.socket()
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:  # that port is taken for TCP: another
                udp.close()
                tcp.close()
                continue
            tcp.listen(8)
            return udp, tcp

    @property
    def spec(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self) -> None:
        socks = [s for s in (self.udp, self.tcp, self.stop_r) if s is not None]
        while True:
            ready, _, _ = select.select(socks, [], [])
            if self.stop_r in ready:
                return
            if self.udp in ready:
                data, peer = self.udp.recvfrom(65535)
                self.received.append(("udp", data))
                self.send(self.responders["udp"], data, lambda out, p=peer: self.udp.sendto(out, p))
            if self.tcp is not None and self.tcp in ready:
                conn, _ = self.tcp.accept()
                with conn:
                    conn.settimeout(3)
                    data = recv_frame(conn)
                    self.received.append(("tcp", data))
                    self.send(
                        self.responders["tcp"], data, lambda out, c=conn: c.sendall(frame(out))
                    )

    @staticmethod
    def send(responder: Responder | None, data: bytes, out: Callable[[bytes], Any]) -> None:
        answer = responder(data) if responder is not None else None
        for item in [answer] if isinstance(answer, bytes) else answer or []:
            out(item)

    def close(self) -> None:
        self.stop_w.send(b"x")
        self.thread.join(5)
        for s in (self.udp, self.tcp, self.stop_r, self.stop_w):
            if s is not None:
                s.close()


@pytest.fixture
def upstream() -> Iterator[Callable[..., FakeUpstream]]:
    made: list[FakeUpstream] = []

    def make(udp: Responder | None, tcp: Responder | None = None) -> FakeUpstream:
        made.append(FakeUpstream(udp, tcp))
        return made[-1]

    try:
        yield make
    finally:
        for fake in made:
            fake.close()


class Names:
    """A lookup: ``{name: [ips]}`` on every network, for any client; records the calls."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {"web": ["10.9.0.2"], "web.net1": ["10.9.0.2"], "nov4": []}
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, network: str, client: str, name: str) -> list[str] | None:
        self.calls.append((network, client, name))
        return self.table.get(name)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., tuple[EmbeddedDNS, int]]]:
    """``make(lookup=Names(), upstreams=[...], timeout=...) -> (server, port)`` listening
    for "net1" on 127.0.0.1; closed at the end whatever happened."""
    made: list[EmbeddedDNS] = []

    def make(
        lookup: Any = None, upstreams: list[str] | None = None, timeout: float = 2.0, **listen: Any
    ) -> tuple[EmbeddedDNS, int]:
        empty = tmp_path / "resolv.conf"
        empty.write_text("")
        made.append(
            EmbeddedDNS(
                lookup or Names(), upstreams=upstreams, resolv_conf=str(empty), timeout=timeout
            )
        )
        return made[-1], made[-1].add_listener("net1", "127.0.0.1", **listen)

    try:
        yield make
    finally:
        for made_server in made:
            made_server.close()


def answer_of(data: bytes | None) -> Message:
    assert data is not None, "no answer"
    return parse_message(data)


def addresses(message: Message) -> list[str]:
    return sorted(socket.inet_ntoa(r.rdata) for r in message.answers if r.rtype == TYPE_A)


# -- the server: local answers -----------------------------------------------------------------


def test_known_names_answered_case_insensitively(server: Callable[..., Any]) -> None:
    names = Names({"web": ["10.9.0.2", "10.9.0.3", "10.9.0.2", "bogus"], "nov4": []})
    srv, port = server(names)
    got = answer_of(ask_udp(port, query("WeB.", ident=77), source="127.0.0.9"))
    assert got.id == 77 and got.rcode == RCODE_NOERROR
    assert got.flags & (FLAG_QR | FLAG_RA | FLAG_RD) == FLAG_QR | FLAG_RA | FLAG_RD
    assert got.questions == (Question("WeB", TYPE_A, CLASS_IN),)  # echoed as asked
    assert addresses(got) == ["10.9.0.2", "10.9.0.3"]  # deduplicated, the bad one left out
    assert {r.ttl for r in got.answers} == {600} and {r.name for r in got.answers} == {"WeB"}
    assert names.calls == [("net1", "127.0.0.9", "web")]
    for qtype in (TYPE_AAAA, TYPE_MX):  # known, but no such record: NOERROR, no answer
        other = answer_of(ask_udp(port, query("web", qtype)))
        assert other.rcode == RCODE_NOERROR and other.answers == ()
    assert addresses(answer_of(ask_udp(port, query("web", TYPE_ANY)))) == ["10.9.0.2", "10.9.0.3"]
    empty = answer_of(ask_udp(port, query("nov4")))
    assert empty.rcode == RCODE_NOERROR and empty.answers == ()
    over_tcp = [answer_of(a) for a in ask_tcp(port, query("web", ident=1), query("WEB", ident=2))]
    assert [m.id for m in over_tcp] == [1, 2] and all(addresses(m) for m in over_tcp)
    assert srv.statistics()["answered"] == 7 and srv.statistics()["forwarded"] == 0


def test_big_answers_are_truncated_over_udp_only(server: Callable[..., Any]) -> None:
    ips = [f"10.9.1.{n}" for n in range(1, 41)]
    _, port = server(Names({"many": ips}))
    over_udp = answer_of(ask_udp(port, query("many")))
    assert over_udp.flags & FLAG_TC and len(over_udp.answers) == (512 - 12 - 10) // 16
    assert len(query("many")) + 16 * len(over_udp.answers) <= 512
    (over_tcp,) = ask_tcp(port, query("many"))
    assert not answer_of(over_tcp).flags & FLAG_TC and addresses(answer_of(over_tcp)) == sorted(ips)


def test_bad_queries_get_the_right_errors(server: Callable[..., Any]) -> None:
    srv, port = server()
    q = query("web", ident=5)
    big = Record(".", TYPE_OPT, 9000, 0, bytes(4100))
    cases = [
        (q[:2] + struct.pack("!H", 2 << 11) + q[4:], RCODE_NOTIMP),  # opcode STATUS
        (q[:4] + b"\x00\x02" + q[6:], RCODE_FORMERR),  # two questions announced
        (q + b"junk", RCODE_FORMERR),
        (q[:12], RCODE_FORMERR),  # no question at all
        (HEADER.pack(5, FLAG_RD, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", RCODE_FORMERR),
        (query("web", ident=5, additional=[big]), RCODE_FORMERR),  # over 4096 bytes
        (query("web", TYPE_AXFR, ident=5), RCODE_REFUSED),
    ]
    for data, rcode in cases:
        got = answer_of(ask_udp(port, data))
        assert (got.id, got.rcode, got.flags & FLAG_QR) == (5, rcode, FLAG_QR)
    assert answer_of(ask_udp(port, q[:12])).questions == ()
    assert answer_of(ask_udp(port, query("web", TYPE_AXFR))).questions[0].name == "web"
    # dropped without an answer: shorter than a header, or an answer (QR) sent to us
    assert ask_udp(port, b"\x00\x05\x01", timeout=0.3) is None
    assert ask_udp(port, reply_to(q, "1.2.3.4"), timeout=0.3) is None
    assert srv.statistics()["dropped"] == 2 and srv.statistics()["formerr"] == 6


def test_lookup_errors_and_internal_networks(server: Callable[..., Any]) -> None:
    def broken(network: str, client: str, name: str) -> list[str] | None:
        if name == "boom":
            raise RuntimeError("engine bug")
        return None

    srv, port = server(broken, forward=False)
    assert answer_of(ask_udp(port, query("boom"))).rcode == RCODE_SERVFAIL
    nx = answer_of(ask_udp(port, query("example.com")))  # not forwarded: internal network
    assert nx.rcode == RCODE_NXDOMAIN and nx.questions[0].name == "example.com"
    stats = srv.statistics()
    assert stats["lookup_errors"] == 1 and stats["nxdomain"] == 1 and stats["forwarded"] == 0


def test_hostile_input_never_breaks_the_server(
    server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="portside.network.dns")
    srv, port = server()
    rng = random.Random(5)
    valid = query("web.net1", additional=[Record(".", 41, 1232, 0, b"")])
    packets = [rng.randbytes(rng.randrange(0, 200)) for _ in range(150)]
    for _ in range(150):
        mutated = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(2, len(mutated))] = rng.randrange(256)
        packets.append(bytes(mutated))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for start in range(0, len(packets), 50):  # in batches the socket buffer holds
            for packet in packets[start : start + 50]:
                s.sendto(packet, ("127.0.0.1", port))
            # queued behind the batch on the listener's socket: answered after it
            assert addresses(answer_of(ask_udp(port, query("web")))) == ["10.9.0.2"]
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:  # over TCP as well
        s.sendall(b"".join(frame(p) for p in packets[:50]) + frame(query("web", ident=0x7777)))
        while (got := answer_of(recv_frame(s))).id != 0x7777:
            pass
        assert addresses(got) == ["10.9.0.2"]
        s.sendall(b"\xff\xff\x00")  # a frame that never ends
    assert srv.statistics()["queries"] == 300 + 6 + 51
    assert not [r for r in caplog.records if r.exc_info], "a handler raised"


# -- the server: forwarding --------------------------------------------------------------------


def test_unknown_names_are_forwarded_and_relayed_unchanged(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream(lambda data: reply_to(data, "192.0.2.7"))
    names = Names()
    srv, port = server(names, [fake.spec])
    q = query("Example.COM", ident=0xBEEF, additional=[Record(".", 41, 1232, 0, b"")])
    got = ask_udp(port, q)
    assert fake.received == [("udp", q)]  # the client's query, byte for byte
    assert got == reply_to(q, "192.0.2.7")  # the upstream's answer, byte for byte
    assert names.calls == [("net1", "127.0.0.1", "example.com")]
    # a TCP client is forwarded over TCP
    fake_tcp = upstream(None, lambda data: reply_to(data, "192.0.2.8"))
    srv2, port2 = server(names, [fake_tcp.spec])
    (over_tcp,) = ask_tcp(port2, query("other.example"))
    assert addresses(answer_of(over_tcp)) == ["192.0.2.8"]
    assert [proto for proto, _ in fake_tcp.received] == ["tcp"]
    assert srv.statistics()["relayed"] == 1 and srv2.statistics()["relayed"] == 1


def test_next_upstream_on_timeout_or_refusal_then_servfail(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    silent = upstream(None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there afterwards
    good = upstream(lambda data: reply_to(data, "192.0.2.9"))
    _, port = server(upstreams=[silent.spec, closed, good.spec], timeout=0.3)
    assert addresses(answer_of(ask_udp(port, query("example.net")))) == ["192.0.2.9"]
    assert len(silent.received) == 1 and len(good.received) == 1
    # nobody answers: SERVFAIL with the client's ID and question
    srv2, port2 = server(upstreams=[silent.spec, closed], timeout=0.2)
    dead = answer_of(ask_udp(port2, query("example.org", ident=31)))
    assert (dead.id, dead.rcode, dead.questions[0].name) == (31, RCODE_SERVFAIL, "example.org")
    # no upstream at all (an empty resolv.conf): SERVFAIL at once
    srv3, port3 = server()
    assert srv3.upstreams() == []
    assert answer_of(ask_udp(port3, query("example.org"))).rcode == RCODE_SERVFAIL
    assert srv2.statistics()["servfail"] == 1 and srv2.statistics()["pending"] == 0


def test_truncated_udp_answer_is_retried_over_tcp(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    def truncated(data: bytes) -> bytes:
        return reply_to(data, flags=FLAG_QR | FLAG_RA | FLAG_RD | FLAG_TC)

    fake = upstream(truncated, lambda data: reply_to(data, "192.0.2.1", "192.0.2.2"))
    _, port = server(upstreams=[fake.spec])
    got = answer_of(ask_udp(port, query("big.example")))
    assert not got.flags & FLAG_TC and addresses(got) == ["192.0.2.1", "192.0.2.2"]
    assert [proto for proto, _ in fake.received] == ["udp", "tcp"]
    # the TCP answer does not fit the client's 512 bytes: it gets the truncated one, and
    # retries over TCP itself, which gets everything
    many = [f"192.0.2.{n}" for n in range(1, 41)]
    huge = upstream(truncated, lambda data: reply_to(data, *many))
    _, port2 = server(upstreams=[huge.spec])
    small = answer_of(ask_udp(port2, query("huge.example")))
    assert small.flags & FLAG_TC and small.answers == ()
    (full,) = ask_tcp(port2, query("huge.example"))
    assert addresses(answer_of(full)) == sorted(many)


def test_answers_to_other_queries_are_ignored(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    def spoofing(data: bytes) -> list[bytes]:
        wrong_id = reply_to(data, "203.0.113.1")
        wrong_id = bytes([wrong_id[0] ^ 0xFF]) + wrong_id[1:]
        other_name = reply_to(query("evil.example", ident=parse_message(data).id), "203.0.113.2")
        return [wrong_id, other_name, data, reply_to(data, "192.0.2.3")]

    fake = upstream(spoofing)
    _, port = server(upstreams=[fake.spec])
    assert addresses(answer_of(ask_udp(port, query("good.example")))) == ["192.0.2.3"]


def test_a_slow_upstream_does_not_stall_local_answers(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    silent = upstream(None)
    srv, port = server(upstreams=[silent.spec], timeout=5.0)
    srv.max_pending = 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waiting:
        waiting.bind(("127.0.0.1", 0))
        for ident in (1, 2):
            waiting.sendto(query(f"slow{ident}.example", ident=ident), ("127.0.0.1", port))
        for _ in range(20):  # answered while both forwards wait for the silent upstream
            assert addresses(answer_of(ask_udp(port, query("web")))) == ["10.9.0.2"]
        # a third forward is over the cap: SERVFAIL at once, the two others still pending
        capped = answer_of(ask_udp(port, query("slow3.example", ident=3)))
        assert capped.rcode == RCODE_SERVFAIL
        assert srv.statistics()["pending"] == 2
        for _ in range(300):  # the fake's thread records them (no timing asserted)
            if len(silent.received) == 2:
                break
            threading.Event().wait(0.01)
        assert len(silent.received) == 2


def test_the_server_never_forwards_to_itself(server: Callable[..., Any]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv, got_port = server(upstreams=[f"127.0.0.1:{port}"], port=port)
    assert got_port == port
    assert answer_of(ask_udp(port, query("example.com"))).rcode == RCODE_SERVFAIL
    assert srv.statistics()["forwarded"] == 0


def test_resolv_conf_is_read_again_when_it_changes(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\n")
    with EmbeddedDNS(Names(), resolv_conf=str(conf)) as srv:
        srv.resolv_conf_recheck = 0.0
        assert srv.upstreams() == [("127.0.0.53", 53)]
        conf.write_text("nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
        os.utime(conf, ns=(0, 10**9))  # a different mtime whatever the clock's resolution
        assert srv.upstreams() == [("192.0.2.53", 53), ("192.0.2.54", 53)]
    with EmbeddedDNS(Names(), upstreams=["10.0.0.1:5300"], resolv_conf=str(conf)) as fixed:
        assert fixed.upstreams() == [("10.0.0.1", 5300)]
    with pytest.raises(InvalidArgument, match="must be > 0"):
        EmbeddedDNS(Names(), timeout=0)


# -- listeners, TCP clients, close -------------------------------------------------------------


def test_listeners_come_and_go_while_serving(server: Callable[..., Any]) -> None:
    names = Names({"web": ["10.9.0.2"]})
    srv, port1 = server(names)
    port2 = srv.add_listener("net2", "127.0.0.2", 0)
    assert srv.listeners() == {"net1": ("127.0.0.1", port1), "net2": ("127.0.0.2", port2)}
    assert srv.add_listener("net2", "127.0.0.2") == port2  # again: the same port
    assert srv.add_listener("net2", "127.0.0.2", port2) == port2
    with pytest.raises(Conflict, match=r"net2 has a dns listener on 127\.0\.0\.2"):
        srv.add_listener("net2", "127.0.0.3")
    assert ask_udp(port2, query("web"), host="127.0.0.2") is not None
    assert names.calls[-1][:2] == ("net2", "127.0.0.1")  # the key of the listener asked
    (tcp,) = ask_tcp(port2, query("web"), host="127.0.0.2")
    assert addresses(answer_of(tcp)) == ["10.9.0.2"]
    srv.remove_listener("net2")
    srv.remove_listener("net2")  # unknown: ignored
    assert srv.listeners() == {"net1": ("127.0.0.1", port1)}
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # both ports are free again
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.2", port2))
    assert addresses(answer_of(ask_udp(port1, query("web")))) == ["10.9.0.2"]
    assert srv.add_listener("net2", "127.0.0.2", port2) == port2  # back, on the same port


def test_listener_errors(server: Callable[..., Any]) -> None:
    srv, _ = server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(Conflict, match=r"127.0.0.1:\d+: address already in use"):
            srv.add_listener("busy", "127.0.0.1", taken.getsockname()[1])
    with pytest.raises(FailedPrecondition, match="not on this host"):
        srv.add_listener("far", "192.0.2.1")  # TEST-NET-1: never configured here
    for address, port in (("not-an-ip", 0), ("127.0.0.1", 70000), ("127.0.0.1", True)):
        with pytest.raises(InvalidArgument, match="invalid dns listener"):
            srv.add_listener("bad", address, port)
    assert set(srv.listeners()) == {"net1"}


def test_tcp_clients_half_close_idle_and_removal(
    server: Callable[..., Any], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream(None, lambda data: reply_to(data, "192.0.2.4"))
    srv, port = server(upstreams=[fake.spec])
    srv.tcp_idle_timeout = 0.2
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(frame(query("web")) + frame(query("far.example", ident=2)))
        s.shutdown(socket.SHUT_WR)  # half-closed: both still answered, then closed
        got = sorted((answer_of(recv_frame(s)) for _ in range(2)), key=lambda m: m.id)
        assert [addresses(m) for m in got] == [["192.0.2.4"], ["10.9.0.2"]]
        assert s.recv(10) == b""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        assert s.recv(10) == b""  # idle: closed by the server
    srv.tcp_idle_timeout = 60.0
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(frame(query("web")))
        recv_frame(s)
        assert srv.statistics()["tcp_clients"] == 1
        srv.remove_listener("net1")  # takes its clients with it
        assert s.recv(10) == b"" and srv.statistics()["tcp_clients"] == 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_stops_the_thread_and_closes_every_socket(
    upstream: Callable[..., FakeUpstream],
) -> None:
    silent = upstream(None)
    before = _fds()
    srv = EmbeddedDNS(Names(), upstreams=[silent.spec])
    port = srv.add_listener("net1", "127.0.0.1")
    assert [t for t in threading.enumerate() if t.name == "portside-dns"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a forward in flight
        s.sendto(query("pending.example"), ("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(frame(query("web")))
            recv_frame(c)
            assert srv.statistics()["tcp_clients"] == 1
            srv.close()
            assert c.recv(10) == b""
    assert not [t for t in threading.enumerate() if t.name == "portside-dns"]
    assert _fds() == before
    srv.close()  # idempotent
    srv.remove_listener("net1")  # nothing left: ignored
    assert srv.listeners() == {}
    with pytest.raises(FailedPrecondition, match="closed"):
        srv.add_listener("net1", "127.0.0.1")
    with EmbeddedDNS(Names(), upstreams=[]) as never_started:
        pass
    assert never_started.listeners() == {}
    assert _fds() == before


def test_close_races_with_callers() -> None:
    srv = EmbeddedDNS(Names(), upstreams=[])
    srv.add_listener("net0", "127.0.0.1")
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        with contextlib.suppress(FailedPrecondition):
            for i in range(30):
                try:
                    srv.add_listener(f"k{n}-{i}", "127.0.0.1")
                    srv.remove_listener(f"k{n}-{i}")
                except FailedPrecondition:
                    raise
                except BaseException as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    srv.close()
    for t in threads:
        t.join(10)
    assert not errors and not any(t.is_alive() for t in threads)
    assert not [t for t in threading.enumerate() if t.name == "portside-dns"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["A", "b", "Web", "net1", "x-1"]), min_size=1, max_size=4))
def test_names_reach_lookup_lowercased_without_the_dot(labels: list[str]) -> None:
    seen: list[str] = []

    def lookup(network: str, client: str, name: str) -> list[str] | None:
        seen.append(name)
        return ["10.1.2.3"]

    name = ".".join(labels)
    with EmbeddedDNS(lookup, upstreams=[]) as srv:
        port = srv.add_listener("n", "127.0.0.1")
        got = answer_of(ask_udp(port, query(name + ".")))
    assert seen == [name.lower()] and got.questions[0].name == name
