"""version, info, events, system df/prune/info/events."""

from __future__ import annotations

import platform
import sys

from portside.cli.flags import Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.cli.main import Context

__all__ = ["df", "events", "info", "system", "version"]

SUBCOMMANDS = {
    "df": ("df", "[OPTIONS]", "Show docker disk usage"),
    "events": ("events", "[OPTIONS]", "Get real time events from the server"),
    "info": ("info", "[OPTIONS]", "Display system-wide information"),
    "prune": ("prune", "[OPTIONS]", "Remove unused data"),
}


def system(ctx: Context, argv: list[str]) -> int:
    from portside.cli.volumes import subdispatch

    return subdispatch(ctx, "system", SUBCOMMANDS, globals(), argv)


def _client_info() -> dict:
    from portside.cli.main import VERSION
    from portside.client.api import API_VERSION

    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": sys.platform,
        "Arch": machine,
    }


def version(ctx: Context, argv: list[str]) -> int:
    from portside.client.http import APIError, ConnectionFailed

    p = ctx.parse(
        [Opt("f|format", "str", "Format output using a custom template")], argv, max_args=0
    )
    client_info = _client_info()
    server: dict | None = None
    error = None
    try:
        server = ctx.client.version()
    except (APIError, ConnectionFailed) as exc:
        error = exc
    if p.format:
        from portside.cli.template import Template

        data = {"Client": client_info, "Server": server}
        ctx.out.write(Template(p.format).execute(data) + "\n")
    else:
        _print_version(ctx, client_info, server)
    if error is not None:
        message = (
            str(error)
            if isinstance(error, ConnectionFailed)
            else f"Error response from daemon: {error}"
        )
        raise ctx.error(message, 1)
    return 0


def _print_version(ctx: Context, c: dict, server: dict | None) -> None:
    lines = [
        "Client:",
        f" Version:           {c['Version']}",
        f" API version:       {c['ApiVersion']}",
        f" Python version:    {c['PythonVersion']}",
        f" OS/Arch:           {c['Os']}/{c['Arch']}",
    ]
    if server is not None:
        lines += ["", f"Server: {(server.get('Platform') or {}).get('Name', 'Portside')}"]
        lines += [
            " Engine:",
            f"  Version:          {server.get('Version', '')}",
            f"  API version:      {server.get('ApiVersion', '')} (minimum version "
            f"{server.get('MinAPIVersion', '')})",
            f"  Git commit:       {server.get('GitCommit', '')}",
            f"  Built:            {server.get('BuildTime', '')}",
            f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}",
            f"  Experimental:     {str(server.get('Experimental', False)).lower()}",
        ]
        for component in server.get("Components") or []:
            if component.get("Name") in ("Engine", None):
                continue
            lines.append(f" {component.get('Name')}:")
            lines.append(f"  Version:          {component.get('Version', '')}")
    ctx.out.write("\n".join(lines) + "\n")


