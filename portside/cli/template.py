"""A subset of Go's text/template, enough for docker's ``--format``.

Supported: ``{{.Field}}``, chains ``{{.State.Status}}``, ``{{.}}``, ``$``,
pipelines ``{{.Names | upper}}``, functions ``json index len join split upper
lower title pad truncate println printf print eq ne lt le gt ge and or not
slice``, methods with arguments (``{{.Label "k"}}``), ``range``/``if``/
``with``/``else``/``end`` and trim markers ``{{-``/``-}}``. Values print like
Go's ``%v`` (maps as ``map[k:v]``, lists as ``[a b]``, None as ``<nil>``).
"""

from __future__ import annotations

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NO_VALUE", "Template", "TemplateError", "go_str", "to_json"]


class TemplateError(InvalidArgument):
    """A template that does not parse or fails while executing."""


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


def to_json(value: Any) -> str:
    """docker's ``json`` function: compact, no HTML escaping."""
    import json

    if hasattr(value, "to_json"):
        value = value.to_json()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if value is NO_VALUE:
        return None
    if hasattr(value, "to_json"):
        return value.to_json()
    raise TypeError(f"cannot encode {type(value).__name__}")


def go_str(value: Any) -> str:
    """Go's ``%v`` of a decoded JSON value."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value)) if abs(value) < 1e21 else repr(value)
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


# -- lexing of one action ------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    """Tokens of an action: (kind, text) with kinds field, var, str, num, ident,
    pipe, lparen, rparen."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "|()":
            out.append(({"|": "pipe", "(": "lparen", ")": "rparen"}[c], c))
            i += 1
            if c == ")" and text[i : i + 1] == ".":
                j = i
                while j < len(text) and not text[j].isspace() and text[j] not in "|()":
                    j += 1
                out.append(("chain", text[i:j]))
                i = j
        elif c in '"`':
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" and c == '"' else 1
            if j >= len(text):
                raise TemplateError(f"unterminated quoted string in {text!r}")
            raw = text[i : j + 1]
            if c == '"':
                import json

                value = json.loads(raw)
            else:
                value = raw[1:-1]
            out.append(("str", value))
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "|()":
                j += 1
            word = text[i:j]
            i = j
            if word.startswith("."):
                out.append(("field", word))
            elif word.startswith("$"):
                out.append(("var", word))
            elif is_number(word[0]) or (word[0] == "-" and is_number(word[1:2])):
                out.append(("num", word))
            else:
                out.append(("ident", word))
    return out


# -- parsing into nodes --------------------------------------------------------
# node forms: ("text", s) | ("action", pipeline) | ("range"|"if"|"with", pipeline, body, else)


def _split_actions(src: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = src.find("{{", pos)
        if start < 0:
            parts.append(("text", src[pos:]))
            return parts
        end = src.find("}}", start + 2)
        if end < 0:
            raise TemplateError(f'template: :1: unclosed action in "{src}"')
        text = src[pos:start]
        inner = src[start + 2 : end]
        pos = end + 2
        if inner.startswith("- ") or inner == "-":
            text = text.rstrip()
            inner = inner[1:]
        if inner.endswith(" -"):
            inner = inner[:-1]
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip())
        parts.append(("text", text))
        parts.append(("action", inner.strip()))


