"""``portside daemon`` options, listeners, pidfile and TLS certificates (no root needed)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from portside.api.config import DEFAULT_HOST, load_config, parse_host
from portside.api.daemon import main, ssl_context, unix_listener, write_pidfile
from portside.errors import FailedPrecondition, InvalidArgument
from portside.tls import FILES, init
from tests.unit.fake_engine import FakeEngine, ServerThread


def test_defaults() -> None:
    cfg = load_config([])
    assert (cfg.data_root, cfg.exec_root, cfg.hosts) == (
        "/var/lib/portside",
        "/run/portside",
        [DEFAULT_HOST],
    )


def test_config_file_then_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(
        json.dumps(
            {
                "data-root": "/d",
                "exec-root": "/e",
                "log-level": "debug",
                "hosts": ["unix:///tmp/a.sock"],
            }
        )
    )
    cfg = load_config(
        ["--config-file", str(path), "--data-root", "/flag", "-H", "tcp://127.0.0.1:1"]
    )
    assert (cfg.data_root, cfg.exec_root, cfg.log_level) == ("/flag", "/e", "debug")
    assert cfg.hosts == ["tcp://127.0.0.1:1"]
    assert load_config(["--cgroup-parent", "ps-test"]).cgroup_parent == "/ps-test"


def test_config_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"bogus": 1}')
    with pytest.raises(InvalidArgument, match="unknown keys bogus"):
        load_config(["--config-file", str(path)])
    path.write_text("{")
    with pytest.raises(InvalidArgument, match="invalid config file"):
        load_config(["--config-file", str(path)])


def test_registry_options_from_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(
        json.dumps(
            {
                "registry-mirrors": ["https://mirror.example"],
                "insecure-registries": ["10.0.0.0/8", "reg.local:5000"],
                "max-concurrent-downloads": 7,
                "max-download-attempts": 2,
                "registry-certs-dir": "/etc/certs.d",
            }
        )
    )
    cfg = load_config(["--config-file", str(path), "--max-concurrent-uploads", "9"])
    reg = cfg.registry_config()
    assert reg.mirrors == ("https://mirror.example",)
    assert reg.insecure == ("10.0.0.0/8", "reg.local:5000")
    assert (reg.max_concurrent_downloads, reg.max_concurrent_uploads) == (7, 9)
    assert (reg.max_download_attempts, reg.certs_dir) == (2, "/etc/certs.d")
    flags = load_config(
        [
            "--config-file",
            str(path),
            "--registry-mirror",
            "http://127.0.0.1:5001",
            "--registry-mirror",
            "https://m2.example/prefix",
            "--insecure-registry",
            "h:1",
            "--registry-certs-dir",
            "/c",
        ]
    ).registry_config()
    assert flags.mirrors == ("http://127.0.0.1:5001", "https://m2.example/prefix")
    assert (flags.insecure, flags.certs_dir) == (("h:1",), "/c")
    assert load_config([]).registry_config().certs_dir == "/etc/portside/certs.d"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"registry-mirrors": "https://m"}, "registry-mirrors is not a list of strings"),
        ({"insecure-registries": [5]}, "insecure-registries is not a list of strings"),
        ({"max-concurrent-downloads": "3"}, "max-concurrent-downloads is not an integer"),
        ({"max-download-attempts": True}, "max-download-attempts is not an integer"),
        ({"registry-mirrors": ["ftp://m"]}, "invalid mirror"),
        ({"max-concurrent-uploads": 0}, "max concurrent uploads"),
    ],
)
def test_registry_options_are_validated(tmp_path: Path, doc: dict, message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidArgument, match=message):
        load_config(["--config-file", str(path)])


def test_plain_tcp_off_loopback_refused_unless_forced() -> None:
    with pytest.raises(InvalidArgument, match=r"refusing plain TCP on tcp://0\.0\.0\.0:2375"):
        load_config(["-H", "tcp://0.0.0.0:2375"])
    assert load_config(["-H", "tcp://0.0.0.0:2375", "--insecure-tcp"]).insecure_tcp
    assert load_config(["-H", "tcp://127.0.0.1:2375"]).hosts == ["tcp://127.0.0.1:2375"]
    assert load_config(["-H", "tcp://[::1]:2375"]).hosts == ["tcp://[::1]:2375"]


def test_tlsverify_needs_files() -> None:
    with pytest.raises(InvalidArgument, match="tlscert"):
        load_config(["--tlsverify", "--tlscacert", "ca.pem"])


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("unix:///run/p.sock", ("unix", "/run/p.sock", 0)),
        ("tcp://127.0.0.1:2376", ("tcp", "127.0.0.1", 2376)),
        ("tcp://[::1]:2376", ("tcp", "::1", 2376)),
        ("tcp://:2376", ("tcp", "0.0.0.0", 2376)),
    ],
)
def test_parse_host(host: str, want: tuple[str, str, int]) -> None:
    assert parse_host(host) == want


@pytest.mark.parametrize(
    "host", ["unix://rel.sock", "tcp://x", "tcp://a:99999", "fd://", "http://a:1"]
)
def test_parse_host_invalid(host: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid host"):
        parse_host(host)


def test_main_reports_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", "tcp://10.1.2.3:2375"]) == 1
    assert "refusing plain TCP on tcp://10.1.2.3:2375" in capsys.readouterr().err


def test_unix_listener_mode_stale_and_live(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a leftover socket nobody listens on
    sock = unix_listener(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(FailedPrecondition, match=f"already listening on {path}"):
            unix_listener(path)
    finally:
        sock.close()


def test_pidfile(tmp_path: Path) -> None:
    path = str(tmp_path / "p.pid")
    write_pidfile(path)
    assert int(Path(path).read_text()) == os.getpid()
    Path(path).write_text("1\n")  # init is alive: another daemon
    with pytest.raises(FailedPrecondition, match="pid file found"):
        write_pidfile(path)
    Path(path).write_text("999999999\n")  # dead
    write_pidfile(path)


def test_server_thread_removes_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    with ServerThread(FakeEngine(), [f"unix://{path}"]):
        assert os.path.exists(path)
    assert not os.path.exists(path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = str(tmp_path_factory.mktemp("tls"))
    init(d, ["127.0.0.1", "localhost"])
    return d


def test_tls_init_files(certs: str) -> None:
    for name in FILES:
        mode = stat.S_IMODE(os.stat(os.path.join(certs, name)).st_mode)
        assert mode == (0o600 if name.endswith("key.pem") else 0o644), name
    from portside.errors import AlreadyExists

    with pytest.raises(AlreadyExists, match=r"ca\.pem exists"):
        init(certs, ["127.0.0.1"])


def _client_ctx(certs: str, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
    return ctx


def _tls_server(certs: str, engine: FakeEngine | None = None) -> ServerThread:
    cfg = load_config(
        [
            "--tlsverify",
            "--tlscacert",
            f"{certs}/ca.pem",
            "--tlscert",
            f"{certs}/server-cert.pem",
            "--tlskey",
            f"{certs}/server-key.pem",
            "-H",
            "tcp://127.0.0.1:0",
        ]
    )
    return ServerThread(engine or FakeEngine(), cfg.hosts, ssl_context(cfg))


def _get(port: int, ctx: ssl.SSLContext, path: str) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_mutual_tls(certs: str) -> None:
    with _tls_server(certs) as server:
        port = int(server.addresses[0].rsplit(":", 1)[1])
        assert _get(port, _client_ctx(certs, True), "/_ping").endswith(b"OK")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(port, _client_ctx(certs, False), "/_ping")


def test_tls_half_close_keeps_output(certs: str) -> None:
    """The docker CLI half-closes a hijacked attach over TLS and still reads the output."""
    engine = FakeEngine()
    cid = engine.container_create(None, {"Image": "busybox", "Cmd": ["sponge"], "Tty": True}, {})[
        "Id"
    ]
    with _tls_server(certs, engine) as server:
        port = int(server.addresses[0].rsplit(":", 1)[1])
        ctx = _client_ctx(certs, True)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            head, data = _half_closing_client(raw, ctx, cid)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert data == b"through tls"


def _half_closing_client(raw: socket.socket, ctx: ssl.SSLContext, cid: str) -> tuple[bytes, bytes]:
    """Attach over TLS, send, close_notify (like Go's CloseWrite), then read to the end."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

    def pump() -> bool:
        raw.sendall(outgoing.read())
        chunk = raw.recv(65536)
        if not chunk:
            incoming.write_eof()
        incoming.write(chunk) if chunk else None
        return bool(chunk)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    tls.write(
        f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
        "Host: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        try:
            received += tls.read(65536)
        except ssl.SSLWantReadError:
            pump()
    head, _, received = received.partition(b"\r\n\r\n")
    tls.write(b"through tls")
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    raw.sendall(outgoing.read())
    while True:
        try:
            received += tls.read(65536)
        except ssl.SSLWantReadError:
            if not pump():
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    return head, received


def test_server_stop_is_clean() -> None:
    done = threading.Event()

    async def go() -> None:
        from portside.api.daemon import Server

        s = Server(FakeEngine(), ["tcp://127.0.0.1:0"])
        await s.start()
        await s.stop()
        done.set()

    asyncio.run(go())
    assert done.is_set()
