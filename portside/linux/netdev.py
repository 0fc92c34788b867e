"""Small network-device ioctls (no netlink needed for these)."""

from __future__ import annotations

import _socket
import struct

__all__ = ["interface_up"]

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def interface_up(name: str = "lo") -> None:
    """Set interface ``name`` up in the current network namespace."""
    import fcntl

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", name.encode(), 0)
        res = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req)
        flags = struct.unpack("16sH22x", res)[1]
        if flags & _IFF_UP:
            return
        fcntl.ioctl(
            s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | _IFF_UP)
        )
    finally:
        s.close()
