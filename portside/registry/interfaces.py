"""What the distribution API (``server.py``) asks of the parts around it, so each is
built and tested on its own: who is calling and what they may do (:class:`Access`,
implemented for token auth by ``portside.registry.auth``), and what happened
(:class:`EventSink`, implemented by the webhooks' outbox). ``--auth none`` uses
:class:`OpenAccess`; no webhooks, :class:`NullSink`."""

from __future__ import annotations

from dataclasses import dataclass, field

from portside.errors import PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Protocol

else:
    Protocol = object

__all__ = [
    "ANONYMOUS",
    "Access",
    "AuthChallenge",
    "EventSink",
    "NullSink",
    "OpenAccess",
    "Principal",
]

#: the actions of a repository scope (``repository:NAME:pull,push``); "*" is every one,
#: "delete" is what distribution 2.8 asks for DELETE
ACTIONS = frozenset({"pull", "push", "delete", "*"})


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``name`` is "" for anonymous; ``kind`` is "anonymous", "user",
    "robot" or "token" (a personal access token, acting for ``name``)."""

    name: str = ""
    kind: str = "anonymous"
    admin: bool = False
    #: what a bearer token granted, {repository: actions}, when the caller showed one
    granted: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal()


class AuthChallenge(PermissionDenied):
    """Answer 401 with ``www_authenticate`` as the WWW-Authenticate header and the
    distribution error ``code`` (UNAUTHORIZED, or DENIED with 403 when ``status`` says)."""

    def __init__(
        self, message: str, www_authenticate: str, *, code: str = "UNAUTHORIZED", status: int = 401
    ) -> None:
        super().__init__(message)
        self.www_authenticate = www_authenticate
        self.code = code
        self.status = status


class Access(Protocol):
    """Authentication and authorisation for the distribution API."""

    def authenticate(self, headers: Mapping[str, str], remote: str) -> Principal:
        """The caller of a request with these headers (Authorization: Bearer or Basic;
        none: :data:`ANONYMOUS`). A bad or expired token, or wrong Basic credentials,
        raise :class:`AuthChallenge` (401, ``error="invalid_token"`` in the challenge)."""
        ...

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        """The subset of ``actions`` ("pull", "push", "delete") the caller may do on
        ``repository`` (may be empty; never raises for a lack of rights)."""
        ...

    def challenge(self, scopes: Iterable[tuple[str, str, set[str]]], error: str = "") -> str:
        """The WWW-Authenticate value asking for ``scopes`` (type, name, actions):
        ``Bearer realm="…",service="…",scope="repository:a:pull repository:b:pull,push"``
        plus ``,error="insufficient_scope"`` when ``error``; ``Basic realm=…`` for Basic."""
        ...

    def may_list(self, principal: Principal, repositories: Iterable[str]) -> list[str]:
        """The repositories among ``repositories`` the catalog shows this caller."""
        ...

    def routes(self) -> list[tuple[str, str, Any]]:
        """Extra routes the server mounts (method, path, aiohttp handler): the token
        endpoint (``GET``/``POST /token``), the web UI's sign-in…"""
        ...


class OpenAccess:
    """``--auth none``: everyone may do everything, as distribution's default."""

    def authenticate(self, headers: Mapping[str, str], remote: str) -> Principal:
        return ANONYMOUS

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        return set(actions)

    def challenge(self, scopes: Iterable[tuple[str, str, set[str]]], error: str = "") -> str:
        return 'Basic realm="portside-registry"'

    def may_list(self, principal: Principal, repositories: Iterable[str]) -> list[str]:
        return list(repositories)

    def routes(self) -> list[tuple[str, str, Any]]:
        return []


class EventSink(Protocol):
    """Receives what happened, after it happened (the transaction committed).
    ``publish`` must not block for long nor raise: it queues (the webhooks' outbox)."""

    def publish(self, event: dict[str, Any]) -> None:
        """``event`` is one entry of distribution's notification envelope:
        ``{"id", "timestamp", "action": push|pull|delete|mount|tag, "target":
        {"mediaType", "size", "digest", "repository", "url", "tag"}, "request": {"id",
        "addr", "host", "method", "useragent"}, "actor": {"name"}, "source": {"addr",
        "instanceID"}}``."""
        ...


class NullSink:
    def publish(self, event: dict[str, Any]) -> None:
        return None
