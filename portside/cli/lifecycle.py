"""stop, restart, kill, rm, pause, unpause, wait, rename, update, container prune."""

from __future__ import annotations

from portside.cli.flags import (
    Opt,
    parse_memswap,
    parse_nanocpus,
    parse_restart_policy,
    parse_size,
)
from portside.client.http import APIError, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portside.cli.main import Context

__all__ = ["kill", "pause", "prune", "rename", "restart", "rm", "stop", "unpause", "update", "wait"]


def _each(ctx: Context, refs: list[str], action: Callable[[str], object], echo: bool = True) -> int:
    """docker's pattern: act on every container, print each name, errors at the end."""
    errors = []
    for ref in refs:
        try:
            result = action(ref)
        except APIError as exc:
            errors.append(f"Error response from daemon: {exc.message}")
            continue
        if echo:
            ctx.out.write(f"{ref if result is None else result}\n")
    if errors:
        ctx.out.flush()
        raise ctx.error("\n".join(errors), 1)
    return 0


STOP_OPTS = [
    Opt("s|signal", "str", "Signal to send to the container"),
    Opt("t|timeout", "int", "Seconds to wait before killing the container"),
    Opt("time", "int", "Seconds to wait before killing the container (deprecated)"),
]


def _stop_query(p: object) -> dict:
    timeout = p.timeout if "timeout" in p.changed else p.time  # type: ignore[attr-defined]
    return {"t": timeout, "signal": p.signal}  # type: ignore[attr-defined]


