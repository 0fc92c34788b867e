"""Typed JSON records for the OCI formats, cheap to import.

A document is a :class:`Record` subclass whose fields are declared with :func:`F`::

    class User(Record):
        uid: int = F(INT, 0)
        additional_gids: list[int] = F(list_of(INT), json="additionalGids")

The annotation is for type checkers; the converter passed to ``F`` validates the
JSON on the way in (:meth:`Record.from_json`, reporting the JSON path of the first
wrong value) and :meth:`Record.to_json` writes back only what is set, so a document
survives a round trip without gaining ``null``s. Unknown keys are ignored, as the
OCI specs require of consumers.

This is deliberately not ``dataclasses``: the runtime CLI imports these schemas on
every call, and dataclasses + typing cost ~40 ms there; this costs ~1 ms.
"""

from __future__ import annotations

from portside.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~10 ms to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    R = TypeVar("R", bound="Record")
    Converter = Callable[[Any, str], Any]

__all__ = [
    "ANY",
    "BOOL",
    "INT",
    "NUMBER",
    "STR",
    "F",
    "Record",
    "SpecError",
    "list_of",
    "map_of",
]


class SpecError(InvalidArgument):
    """A document does not match its schema; the message names the JSON path."""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def INT(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SpecError(f"{path}: expected an integer, got {_describe(value)}")
    return value


def NUMBER(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}: expected a number, got {_describe(value)}")
    return float(value)


def STR(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{path}: expected a string, got {_describe(value)}")
    return value


def BOOL(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected true or false, got {_describe(value)}")
    return value


def ANY(value: Any, path: str) -> Any:
    return value


def list_of(item: Converter | type[Record]) -> Converter:
    conv = _as_converter(item)
    same = _SAME_TYPE.get(conv)
    plain = {same} if same is not None else None

    def convert(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise SpecError(f"{path}: expected a list, got {_describe(value)}")
        if plain is not None and set(map(type, value)) <= plain:
            return value[:]  # the common case, without a path string per item
        return [conv(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return convert


def map_of(item: Converter | type[Record]) -> Converter:
    conv = _as_converter(item)

    def convert(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: expected an object, got {_describe(value)}")
        return {str(k): conv(v, f"{path}.{k}") for k, v in value.items()}

    return convert


# converters that return a value of exactly this type unchanged
_SAME_TYPE: dict[Converter, type] = {STR: str, INT: int, BOOL: bool}


def _as_converter(item: Converter | type[Record]) -> Converter:
    if isinstance(item, type) and issubclass(item, Record):
        return item.from_json
    return item


class Field:
    __slots__ = ("conv", "default", "factory", "json", "name", "required")

    def __init__(
        self,
        conv: Converter,
        default: Any,
        factory: Callable[[], Any] | None,
        json: str | None,
        required: bool,
    ) -> None:
        self.conv = conv
        self.default = default
        self.factory = factory
        self.json = json
        self.required = required
        self.name = ""


def F(
    conv: Converter | type[Record],
    default: Any = None,
    *,
    json: str | None = None,
    required: bool = False,
) -> Any:
    """Declare a field. ``list_of``/``map_of`` fields default to an empty collection
    that is left out of the JSON while empty."""
    converter = _as_converter(conv)
    factory: Callable[[], Any] | None = None
    if getattr(converter, "__qualname__", "").startswith("list_of"):
        factory = list
    elif getattr(converter, "__qualname__", "").startswith("map_of"):
        factory = dict
    return Field(converter, default, factory, json, required)


class Record:
    """Base of the typed JSON documents; see the module docstring."""

    __fields__: ClassVar[tuple[Field, ...]] = ()

    def __init_subclass__(cls) -> None:
        fields: list[Field] = list(cls.__fields__)
        for name, value in list(vars(cls).items()):
            if isinstance(value, Field):
                value.name = name
                if value.json is None:
                    value.json = name
                fields.append(value)
                delattr(cls, name)
        cls.__fields__ = tuple(fields)
        # for __init__, which every record of a spec goes through (~50 per container)
        cls._names = frozenset(f.name for f in fields)
        cls._required = tuple(f.name for f in fields if f.required)
        cls._defaults = {f.name: f.default for f in fields if f.factory is None}
        cls._factories = tuple((f.name, f.factory) for f in fields if f.factory is not None)
        # for from_json: (name, key, converter, the type a value passes through as it is,
        # required, default, factory); object: ANY takes every value as it is
        cls._plan = tuple(
            (
                f.name,
                f.json or f.name,
                f.conv,
                object if f.conv is ANY else _SAME_TYPE.get(f.conv),
                f.required,
                f.default,
                f.factory,
            )
            for f in fields
        )
        cls._out = tuple((f.name, f.json or f.name, f.factory is not None) for f in fields)

    _names: ClassVar[frozenset[str]] = frozenset()
    _required: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[tuple[tuple[str, Callable[[], Any]], ...]] = ()
    _plan: ClassVar[tuple[tuple[Any, ...], ...]] = ()
    _out: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        cls = type(self)
        for name in cls._required:
            if name not in kwargs:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
        if not cls._names.issuperset(kwargs):
            raise TypeError(f"{cls.__name__}: unknown fields {sorted(kwargs.keys() - cls._names)}")
        values = self.__dict__
        values.update(cls._defaults)
        for name, factory in cls._factories:
            if name not in kwargs:
                values[name] = factory()
        values.update(kwargs)

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in self.__fields__
            if getattr(self, f.name) not in (None, [], {})
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self.__fields__)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_json(cls: type[R], data: Any, path: str = "") -> R:
        """Build the record from parsed JSON, validating every field."""
        if not isinstance(data, dict):
            raise SpecError(f"{path or '.'}: expected an object, got {_describe(data)}")
        obj = cls.__new__(cls)
        values = obj.__dict__
        get = data.get
        for name, key, conv, same, required, default, factory in cls._plan:
            value = get(key)
            if value is None:
                if required:
                    sub = f"{path}.{key}" if path else key
                    raise SpecError(f"{sub}: required field is missing")
                values[name] = default if factory is None else factory()
            elif same is object or type(value) is same:  # valid as it is: no path string
                values[name] = value
            else:
                values[name] = conv(value, f"{path}.{key}" if path else key)
        return obj

    def to_json(self) -> dict[str, Any]:
        """The JSON object; unset fields and empty collections are left out."""
        out: dict[str, Any] = {}
        values = self.__dict__
        scalars = _SCALARS
        for name, key, collection in self._out:
            value = values[name]
            if value is None or (collection and not value):
                continue
            out[key] = value if type(value) in scalars else _unconvert(value)
        return out


_SCALARS = frozenset({str, int, bool, float})


def _unconvert(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [v if type(v) in _SCALARS else _unconvert(v) for v in value]
    if isinstance(value, dict):
        return {k: _unconvert(v) for k, v in value.items()}
    return value
