"""The web UI's sessions: a cookie value = base64url(JSON: user, CSRF token, expiry,
stamp) + "." + its HMAC-SHA256, keyed by 32 random bytes kept in
``ROOT/keys/ui-session.key`` (made on first start; instances sharing the root share
it). Nothing is stored server-side: a session ends when it expires, when the key
changes, or when the user's stamp (see :meth:`Accounts.stamp`: it changes with the
password) no longer matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from portside.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KEY_FILE", "SESSION_TTL", "Session", "Sessions"]

KEY_FILE = "ui-session.key"
SESSION_TTL = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    user: str  # "" for an anonymous visitor
    csrf: str
    expires: float
    stamp: str = ""


class Sessions:
    """Signs and checks session cookies with ``key``."""

    def __init__(self, key: bytes, *, ttl: float = SESSION_TTL, clock: Any = time.time) -> None:
        if len(key) < 16:
            raise InvalidArgument("a session key needs at least 16 bytes")
        self.key = key
        self.ttl = ttl
        self.clock = clock

    @classmethod
    def open(cls, keys_dir: str, **kwargs: Any) -> Sessions:
        """The key in ``keys_dir/ui-session.key``, made when missing (the first of
        several instances to make it wins: linked into place, never overwritten)."""
        path = os.path.join(keys_dir, KEY_FILE)
        os.makedirs(keys_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(32))
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
            finally:
                os.unlink(tmp)
        with open(path, "rb") as f:
            return cls(f.read(), **kwargs)

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def issue(self, user: str = "", stamp: str = "") -> tuple[Session, str]:
        """A new session (a fresh CSRF token) and its cookie value."""
        session = Session(user, secrets.token_urlsafe(24), self.clock() + self.ttl, stamp)
        doc = {"u": user, "c": session.csrf, "e": int(session.expires), "s": stamp}
        body = _b64(json.dumps(doc, separators=(",", ":")).encode())
        return session, f"{body}.{self._mac(body)}"

    def read(self, value: str) -> Session | None:
        """The session of a cookie value; None when forged, malformed or expired."""
        body, _, mac = value.partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            doc = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(doc, dict):
            return None
        user, csrf, expires, stamp = doc.get("u"), doc.get("c"), doc.get("e"), doc.get("s", "")
        if not (isinstance(user, str) and isinstance(csrf, str) and isinstance(stamp, str)):
            return None
        if not isinstance(expires, int) or expires <= self.clock() or not csrf:
            return None
        return Session(user, csrf, float(expires), stamp)
