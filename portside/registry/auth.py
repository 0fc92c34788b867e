"""Token authentication for the registry (``--auth token``): :class:`TokenAccess`
implements :class:`~portside.registry.interfaces.Access` with the Docker token flow.

- The distribution API answers an unauthorised request with :meth:`TokenAccess.challenge`:
  ``Bearer realm="<external url>/token",service="…",scope="repository:a/b:pull,push"``.
- ``GET /token?service=…&scope=…`` with Basic credentials (a password, a personal
  access token, or a robot's token) or none (anonymous) answers
  ``{"token", "access_token", "expires_in", "issued_at"}``: a JWT granting what the
  caller may do of what it asked — a subset is not an error; wrong credentials are a
  401, too many failed logins a 429 with ``Retry-After``. ``offline_token=true`` adds a
  ``refresh_token`` (what ``docker login`` keeps as its identity token).
- ``POST /token`` is the OAuth2 form (``grant_type=password`` with ``username`` and
  ``password``, ``access_type=offline`` for a refresh token; ``grant_type=refresh_token``).
- Later requests carry ``Authorization: Bearer <jwt>``: :meth:`TokenAccess.authenticate`
  verifies it and :meth:`TokenAccess.authorize` allows what its ``access`` claim grants.
  Basic credentials are also accepted on the API itself; then the rights are read from
  the accounts at each request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import os
from dataclasses import dataclass

from aiohttp import web

from portside.registry.accounts import ALL_ACTIONS, Accounts, RateLimited
from portside.registry.interfaces import ANONYMOUS, AuthChallenge, Principal
from portside.registry.scopes import InvalidScope, Scope, merge, parse_scopes
from portside.registry.tokens import InvalidToken, TokenService

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from portside.registry.db import Database

__all__ = ["TokenAccess", "TokenPrincipal", "make_access"]

#: refresh tokens (``docker login``'s identity token) live this long, in seconds
REFRESH_TTL = 30 * 86400
_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2, "*": 3}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class TokenPrincipal(Principal):
    """A caller that showed a bearer token: ``granted`` is all it may do."""

    jti: str = ""
    expires: float = 0.0


def _actions(actions: Iterable[str]) -> list[str]:
    return sorted(set(actions), key=lambda a: (_ACTION_ORDER.get(a, 9), a))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(when: float) -> str:
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name) or headers.get(name.lower()) or ""


def _basic(value: str) -> tuple[str, str] | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": None}], **extra}
    headers = dict(_NO_STORE)
    return web.json_response(body, status=status, headers=headers)


class TokenAccess:
    """Accounts + token service behind the :class:`Access` protocol. ``config`` is a
    :class:`~portside.registry.config.RegistryConfig` (``service``, ``token_ttl``,
    ``external_url``, ``addr``, ``tls_cert``); ``realm`` may be set after the server
    knows the port it listens on."""

    def __init__(
        self,
        accounts: Accounts,
        tokens: TokenService,
        config: Any,
        *,
        refresh_ttl: float = REFRESH_TTL,
    ) -> None:
        self.accounts = accounts
        self.tokens = tokens
        self.config = config
        self.service: str = getattr(config, "service", "portside-registry")
        self.ttl = int(getattr(config, "token_ttl", 300))
        self.refresh_ttl = refresh_ttl
        base = getattr(config, "external_url", "")
        if not base:
            scheme = "https" if getattr(config, "tls_cert", "") else "http"
            base = f"{scheme}://{getattr(config, 'addr', '127.0.0.1:5000')}"
        self.realm = base.rstrip("/") + "/token"

    # --- Access -----------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], remote: str) -> Principal:
        value = _header(headers, "Authorization").strip()
        if not value:
            return ANONYMOUS
        scheme, _, credentials = value.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self._bearer(credentials.strip())
        if scheme == "basic":
            pair = _basic(credentials)
            if pair is not None:
                return self._login(pair[0], pair[1], remote)
        raise AuthChallenge(
            "unsupported or malformed authorization", self.challenge((), "invalid_token")
        )

    def _bearer(self, token: str) -> TokenPrincipal:
        try:
            claims = self.tokens.verify(token, self.service)
        except InvalidToken as exc:
            raise AuthChallenge(str(exc), self.challenge((), "invalid_token")) from exc
        granted: dict[str, set[str]] = {}
        for entry in claims.get("access", []):
            if entry["type"] == "repository":
                granted.setdefault(entry["name"], set()).update(entry["actions"])
        subject = claims["sub"]
        kind = "anonymous" if not subject else "robot" if "+" in subject else "user"
        return TokenPrincipal(
            name=subject,
            kind=kind,
            granted={name: frozenset(acts) for name, acts in granted.items()},
            jti=str(claims["jti"]),
            expires=float(claims["exp"]),
        )

    def _login(self, user: str, password: str, remote: str) -> Principal:
        # RateLimited (429 TOOMANYREQUESTS, Retry-After) goes through as it is
        found = self.accounts.check_password(user, password, remote)
        if found is None:
            raise AuthChallenge("incorrect username or password", self.challenge(()))
        return found

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        if isinstance(principal, TokenPrincipal):
            allowed = set(principal.granted.get(repository, ()))
            if "*" in allowed:
                allowed |= ALL_ACTIONS
        else:
            allowed = self.accounts.rights(principal, repository)
        return set(actions) & allowed

    def challenge(self, scopes: Iterable[tuple[str, str, set[str]]], error: str = "") -> str:
        parts = [f"realm={_quote(self.realm)}", f"service={_quote(self.service)}"]
        wanted = " ".join(f"{t}:{n}:{','.join(_actions(a))}" for t, n, a in scopes)
        if wanted:
            parts.append(f"scope={_quote(wanted)}")
        if error:
            parts.append(f"error={_quote(error)}")
        return "Bearer " + ",".join(parts)

    def may_list(self, principal: Principal, repositories: Iterable[str]) -> list[str]:
        if isinstance(principal, TokenPrincipal):
            principal = self.accounts.principal(principal.name)
        return self.accounts.visible(principal, repositories)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/token", self.get_token), ("POST", "/token", self.post_token)]

    def may_manage(self, principal: Principal, namespace: str, repository: str = "") -> bool:
        """Whether the caller may manage the namespace (or one repository in it):
        visibility, webhooks, triggers (blocking; see :meth:`Accounts.may_manage`)."""
        if isinstance(principal, TokenPrincipal):
            principal = self.accounts.principal(principal.name)
        return self.accounts.may_manage(principal, namespace, repository)

    # --- what a token grants ----------------------------------------------------------

    def grant(self, principal: Principal, scopes: Iterable[Scope]) -> list[Scope]:
        """Of ``scopes``, what ``principal`` may have (resources it may do nothing on
        are left out). Asking ``*`` on a repository gives ``*`` to who may do
        everything there, else the actions they may do."""
        out = []
        for scope in merge(scopes):
            asked = set(scope.actions)
            if scope.type == "repository":
                rights = self.accounts.rights(principal, scope.name)
                given = asked & rights
                if "*" in asked:
                    given = {"*"} if rights >= ALL_ACTIONS else given | rights
            elif scope.type == "registry" and scope.name == "catalog":
                given = asked & {"*"}  # the catalog shows each caller what it may see
            else:
                given = set()
            if given:
                out.append(Scope(scope.type, scope.name, _actions(given), scope.resource_class))
        return out

    def token_for(
        self, principal: Principal, scopes: Iterable[Scope], *, refresh: str = ""
    ) -> dict[str, Any]:
        """The token endpoint's JSON for ``principal`` asking ``scopes`` (blocking)."""
        granted = self.grant(principal, scopes)
        access = [g.claim() for g in granted]
        token, expires_in, issued_at = self.tokens.issue(
            principal.name, access, self.service, self.ttl
        )
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": _rfc3339(issued_at),
            "scope": " ".join(str(g) for g in granted),
        }
        if refresh:
            body["refresh_token"] = refresh
        return body

    # --- the token endpoint -----------------------------------------------------------

    def _service_error(self, service: str | None) -> web.Response | None:
        if service and service != self.service:
            return _error(400, "DENIED", f"unknown service {service!r}", error="invalid_request")
        return None

    async def get_token(self, request: web.Request) -> web.Response:
        """``GET /token``: distribution's token endpoint."""
        query = request.query
        bad = self._service_error(query.get("service"))
        if bad is not None:
            return bad
        try:
            scopes = parse_scopes(query.getall("scope", []))
        except InvalidScope as exc:
            return _error(400, "UNSUPPORTED", str(exc), error="invalid_scope")
        principal: Principal = ANONYMOUS
        value = request.headers.get("Authorization", "").strip()
        if value:
            scheme, _, credentials = value.partition(" ")
            pair = _basic(credentials) if scheme.lower() == "basic" else None
            if pair is None:
                return self._unauthorized("unsupported or malformed authorization")
            try:
                found = await asyncio.to_thread(
                    self.accounts.check_password, pair[0], pair[1], request.remote or ""
                )
            except RateLimited as exc:
                return self._throttled(exc)
            if found is None:
                return self._unauthorized("incorrect username or password")
            principal = found
        offline = query.get("offline_token", "").lower() == "true"
        client_id = query.get("client_id", "")
        body = await asyncio.to_thread(self._respond, principal, scopes, offline, client_id)
        return web.json_response(body, headers=_NO_STORE)

    def _respond(
        self, principal: Principal, scopes: list[Scope], offline: bool, client_id: str
    ) -> dict[str, Any]:
        refresh = ""
        if offline and not principal.anonymous:
            refresh = self.accounts.add_refresh_token(principal, client_id, self.refresh_ttl)
        return self.token_for(principal, scopes, refresh=refresh)

    def _unauthorized(self, message: str) -> web.Response:
        response = _error(401, "UNAUTHORIZED", message, error="invalid_grant")
        response.headers["WWW-Authenticate"] = f"Basic realm={_quote(self.realm)}"
        return response

    @staticmethod
    def _throttled(exc: RateLimited) -> web.Response:
        response = _error(429, "TOOMANYREQUESTS", str(exc), error="slow_down")
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def post_token(self, request: web.Request) -> web.Response:
        """``POST /token``: the OAuth2 form (distribution's ``oauth.md``)."""
        if (request.content_length or 0) > 65536:
            return _error(413, "SIZE_INVALID", "token request too large", error="invalid_request")
        form = await request.post()
        field = {k: v for k, v in form.items() if isinstance(v, str)}
        bad = self._service_error(field.get("service"))
        if bad is not None:
            return bad
        try:
            scopes = parse_scopes([field.get("scope", "")])
        except InvalidScope as exc:
            return _error(400, "UNSUPPORTED", str(exc), error="invalid_scope")
        grant_type = field.get("grant_type", "")
        client_id = field.get("client_id", "")
        if grant_type == "password":
            if not field.get("username") or "password" not in field:
                return _error(400, "UNSUPPORTED", "username and password are required",
                              error="invalid_request")  # fmt: skip
            try:
                found = await asyncio.to_thread(
                    self.accounts.check_password,
                    field["username"], field["password"], request.remote or "",
                )  # fmt: skip
            except RateLimited as exc:
                return self._throttled(exc)
            if found is None:
                return self._unauthorized("incorrect username or password")
            offline = field.get("access_type", "") == "offline"
            body = await asyncio.to_thread(self._respond, found, scopes, offline, client_id)
        elif grant_type == "refresh_token":
            refresh = field.get("refresh_token", "")
            found = await asyncio.to_thread(self.accounts.check_refresh_token, refresh)
            if found is None:
                return self._unauthorized("invalid or expired refresh token")
            body = await asyncio.to_thread(self.token_for, found, scopes, refresh=refresh)
        else:
            return _error(400, "UNSUPPORTED", f"unsupported grant_type {grant_type!r}",
                          error="unsupported_grant_type")  # fmt: skip
        return web.json_response(body, headers=_NO_STORE)


def make_access(config: Any, db: Database, **kwargs: Any) -> TokenAccess:
    """:class:`TokenAccess` for a server: accounts in ``db``, the signing key under
    ``ROOT/keys`` (``token_algorithm`` of the config, ES256 by default)."""
    accounts = Accounts(db)
    accounts.warm()
    tokens = TokenService.open(
        os.path.join(config.root, "keys"),
        issuer=getattr(config, "issuer", "portside-registry"),
        algorithm=config.token_algorithm,
    )
    return TokenAccess(accounts, tokens, config, **kwargs)
