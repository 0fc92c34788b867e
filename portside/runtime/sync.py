"""The typed message channel between the runtime and its children.

One ``SOCK_SEQPACKET`` socketpair (``_socket`` rather than :mod:`socket`, whose
enum set-up costs ~10 ms per CLI call): each message is one JSON object, optionally
with file descriptors attached (SCM_RIGHTS). Every message has a ``type``; an
``error`` message carries ``step``, ``errno`` and ``message`` and is raised on the
receiving side as :class:`ChildError`. A child's end is close-on-exec, so when the
child execs the user's program the parent reads end-of-file: that is how the
parent knows exec succeeded.
"""

from __future__ import annotations

import _socket
import os
import struct

from portside.oci import fastjson
from portside.runtime.errors import ChildError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SyncSocket", "sync_pair"]

_MAX = 65536


class SyncSocket:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg_type: str, fds: list[int] | None = None, **fields: Any) -> None:
        data = fastjson.dumps({"type": msg_type, **fields}).encode()
        if fds:
            rights = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))
            self.sock.sendmsg([data], [rights])
        else:
            self.sock.send(data)

    def send_error(self, step: str, exc: BaseException) -> None:
        errno = getattr(exc, "errno", None) or 0
        message = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
        if isinstance(exc, OSError) and exc.strerror:
            message = exc.strerror
            if exc.filename:
                message = f"{exc.filename}: {message}"
        self.send("error", step=step, errno=errno, message=message or str(exc))

    def recv(self) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and its fds; ``(None, [])`` at end of file.

        An ``error`` message is raised as :class:`ChildError`."""
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(_MAX, _socket.CMSG_SPACE(16 * 4))
        except ConnectionResetError:
            return None, []
        received: list[int] = []
        for level, kind, cdata in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(cdata) - (len(cdata) % 4)
                received.extend(struct.unpack(f"{usable // 4}i", cdata[:usable]))
        if not data:
            return None, received
        msg = fastjson.loads(data)
        if msg.get("type") == "error":
            raise ChildError(msg.get("step", "?"), msg.get("message", ""), msg.get("errno", 0))
        return msg, received

    def expect(self, msg_type: str, what: str) -> dict[str, Any]:
        """Receive a message that must be of ``msg_type``."""
        return self.expect_any((msg_type,), what)

    def expect_any(self, msg_types: tuple[str, ...], what: str) -> dict[str, Any]:
        """Receive a message that must be of one of ``msg_types``."""
        msg, fds = self.recv()
        for fd in fds:
            os.close(fd)
        wanted = " or ".join(repr(t) for t in msg_types)
        if msg is None:
            raise ChildError(what, f"the other side exited before sending {wanted}")
        if msg["type"] not in msg_types:
            raise ChildError(what, f"expected {wanted}, got {msg['type']!r}")
        return msg

    def close(self) -> None:
        self.sock.close()


def sync_pair() -> tuple[SyncSocket, SyncSocket]:
    """(parent end, child end); the child end is close-on-exec."""
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    return SyncSocket(a), SyncSocket(b)