def info(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(
        [Opt("f|format", "str", "Format output using a custom template")], argv, max_args=0
    )
    data = ctx.client.call("GET", "/info") or {}
    if p.format:
        from portside.cli.template import Template

        ctx.out.write(Template(p.format).execute(data) + "\n")
        return 0
    c = _client_info()
    mem = data.get("MemTotal", 0)
    from portside.cli.formatting import bytes_size

    fields = [
        ("Containers", data.get("Containers", 0)),
        (" Running", data.get("ContainersRunning", 0)),
        (" Paused", data.get("ContainersPaused", 0)),
        (" Stopped", data.get("ContainersStopped", 0)),
        ("Images", data.get("Images", 0)),
        ("Server Version", data.get("ServerVersion", "")),
        ("Storage Driver", data.get("Driver", "")),
        ("Logging Driver", data.get("LoggingDriver", "")),
        ("Cgroup Driver", data.get("CgroupDriver", "")),
        ("Cgroup Version", data.get("CgroupVersion", "")),
        ("Security Options", ""),
    ]
    lines = [
        "Client:",
        f" Version:    {c['Version']}",
        " Context:    default",
        " Debug Mode: false",
        "",
        "Server:",
    ]
    lines += [f" {key}: {value}".rstrip() for key, value in fields]
    for opt in data.get("SecurityOptions") or []:
        lines.append(f"  {opt.removeprefix('name=')}")
    tail = [
        ("Kernel Version", data.get("KernelVersion", "")),
        ("Operating System", data.get("OperatingSystem", "")),
        ("OSType", data.get("OSType", "")),
        ("Architecture", data.get("Architecture", "")),
        ("CPUs", data.get("NCPU", 0)),
        ("Total Memory", bytes_size(mem)),
        ("Name", data.get("Name", "")),
        ("ID", data.get("ID", "")),
        ("Docker Root Dir", data.get("DockerRootDir", "")),
        ("Debug Mode", str(data.get("Debug", False)).lower()),
        ("Experimental", str(data.get("ExperimentalBuild", False)).lower()),
        ("Live Restore Enabled", str(data.get("LiveRestoreEnabled", False)).lower()),
    ]
    lines += [f" {key}: {value}".rstrip() for key, value in tail]
    ctx.out.write("\n".join(lines) + "\n")
    for warning in data.get("Warnings") or []:
        ctx.err.write(f"{warning}\n")
    return 0


EVENTS_OPTS = [
    Opt("f|filter", "list", "Filter output based on conditions provided"),
    Opt("format", "str", "Format output using a custom template"),
    Opt("since", "str", "Show all events created since timestamp"),
    Opt("until", "str", "Stream events until this timestamp"),
]


def format_event(event: dict) -> str:
    """docker's default event line: local time with nanoseconds, type, action,
    actor and its sorted attributes."""
    import time

    nanos = event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000
    seconds, frac = divmod(int(nanos), 1_000_000_000)
    local = time.localtime(seconds)
    offset = time.strftime("%z", local)
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{frac:09d}{zone}"
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def events(ctx: Context, argv: list[str]) -> int:
    from portside.cli.info import timestamp_arg
    from portside.client.api import encode_filters

    p = ctx.parse(EVENTS_OPTS, argv, max_args=0)
    template = None
    if p.format and p.format != "json":
        from portside.cli.template import Template

        template = Template(p.format.replace("\\t", "\t").replace("\\n", "\n"))
    try:
        filters = encode_filters(p.filter)
    except ValueError as exc:
        raise ctx.error(str(exc), 1) from None
    query = {
        "since": timestamp_arg(p.since or "", "since") or None,
        "until": timestamp_arg(p.until or "", "until") or None,
        "filters": filters,
    }
    response = ctx.client.request("GET", "/events", query=query)
    try:
        for event in response.iter_json():
            if p.format == "json":
                from portside.cli.template import to_json

                line = to_json(event)
            elif template is not None:
                line = template.execute(event)
            else:
                line = format_event(event)  # type: ignore[arg-type]
            ctx.out.write(line + "\n")
            ctx.out.flush()
    finally:
        response.close()
    return 0


DF_HEADERS = {
    "Type": "TYPE",
    "TotalCount": "TOTAL",
    "Active": "ACTIVE",
    "Size": "SIZE",
    "Reclaimable": "RECLAIMABLE",
}


def _reclaim(reclaimable: int, total: int) -> str:
    from portside.cli.formatting import human_size

    if total > 0:
        return f"{human_size(reclaimable, 4)} ({int(reclaimable * 100 / total)}%)"
    return human_size(reclaimable, 4)


def df_rows(data: dict) -> list[dict]:
    """The four summary rows of ``system df`` from GET /system/df."""
    from portside.cli.formatting import human_size

    images = data.get("Images") or []
    containers = data.get("Containers") or []
    volumes = data.get("Volumes") or []
    cache = data.get("BuildCache") or []
    image_size = data.get("LayersSize") or sum(i.get("Size", 0) for i in images)
    used = sum(i.get("Size", 0) for i in images if (i.get("Containers") or 0) > 0)
    c_size = sum(c.get("SizeRw", 0) or 0 for c in containers)
    c_idle = sum(c.get("SizeRw", 0) or 0 for c in containers if c.get("State") != "running")
    sizes = [(v.get("UsageData") or {}).get("Size", 0) for v in volumes]
    v_size = sum(s for s in sizes if s and s > 0)
    v_idle = sum(
        max((v.get("UsageData") or {}).get("Size", 0) or 0, 0)
        for v in volumes
        if (v.get("UsageData") or {}).get("RefCount", 0) == 0
    )
    b_size = sum(b.get("Size", 0) for b in cache)
    return [
        {
            "Type": "Images",
            "TotalCount": str(len(images)),
            "Active": str(sum(1 for i in images if (i.get("Containers") or 0) > 0)),
            "Size": human_size(image_size, 4),
            "Reclaimable": _reclaim(image_size - used, image_size),
        },
        {
            "Type": "Containers",
            "TotalCount": str(len(containers)),
            "Active": str(sum(1 for c in containers if c.get("State") == "running")),
            "Size": human_size(c_size, 4),
            "Reclaimable": _reclaim(c_idle, c_size),
        },
        {
            "Type": "Local Volumes",
            "TotalCount": str(len(volumes)),
            "Active": str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount"))),
            "Size": human_size(v_size, 4),
            "Reclaimable": _reclaim(v_idle, v_size),
        },
        {
            "Type": "Build Cache",
            "TotalCount": str(len(cache)),
            "Active": str(sum(1 for b in cache if b.get("InUse"))),
            "Size": human_size(b_size, 4),
            "Reclaimable": human_size(b_size, 4),
        },
    ]


def df(ctx: Context, argv: list[str]) -> int:
    from portside.cli.formatting import MapRow, render

    p = ctx.parse(
        [
            Opt("format", "str", "Format output using a custom template"),
            Opt("v|verbose", "bool", "Show detailed information on space usage"),
        ],
        argv,
        max_args=0,
    )
    data = ctx.client.call("GET", "/system/df") or {}
    rows = [MapRow(row, DF_HEADERS) for row in df_rows(data)]
    fmt = p.format or "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    render(rows, fmt, ctx.out)
    return 0


PRUNE_OPTS = [
    Opt("a|all", "bool", "Remove all unused images not just dangling ones"),
    Opt("filter", "list", 'Provide filter values (e.g. "label=<key>=<value>")'),
    Opt("f|force", "bool", "Do not prompt for confirmation"),
    Opt("volumes", "bool", "Prune anonymous volumes"),
]


def prune(ctx: Context, argv: list[str]) -> int:
    from portside.cli.lifecycle import confirm, prune_kind, write_reclaimed

    p = ctx.parse(PRUNE_OPTS, argv, max_args=0)
    items = ["all stopped containers"]
    if p.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append(
        "all images without at least one container associated to them"
        if p.all
        else "all dangling images"
    )
    items.append("unused build cache")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not p.force and not confirm(ctx, warning):
        return 0
    total = prune_kind(ctx, "containers", p.filter)
    if p.volumes:
        total += prune_kind(ctx, "volumes", p.filter)
    filters = [*p.filter, f"dangling={'false' if p.all else 'true'}"]
    total += prune_kind(ctx, "images", filters)
    return write_reclaimed(ctx, total)
