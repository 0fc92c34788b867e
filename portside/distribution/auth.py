"""Registry authentication: ``WWW-Authenticate`` challenges (RFC 7235), Basic, and the
distribution token flow (``docs/spec/auth/token.md``, ``oauth.md``) with a token cache.

An :class:`Authorizer` holds the challenge a registry answered last (per endpoint), so
later requests carry a token from the start instead of paying a 401 each time; tokens
live in a :class:`TokenCache` the daemon shares between pulls and pushes, keyed by
realm, service, scopes and a fingerprint of the credentials (never the credentials).

No I/O here but through the ``fetch`` callable the transport gives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from portside.distribution.errors import (
    RegistryError,
    RegistryUnauthorized,
    RegistryUnavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from portside.distribution.config import AuthConfig
    from portside.distribution.transport import Response

    #: ``fetch(method, url, headers, body)``: one plain request, body read in full
    Fetch = Callable[[str, str, dict[str, str], bytes | None], Response]
    TokenKey = tuple[str, str, tuple[str, ...], str]

__all__ = [
    "CLIENT_ID",
    "Authorizer",
    "Challenge",
    "TokenCache",
    "parse_challenges",
    "scope",
]

CLIENT_ID = "portside"
#: a token is not used in its last seconds (a request may take that long to arrive)
EXPIRY_MARGIN = 10.0
#: ``expires_in`` when the token server gives none (the token spec's default)
DEFAULT_TTL = 60.0
_TOKEN_BODY_MAX = 1 << 20

# RFC 7230 tchar; token68 adds "/" (and trailing "=")
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = _TCHAR | frozenset("/")
_SPACE = " \t"


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: ``scheme`` lowercased, parameter
    names lowercased (a token68, as in ``Negotiate abc==``, is under the key ``""``)."""

    scheme: str
    params: dict[str, str]


def scope(repo: str, actions: str) -> str:
    """A token scope: ``repository:app:pull,push``."""
    return f"repository:{repo}:{actions}"


# --- challenges -----------------------------------------------------------------------------


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _token(s: str, i: int, chars: frozenset[str] = _TCHAR) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] in chars:
        j += 1
    return s[i:j], j


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at ``s[i] == '"'``; an unterminated one runs to the end."""
    out = []
    i += 1
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), i


def _value(s: str, i: int) -> tuple[str, int]:
    """A parameter value: a quoted-string, else (leniently) up to a comma or space."""
    if i < len(s) and s[i] == '"':
        return _quoted(s, i)
    j = i
    while j < len(s) and s[j] not in ", \t":
        j += 1
    return s[i:j], j


def _parse_one(s: str, out: list[Challenge]) -> None:
    current: Challenge | None = None
    after_scheme = False  # the next item may be a token68
    i = 0
    while i < len(s):
        i = _skip(s, i, _SPACE)
        if i < len(s) and s[i] == ",":
            after_scheme = False
            i += 1
            continue
        name, j = _token(s, i, _TOKEN68 if after_scheme else _TCHAR)
        if not name:
            i += 1  # garbage: skip a character
            continue
        k = _skip(s, j, _SPACE)
        if current is None and k < len(s) and s[k] == "=":
            i = _value(s, _skip(s, k + 1, _SPACE))[1]  # a parameter before any scheme
        elif current is not None and k < len(s) and s[k] == "=":
            v = _skip(s, k + 1, _SPACE)
            if after_scheme and (v >= len(s) or s[v] in ",="):
                end = _skip(s, k, "=")  # token68 with padding
                current.params[""] = s[i:end]
                i = end
            elif "/" in name:  # a token68 char in what turned out to be a parameter name
                i = j
            else:
                current.params[name.lower()], i = _value(s, v)
            after_scheme = False
        elif after_scheme and current is not None and "" not in current.params:
            current.params[""] = name  # token68 without padding
            after_scheme = False
            i = j
        else:
            current = Challenge(name.lower(), {})
            out.append(current)
            after_scheme = True
            i = j


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values, in order. Lenient:
    malformed parts are skipped, never an error (the registry's 401 is reported)."""
    out: list[Challenge] = []
    for value in values:
        _parse_one(value, out)
    return out


