"""The client over TCP with mutual TLS: a valid client certificate works, none is refused."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest

cryptography = pytest.importorskip("cryptography")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from portside.client import Client, ConnectionFailed, TLSOptions  # noqa: E402


def _cert(name: str, key, issuer_name: str, issuer_key, *, ca: bool = False, ip: bool = False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, key, cert) -> tuple[str, str]:
    key_path, cert_path = f"{path}-key.pem", f"{path}-cert.pem"
    with open(key_path, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture
def pki(tmp_path) -> dict[str, str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ca", ca_key, "ca", ca_key, ca=True)
    _, ca_path = _write(tmp_path / "ca", ca_key, ca)
    out = {"ca": ca_path}
    for name, ip in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        out[f"{name}_key"], out[f"{name}_cert"] = _write(
            tmp_path / name, key, _cert(name, key, "ca", ca_key, ip=ip)
        )
    return out


def _serve_once(pki: dict[str, str]) -> tuple[int, threading.Thread]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += tls.recv(1024)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_mutual_tls(pki: dict[str, str]) -> None:
    port, thread = _serve_once(pki)
    tls = TLSOptions(verify=True, ca=pki["ca"], cert=pki["client_cert"], key=pki["client_key"])
    assert Client(f"tcp://127.0.0.1:{port}", tls).ping() == "OK"
    thread.join(5)


def test_no_client_certificate_is_refused(pki: dict[str, str]) -> None:
    port, thread = _serve_once(pki)
    with pytest.raises(ConnectionFailed):
        Client(f"tcp://127.0.0.1:{port}", TLSOptions(verify=True, ca=pki["ca"])).ping()
    thread.join(5)


def test_unknown_server_is_refused_when_verifying(pki: dict[str, str], tmp_path) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    _, other_ca = _write(
        tmp_path / "other", other_key, _cert("other", other_key, "other", other_key, ca=True)
    )
    port, thread = _serve_once(pki)
    tls = TLSOptions(verify=True, ca=other_ca, cert=pki["client_cert"], key=pki["client_key"])
    with pytest.raises(ConnectionFailed):
        Client(f"tcp://127.0.0.1:{port}", tls).ping()
    thread.join(5)


def test_cli_tls_flags_and_environment(tmp_path, monkeypatch) -> None:
    from portside.cli.flags import parse
    from portside.cli.main import GLOBAL_OPTS, Context

    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    monkeypatch.setenv("PORTSIDE_CERT_PATH", str(tmp_path))
    monkeypatch.setenv("PORTSIDE_TLS_VERIFY", "1")
    monkeypatch.setenv("PORTSIDE_HOST", "tcp://10.0.0.1:2376")
    ctx = Context(parse(GLOBAL_OPTS, ["ps"], interspersed=False), "ps")
    tls = ctx._tls(TLSOptions)
    assert ctx.host == "tcp://10.0.0.1:2376"
    assert (tls.verify, tls.ca, tls.cert, tls.key) == (
        True,
        str(tmp_path / "ca.pem"),
        str(tmp_path / "cert.pem"),
        str(tmp_path / "key.pem"),
    )
    monkeypatch.delenv("PORTSIDE_TLS_VERIFY")
    ctx = Context(
        parse(GLOBAL_OPTS, ["-H", "tcp://h:1", "--tlscacert", "/c.pem", "ps"], interspersed=False),
        "ps",
    )
    assert ctx.host == "tcp://h:1"
    tls = ctx._tls(TLSOptions)
    assert tls.ca == "/c.pem" and tls.verify is False
    plain = Context(parse(GLOBAL_OPTS, ["ps"], interspersed=False), "ps")
    assert plain._tls(TLSOptions) is None
