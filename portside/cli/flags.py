"""Flag parsing the way docker's (cobra/pflag) does it, and docker's value parsers.

A command declares its options as ``Opt`` records; ``parse`` returns the
values, the positional arguments and the set of flags given. Combined short
booleans (``-it``), ``-eX=1``, ``--name=x``, ``--rm=false`` and ``--`` work;
``interspersed=False`` stops at the first positional (run, create, exec).
Errors are ``FlagError`` with pflag's texts (docker exits 125 on them).
"""

from __future__ import annotations

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "FlagError",
    "Opt",
    "parse",
    "parse_duration",
    "parse_env_file",
    "parse_memswap",
    "parse_nanocpus",
    "parse_restart_policy",
    "parse_size",
    "parse_ulimit",
]


class FlagError(InvalidArgument):
    """A flag or its value is wrong (docker: exit 125 with the usage hint)."""


class Opt:
    """One flag: ``names`` like "m|memory" (short first), ``kind`` "bool", "str",
    "int", "list" or a converter ``str -> value`` raising ValueError."""

    __slots__ = ("default", "dest", "help", "kind", "long", "many", "short")

    def __init__(self, names: str, kind: Any = "str", help: str = "", default: Any = None) -> None:
        parts = names.split("|")
        self.short = parts[0] if len(parts) == 2 else ""
        self.long = parts[-1]
        self.dest = self.long.replace("-", "_")
        self.kind = kind
        self.help = help
        if default is None:
            default = {"bool": False, "list": []}.get(kind) if isinstance(kind, str) else None
        self.default = default
        self.many = kind == "list" or isinstance(default, list)  # repeatable, values collected

    def label(self) -> str:
        return f"-{self.short}, --{self.long}" if self.short else f"--{self.long}"

    def convert(self, raw: str) -> Any:
        try:
            if self.kind in ("str", "list"):
                return raw
            if self.kind == "bool":
                return _parse_bool(raw)
            if self.kind == "int":
                return _parse_int(raw)
            return self.kind(raw)
        except ValueError as exc:
            raise FlagError(f'invalid argument "{raw}" for "{self.label()}" flag: {exc}') from None


def _parse_bool(raw: str) -> bool:
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{raw}": invalid syntax')


def _parse_int(raw: str) -> int:
    try:
        return int(raw, 0) if raw.lower().startswith(("0x", "0o", "0b")) else int(raw)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None


class Parsed:
    """Flag values by ``dest``, the positional ``args`` and the ``changed`` dests."""

    def __init__(self, values: dict[str, Any], args: list[str], changed: set[str]) -> None:
        self.values = values
        self.args = args
        self.changed = changed

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


HELP = Opt("help", "bool", "Print usage")


def parse(opts: list[Opt], argv: list[str], *, interspersed: bool = True) -> Parsed:
    """Parse ``argv`` against ``opts`` (``--help`` is always known)."""
    longs = {o.long: o for o in opts}
    longs.setdefault("help", HELP)
    shorts = {o.short: o for o in opts if o.short}
    values: dict[str, Any] = {o.dest: _copy(o.default) for o in longs.values()}
    changed: set[str] = set()
    args: list[str] = []
    i = 0

    def store(opt: Opt, raw: str) -> None:
        value = opt.convert(raw)
        if opt.many:
            if opt.dest not in changed:
                values[opt.dest] = []
            values[opt.dest].append(value)
        else:
            values[opt.dest] = value
        changed.add(opt.dest)

    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, raw = arg[2:].partition("=")
            opt = longs.get(name)
            if opt is None:
                raise FlagError(f"unknown flag: --{name}")
            if opt.kind == "bool" and not eq:
                store(opt, "true")
            elif eq:
                store(opt, raw)
            elif i < len(argv):
                store(opt, argv[i])
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            i = _parse_shorts(arg, argv, i, shorts, store)
        else:
            args.append(arg)
            if not interspersed:
                args.extend(argv[i:])
                break
    return Parsed(values, args, changed)


def _parse_shorts(arg: str, argv: list[str], i: int, shorts: dict, store: Callable) -> int:
    pos = 1
    while pos < len(arg):
        char = arg[pos]
        opt = shorts.get(char)
        if opt is None:
            if char == "h":
                store(HELP, "true")
                pos += 1
                continue
            raise FlagError(f"unknown shorthand flag: '{char}' in {arg}")
        rest = arg[pos + 1 :]
        if opt.kind == "bool":
            if rest.startswith("="):
                store(opt, rest[1:])
                return i
            store(opt, "true")
            pos += 1
            continue
        if rest:
            store(opt, rest[1:] if rest.startswith("=") else rest)
        elif i < len(argv):
            store(opt, argv[i])
            i += 1
        else:
            raise FlagError(f"flag needs an argument: '{char}' in -{char}")
        return i
    return i


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# -- value parsers (docker's go-units / opts packages) -------------------------

