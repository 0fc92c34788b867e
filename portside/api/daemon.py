"""``portside daemon``: the Engine behind the Docker Engine API on unix and TCP sockets.

Listeners are unix sockets (mode 0660, refused while another daemon answers on them,
removed on exit) and TCP ports, optionally with mutual TLS. SIGTERM/SIGINT close the
listeners and the Engine; containers keep running in the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any

from aiohttp import web

from portside.api.config import DaemonConfig, load_config, parse_host
from portside.errors import FailedPrecondition, InvalidArgument, PortsideError
from portside.linux.process import pid_exists

log = logging.getLogger("portside.daemon")


def ssl_context(cfg: DaemonConfig) -> ssl.SSLContext | None:
    """The server's TLS context; with ``tlsverify`` clients must present a cert of the CA."""
    if not cfg.tls:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tlscert, cfg.tlskey)  # type: ignore[arg-type]
        if cfg.tlscacert:
            ctx.load_verify_locations(cfg.tlscacert)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load TLS certificates: {exc}") from exc
    ctx.verify_mode = ssl.CERT_REQUIRED if cfg.tlsverify else ssl.CERT_NONE
    return ctx


def check_unix_free(path: str) -> None:
    """Refuse a socket path another daemon answers on; remove a stale one."""
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody answers
        else:
            raise FailedPrecondition(f"another daemon is already listening on {path}")
        finally:
            probe.close()


def unix_listener(path: str) -> socket.socket:
    """A listening unix socket at ``path`` (0660), refusing one another daemon serves."""
    check_unix_free(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"cannot listen on {path}: {exc.strerror}") from exc
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    sock.listen(128)
    return sock


def tcp_listener(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr, port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"cannot listen on tcp://{addr}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    return sock


class Server:
    """The running API: an aiohttp runner plus its listeners."""

    def __init__(self, engine: Any, hosts: list[str], tls: ssl.SSLContext | None = None) -> None:
        self.engine, self.hosts, self.tls = engine, hosts, tls
        self.runner: web.AppRunner | None = None
        self.unix_paths: list[str] = []
        self.addresses: list[str] = []
        self._tls_tasks: list[asyncio.Task[None]] = []
        self._tls_sockets: list[socket.socket] = []

    async def start(self) -> None:
        from portside.api.server import create_app

        # handler_cancellation: a client that goes away mid-stream (logs -f, events,
        # stats, wait) cancels its handler, which stops the thread draining the engine
        self.runner = web.AppRunner(
            create_app(self.engine),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=2.0,
            handler_cancellation=True,
        )
        await self.runner.setup()
        try:
            for host in self.hosts:
                await self._listen(host)
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, host: str) -> None:
        assert self.runner is not None
        kind, addr, port = parse_host(host)
        if kind == "unix":
            sock = unix_listener(addr)
            self.unix_paths.append(addr)
            site = web.SockSite(self.runner, sock)
            self.addresses.append(host)
        else:
            sock = tcp_listener(addr, port)
            self.addresses.append(f"tcp://{addr}:{sock.getsockname()[1]}")
            if self.tls is not None:  # terminated by tlsrelay: asyncio's TLS cannot half-close
                from portside.api.tlsrelay import serve_tls

                self._tls_sockets.append(sock)
                task = asyncio.ensure_future(serve_tls(sock, self.tls, self.runner.server))
                self._tls_tasks.append(task)
                log.info("API listening on %s (TLS)", self.addresses[-1])
                return
            site = web.SockSite(self.runner, sock)
        await site.start()
        log.info(
            "API listening on %s%s",
            self.addresses[-1],
            " (TLS)" if kind == "tcp" and self.tls else "",
        )

    async def stop(self) -> None:
        for task in self._tls_tasks:
            task.cancel()
        await asyncio.gather(*self._tls_tasks, return_exceptions=True)
        for sock in self._tls_sockets:
            sock.close()
        self._tls_tasks.clear()
        self._tls_sockets.clear()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        for path in self.unix_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.unix_paths.clear()


def write_pidfile(path: str) -> None:
    """Write our pid, refusing while the recorded daemon still lives."""
    try:
        with open(path, encoding="ascii") as f:
            pid = int(f.read().strip() or "0")
    except FileNotFoundError:
        pid = 0
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and pid_exists(pid):
        raise FailedPrecondition(
            f"pid file found, ensure portside daemon is not running or delete {path}"
        )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


async def run(cfg: DaemonConfig, engine: Any) -> None:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from concurrent.futures import ThreadPoolExecutor

    loop.set_default_executor(ThreadPoolExecutor(64, thread_name_prefix="portside-api"))
    server = Server(engine, cfg.hosts, ssl_context(cfg))
    await server.start()
    log.info("portside daemon ready (data root %s, exec root %s)", cfg.data_root, cfg.exec_root)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()


def _setup_logging(level: str) -> None:
    levels = {
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warn": logging.WARNING,
        "error": logging.ERROR,
        "fatal": logging.CRITICAL,
    }
    logging.basicConfig(
        stream=sys.stderr,
        level=levels.get(level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``portside daemon``."""
    try:
        cfg = load_config(sys.argv[1:] if argv is None else list(argv))
    except PortsideError as exc:
        print(f"portside daemon: {exc}", file=sys.stderr)
        return 1
    _setup_logging(cfg.log_level)
    engine = None
    try:
        for host in cfg.hosts:  # before the Engine touches any state
            kind, addr, _ = parse_host(host)
            if kind == "unix":
                check_unix_free(addr)
        write_pidfile(cfg.pidfile)
        try:
            from portside.engine.engine import Engine
            from portside.engine.model import EngineConfig

            engine = Engine(
                EngineConfig(
                    data_root=cfg.data_root,
                    exec_root=cfg.exec_root,
                    cgroup_parent=cfg.cgroup_parent,
                    registry=cfg.registry_config(),
                    network=cfg.network_config(),
                )
            )
            asyncio.run(run(cfg, engine))
        finally:
            if engine is not None:
                engine.close()
            with contextlib.suppress(FileNotFoundError):
                if _read_pid(cfg.pidfile) == os.getpid():
                    os.unlink(cfg.pidfile)
    except PortsideError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or "0")
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
