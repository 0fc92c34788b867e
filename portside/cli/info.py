"""ps, logs, inspect, top, stats, port: commands that read a container's state."""

from __future__ import annotations

from portside.cli.flags import Opt
from portside.client.http import APIError, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.cli.main import Context

__all__ = ["container_inspect", "image_inspect", "inspect", "logs", "port", "ps", "stats", "top"]

PS_FORMAT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)

PS_OPTS = [
    Opt("a|all", "bool", "Show all containers (default shows just running)"),
    Opt("f|filter", "list", "Filter output based on conditions provided"),
    Opt("format", "str", "Format output using a custom template"),
    Opt("n|last", "int", "Show n last created containers (includes all states)", default=-1),
    Opt("l|latest", "bool", "Show the latest created container (includes all states)"),
    Opt("no-trunc", "bool", "Don't truncate output"),
    Opt("q|quiet", "bool", "Only display container IDs"),
    Opt("s|size", "bool", "Display total file sizes"),
]


def ps(ctx: Context, argv: list[str]) -> int:
    from portside.cli.formatting import ContainerRow, render
    from portside.client.api import encode_filters

    p = ctx.parse(PS_OPTS, argv, max_args=0)
    last = 1 if p.latest and p.last == -1 else p.last
    fmt = p.format or ("{{.ID}}" if p.quiet else PS_FORMAT)
    if p.quiet and p.format:
        fmt = "{{.ID}}"
    size = p.size or ".Size" in (p.format or "")
    if p.size and not p.format and not p.quiet:
        fmt += "\t{{.Size}}"
    try:
        filters = encode_filters(p.filter)
    except ValueError as exc:
        raise ctx.error(str(exc), 1) from None
    query = {
        "all": p.all or None,
        "limit": last if last > 0 else None,
        "size": size or None,
        "filters": filters,
    }
    containers = ctx.client.call("GET", "/containers/json", query=query) or []
    rows = [ContainerRow(c, trunc=not p.no_trunc) for c in containers]
    render(rows, fmt, ctx.out)
    return 0


LOGS_OPTS = [
    Opt("details", "bool", "Show extra details provided to logs"),
    Opt("f|follow", "bool", "Follow log output"),
    Opt("since", "str", "Show logs since timestamp or relative (e.g. 42m for 42 minutes)"),
    Opt(
        "n|tail",
        "str",
        'Number of lines to show from the end of the logs (default "all")',
        default="all",
    ),
    Opt("t|timestamps", "bool", "Show timestamps"),
    Opt("until", "str", "Show logs before a timestamp or relative (e.g. 42m for 42 minutes)"),
]


def timestamp_arg(value: str, flag: str) -> str:
    """docker's GetTimestamp: a duration ago, a unix time or an RFC 3339 date."""
    import time

    from portside.cli.flags import FlagError, parse_duration

    if not value:
        return ""
    try:
        delta = parse_duration(value)
        moment = time.time() - delta / 1e9
        return f"{int(moment)}.{int((moment % 1) * 1e9):09d}"
    except ValueError:
        pass
    try:
        float(value)
        return value
    except ValueError:
        pass
    from portside.cli.formatting import parse_time

    try:
        moment = parse_time(
            value
            if ("Z" in value or "+" in value[10:] or value.count("-") > 2)
            else value + ("T00:00:00Z" if len(value) == 10 else "Z")
        )
    except ValueError:
        raise FlagError(
            f'invalid value for "{flag}": failed to parse value as time or duration: "{value}"'
        ) from None
    return f"{int(moment)}.{int((moment % 1) * 1e9):09d}"


def logs(ctx: Context, argv: list[str]) -> int:
    from portside.cli.interactive import Demuxer, write_all

    p = ctx.parse(LOGS_OPTS, argv, min_args=1, max_args=1)
    client = ctx.client
    info = client.container_inspect(p.args[0])
    tty = bool((info.get("Config") or {}).get("Tty"))
    query = {
        "stdout": 1,
        "stderr": 1,
        "follow": p.follow or None,
        "timestamps": p.timestamps or None,
        "since": timestamp_arg(p.since or "", "since") or None,
        "until": timestamp_arg(p.until or "", "until") or None,
        "tail": p.tail,
        "details": p.details or None,
    }
    response = client.request("GET", f"/containers/{quote(info['Id'])}/logs", query=query)
    ctx.out.flush()
    out_fd, err_fd = _fds(ctx)
    demux = Demuxer(lambda kind, data: write_all(err_fd if kind == 2 else out_fd, data))
    try:
        for chunk in response.iter_chunks():
            if tty:
                write_all(out_fd, chunk)
            else:
                demux.feed(chunk)
    finally:
        response.close()
    return 0


def _fds(ctx: Context) -> tuple[int, int]:
    try:
        return ctx.out.fileno(), ctx.err.fileno()
    except (AttributeError, OSError, ValueError):
        return 1, 2


INSPECT_OPTS = [
    Opt("f|format", "str", "Format output using a custom template"),
    Opt("s|size", "bool", "Display total file sizes if the type is container"),
    Opt("type", "str", "Return JSON for specified type"),
]

