"""``portside registry``: ``serve`` (the registry server), ``gc`` (garbage collection)
and the account commands of :mod:`portside.registry.cli_accounts` (users, orgs,
teams, tokens…), all on the same ``--root DIR [--db URL] [--config FILE]``.

``--root``, ``--db`` and ``--config`` may come anywhere on the command line; every
subcommand's handler gets them resolved in ``args.settings`` (a
:class:`~portside.registry.config.RegistryConfig`) and opens the metadata store with
:func:`open_database`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys

from portside.errors import PortsideError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.registry.config import RegistryConfig
    from portside.registry.db import Database
    from portside.registry.interfaces import Access, EventSink

__all__ = ["main", "open_database", "serve"]

log = logging.getLogger("portside.registry")

_COMMON = ("--root", "--db", "--config")


def _split_common(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Take ``--root/--db/--config VALUE`` (or ``=VALUE``) out of ``argv``."""
    common: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in _COMMON and (eq or i + 1 < len(argv)):
            if not eq:
                i += 1
                value = argv[i]
            common[flag[2:]] = value
        else:
            rest.append(arg)
        i += 1
    return common, rest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portside registry",
        description="An OCI distribution registry. Every command takes --root DIR "
        "[--db URL] [--config FILE].",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_p = sub.add_parser("serve", help="run the registry server")
    serve_p.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve_p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    serve_p.add_argument("--tls-key", help="the certificate's key (PEM)")
    serve_p.add_argument(
        "--auth",
        choices=("token", "none"),
        help="token: accounts and bearer tokens (default); none: open",
    )
    serve_p.add_argument("--external-url", help="the URL clients reach the registry at")
    serve_p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    _common_help(serve_p)
    serve_p.set_defaults(func=_serve_command)
    gc_p = sub.add_parser("gc", help="remove blobs and manifests nothing references")
    gc_p.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    gc_p.add_argument(
        "--keep-untagged",
        action="store_true",
        help="keep manifests no tag, index or subject reaches",
    )
    gc_p.add_argument("--grace", type=int, help="seconds: never remove anything younger")
    _common_help(gc_p)
    gc_p.set_defaults(func=_gc_command)
    try:
        from portside.registry import cli_accounts
    except ImportError:
        pass
    else:
        cli_accounts.add_commands(sub)
    from portside.registry import cli_hooks

    cli_hooks.add_commands(sub)
    return parser


def _common_help(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("storage (any command)")
    group.add_argument(
        "--root",
        dest="_root",
        metavar="DIR",
        help="the registry's data directory (default /var/lib/portside-registry)",
    )
    group.add_argument(
        "--db",
        dest="_db",
        metavar="URL",
        help="metadata store: default SQLite in ROOT; postgresql://…",
    )
    group.add_argument(
        "--config",
        dest="_config",
        metavar="FILE",
        help="settings file (JSON, or TOML when named *.toml)",
    )


def settings_of(args: argparse.Namespace, extra: dict[str, object] | None = None) -> RegistryConfig:
    from portside.registry.config import build_config

    flags: dict[str, object] = {"root": args.root, "db": args.db, **(extra or {})}
    return build_config(flags, args.config)


def open_database(args: argparse.Namespace) -> Database:
    """The metadata store of ``args.settings`` (tables are created by each store)."""
    from portside.registry.db import Database

    return Database(args.settings.db_url)


def main(argv: list[str] | None = None) -> int:
    """``portside registry COMMAND …``; the exit code."""
    common, rest = _split_common(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(rest)
    args.root, args.db, args.config = common.get("root"), common.get("db"), common.get("config")
    try:
        args.settings = settings_of(args)
        return int(args.func(args) or 0)
    except PortsideError as exc:
        print(f"portside registry: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"portside registry: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# --- gc --------------------------------------------------------------------------------


def _gc_command(args: argparse.Namespace) -> int:
    from portside.registry.gc import collect
    from portside.registry.storage import Storage

    config: RegistryConfig = args.settings
    storage = Storage(config.root, open_database(args))
    try:
        report = collect(
            storage,
            dry_run=args.dry_run,
            grace=config.gc_grace if args.grace is None else args.grace,
            untagged=not args.keep_untagged,
            upload_ttl=config.upload_ttl,
        )
    finally:
        storage.close()
    for line in report.lines():
        print(line)
    return 0


# --- serve -------------------------------------------------------------------------------


def _serve_command(args: argparse.Namespace) -> int:
    extra = {
        "addr": args.addr,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "auth": args.auth,
        "external_url": args.external_url,
        "log_level": args.log_level,
    }
    return serve(settings_of(args, extra))


def serve(config: RegistryConfig) -> int:
    """Run the server until SIGTERM or SIGINT (a clean stop: requests in flight end)."""
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(config))
    return 0


def _bind(config: RegistryConfig) -> socket.socket:
    host, port = config.listen()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, reuse_port=False, backlog=512)
    except OSError as exc:
        raise PortsideError(f"cannot listen on {config.addr}: {exc.strerror}") from exc


def _external_url(config: RegistryConfig, sock: socket.socket) -> str:
    if config.external_url:
        return config.external_url
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
        log.warning(
            "listening on all interfaces: set external_url to the URL clients use "
            "(the token realm and webhook URLs name it); using %s",
            host,
        )
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.tls else 'http'}://{host}:{port}"


