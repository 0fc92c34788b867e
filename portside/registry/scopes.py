"""Token scopes (distribution's ``docs/spec/auth/scope.md``): ``type[(class)]:name:actions``.

::

    repository:alice/app:pull,push
    repository(plugin):alice/plugin:pull
    repository:localhost:5000/app:pull       # the name holds host:port
    registry:catalog:*

The type runs to the first colon and the actions start after the last one, so a name
may carry ``host:port``. One ``scope`` value may hold several scopes separated by
spaces, and a request may repeat the ``scope`` parameter: :func:`parse_scopes` takes
them all, :func:`merge` folds scopes on the same resource together.
"""

from __future__ import annotations

from portside.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["InvalidScope", "Scope", "format_scopes", "merge", "parse_scope", "parse_scopes"]

#: a scope value longer than this is refused (a name is at most 255 characters)
MAX_SCOPE = 512
#: at most this many scopes in one request
MAX_SCOPES = 100

_LOWER_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz*")
# what a resource name may hold: the repository grammar's characters, uppercase for a
# host name, ":" for a port; no space, quote, comma or control character
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:")


class InvalidScope(InvalidArgument):
    """A scope that does not follow ``type:name:actions``."""


class Scope:
    """One resource scope. ``actions`` keeps the order given, without duplicates."""

    __slots__ = ("actions", "name", "resource_class", "type")

    def __init__(
        self, type: str, name: str, actions: Iterable[str], resource_class: str = ""
    ) -> None:
        self.type = type
        self.name = name
        self.actions: tuple[str, ...] = tuple(dict.fromkeys(actions))
        self.resource_class = resource_class

    @property
    def resource(self) -> tuple[str, str, str]:
        """What identifies the resource: (type, class, name)."""
        return (self.type, self.resource_class, self.name)

    @property
    def full_type(self) -> str:
        """``repository`` or ``repository(plugin)``."""
        return f"{self.type}({self.resource_class})" if self.resource_class else self.type

    def __str__(self) -> str:
        return f"{self.full_type}:{self.name}:{','.join(self.actions)}"

    def __repr__(self) -> str:
        return f"Scope({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scope):
            return NotImplemented
        return self.resource == other.resource and self.actions == other.actions

    def __hash__(self) -> int:
        return hash((self.resource, self.actions))

    def claim(self) -> dict[str, object]:
        """The token's ``access`` entry: ``{"type", ["class",] "name", "actions"}``."""
        entry: dict[str, object] = {"type": self.type}
        if self.resource_class:
            entry["class"] = self.resource_class
        entry["name"] = self.name
        entry["actions"] = list(self.actions)
        return entry


def _type_value(text: str) -> bool:
    return bool(text) and all(c in _LOWER_DIGITS for c in text)


def _split_type(full: str, scope: str) -> tuple[str, str]:
    if full.endswith(")") and "(" in full:
        kind, _, rest = full.partition("(")
        cls = rest[:-1]
        if _type_value(kind) and _type_value(cls):
            return kind, cls
    elif _type_value(full):
        return full, ""
    raise InvalidScope(f"invalid scope {scope!r}: bad resource type {full!r}")


def parse_scope(text: str) -> Scope:
    """One scope; :class:`InvalidScope` when malformed."""
    if len(text) > MAX_SCOPE:
        raise InvalidScope(f"invalid scope {text[:64]!r}...: longer than {MAX_SCOPE}")
    full, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2):
        raise InvalidScope(f"invalid scope {text!r}: want type:name:actions")
    kind, cls = _split_type(full, text)
    if not name or not all(c in _NAME_CHARS for c in name):
        raise InvalidScope(f"invalid scope {text!r}: bad resource name {name!r}")
    wanted = [a for a in actions.split(",") if a]
    for action in wanted:
        if not all(c in _ACTION_CHARS for c in action):
            raise InvalidScope(f"invalid scope {text!r}: bad action {action!r}")
    return Scope(kind, name, wanted, cls)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Every scope in ``values`` (each may hold several, separated by spaces), in order.
    :class:`InvalidScope` when one is malformed or there are more than ``MAX_SCOPES``."""
    out: list[Scope] = []
    for value in values:
        for text in value.split():
            out.append(parse_scope(text))
            if len(out) > MAX_SCOPES:
                raise InvalidScope(f"too many scopes: more than {MAX_SCOPES}")
    return out


def merge(scopes: Iterable[Scope]) -> list[Scope]:
    """Scopes on the same resource folded into one (actions in first-seen order);
    resources keep the order they first appear in."""
    by_resource: dict[tuple[str, str, str], list[str]] = {}
    for scope in scopes:
        by_resource.setdefault(scope.resource, []).extend(scope.actions)
    return [Scope(t, n, acts, c) for (t, c, n), acts in by_resource.items()]


def format_scopes(scopes: Iterable[Scope]) -> str:
    """Scopes as one space-separated value (a challenge's ``scope``, OAuth's ``scope``)."""
    return " ".join(str(s) for s in scopes)