class Template:
    """A parsed template; ``execute(data)`` returns the text."""

    def __init__(self, source: str, funcs: dict[str, Any] | None = None) -> None:
        self.source = source
        self.funcs = dict(FUNCS)
        self.funcs.update(funcs or {})
        parts = _split_actions(source)
        self.nodes, _, end = self._parse(parts, 0)
        if end is not None:
            raise TemplateError(f"template: unexpected {{{{{end}}}}}")

    def _parse(self, parts: list, i: int) -> tuple[list, int, str | None]:
        nodes: list = []
        while i < len(parts):
            kind, text = parts[i]
            i += 1
            if kind == "text":
                if text:
                    nodes.append(("text", text))
                continue
            word = text.split(None, 1)[0] if text else ""
            if word in ("end", "else"):
                return nodes, i, text
            if word in ("range", "if", "with"):
                pipeline = self._pipeline(_tokens(text[len(word) :]))
                body, i, stop = self._parse(parts, i)
                other: list = []
                if stop is not None and stop.startswith("else"):
                    cond = stop[4:].strip()
                    if cond.startswith("if "):
                        sub, i, stop2 = self._parse_elseif(parts, i, cond)
                        other, stop = [sub], stop2
                    else:
                        other, i, stop = self._parse(parts, i)
                if stop != "end":
                    raise TemplateError(f"template: unexpected EOF in {word}")
                nodes.append((word, pipeline, body, other))
                continue
            if text.startswith("/*"):
                continue
            nodes.append(("action", self._pipeline(_tokens(text))))
        return nodes, i, None

    def _parse_elseif(self, parts: list, i: int, cond: str) -> tuple[tuple, int, str | None]:
        pipeline = self._pipeline(_tokens(cond[3:]))
        body, i, stop = self._parse(parts, i)
        other: list = []
        if stop is not None and stop.startswith("else"):
            rest = stop[4:].strip()
            if rest.startswith("if "):
                sub, i, stop = self._parse_elseif(parts, i, rest)
                other = [sub]
            else:
                other, i, stop = self._parse(parts, i)
        return ("if", pipeline, body, other), i, stop

    def _pipeline(self, tokens: list[tuple[str, str]]) -> list[list]:
        """A pipeline: a list of commands, each a list of operands."""
        commands: list[list] = [[]]
        stack = [commands]
        for kind, text in tokens:
            current = stack[-1]
            if kind == "pipe":
                current.append([])
            elif kind == "lparen":
                sub: list[list] = [[]]
                current[-1].append(("pipeline", sub))
                stack.append(sub)
            elif kind == "rparen":
                if len(stack) == 1:
                    raise TemplateError("template: unexpected right paren")
                stack.pop()
            elif kind == "chain":
                operands = stack[-1][-1]
                operands[-1] = ("chained", (operands[-1], text))
            else:
                if kind == "ident" and text not in self.funcs and text not in _LITERALS:
                    raise TemplateError(f'template: :1: function "{text}" not defined')
                current[-1].append((kind, text))
        if len(stack) != 1 or any(not command for command in commands):
            raise TemplateError(f"template: missing value in {self.source!r}")
        return commands

    # -- execution
    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, data, out)
        return "".join(out)

    def _run(self, nodes: list, dot: Any, root: Any, out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._eval_pipeline(node[1], dot, root)
                out.append(go_str(value) if value is not NO_VALUE else "<no value>")
            elif kind == "if":
                value = self._eval_pipeline(node[1], dot, root)
                self._run(node[2] if _truth(value) else node[3], dot, root, out)
            elif kind == "with":
                value = self._eval_pipeline(node[1], dot, root)
                if _truth(value):
                    self._run(node[2], value, root, out)
                else:
                    self._run(node[3], dot, root, out)
            elif kind == "range":
                value = self._eval_pipeline(node[1], dot, root)
                items = _iterate(value)
                for item in items:
                    self._run(node[2], item, root, out)
                if not items:
                    self._run(node[3], dot, root, out)

    def _eval_pipeline(self, commands: list[list], dot: Any, root: Any) -> Any:
        value: Any = NO_VALUE
        for index, command in enumerate(commands):
            extra = [value] if index else []
            value = self._eval_command(command, dot, root, extra)
        return value

    def _eval_command(self, command: list, dot: Any, root: Any, extra: list) -> Any:
        head = command[0]
        if head[0] == "ident" and head[1] in self.funcs:
            args = [self._operand(op, dot, root) for op in command[1:]] + extra
            try:
                return self.funcs[head[1]](*args)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise TemplateError(
                    f'template: :1: executing "" at <{head[1]}>: error calling {head[1]}: {exc}'
                ) from None
        if head[0] == "field" and (len(command) > 1 or extra):
            args = [self._operand(op, dot, root) for op in command[1:]] + extra
            return self._field(dot, head[1], args)
        if len(command) > 1 or extra:
            raise TemplateError(f"template: can't give argument to non-function {head[1]}")
        return self._operand(head, dot, root)

    def _operand(self, op: tuple, dot: Any, root: Any) -> Any:
        kind, text = op
        if kind == "field":
            return self._field(dot, text, None)
        if kind == "var":
            base = root
            return self._field(base, text[1:], None) if len(text) > 1 else base
        if kind == "str":
            return text
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "pipeline":
            return self._eval_pipeline(text, dot, root)
        if kind == "chained":
            base, chain = text
            return self._field(self._operand(base, dot, root), chain, None)
        if kind == "ident":
            if text in _LITERALS:
                return _LITERALS[text]
            return self.funcs[text]()
        raise TemplateError(f"template: bad operand {text}")

    def _field(self, value: Any, chain: str, args: list | None) -> Any:
        names = [n for n in chain.split(".") if n]
        for pos, name in enumerate(names):
            last = pos == len(names) - 1
            value = _lookup(value, name, args if last else None, chain)
        return value


def _lookup(value: Any, name: str, args: list | None, chain: str) -> Any:
    if isinstance(value, dict):
        if args:
            raise TemplateError(f"template: {chain} is not a method but has arguments")
        return value.get(name, NO_VALUE)
    if value is None or value is NO_VALUE:
        if value is None:
            raise TemplateError(
                f'template: :1: executing "" at <{chain}>: nil pointer evaluating {chain}'
            )
        return NO_VALUE
    attr = getattr(value, name, None) if not name.startswith("_") else None
    if attr is None:
        raise TemplateError(
            f'template: :1: executing "" at <{chain}>: can\'t evaluate field {name} in type '
            f"{type(value).__name__}"
        )
    if callable(attr):
        return attr(*(args or []))
    return attr


def _truth(value: Any) -> bool:
    return bool(value) and value is not NO_VALUE


def _iterate(value: Any) -> list:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, list | tuple):
        return list(value)
    if value is None or value is NO_VALUE:
        return []
    if isinstance(value, int):
        return list(range(value))
    raise TemplateError(f"template: range can't iterate over {go_str(value)}")