_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """go-units RAMInBytes: "64m", "1.5g", "512", "1GiB", "10 kB" (binary units)."""
    rest = text
    if rest[-1:] in ("b", "B"):
        rest = rest[:-1]
    if rest[-1:] in ("i", "I"):
        rest = rest[:-1]
    unit = rest[-1:].lower()
    if unit in _BINARY:
        rest = rest[:-1]
    else:
        unit = ""
    if rest.endswith(" "):
        rest = rest[:-1]
    whole, dot, frac = rest.partition(".")
    ok = is_number(whole) and (not dot or is_number(frac))
    if not ok:
        raise ValueError(f"invalid size: '{text}'")
    number = float(rest) if dot else int(rest)
    return int(number * _BINARY.get(unit, 1))


def parse_memswap(text: str) -> int:
    """``--memory-swap``: a size or -1 (unlimited)."""
    return -1 if text == "-1" else parse_size(text)


def parse_nanocpus(text: str) -> int:
    """``--cpus 1.5`` → 1500000000 (docker's NanoCPUs, a rational number)."""
    from fractions import Fraction

    try:
        value = Fraction(text.strip()) * 1_000_000_000
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if value.denominator != 1:
        raise ValueError("value is too precise")
    return int(value)


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "1.5h", "-2s", "0") → nanoseconds."""
    quoted = f'"{text}"'
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        j = 0
        while j < len(s) and (is_number(s[j]) or s[j] == "."):
            j += 1
        number = s[:j]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[j:]
        k = 0
        while k < len(s) and not (is_number(s[k]) or s[k] == "."):
            k += 1
        unit = s[:k]
        s = s[k:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _DURATION_UNITS[unit]
    if total > (1 << 63) - 1:
        raise ValueError(f"time: invalid duration {quoted}")
    return sign * round(total)


def format_duration(ns: int) -> str:
    """Go's Duration.String for whole numbers of units ("1m30s", "500ms", "0s")."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_trim(ns / size)}{unit}"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{sign}{out}{seconds}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


_WHITESPACE = " \t"


def parse_env_lines(lines: list[str], what: str) -> list[str]:
    """docker's opts.ParseEnvFile on the lines of a file named ``what``."""
    import os

    out: list[str] = []
    for number, raw in enumerate(lines, 1):
        text = raw[1:] if number == 1 and raw.startswith("\ufeff") else raw
        line = text.lstrip(_WHITESPACE).rstrip("\r\n")
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        name = name.lstrip(_WHITESPACE)
        if any(c in name for c in _WHITESPACE):
            raise ValueError(
                f"poorly formatted environment: variable '{name}' contains whitespaces"
            )
        if not name:
            raise ValueError(f"poorly formatted environment: no variable name on line '{line}'")
        if eq:
            out.append(f"{name}={value}")
        elif name in os.environ:
            out.append(f"{name}={os.environ[name]}")
        else:
            out.append(name)
    return out


def parse_env_file(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ValueError(f"open {path}: {exc.strerror.lower()}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"env file {path} contains invalid utf8 bytes") from None
    return parse_env_lines(text.splitlines(), path)


def parse_env(item: str) -> str:
    """``-e``: "K=V" kept; "K" takes the value from our environment if set."""
    import os

    name, eq, _ = item.partition("=")
    if not name:
        raise ValueError(f"invalid environment variable: {item}")
    if not eq and name in os.environ:
        return f"{name}={os.environ[name]}"
    return item


ULIMITS = frozenset(
    [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ]
)


def parse_ulimit(text: str) -> dict:
    """``nofile=1024:2048`` → {"Name": "nofile", "Soft": 1024, "Hard": 2048}."""
    name, eq, limits = text.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    if colon and ":" in hard_s:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise ValueError(f"invalid ulimit argument: {text}") from None
    if colon and soft > hard:
        raise ValueError(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return {"Name": name, "Soft": soft, "Hard": hard}


RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def parse_restart_policy(text: str) -> dict:
    """``on-failure:3`` → {"Name": "on-failure", "MaximumRetryCount": 3}, validated."""
    if not text:
        return {"Name": "", "MaximumRetryCount": 0}
    name, colon, count_s = text.partition(":")
    if colon and not name:
        raise ValueError("invalid restart policy format: no policy provided before colon")
    count = 0
    if count_s:
        try:
            count = int(count_s)
        except ValueError:
            raise ValueError(
                "invalid restart policy format: maximum retry count must be an integer"
            ) from None
    if name not in RESTART_POLICIES:
        raise ValueError(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )
    if count and name != "on-failure":
        raise ValueError(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    if count < 0:
        raise ValueError("invalid restart policy: maximum retry count cannot be negative")
    return {"Name": name, "MaximumRetryCount": count}


def parse_key_value(text: str) -> str:
    """A ``key=value`` item (--log-opt, --sysctl, --label keep it as is)."""
    if "=" not in text or text.startswith("="):
        raise ValueError(f"invalid key=value: {text}")
    return text