def stop(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(STOP_OPTS, argv, min_args=1)
    query = _stop_query(p)

    def act(ref: str) -> None:
        ctx.client.call("POST", f"/containers/{quote(ref)}/stop", query=query)

    return _each(ctx, p.args, act)


def restart(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(STOP_OPTS, argv, min_args=1)
    query = _stop_query(p)

    def act(ref: str) -> None:
        ctx.client.call("POST", f"/containers/{quote(ref)}/restart", query=query)

    return _each(ctx, p.args, act)


def kill(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([Opt("s|signal", "str", "Signal to send to the container")], argv, min_args=1)
    return _each(ctx, p.args, lambda ref: ctx.client.container_kill(ref, p.signal or None))


RM_OPTS = [
    Opt("f|force", "bool", "Force the removal of a running container (uses SIGKILL)"),
    Opt("l|link", "bool", "Remove the specified link"),
    Opt("v|volumes", "bool", "Remove anonymous volumes associated with the container"),
]


def rm(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(RM_OPTS, argv, min_args=1)

    def act(ref: str) -> None:
        ctx.client.container_remove(ref.strip("/"), force=p.force, volumes=p.volumes)

    return _each(ctx, p.args, act)


def pause(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=1)
    return _each(ctx, p.args, lambda r: ctx.client.call("POST", f"/containers/{quote(r)}/pause"))


def unpause(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=1)
    return _each(ctx, p.args, lambda r: ctx.client.call("POST", f"/containers/{quote(r)}/unpause"))


def wait(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=1)

    def act(ref: str) -> str:
        result = ctx.client.call("POST", f"/containers/{quote(ref)}/wait") or {}
        return str(result.get("StatusCode", 0))

    return _each(ctx, p.args, act)


def rename(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse([], argv, min_args=2, max_args=2)
    old, new = p.args
    new = new.strip()
    if not new:
        raise ctx.error("Error: Neither old nor new names may be empty", 1)
    ctx.client.call("POST", f"/containers/{quote(old)}/rename", query={"name": new})
    return 0


UPDATE_OPTS = [
    Opt("blkio-weight", "int", "Block IO (relative weight), between 10 and 1000, or 0 to disable"),
    Opt("cpu-period", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    Opt("cpu-quota", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    Opt("c|cpu-shares", "int", "CPU shares (relative weight)"),
    Opt("cpus", parse_nanocpus, "Number of CPUs"),
    Opt("cpuset-cpus", "str", "CPUs in which to allow execution (0-3, 0,1)"),
    Opt("cpuset-mems", "str", "MEMs in which to allow execution (0-3, 0,1)"),
    Opt("m|memory", parse_size, "Memory limit"),
    Opt("memory-reservation", parse_size, "Memory soft limit"),
    Opt(
        "memory-swap",
        parse_memswap,
        "Swap limit equal to memory plus swap: -1 to enable unlimited swap",
    ),
    Opt("pids-limit", "int", "Tune container pids limit (set -1 for unlimited)"),
    Opt("restart", "str", "Restart policy to apply when a container exits"),
]

_UPDATE_FIELDS = {
    "blkio_weight": "BlkioWeight",
    "cpu_period": "CpuPeriod",
    "cpu_quota": "CpuQuota",
    "cpu_shares": "CpuShares",
    "cpus": "NanoCpus",
    "cpuset_cpus": "CpusetCpus",
    "cpuset_mems": "CpusetMems",
    "memory": "Memory",
    "memory_reservation": "MemoryReservation",
    "memory_swap": "MemorySwap",
    "pids_limit": "PidsLimit",
}


def update(ctx: Context, argv: list[str]) -> int:
    from portside.cli.flags import FlagError

    p = ctx.parse(UPDATE_OPTS, argv, min_args=1)
    if not p.changed:
        raise ctx.error("you must provide one or more flags when using this command", 1)
    body = {field: p.values[dest] for dest, field in _UPDATE_FIELDS.items() if dest in p.changed}
    if "restart" in p.changed:
        try:
            body["RestartPolicy"] = parse_restart_policy(p.restart)
        except ValueError as exc:
            raise FlagError(str(exc)) from None

    def act(ref: str) -> None:
        result = ctx.client.call("POST", f"/containers/{quote(ref)}/update", body=body) or {}
        for warning in result.get("Warnings") or []:
            ctx.err.write(f"WARNING: {warning}\n")

    return _each(ctx, p.args, act)


PRUNE_OPTS = [
    Opt("filter", "list", 'Provide filter values (e.g. "until=<timestamp>")'),
    Opt("f|force", "bool", "Do not prompt for confirmation"),
]


def confirm(ctx: Context, warning: str) -> bool:
    """docker's prompt: "Are you sure you want to continue? [y/N]"."""
    import sys

    ctx.out.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    ctx.out.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def prune_kind(ctx: Context, kind: str, filters: list[str]) -> int:
    """POST /<kind>/prune ("containers", "volumes", "images"), print what it deleted as
    docker does ("Deleted Images:" ...); the space it reclaimed."""
    from portside.client.api import encode_filters

    query = {"filters": encode_filters(filters)}
    result = ctx.client.call("POST", f"/{kind}/prune", query=query) or {}
    title = kind.capitalize()
    deleted = result.get(f"{title}Deleted") or []
    if deleted:
        ctx.out.write(f"Deleted {title}:\n")
        for item in deleted:
            if isinstance(item, dict):
                for key in ("Untagged", "Deleted"):
                    if item.get(key):
                        ctx.out.write(f"{key.lower()}: {item[key]}\n")
            else:
                ctx.out.write(f"{item}\n")
        ctx.out.write("\n")
    return result.get("SpaceReclaimed") or 0


def write_reclaimed(ctx: Context, space: int) -> int:
    """The last line of every prune: "Total reclaimed space: 1.2MB"; 0 (the exit status)."""
    from portside.cli.formatting import human_size

    ctx.out.write(f"Total reclaimed space: {human_size(space)}\n")
    return 0


def prune(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(PRUNE_OPTS, argv, max_args=0)
    if not p.force and not confirm(ctx, "WARNING! This will remove all stopped containers."):
        return 0
    return write_reclaimed(ctx, prune_kind(ctx, "containers", p.filter))