_LITERALS = {"true": True, "false": False, "nil": None}


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, NO_VALUE)
        elif item is None or item is NO_VALUE:
            return NO_VALUE
        else:
            item = item[int(key)]
    return item


def _printf(fmt: str, *args: Any) -> str:
    out = []
    i = 0
    arg_iter = iter(args)
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            j = i + 1
            while j < len(fmt) and fmt[j] in "-+# 0123456789.":
                j += 1
            verb = fmt[j] if j < len(fmt) else "v"
            spec = fmt[i + 1 : j]
            i = j + 1
            if verb == "%":
                out.append("%")
                continue
            arg = next(arg_iter, NO_VALUE)
            if verb in "dsv":
                text = go_str(arg) if verb != "d" else str(int(arg))
                out.append(f"%{spec}s" % text)
            elif verb in "fgeq":
                out.append(f'"{arg}"' if verb == "q" else f"%{spec}{verb}" % float(arg))
            else:
                out.append(go_str(arg))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _truncate(value: Any, length: int) -> str:
    text = go_str(value)
    return text[: int(length)]


def _pad(value: Any, before: int, after: int) -> str:
    return " " * int(before) + go_str(value) + " " * int(after)


def _cmp(op: str) -> Any:
    def compare(a: Any, b: Any) -> bool:
        if op == "eq":
            return a == b
        if op == "ne":
            return a != b
        if op == "lt":
            return a < b
        if op == "le":
            return a <= b
        if op == "gt":
            return a > b
        return a >= b

    return compare


def _and(*args: Any) -> Any:
    value: Any = True
    for value in args:
        if not _truth(value):
            return value
    return value


def _or(*args: Any) -> Any:
    value: Any = False
    for value in args:
        if _truth(value):
            return value
    return value


FUNCS: dict[str, Any] = {
    "json": to_json,
    "index": _index,
    "len": lambda v: len(v) if v not in (None, NO_VALUE) else 0,
    "join": lambda items, sep: sep.join(go_str(i) for i in (items or [])),
    "split": lambda text, sep: go_str(text).split(sep),
    "upper": lambda v: go_str(v).upper(),
    "lower": lambda v: go_str(v).lower(),
    "title": lambda v: go_str(v).title(),
    "pad": _pad,
    "truncate": _truncate,
    "println": lambda *a: " ".join(go_str(v) for v in a) + "\n",
    "print": lambda *a: "".join(go_str(v) for v in a),
    "printf": _printf,
    "eq": _cmp("eq"),
    "ne": _cmp("ne"),
    "lt": _cmp("lt"),
    "le": _cmp("le"),
    "gt": _cmp("gt"),
    "ge": _cmp("ge"),
    "and": _and,
    "or": _or,
    "not": lambda v: not _truth(v),
    "slice": lambda v, *ix: v[int(ix[0]) : int(ix[1]) if len(ix) > 1 else None] if ix else v,
}
