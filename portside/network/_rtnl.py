"""A minimal rtnetlink client for the container start path (stdlib only).

pyroute2 costs ~1 ms of Python (its asyncio core) per request; a container's endpoint
needs six requests, so :func:`portside.network.netlink.create_veth` and
``configure_inside`` build their few messages here instead: a batch of messages goes in
one datagram (the kernel runs them in order), each with ``NLM_F_ACK``, and the answers
are read back by sequence number. A failed message raises :class:`RtnlError` with its
errno; the caller names what failed.
"""

from __future__ import annotations

import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Message", "Rtnl", "RtnlError", "attr", "ifinfomsg", "nested"]

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
AF_UNSPEC, AF_INET = 0, 2
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type
_ATTR = struct.Struct("=HH")


class RtnlError(OSError):
    """The kernel refused a message (``errno``); ``index``: which one of the batch."""

    index = 0


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    data = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(AF_UNSPEC, 0, index, flags, change)


def ifaddrmsg(prefixlen: int, index: int) -> bytes:
    return _IFADDR.pack(AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)


def rtmsg(dst_len: int = 0) -> bytes:
    return _RTMSG.pack(
        AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
    )


def string(text: str) -> bytes:
    return text.encode() + b"\0"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


class Message:
    """One request: ``kind`` (RTM_*), extra ``flags``, the body (header struct + attrs)."""

    __slots__ = ("body", "flags", "kind")

    def __init__(self, kind: int, body: bytes, flags: int = 0) -> None:
        self.kind, self.body, self.flags = kind, body, flags


class Rtnl:
    """A NETLINK_ROUTE socket (its own, or ``fd``, which it then owns)."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            self.sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
            )
        else:
            self.sock = socket.socket(fileno=fd)
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def batch(self, messages: Sequence[Message]) -> list[bytes]:
        """Send ``messages`` in one datagram; each one's answer (the reply of a GET, b""
        for a plain ACK), in order. The first refused one raises :class:`RtnlError`."""
        seqs = []
        out = bytearray()
        for m in messages:
            self._seq += 1
            seqs.append(self._seq)
            flags = NLM_F_REQUEST | NLM_F_ACK | m.flags
            out += _HDR.pack(_HDR.size + len(m.body), m.kind, flags, self._seq, 0) + m.body
        self.sock.send(bytes(out))
        answers: dict[int, bytes] = {}
        done: dict[int, int] = {}
        while len(done) < len(seqs):
            data = self.sock.recv(65536)
            for kind, seq, payload in _messages(data):
                if seq not in seqs:
                    continue
                if kind == NLMSG_ERROR:
                    done[seq] = -struct.unpack_from("=i", payload)[0]
                elif kind != NLMSG_DONE:
                    answers[seq] = payload
        for index, seq in enumerate(seqs):
            if done[seq]:
                import os

                error = RtnlError(done[seq], os.strerror(done[seq]))
                error.index = index
                raise error
        return [answers.get(seq, b"") for seq in seqs]


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos + _HDR.size <= len(data):
        length, kind, _flags, seq, _pid = _HDR.unpack_from(data, pos)
        if length < _HDR.size:
            break
        out.append((kind, seq, data[pos + _HDR.size : pos + length]))
        pos += (length + 3) & ~3
    return out


def link_index(reply: bytes) -> int:
    """The ifindex in an RTM_NEWLINK reply (to an RTM_GETLINK)."""
    return int(_IFINFO.unpack_from(reply)[2])
