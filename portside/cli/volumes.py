"""volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from portside.cli.flags import Opt
from portside.client.http import APIError, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.cli.main import Context

__all__ = ["volume"]

VOLUME_HEADERS = {
    "Driver": "DRIVER",
    "Name": "VOLUME NAME",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Links": "LINKS",
    "Size": "SIZE",
    "Availability": "AVAILABILITY",
    "Group": "GROUP",
}

SUBCOMMANDS = {
    "create": ("create", "[OPTIONS] [VOLUME]", "Create a volume"),
    "inspect": (
        "inspect_",
        "[OPTIONS] VOLUME [VOLUME...]",
        "Display detailed information on one or more volumes",
    ),
    "ls": ("ls", "[OPTIONS]", "List volumes"),
    "list": ("ls", "[OPTIONS]", "List volumes"),
    "prune": ("prune", "[OPTIONS]", "Remove unused local volumes"),
    "rm": ("rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes"),
    "remove": ("rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes"),
}


def volume(ctx: Context, argv: list[str]) -> int:
    return subdispatch(ctx, "volume", SUBCOMMANDS, globals(), argv)


def subdispatch(ctx: Context, group: str, table: dict, scope: dict, argv: list[str]) -> int:
    """Run ``portside GROUP SUB`` from ``table`` (sub → function, usage, summary)."""
    from portside.cli import main as cli_main

    if not argv or argv[0] in ("-h", "--help"):
        lines = ["", f"Usage:  portside {group} COMMAND", "", f"Manage {group}s", "", "Commands:"]
        lines += [f"  {name.ljust(10)} {entry[2]}" for name, entry in sorted(table.items())]
        ctx.out.write("\n".join(lines) + "\n")
        return 0 if argv else 1
    entry = table.get(argv[0])
    if entry is None:
        raise ctx.error(
            f"portside: unknown command: portside {group} {argv[0]}\n\n"
            f"Run 'portside {group} --help' for more information",
            1,
        )
    ctx.command = f"{group} {argv[0]}"
    usage = entry[1].replace("[OPTIONS]", "").strip()
    cli_main.EXTRA.setdefault(ctx.command, ("", "", usage, entry[2]))
    return scope[entry[0]](ctx, argv[1:])


CREATE_OPTS = [
    Opt("d|driver", "str", "Specify volume driver name", default="local"),
    Opt("label", "list", "Set metadata for a volume"),
    Opt("name", "str", "Specify volume name"),
    Opt("o|opt", "list", "Set driver specific options"),
]


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def create(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(CREATE_OPTS, argv, max_args=1)
    if p.args and p.name and p.args[0] != p.name:
        raise ctx.error(
            "conflicting options: cannot specify a volume-name through both "
            "--name and as a positional arg",
            1,
        )
    name = p.args[0] if p.args else p.name or ""
    body = {"Name": name, "Driver": p.driver, "DriverOpts": _kv(p.opt), "Labels": _kv(p.label)}
    result = ctx.client.call("POST", "/volumes/create", body=body) or {}
    ctx.out.write(f"{result.get('Name', name)}\n")
    return 0


LS_OPTS = [
    Opt("f|filter", "list", 'Provide filter values (e.g. "dangling=true")'),
    Opt("format", "str", "Format output using a custom template"),
    Opt("q|quiet", "bool", "Only display volume names"),
]


def ls(ctx: Context, argv: list[str]) -> int:
    from portside.cli.formatting import MapRow, render
    from portside.client.api import encode_filters

    p = ctx.parse(LS_OPTS, argv, max_args=0)
    try:
        filters = encode_filters(p.filter)
    except ValueError as exc:
        raise ctx.error(str(exc), 1) from None
    result = ctx.client.call("GET", "/volumes", query={"filters": filters}) or {}
    volumes = sorted(result.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    for warning in result.get("Warnings") or []:
        ctx.err.write(f"{warning}\n")
    rows = [MapRow(_volume_fields(v), VOLUME_HEADERS) for v in volumes]
    fmt = "{{.Name}}" if p.quiet else p.format or "table {{.Driver}}\t{{.Name}}"
    render(rows, fmt, ctx.out, headers=VOLUME_HEADERS)
    return 0


def _volume_fields(v: dict) -> dict:
    from portside.cli.formatting import human_size

    usage = v.get("UsageData") or {}
    size = usage.get("Size", -1)
    return {
        "Name": v.get("Name", ""),
        "Driver": v.get("Driver", ""),
        "Scope": v.get("Scope", "local"),
        "Mountpoint": v.get("Mountpoint", ""),
        "Labels": ",".join(f"{k}={val}" for k, val in (v.get("Labels") or {}).items()),
        "Links": str(usage.get("RefCount", "N/A")) if usage else "N/A",
        "Size": human_size(size) if size is not None and size >= 0 else "N/A",
        "Availability": "N/A",
        "Group": "N/A",
    }


def inspect_(ctx: Context, argv: list[str]) -> int:
    from portside.cli.info import write_inspect

    p = ctx.parse(
        [Opt("f|format", "str", "Format output using a custom template")], argv, min_args=1
    )
    items = []
    failed = False
    for name in p.args:
        try:
            items.append(ctx.client.call("GET", f"/volumes/{quote(name)}"))
        except APIError as exc:
            ctx.err.write(f"Error: {exc.message}\n")
            failed = True
    if items or not p.format:
        write_inspect(ctx, items, p.format)
    return 1 if failed else 0


def rm(ctx: Context, argv: list[str]) -> int:
    from portside.cli.lifecycle import _each

    p = ctx.parse(
        [Opt("f|force", "bool", "Force the removal of one or more volumes")], argv, min_args=1
    )
    return _each(
        ctx,
        p.args,
        lambda name: ctx.client.call(
            "DELETE", f"/volumes/{quote(name)}", query={"force": p.force or None}
        ),
    )


PRUNE_OPTS = [
    Opt("a|all", "bool", "Remove all unused volumes, not just anonymous ones"),
    Opt("filter", "list", 'Provide filter values (e.g. "label=<label>")'),
    Opt("f|force", "bool", "Do not prompt for confirmation"),
]


def prune(ctx: Context, argv: list[str]) -> int:
    from portside.cli.lifecycle import confirm, prune_kind, write_reclaimed

    p = ctx.parse(PRUNE_OPTS, argv, max_args=0)
    warning = (
        "WARNING! This will remove all local volumes not used by at least one container."
        if p.all
        else "WARNING! This will remove anonymous local volumes not used by at least one container."
    )
    if not p.force and not confirm(ctx, warning):
        return 0
    filters = list(p.filter)
    if p.all:
        filters.append("all=true")
    return write_reclaimed(ctx, prune_kind(ctx, "volumes", filters))
