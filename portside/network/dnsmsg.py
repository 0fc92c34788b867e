"""The DNS message codec of the embedded DNS server (:mod:`portside.network.dns`): pure.

Names are text in presentation format without the final dot (``"web.example"``, the root
is ``"."``), bytes outside ``!``..``~`` and the characters ``.`` and ``\\`` inside a label
escaped as ``\\DDD`` / ``\\.`` / ``\\\\``; parsing follows compression pointers (each must
point before the start of the labels that led to it, so loops are impossible) and keeps
case. :class:`DNSFormatError` is the only exception :func:`parse_message` raises.
"""

from __future__ import annotations

import struct

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

TTL = 600  # Docker's embedded DNS answers with TTL 600
TYPE_A, TYPE_AAAA, TYPE_OPT, TYPE_IXFR, TYPE_AXFR, TYPE_ANY = 1, 28, 41, 251, 252, 255
CLASS_IN, CLASS_ANY = 1, 255
RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED = range(6)
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800

HEADER = struct.Struct("!6H")
_QFIXED = struct.Struct("!HH")
_RFIXED = struct.Struct("!HHIH")
LENGTH = struct.Struct("!H")
_MAX_NAME = 255
_MAX_LABEL = 63
UDP_LIMIT = 512  # a reply without EDNS must fit in 512 bytes


class DNSFormatError(InvalidArgument):
    """A DNS message that does not parse (the only exception :func:`parse_message` raises)."""


# -- the codec ---------------------------------------------------------------------------------


class _Plain:
    """Value semantics over ``__slots__``: equality, hash and repr."""

    __slots__ = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Question(_Plain):
    """One entry of the question section."""

    __slots__ = ("name", "qclass", "qtype")

    def __init__(self, name: str, qtype: int = TYPE_A, qclass: int = CLASS_IN) -> None:
        self.name, self.qtype, self.qclass = name, qtype, qclass


class Record(_Plain):
    """A resource record; ``rdata`` stays raw bytes (names in it are not decompressed)."""

    __slots__ = ("name", "rclass", "rdata", "rtype", "ttl")

    def __init__(self, name: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> None:
        self.name, self.rtype, self.rclass, self.ttl, self.rdata = name, rtype, rclass, ttl, rdata


class Message(_Plain):
    """A whole DNS message: ID, the 16 flag bits (QR, opcode, AA, TC, RD, RA, rcode) and
    its four sections as tuples."""

    __slots__ = ("additional", "answers", "authority", "flags", "id", "questions")

    def __init__(
        self,
        id: int,
        flags: int = 0,
        questions: Iterable[Question] = (),
        answers: Iterable[Record] = (),
        *,
        authority: Iterable[Record] = (),
        additional: Iterable[Record] = (),
    ) -> None:
        self.id, self.flags = id, flags
        self.questions = tuple(questions)
        self.answers, self.authority = tuple(answers), tuple(authority)
        self.additional = tuple(additional)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


_PLAIN = bytes(b for b in range(0x21, 0x7F) if b not in b".\\")
_TEXT = [
    chr(b) if b in _PLAIN else "\\" + chr(b) if b in b".\\" else f"\\{b:03d}" for b in range(256)
]


def _label_text(label: bytes) -> str:
    if not label.translate(None, _PLAIN):
        return label.decode("ascii")
    return "".join(_TEXT[b] for b in label)


def _name_text(labels: tuple[bytes, ...]) -> str:
    return ".".join(_label_text(label) for label in labels) if labels else "."


def _name_labels(name: str) -> tuple[bytes, ...]:
    """The wire labels of a presentation-format name (a final dot is accepted)."""
    if name in ("", "."):
        return ()
    try:
        if "\\" not in name:
            labels = name.removesuffix(".").encode("ascii").split(b".")
        else:
            labels = _unescape(name)
    except (UnicodeEncodeError, ValueError) as exc:
        raise InvalidArgument(f"invalid dns name {name!r}: {exc}") from exc
    if not all(0 < len(label) <= _MAX_LABEL for label in labels):
        raise InvalidArgument(f"invalid dns name {name!r}: labels must be 1-63 bytes")
    if sum(len(label) + 1 for label in labels) + 1 > _MAX_NAME:
        raise InvalidArgument(f"invalid dns name {name!r}: longer than 255 bytes")
    return tuple(labels)


def _unescape(name: str) -> list[bytes]:
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(name):
        char = name[i]
        if char == ".":
            labels.append(bytes(current))
            current = bytearray()
            i += 1
            continue
        if char != "\\":
            current += char.encode("ascii")
            i += 1
            continue
        digits = name[i + 1 : i + 4]
        if len(digits) == 3 and is_number(digits):
            if int(digits) > 255:
                raise ValueError(f"escape \\{digits} is over 255")
            current.append(int(digits))
            i += 4
        elif i + 1 < len(name):
            current += name[i + 1].encode("ascii")
            i += 2
        else:
            raise ValueError("a lone backslash at the end")
    if current:
        labels.append(bytes(current))
    return labels


def _read_name(data: bytes, offset: int, cache: dict[int, tuple[bytes, ...]]) -> tuple[str, int]:
    """The name at ``offset`` and the offset after it. A pointer must point before the
    start of the labels that led to it (no loops); names found at pointer targets are
    cached, so a message costs about its length."""
    labels: list[bytes] = []
    marks: list[tuple[int, int]] = []  # (pointer target, its first label in ``labels``)
    size, pos, limit, end, wire = len(data), offset, offset, -1, 1
    suffix: tuple[bytes, ...] = ()
    while True:
        if pos >= size:
            raise DNSFormatError(f"name at offset {offset} runs past the end of the message")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= size:
                raise DNSFormatError(f"name at offset {offset}: pointer at {pos} is cut short")
            target = (length & 0x3F) << 8 | data[pos + 1]
            if target >= limit:
                raise DNSFormatError(
                    f"name at offset {offset}: pointer at {pos} to {target} does not point back"
                )
            if end < 0:
                end = pos + 2
            cached = cache.get(target)
            if cached is not None:
                suffix = cached
                break
            marks.append((target, len(labels)))
            pos = limit = target
            continue
        if length > _MAX_LABEL:
            raise DNSFormatError(f"name at offset {offset}: unknown label type at {pos}")
        if length == 0:
            end = pos + 1 if end < 0 else end
            break
        wire += length + 1
        if wire > _MAX_NAME or pos + 1 + length > size:
            raise DNSFormatError(f"name at offset {offset} is too long or cut short")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    full = (*labels, *suffix)
    if sum(len(label) + 1 for label in full) + 1 > _MAX_NAME:
        raise DNSFormatError(f"name at offset {offset} is longer than 255 bytes")
    for target, first in marks:
        cache[target] = full[first:]
    return _name_text(full), end


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int]:
    """ID, flags and the four section counts; :class:`DNSFormatError` under 12 bytes."""
    if len(data) < HEADER.size:
        raise DNSFormatError(f"dns message of {len(data)} bytes is shorter than a header")
    return HEADER.unpack_from(data)  # type: ignore[return-value]