_KINDS = {
    "container": ("/containers/{}/json", "No such container: {}"),
    "image": ("/images/{}/json", "No such image: {}"),
    "volume": ("/volumes/{}", "no such volume: {}"),
}


def _inspect_one(ctx: Context, ref: str, kind: str | None, size: bool) -> dict | None:
    kinds = [kind] if kind else ["container", "image", "volume"]
    for name in kinds:
        path = _KINDS[name][0].format(quote(ref))
        query = {"size": 1} if size and name == "container" else None
        try:
            return ctx.client.call("GET", path, query=query)
        except APIError as exc:
            if exc.status != 404:
                raise
            if kind:
                ctx.err.write(
                    f"Error: {exc.message}\n"
                    if exc.message
                    else f"Error: {_KINDS[name][1].format(ref)}\n"
                )
                return None
    ctx.err.write(f"Error: No such object: {ref}\n")
    return None


def write_inspect(ctx: Context, items: list, fmt: str | None) -> None:
    """JSON array indented like Go's MarshalIndent, or a template per item."""
    if fmt:
        from portside.cli.template import Template

        template = Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
        for item in items:
            ctx.out.write(template.execute(item) + "\n")
        return
    ctx.out.write(go_json_indent(items) + "\n")


def go_json_indent(value: object) -> str:
    import json

    if value == []:
        return "[]"
    text = json.dumps(value, indent=4, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inspect(ctx: Context, argv: list[str], kind: str | None) -> int:
    from portside.cli.flags import FlagError

    p = ctx.parse(INSPECT_OPTS, argv, min_args=1)
    kind = kind or p.type
    if kind and kind not in _KINDS:
        raise FlagError(f'"{kind}" is not a valid value for --type')
    items = []
    failed = False
    for ref in p.args:
        item = _inspect_one(ctx, ref, kind, p.size)
        if item is None:
            failed = True
        else:
            items.append(item)
    if items or not p.format:
        write_inspect(ctx, items, p.format)
    return 1 if failed else 0


def inspect(ctx: Context, argv: list[str]) -> int:
    return _inspect(ctx, argv, None)


def container_inspect(ctx: Context, argv: list[str]) -> int:
    return _inspect(ctx, argv, "container")


def image_inspect(ctx: Context, argv: list[str]) -> int:
    return _inspect(ctx, argv, "image")


def top(ctx: Context, argv: list[str]) -> int:
    from portside.cli.formatting import tabwrite

    p = ctx.parse([], argv, min_args=1, interspersed=False)
    query = {"ps_args": " ".join(p.args[1:])} if len(p.args) > 1 else None
    result = ctx.client.call("GET", f"/containers/{quote(p.args[0])}/top", query=query)
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(row) for row in result.get("Processes") or []]
    ctx.out.write(tabwrite(lines, minwidth=20, padding=3))
    return 0


def port(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=1, max_args=2)
    info = ctx.client.container_inspect(p.args[0])
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    wanted = p.args[1] if len(p.args) > 1 else None
    if wanted and "/" not in wanted:
        wanted += "/tcp"
    for key in sorted(ports):
        if wanted and key != wanted:
            continue
        for binding in ports[key] or []:
            address = f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}"
            ctx.out.write(address + "\n" if wanted else f"{key} -> {address}\n")
    if wanted and wanted not in ports:
        raise ctx.error(f"Error: No public port '{wanted}' published for {p.args[0]}", 1)
    return 0


STATS_OPTS = [
    Opt("a|all", "bool", "Show all containers (default shows just running)"),
    Opt("format", "str", "Format output using a custom template"),
    Opt("no-stream", "bool", "Disable streaming stats and only pull the first result"),
    Opt("no-trunc", "bool", "Do not truncate output"),
]

STATS_FORMAT = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
    "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
)


def stats(ctx: Context, argv: list[str]) -> int:
    import time

    from portside.cli.formatting import render
    from portside.cli.stats import StatsRow

    p = ctx.parse(STATS_OPTS, argv)
    client = ctx.client
    refs = list(p.args)
    if not refs:
        listed = client.call("GET", "/containers/json", query={"all": p.all or None}) or []
        refs = [c["Id"] for c in listed]
    fmt = p.format or STATS_FORMAT
    while True:
        began = time.monotonic()
        rows = []
        failed = False
        for ref in refs:
            try:
                data = client.call(
                    "GET", f"/containers/{quote(ref)}/stats", query={"stream": "false"}
                )
            except APIError as exc:
                if p.args:
                    ctx.err.write(f"Error response from daemon: {exc.message}\n")
                    failed = True
                continue
            rows.append(StatsRow(ref, data, trunc=not p.no_trunc))
        if not p.no_stream and ctx.out.isatty():
            ctx.out.write("\033[2J\033[H")
        render(rows, fmt, ctx.out)
        ctx.out.flush()
        if p.no_stream:
            return 1 if failed and not rows else 0
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
