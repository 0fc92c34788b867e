"""``portside-runtime``: the runc-compatible command line.

Same subcommands, flags and output as runc 1.1, so containerd's runc shim and
podman's conmon can drive it. Flags are parsed by a small Go-style parser (no
argparse: it costs ~10 ms per call, and runc accepts ``-flag`` as well as
``--flag`` and ``--flag=value``). Errors go to stderr and, with ``--log``, to the
log file in text or JSON (containerd reads the last JSON error from it).
"""

from __future__ import annotations

import os
import sys

from portside.errors import InvalidArgument, PortsideError
from portside.oci import fastjson
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portside.runtime.container import Runtime

__all__ = ["main"]

VERSION = "1.1.5"  # the runc version whose interface we follow
SPEC_VERSION = "1.2.0"


class UsageError(InvalidArgument):
    pass


class Flags:
    """Parsed flags of one command: ``values`` (last wins), ``lists`` (repeated)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.lists: dict[str, list[str]] = {}

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def int(self, name: str, default: int = 0) -> int:
        """The flag as an integer; a non-number is a usage error naming the flag."""
        value = self.values.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise UsageError(f'invalid value "{value}" for flag -{name}: not an integer') from None


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _parse_bool(name: str, value: str) -> bool:
    """Go's strconv.ParseBool, as runc's flag parser uses."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f'invalid boolean value "{value}" for -{name}')