def _ssl(config: RegistryConfig) -> Any:
    if not config.tls:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    return ctx


def build_access(config: RegistryConfig, db: Database) -> Access:
    """``OpenAccess`` for ``--auth none``; token auth (``portside.registry.auth``)
    otherwise."""
    from portside.registry.interfaces import OpenAccess

    if config.auth == "none":
        return OpenAccess()
    try:
        from portside.registry.auth import make_access
    except ImportError as exc:
        raise PortsideError(
            f"token auth is not available ({exc}); run with --auth none for an open registry"
        ) from exc
    return make_access(config, db)


def build_hooks(
    config: RegistryConfig, db: Database, access: Access
) -> tuple[EventSink, list[Any], list[tuple[str, str, Any]]]:
    """The webhooks' outbox sink, the workers to close at the end (in order) and the
    API routes of webhooks and build triggers; ``NullSink`` and nothing when those
    modules are absent or webhooks are disabled."""
    from portside.registry.interfaces import NullSink

    sink: EventSink = NullSink()
    workers: list[Any] = []
    hooks = trigs = None
    if config.webhooks:
        try:
            from portside.registry import delivery, webhooks
        except ImportError:
            pass
        else:
            hooks = webhooks.Webhooks(db)
            outbox = webhooks.OutboxSink(hooks)
            sink = outbox
            deliverer = delivery.Deliverer(
                hooks,
                max_attempts=config.webhook_attempts,
                backoff_base=config.webhook_backoff,
                timeout=config.webhook_timeout,
            )
            workers += [outbox, deliverer]
    try:
        from portside.registry import triggers
    except ImportError:
        pass
    else:
        trigs = triggers.Triggers(db, config.root)
        workers.append(triggers.BuildWorker(trigs))
    try:
        from portside.registry import hooks_api
    except ImportError:
        return sink, workers, []
    return sink, workers, hooks_api.routes(hooks, trigs, access)


async def _serve(config: RegistryConfig) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from aiohttp import web

    from portside.registry.db import Database
    from portside.registry.server import make_app
    from portside.registry.storage import Storage

    # SQL, file writes and hashing, bcrypt: enough threads that slow ones never starve others
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="registry")
    )
    os.makedirs(config.root, exist_ok=True)
    db = Database(config.db_url)
    storage = Storage(config.root, db, touch_after=config.gc_grace / 2)
    sock = _bind(config)
    config = dataclasses.replace(config, external_url=_external_url(config, sock))
    access = build_access(config, db)
    sink, workers, routes = build_hooks(config, db, access)
    from portside.registry import ui

    hooks, accounts = getattr(sink, "webhooks", None), getattr(access, "accounts", None)
    routes += ui.routes(storage, accounts, hooks, access, config, sink=sink)
    app = make_app(config, storage, access, sink, [*access.routes(), *routes])
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=log if config.access_log else None,
        shutdown_timeout=10.0,
    )
    await runner.setup()
    try:
        site = web.SockSite(runner, sock, ssl_context=_ssl(config))
        await site.start()
        host, port = sock.getsockname()[:2]
        # always printed, whatever the log level: scripts and tests read the port here
        sys.stderr.write(
            f"portside registry: listening on {host}:{port} ({config.external_url}, "
            f"auth {config.auth}, store {db.safe_url})\n"
        )
        sys.stderr.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        for worker in workers:
            worker.close()
        storage.close()
