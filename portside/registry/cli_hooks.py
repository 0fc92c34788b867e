"""``portside registry webhook …``: manage webhooks from the command line.

Like the account commands, they open the metadata store directly (``--root DIR``,
``--db URL`` or ``--config FILE``); no server needs to run, and a running server picks
the changes up (its delivery workers read the hooks from the same database)::

    portside registry webhook add --namespace acme --url https://ci.example.com/hook \\
        [--event push --event tag] [--secret-stdin] [--disabled]
    portside registry webhook add --repository acme/app --url http://10.0.0.5:8080/
    portside registry webhook ls [--namespace NS | --repository REPO]
    portside registry webhook enable ID | disable ID
    portside registry webhook rm ID
    portside registry webhook deliveries ID [--state pending|delivered|failed] [--limit N]

``add`` prints the new hook's ID; without ``--secret-stdin`` it makes a random signing
secret and prints it on a second line, once (the receiver checks
``X-Portside-Signature-256`` with it).
"""

from __future__ import annotations

import argparse
import os
import sys

from portside.errors import InvalidArgument, PortsideError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portside.registry.webhooks import Webhooks

__all__ = ["add_commands", "open_webhooks"]

EVENTS = ("push", "pull", "delete", "mount", "tag")


def open_webhooks(args: argparse.Namespace) -> Webhooks:
    """The webhooks of ``--root``/``--db``/``--config`` (``args.settings`` when
    ``portside registry`` resolved them already)."""
    from portside.registry.config import build_config
    from portside.registry.db import Database
    from portside.registry.webhooks import Webhooks

    settings = getattr(args, "settings", None)
    if settings is None:
        flags = {"root": getattr(args, "root", None), "db": getattr(args, "db", None)}
        settings = build_config(flags, getattr(args, "config", None))
    if not settings.db:
        os.makedirs(settings.root, exist_ok=True)
    return Webhooks(Database(settings.db_url))


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _read_secret() -> str:
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise InvalidArgument("no secret on stdin")
    return secret


# --- handlers -------------------------------------------------------------------------


def _add(hooks: Webhooks, args: argparse.Namespace) -> None:
    secret = _read_secret() if args.secret_stdin else None
    hook = hooks.create(
        args.url,
        namespace=args.namespace,
        repository=args.repository,
        events=args.event or EVENTS,
        secret=secret,
        enabled=not args.disabled,
        created_by="cli",
    )
    print(hook.id)
    if secret is None:
        print(hook.secret)
        print("the signing secret is shown only this once", file=sys.stderr)


def _ls(hooks: Webhooks, args: argparse.Namespace) -> None:
    rows = [("ID", "SCOPE", "URL", "EVENTS", "STATE", "CREATED")]
    for h in hooks.hooks(namespace=args.namespace, repository=args.repository):
        rows.append(
            (
                str(h.id), f"{h.scope_kind}:{h.scope}", h.url, ",".join(sorted(h.events)),
                "enabled" if h.enabled else "disabled", _when(h.created_at),
            )
        )  # fmt: skip
    _table(rows)


def _rm(hooks: Webhooks, args: argparse.Namespace) -> None:
    hooks.delete(args.id)


def _enable(hooks: Webhooks, args: argparse.Namespace) -> None:
    hooks.update(args.id, enabled=True)


def _disable(hooks: Webhooks, args: argparse.Namespace) -> None:
    hooks.update(args.id, enabled=False)


def _deliveries(hooks: Webhooks, args: argparse.Namespace) -> None:
    hooks.get(args.id)  # NotFound for an unknown hook, rather than an empty list
    rows = [("ID", "ACTION", "REPOSITORY", "STATE", "ATTEMPTS", "CODE", "UPDATED", "ERROR")]
    for d in hooks.deliveries(args.id, state=args.state, limit=args.limit):
        rows.append(
            (
                str(d.id), d.action, d.repository, d.state, str(d.attempts),
                "-" if d.last_status is None else str(d.last_status), _when(d.updated_at),
                d.last_error or "",
            )
        )  # fmt: skip
    _table(rows)


# --- parsers --------------------------------------------------------------------------


def _run(handler: Callable[[Webhooks, argparse.Namespace], None]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            hooks = open_webhooks(args)
            try:
                handler(hooks, args)
            finally:
                hooks.db.close()
        except PortsideError as exc:
            print(f"portside registry: {exc}", file=sys.stderr)
            return 1
        return 0

    run.__name__ = handler.__name__.lstrip("_")
    return run


def _leaf(
    group: Any, name: str, handler: Callable[[Webhooks, argparse.Namespace], None], help: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
    # SUPPRESS: the same options given before the command (to "registry") are kept
    parser.add_argument("--root", default=argparse.SUPPRESS, help="the registry's data directory")
    parser.add_argument("--db", default=argparse.SUPPRESS, help="metadata store URL")
    parser.add_argument("--config", default=argparse.SUPPRESS, help="the registry's config file")
    parser.set_defaults(func=_run(handler))
    return parser


def _scope(parser: argparse.ArgumentParser, *, required: bool) -> None:
    scope = parser.add_mutually_exclusive_group(required=required)
    scope.add_argument("--namespace", metavar="NS", help="every repository of a namespace")
    scope.add_argument("--repository", metavar="REPO", help="one repository")


def add_commands(subparsers: Any) -> None:
    """Add ``webhook`` (add, ls, rm, enable, disable, deliveries) to ``portside
    registry``'s subparsers."""
    parser = subparsers.add_parser("webhook", help="manage webhooks", description="manage webhooks")
    group = parser.add_subparsers(dest="webhook_command", metavar="COMMAND")
    group.required = True
    p = _leaf(group, "add", _add, "add a webhook (prints its ID, and its secret when made)")
    _scope(p, required=True)
    p.add_argument("--url", required=True, help="where to POST the events (http or https)")
    p.add_argument(
        "--event",
        action="append",
        choices=EVENTS,
        help="an action to deliver (repeat; default: all of them)",
    )
    p.add_argument("--secret-stdin", action="store_true", help="read the signing secret from stdin")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    p = _leaf(group, "ls", _ls, "list webhooks")
    _scope(p, required=False)
    for name, handler, text in (
        ("rm", _rm, "remove a webhook with its delivery log"),
        ("enable", _enable, "enable a webhook (its pending deliveries go out)"),
        ("disable", _disable, "disable a webhook (its deliveries wait)"),
    ):
        _leaf(group, name, handler, text).add_argument("id", type=int)
    p = _leaf(group, "deliveries", _deliveries, "a webhook's deliveries, newest first")
    p.add_argument("id", type=int)
    p.add_argument("--state", choices=("pending", "delivered", "failed"))
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