def parse_flags(
    args: list[str],
    spec: dict[str, str],
    *,
    stop_at_positional: bool = True,
) -> tuple[Flags, list[str]]:
    """Parse ``args`` against ``spec`` (name or alias -> kind: 'bool', 'str',
    'list', or '=canonical' for an alias). Stops at the first positional argument
    (runc's interspersed=false) or at ``--``."""
    flags = Flags()
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(args[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        kind = spec.get(name)
        if kind is not None and kind.startswith("="):
            name = kind[1:]
            kind = spec[name]
        if kind is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if kind == "bool":
            flags.values[name] = _parse_bool(name, value) if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = args[i]
            if kind == "list":
                flags.lists.setdefault(name, []).append(value)
            else:
                flags.values[name] = value
        i += 1
    return flags, rest


GLOBAL_FLAGS = {
    "root": "str",
    "log": "str",
    "log-format": "str",
    "debug": "bool",
    "systemd-cgroup": "bool",
    "criu": "str",
    "rootless": "str",
    "help": "bool",
    "h": "=help",
    "version": "bool",
    "v": "=version",
}

CREATE_FLAGS = {
    "bundle": "str",
    "b": "=bundle",
    "console-socket": "str",
    "pid-file": "str",
    "no-pivot": "bool",
    "no-new-keyring": "bool",
    "preserve-fds": "str",
}

RUN_FLAGS = {
    **CREATE_FLAGS,
    "detach": "bool",
    "d": "=detach",
    "keep": "bool",
    "no-subreaper": "bool",
}

EXEC_FLAGS = {
    "console-socket": "str",
    "cwd": "str",
    "env": "list",
    "e": "=env",
    "tty": "bool",
    "t": "=tty",
    "user": "str",
    "u": "=user",
    "additional-gids": "list",
    "g": "=additional-gids",
    "process": "str",
    "p": "=process",
    "detach": "bool",
    "d": "=detach",
    "pid-file": "str",
    "process-label": "str",
    "apparmor": "str",
    "no-new-privs": "bool",
    "cap": "list",
    "c": "=cap",
    "preserve-fds": "str",
    "cgroup": "list",
    "ignore-paused": "bool",
}

UPDATE_FLAGS = {
    "resources": "str",
    "r": "=resources",
    "blkio-weight": "str",
    "cpu-period": "str",
    "cpu-quota": "str",
    "cpu-share": "str",
    "cpu-rt-period": "str",
    "cpu-rt-runtime": "str",
    "cpuset-cpus": "str",
    "cpuset-mems": "str",
    "memory": "str",
    "memory-reservation": "str",
    "memory-swap": "str",
    "pids-limit": "str",
    "kernel-memory": "str",
    "kernel-memory-tcp": "str",
    "l3-cache-schema": "str",
    "mem-bw-schema": "str",
}


class Context:
    def __init__(self, flags: Flags) -> None:
        self.flags = flags
        self.root = flags.get("root") or "/run/portside-runtime"
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from portside.runtime.container import Runtime

            self._runtime = Runtime(
                self.root, systemd_cgroup=bool(self.flags.get("systemd-cgroup"))
            )
        return self._runtime


def _one_id(rest: list[str], command: str, extra_ok: bool = False) -> str:
    if not rest:
        raise UsageError(f'"{command}" requires a container id')
    if len(rest) > 1 and not extra_ok:
        raise UsageError(f'"{command}" requires exactly 1 argument(s)')
    return rest[0]


def _print_json(data: Any, indent: bool = False) -> None:
    sys.stdout.write(fastjson.dumps(data, indent=2 if indent else None) + "\n")


# --- commands -----------------------------------------------------------------


def cmd_create(ctx: Context, args: list[str]) -> int:
    flags, rest = parse_flags(args, CREATE_FLAGS)
    cid = _one_id(rest, "create")
    ctx.runtime.create(
        cid,
        flags.get("bundle") or os.getcwd(),
        console_socket=flags.get("console-socket"),
        pid_file=flags.get("pid-file"),
        no_pivot=bool(flags.get("no-pivot")),
        preserve_fds=flags.int("preserve-fds"),
    )
    return 0


def cmd_start(ctx: Context, args: list[str]) -> int:
    _, rest = parse_flags(args, {})
    ctx.runtime.start(_one_id(rest, "start"))
    return 0


def cmd_run(ctx: Context, args: list[str]) -> int:
    from portside.runtime.run import run_container

    flags, rest = parse_flags(args, RUN_FLAGS)
    cid = _one_id(rest, "run")
    return run_container(
        ctx.runtime,
        cid,
        flags.get("bundle") or os.getcwd(),
        console_socket=flags.get("console-socket"),
        pid_file=flags.get("pid-file"),
        no_pivot=bool(flags.get("no-pivot")),
        preserve_fds=flags.int("preserve-fds"),
        detach=bool(flags.get("detach")),
        keep=bool(flags.get("keep")),
        subreaper=not flags.get("no-subreaper"),
    )


def cmd_state(ctx: Context, args: list[str]) -> int:
    _, rest = parse_flags(args, {})
    _print_json(ctx.runtime.state(_one_id(rest, "state")), indent=True)
    return 0


def parse_signal(text: str) -> int:
    """A signal number from "9", "KILL" or "SIGKILL" (any case)."""
    import _signal

    name = text.upper()
    if is_number(name):
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    value = getattr(_signal, name, None) if not name.startswith("SIG_") else None
    if not isinstance(value, int):
        raise UsageError(f"unknown signal {text!r}")
    return value


def cmd_kill(ctx: Context, args: list[str]) -> int:
    flags, rest = parse_flags(args, {"all": "bool", "a": "=all"}, stop_at_positional=False)
    cid = _one_id(rest, "kill", extra_ok=True)
    if len(rest) > 2:
        raise UsageError('"kill" requires a minimum of 1 and a maximum of 2 arguments')
    sig = parse_signal(rest[1]) if len(rest) == 2 else 15
    ctx.runtime.kill(cid, sig, all_processes=bool(flags.get("all")))
    return 0


def cmd_delete(ctx: Context, args: list[str]) -> int:
    from portside.runtime.errors import ContainerNotFound

    flags, rest = parse_flags(args, {"force": "bool", "f": "=force"}, stop_at_positional=False)
    if not rest:
        raise UsageError('"delete" requires a container id')
    for cid in rest:
        try:
            ctx.runtime.delete(cid, force=bool(flags.get("force")))
        except ContainerNotFound:
            if not flags.get("force"):
                raise
    return 0


def cmd_pause(ctx: Context, args: list[str]) -> int:
    _, rest = parse_flags(args, {})
    ctx.runtime.pause(_one_id(rest, "pause"))
    return 0


def cmd_resume(ctx: Context, args: list[str]) -> int:
    _, rest = parse_flags(args, {})
    ctx.runtime.resume(_one_id(rest, "resume"))
    return 0


def cmd_ps(ctx: Context, args: list[str]) -> int:
    flags, rest = parse_flags(args, {"format": "str", "f": "=format"})
    cid = _one_id(rest, "ps", extra_ok=True)
    pids = ctx.runtime.pids(cid)
    if flags.get("format", "table") == "json":
        _print_json(pids)
        return 0
    import subprocess

    ps_args = rest[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise UsageError("couldn't find PID field in ps output") from None
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and is_number(fields[col]) and int(fields[col]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


def cmd_list(ctx: Context, args: list[str]) -> int:
    flags, _ = parse_flags(args, {"format": "str", "f": "=format", "quiet": "bool", "q": "=quiet"})
    items = ctx.runtime.list()
    if flags.get("quiet"):
        for item in items:
            sys.stdout.write(item["id"] + "\n")
        return 0
    if flags.get("format", "table") == "json":
        _print_json(items or None)
        return 0
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    rows += [
        [i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"], i["owner"] or "root"]
        for i in items
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    return 0


def _read_json_arg(path: str) -> Any:
    try:
        if path == "-":
            return fastjson.loads(sys.stdin.read())
        with open(path) as f:
            return fastjson.loads(f.read())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except fastjson.JSONError as exc:
        raise UsageError(f"{path}: invalid JSON: {exc}") from None


def _parse_size(flag: str, text: str) -> int:
    """A byte size like docker's: 512, 512k, 64m, 1.5g; -1 for unlimited."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower()
    t = t[:-1] if t.endswith("b") and len(t) > 1 and t[-2] in units else t.rstrip("b") or t
    try:
        if t == "-1":
            return -1
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise UsageError(f'invalid value "{text}" for flag -{flag}: not a size') from None


def update_resources(flags: Flags) -> dict[str, Any]:
    """The LinuxResources JSON that ``update``'s flags describe (pure)."""
    res: dict[str, Any] = {}
    if flags.get("resources"):
        res = _read_json_arg(flags.get("resources"))
    memory = {
        "limit": "memory",
        "reservation": "memory-reservation",
        "swap": "memory-swap",
        "kernel": "kernel-memory",
        "kernelTCP": "kernel-memory-tcp",
    }
    cpu = {
        "shares": "cpu-share",
        "quota": "cpu-quota",
        "period": "cpu-period",
        "realtimePeriod": "cpu-rt-period",
        "realtimeRuntime": "cpu-rt-runtime",
    }
    for key, flag in memory.items():
        if flags.get(flag) is not None:
            res.setdefault("memory", {})[key] = _parse_size(flag, flags.get(flag))
    for key, flag in cpu.items():
        if flags.get(flag) is not None:
            res.setdefault("cpu", {})[key] = flags.int(flag)
    for key, flag in (("cpus", "cpuset-cpus"), ("mems", "cpuset-mems")):
        if flags.get(flag) is not None:
            res.setdefault("cpu", {})[key] = flags.get(flag)
    if flags.get("pids-limit") is not None:
        res["pids"] = {"limit": flags.int("pids-limit")}
    if flags.get("blkio-weight") is not None:
        res.setdefault("blockIO", {})["weight"] = flags.int("blkio-weight")
    return res


def cmd_update(ctx: Context, args: list[str]) -> int:
    from portside.oci.runtime_spec import parse_resources

    flags, rest = parse_flags(args, UPDATE_FLAGS)
    cid = _one_id(rest, "update")
    ctx.runtime.update(cid, parse_resources(update_resources(flags)))
    return 0


def _parse_duration(text: str) -> float:
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * mult
    return float(text)


def cmd_events(ctx: Context, args: list[str]) -> int:
    flags, rest = parse_flags(args, {"stats": "bool", "interval": "str"})
    cid = _one_id(rest, "events")
    if flags.get("stats"):
        _print_json({"type": "stats", "id": cid, "data": ctx.runtime.stats(cid)})
        return 0
    text = flags.get("interval") or "5s"
    try:
        interval = _parse_duration(text)
    except ValueError:
        raise UsageError(f'invalid value "{text}" for flag -interval: not a duration') from None
    if interval <= 0:
        raise UsageError("duration interval must be greater than 0")
    for event in ctx.runtime.events(cid, interval):
        _print_json(event)
        sys.stdout.flush()
    return 0


def cmd_features(ctx: Context, args: list[str]) -> int:
    from portside.runtime.features import features

    _print_json(features(), indent=True)
    return 0


def cmd_spec(ctx: Context, args: list[str]) -> int:
    from portside.runtime.specgen import default_spec, write_spec

    flags, _ = parse_flags(args, {"bundle": "str", "b": "=bundle", "rootless": "bool"})
    write_spec(flags.get("bundle") or ".", default_spec(rootless=bool(flags.get("rootless"))))
    return 0


def cmd_exec(ctx: Context, args: list[str]) -> int:
    from portside.runtime.run import exec_command

    flags, rest = parse_flags(args, EXEC_FLAGS)
    cid = _one_id(rest, "exec", extra_ok=True)
    return exec_command(ctx.runtime, cid, flags, rest[1:])


def cmd_unsupported(ctx: Context, args: list[str]) -> int:
    raise UsageError("checkpoint/restore is not supported by portside-runtime")


COMMANDS: dict[str, Callable[[Context, list[str]], int]] = {
    "create": cmd_create,
    "start": cmd_start,
    "run": cmd_run,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "ps": cmd_ps,
    "list": cmd_list,
    "update": cmd_update,
    "events": cmd_events,
    "features": cmd_features,
    "spec": cmd_spec,
    "exec": cmd_exec,
    "checkpoint": cmd_unsupported,
    "restore": cmd_unsupported,
}

USAGE = """usage: portside-runtime [global options] command [command options] [arguments...]

An OCI runtime with runc's command line.

commands:
  create, start, run, state, kill, delete, exec, pause, resume, ps, list,
  update, events, features, spec

global options:
  --root value        state directory (default: /run/portside-runtime)
  --log value         also write errors to this file
  --log-format value  text or json (default: text)
  --systemd-cgroup    accept systemd-style cgroupsPath (slice:prefix:name)
  --version, -v       print the version
"""


def _log_error(flags: Flags, message: str) -> None:
    sys.stderr.write(f"portside-runtime: {message}\n")
    path = flags.get("log")
    if not path:
        return
    import time

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if flags.get("log-format") == "json":
        line = fastjson.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg={fastjson.dumps(message)}'
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    flags = Flags()
    try:
        flags, rest = parse_flags(args, GLOBAL_FLAGS)
        if flags.get("version"):
            sys.stdout.write(f"portside-runtime version {VERSION}\nspec: {SPEC_VERSION}\n")
            return 0
        if flags.get("help") or not rest:
            sys.stdout.write(USAGE)
            return 0
        command = COMMANDS.get(rest[0])
        if command is None:
            raise UsageError(f"no such command: {rest[0]}")
        if rest[1:2] in (["-h"], ["--help"], ["-help"]):
            sys.stdout.write(USAGE)
            return 0
        return command(Context(flags), rest[1:])
    except PortsideError as exc:
        _log_error(flags, str(exc))
        return 1
    except OSError as exc:
        _log_error(flags, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return 1
    except ValueError as exc:  # a number flag that is not a number
        _log_error(flags, f"invalid value: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours: one line for the engine's log, a trace with --debug
        if flags.get("debug"):
            import traceback

            traceback.print_exc()
        _log_error(flags, f"internal error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
