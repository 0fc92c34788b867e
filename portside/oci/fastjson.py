"""JSON for the runtime's hot path, without importing :mod:`json`.

``import json`` pulls in :mod:`re` and costs ~15 ms of a fresh interpreter here,
a third of what runc takes for a whole ``run``. CPython's own accelerator
module ``_json`` (what :mod:`json` uses underneath) scans and encodes without
it; this module drives it directly and falls back to :mod:`json` on an
interpreter without ``_json``. Output matches ``json.dumps`` with default
separators; ``indent`` pretty-prints like ``json.dumps(indent=N)``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["JSONError", "dumps", "loads"]


class JSONError(ValueError):
    """Malformed JSON; the message gives the position."""


def _constant(name: str) -> float:
    return float(name.lower().replace("infinity", "inf"))


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, Any] = {}


def _raise_default(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


try:
    import _json

    _scan = _json.make_scanner(_ScanContext())
    _encode = _json.make_encoder(
        None, _raise_default, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    _encode_str = _json.encode_basestring_ascii
except (ImportError, AttributeError, TypeError):  # another interpreter: the slow path
    _scan = None
    _encode = None
    _encode_str = None

_WS = " \t\n\r"


def _skip(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def loads(data: str | bytes) -> Any:
    """Parse one JSON document (UTF-8 when given bytes)."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if _scan is None:
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise JSONError(str(exc)) from None
    start = _skip(text, 0)
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise JSONError(f"expecting a value at character {stop.value}") from None
    except (ValueError, SystemError):
        # _json raises json.decoder.JSONDecodeError only when json.decoder is
        # already imported (else SystemError): let json itself say what is wrong
        import json

        try:
            json.loads(text)
        except ValueError as exc:
            raise JSONError(str(exc)) from None
        raise
    end = _skip(text, end)
    if end != len(text):
        raise JSONError(f"extra data at character {end}")
    return value


def _pretty(obj: Any, indent: str, level: int) -> str:
    pad = "\n" + indent * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        assert _encode_str is not None
        items = [f"{_encode_str(str(k))}: {_pretty(v, indent, level + 1)}" for k, v in obj.items()]
        return "{" + pad + ("," + pad).join(items) + "\n" + indent * level + "}"
    if isinstance(obj, list | tuple):
        if not obj:
            return "[]"
        items = [_pretty(v, indent, level + 1) for v in obj]
        return "[" + pad + ("," + pad).join(items) + "\n" + indent * level + "]"
    return dumps(obj)


def dumps(obj: Any, indent: int | None = None) -> str:
    """Serialise ``obj`` like :func:`json.dumps` (ASCII, default separators)."""
    if _encode is None:
        import json

        return json.dumps(obj, indent=indent)
    if indent is not None:
        return _pretty(obj, " " * indent, 0)
    return "".join(_encode(obj, 0))
