"""The monitor's wire formats, as pure code (no I/O).

Control messages on ``monitor.sock``: a 4-byte big-endian length, then that many
bytes of JSON (an object). A request is ``{"op": ..., ...}``; the answer is
``{"ok": true, ...}`` or ``{"ok": false, "error": {"class", "kind", "message"}}``.
After the answer to ``attach`` or ``exec`` the connection carries the process's
stdio in Docker's stream format; after ``subscribe`` it carries one framed event
per exit.

Docker's stream format without a TTY: frames of an 8-byte header
``[stream, 0, 0, 0, length:uint32 BE]`` and the payload (stream 1 stdout, 2 stderr).
"""

from __future__ import annotations

import json
import struct

from portside.errors import InvalidArgument, PortsideError
from portside.text import ASCII_ALNUM

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_MESSAGE",
    "DetachMatcher",
    "MessageDecoder",
    "ProtocolError",
    "StreamDecoder",
    "decode_error",
    "encode_error",
    "encode_message",
    "stream_frame",
    "valid_id",
]

#: the largest control message accepted (an exec's process JSON fits easily)
MAX_MESSAGE = 4 << 20
STDOUT, STDERR = 1, 2
_LEN = struct.Struct(">I")
_HEADER = struct.Struct(">BxxxI")


class ProtocolError(InvalidArgument):
    """A peer sent bytes that are not a valid message."""


_ID_CHARS = ASCII_ALNUM | frozenset("_.-")


def valid_id(value: object) -> str:
    """A container or exec ID safe as a file name; InvalidArgument otherwise."""
    s = value if isinstance(value, str) else ""
    ok = 0 < len(s) <= 128 and s[0] != "." and _ID_CHARS.issuperset(s)
    if not ok:
        raise InvalidArgument(f"invalid id {value!r}")
    return s


def encode_message(msg: dict[str, Any]) -> bytes:
    """One control message: length prefix + compact JSON."""
    body = json.dumps(msg, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return _LEN.pack(len(body)) + body


class MessageDecoder:
    """Incremental parser of length-prefixed JSON messages."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return the complete messages it finished."""
        self.buf += data
        out: list[dict[str, Any]] = []
        while len(self.buf) >= 4:
            (size,) = _LEN.unpack_from(self.buf)
            if size > self.limit:
                raise ProtocolError(f"message length {size} exceeds {self.limit}")
            if len(self.buf) < 4 + size:
                break
            body = bytes(self.buf[4 : 4 + size])
            del self.buf[: 4 + size]
            try:
                msg = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ProtocolError(f"message is not JSON: {exc}") from exc
            if not isinstance(msg, dict):
                raise ProtocolError(f"message is a JSON {type(msg).__name__}, not an object")
            out.append(msg)
        return out


def stream_frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stdio stream."""
    return _HEADER.pack(stream, len(data)) + data


class StreamDecoder:
    """Incremental parser of Docker's multiplexed stream: (stream, payload) pairs."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while len(self.buf) >= 8:
            stream, size = _HEADER.unpack_from(self.buf)
            if stream > 3:
                raise ProtocolError(f"stream frame with unknown stream {stream}")
            if len(self.buf) < 8 + size:
                break
            out.append((stream, bytes(self.buf[8 : 8 + size])))
            del self.buf[: 8 + size]
        return out


class DetachMatcher:
    """Docker's escape proxy over stdin: bytes that could start the detach
    sequence are held back; the whole sequence detaches, anything else is
    passed on (the held bytes with it)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes for stdin, detached?)"""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            b = bytes((byte,))
            if self.keys.startswith(self.held + b):
                self.held += b
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if self.keys.startswith(b):
                self.held = b
            else:
                out += b
        return bytes(out), False


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as the error object of an answer: its class and message, and
    the nearest class of :mod:`portside.errors` for a peer that lacks the class."""
    import portside.errors as base

    kind = "Internal"
    for klass in type(exc).__mro__:
        if klass.__module__ == base.__name__ and klass is not PortsideError:
            kind = klass.__name__
            break
    cls = type(exc)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "kind": kind, "message": str(exc)}


def decode_error(err: dict[str, Any]) -> PortsideError:
    """The exception an error object describes: the same class (a Portside one)
    with the same message; else the nearest :mod:`portside.errors` class."""
    import importlib

    import portside.errors as base

    message = str(err.get("message", ""))
    module, _, name = str(err.get("class", "")).rpartition(".")
    cls: Any = None
    if module == "portside" or module.startswith("portside."):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, PortsideError)):
        cls = getattr(base, str(err.get("kind", "")), None)
        if not (isinstance(cls, type) and issubclass(cls, PortsideError)):
            cls = base.Internal
    exc: PortsideError = cls.__new__(cls)  # the subclass's own __init__ may take other args
    Exception.__init__(exc, message)
    return exc