# --- token cache ------------------------------------------------------------------------


class TokenCache:
    """Bearer tokens by (realm, service, sorted scopes, credentials fingerprint), each
    reused until ``margin`` seconds before it expires. Thread-safe; while one thread
    fetches a token for a key, others wanting the same key wait for it."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        margin: float = EXPIRY_MARGIN,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._margin = margin
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._fetching: dict[TokenKey, threading.Lock] = {}

    def get(self, key: TokenKey) -> str | None:
        """The cached token for ``key`` while still fresh."""
        with self._lock:
            entry = self._tokens.get(key)
        if entry is None or self._clock() >= entry[1] - self._margin:
            return None
        return entry[0]

    def put(
        self,
        key: TokenKey,
        token: str,
        expires_in: float | None = None,
        issued_at: float | None = None,
    ) -> None:
        """Remember ``token``: valid ``expires_in`` seconds (default 60) from
        ``issued_at`` (a wall-clock time; the token server's clock may be ahead)."""
        ttl = expires_in if expires_in is not None and expires_in > 0 else DEFAULT_TTL
        if issued_at is not None:
            ttl -= max(0.0, self._wall() - issued_at)
        now = self._clock()
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            self._tokens[key] = (token, now + ttl)

    def drop(self, key: TokenKey, token: str | None = None) -> None:
        """Forget ``key``'s token (only when it is still ``token``, if given)."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and (token is None or entry[0] == token):
                del self._tokens[key]

    def fetch(
        self, key: TokenKey, get: Callable[[], tuple[str, float | None, float | None]]
    ) -> str:
        """The cached token, else ``get()`` -> (token, expires_in, issued_at), cached."""
        token = self.get(key)
        if token is not None:
            return token
        with self._lock:
            lock = self._fetching.setdefault(key, threading.Lock())
        with lock:
            token = self.get(key)
            if token is None:
                token, expires_in, issued_at = get()
                self.put(key, token, expires_in, issued_at)
        return token

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


def _fingerprint(auth: AuthConfig) -> str:
    secret = "\0".join((auth.username, auth.password, auth.identity_token, auth.registry_token))
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _basic(auth: AuthConfig) -> str | None:
    if not (auth.username or auth.password):
        return None
    pair = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _pick(challenges: list[Challenge]) -> Challenge | None:
    """Bearer over Basic, as Docker; other schemes are not spoken."""
    for wanted in ("bearer", "basic"):
        for ch in challenges:
            if ch.scheme == wanted:
                return ch
    return None


# --- authorizer -------------------------------------------------------------------------


class Authorizer:
    """Authorization headers for one endpoint and one set of credentials."""

    def __init__(
        self, auth: AuthConfig, cache: TokenCache, fetch: Fetch, *, host: str = ""
    ) -> None:
        self.auth = auth
        self.cache = cache
        self.host = host
        self._fetch = fetch
        self._fingerprint = _fingerprint(auth)
        self._lock = threading.Lock()
        #: the last challenge seen, without its ``scope`` and ``error``
        self._challenge: Challenge | None = None

    def header(self, scopes: list[str]) -> str | None:
        """The ``Authorization`` value for a first try: None until a challenge has been
        seen (anonymous), then Basic or a (cached, else fetched) bearer token."""
        if self.auth.registry_token:
            return f"Bearer {self.auth.registry_token}"
        with self._lock:
            ch = self._challenge
        return None if ch is None else self._authorize(ch, scopes)

    def answer(
        self, challenges: list[Challenge], scopes: list[str], rejected: str | None = None
    ) -> str | None:
        """The ``Authorization`` value to retry with after a 401 carrying ``challenges``;
        ``rejected`` is the value that was refused (its token leaves the cache). None
        when there is nothing to answer with: the caller reports the 401."""
        ch = _pick(challenges)
        if ch is None:
            return None
        base = Challenge(
            ch.scheme, {k: v for k, v in ch.params.items() if k in ("realm", "service")}
        )
        with self._lock:
            self._challenge = base
        if ch.scheme == "basic":
            value = _basic(self.auth)
            return None if value == rejected else value
        if self.auth.registry_token:
            value = f"Bearer {self.auth.registry_token}"
            return None if value == rejected else value
        wanted = list(scopes)
        if ch.params.get("scope"):
            wanted.extend(ch.params["scope"].split())
        if rejected is not None and rejected.startswith("Bearer "):
            self.cache.drop(self._key(base, wanted), rejected[len("Bearer ") :])
        return self._authorize(base, wanted)

    def _key(self, ch: Challenge, scopes: list[str]) -> TokenKey:
        realm = ch.params.get("realm", "")
        return (realm, ch.params.get("service", ""), tuple(sorted(set(scopes))), self._fingerprint)

    def _authorize(self, ch: Challenge, scopes: list[str]) -> str | None:
        if ch.scheme == "basic":
            return _basic(self.auth)
        key = self._key(ch, scopes)
        token = self.cache.fetch(key, lambda: self._fetch_token(ch, list(key[2])))
        return f"Bearer {token}"

    # --- the token endpoint -------------------------------------------------------------

    def _fetch_token(
        self, ch: Challenge, scopes: list[str]
    ) -> tuple[str, float | None, float | None]:
        realm = ch.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryUnauthorized(
                f"unauthorized: the bearer challenge of {self.host} has no usable realm "
                f"({realm!r})",
                status=401,
            )
        service = ch.params.get("service", "")
        if self.auth.identity_token:
            resp = self._post_refresh_token(realm, service, scopes)
            if resp.status not in (404, 405):  # a token server without OAuth: GET instead
                return self._token_of(resp, realm)
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in scopes)
        headers = {}
        basic = _basic(self.auth)
        if basic is not None:
            headers["Authorization"] = basic
            if self.auth.username:
                params.append(("account", self.auth.username))
        url = realm + ("&" if "?" in realm else "?") + urlencode(params) if params else realm
        return self._token_of(self._fetch("GET", url, headers, None), realm)

    def _post_refresh_token(self, realm: str, service: str, scopes: list[str]) -> Response:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self.auth.identity_token,
            "service": service,
            "client_id": CLIENT_ID,
        }
        if scopes:
            form["scope"] = " ".join(scopes)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self._fetch("POST", realm, headers, urlencode(form).encode())

    def _token_of(self, resp: Response, realm: str) -> tuple[str, float | None, float | None]:
        body = resp.read(_TOKEN_BODY_MAX)
        if resp.status != 200:
            raise self._token_error(resp.status, body, realm)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryUnauthorized(
                f"unauthorized: the token server {realm} answered without a token ({self.host})",
                status=401,
            )
        expires_in = doc.get("expires_in")
        ttl = float(expires_in) if isinstance(expires_in, int | float) else None
        return token, ttl, _issued_at(doc.get("issued_at"))

    def _token_error(self, status: int, body: bytes, realm: str) -> RegistryError:
        detail = _token_error_detail(body)
        if status in (400, 401, 403):
            if not detail:
                creds = not self.auth.empty
                detail = "incorrect username or password" if creds else "authentication required"
            return RegistryUnauthorized(f"unauthorized: {detail} ({self.host})", status=status)
        text = f"token server {realm} answered {status}" + (f": {detail}" if detail else "")
        if status >= 500:
            return RegistryUnavailable(f"{text} ({self.host})", status=status)
        return RegistryError(f"{text} ({self.host})", status=status)


def _token_error_detail(body: bytes) -> str:
    """What a token server said: distribution's ``errors``, Docker Hub's ``details``,
    OAuth's ``error_description`` / ``error``."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    if isinstance(errors, list):
        texts = [
            str(e.get("message") or e.get("code") or "") for e in errors if isinstance(e, dict)
        ]
        return "; ".join(t for t in texts if t)
    for key in ("details", "error_description", "error"):
        if isinstance(doc.get(key), str) and doc[key]:
            return str(doc[key])
    return ""


def _issued_at(value: object) -> float | None:
    """RFC 3339 ``issued_at`` as a timestamp; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()