def read_question(data: bytes, pos: int, cache: dict[int, Any]) -> tuple[Question, int]:
    name, pos = _read_name(data, pos, cache)
    if pos + _QFIXED.size > len(data):
        raise DNSFormatError(f"question {name} is cut short")
    qtype, qclass = _QFIXED.unpack_from(data, pos)
    return Question(name, qtype, qclass), pos + _QFIXED.size


def parse_message(data: bytes) -> Message:
    """Parse a whole message; raise :class:`DNSFormatError` (nothing else) when it does not."""
    ident, flags, qdcount, *counts = parse_header(data)
    cache: dict[int, tuple[bytes, ...]] = {}
    pos = HEADER.size
    questions = []
    for _ in range(qdcount):
        question, pos = read_question(data, pos, cache)
        questions.append(question)
    sections: list[list[Record]] = []
    for count in counts:
        records: list[Record] = []
        for _ in range(count):
            name, pos = _read_name(data, pos, cache)
            if pos + _RFIXED.size > len(data):
                raise DNSFormatError(f"record {name} is cut short")
            rtype, rclass, ttl, rdlength = _RFIXED.unpack_from(data, pos)
            pos += _RFIXED.size
            if pos + rdlength > len(data):
                raise DNSFormatError(f"record {name}: rdata runs past the end of the message")
            records.append(Record(name, rtype, rclass, ttl, data[pos : pos + rdlength]))
            pos += rdlength
        sections.append(records)
    if pos != len(data):
        raise DNSFormatError(f"{len(data) - pos} bytes after the last record")
    answers, authority, additional = sections
    return Message(ident, flags, questions, answers, authority=authority, additional=additional)


def _put_name(out: bytearray, name: str, offsets: dict[tuple[bytes, ...], int]) -> None:
    labels = _name_labels(name)
    for i, label in enumerate(labels):
        pointer = offsets.get(labels[i:])
        if pointer is not None:
            out += LENGTH.pack(0xC000 | pointer)
            return
        if len(out) < 0x4000:
            offsets[labels[i:]] = len(out)
        out.append(len(label))
        out += label
    out.append(0)


def build_message(message: Message) -> bytes:
    """The wire form of ``message``, names compressed (a suffix is compressed only
    against an identical, same-case earlier one, so parsing gives back ``message``)."""
    sections = (message.answers, message.authority, message.additional)
    try:
        out = bytearray(
            HEADER.pack(message.id, message.flags, len(message.questions), *map(len, sections))
        )
        offsets: dict[tuple[bytes, ...], int] = {}
        for question in message.questions:
            _put_name(out, question.name, offsets)
            out += _QFIXED.pack(question.qtype, question.qclass)
        for records in sections:
            for record in records:
                _put_name(out, record.name, offsets)
                out += _RFIXED.pack(record.rtype, record.rclass, record.ttl, len(record.rdata))
                out += record.rdata
    except struct.error as exc:
        raise InvalidArgument(f"cannot encode dns message {message.id}: {exc}") from exc
    return bytes(out)


def header_reply(query_id: int, query_flags: int, rcode: int) -> bytes:
    flags = FLAG_QR | FLAG_RA | (query_flags & (OPCODE_MASK | FLAG_RD)) | rcode
    return HEADER.pack(query_id, flags, 0, 0, 0, 0)
