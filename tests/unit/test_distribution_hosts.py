"""portside.distribution.hosts: endpoints, mirrors, insecure registries (without DNS)
and TLS contexts from a certs.d (handshakes against a TLS server on loopback)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside import tls
from portside.distribution import hosts
from portside.distribution.config import RegistryConfig
from portside.distribution.hosts import (
    Endpoint,
    certs_path,
    endpoints,
    insecure_cidrs,
    insecure_hosts,
    is_insecure,
    registry_host,
    ssl_context,
    validate_config,
    validate_mirror,
)
from portside.errors import InvalidArgument


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name resolution is a failure: there is no network here, and is_insecure
    must not resolve."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"name resolution attempted: {args}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse)


def test_registry_host() -> None:
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("index.docker.io") == "registry-1.docker.io"
    assert registry_host("quay.io") == "quay.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"


# --- insecure -----------------------------------------------------------------------------

CFG = RegistryConfig(
    insecure=("10.0.0.0/8", "fd00::/8", "myreg:5000", "HTTP://Other.Example/", "docker.io")
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("LOCALHOST:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("[::ffff:127.0.0.1]:5000", True),
        ("10.1.2.3:5000", True),
        ("[::ffff:10.1.2.3]", True),
        ("11.1.2.3:5000", False),
        ("[fd00::5]:443", True),
        ("[fe80::1]", False),
        ("myreg:5000", True),
        ("MyReg:5000", True),
        ("myreg", False),  # listed with its port only, as dockerd
        ("myreg:5001", False),
        ("other.example", True),  # the http:// prefix is dropped
        ("registry.example:5000", False),  # a name is never resolved to match a CIDR
        ("docker.io", False),  # Docker Hub never is
        ("registry-1.docker.io", False),
        ("[::1", False),
    ],
)
def test_is_insecure(host: str, expected: bool) -> None:
    assert is_insecure(host, CFG) is expected


@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_is_insecure_cidr_matches_ipaddress(base, prefix: int, addr) -> None:
    net = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    cfg = RegistryConfig(insecure=(str(net),))
    expected = addr in net or addr.is_loopback
    assert is_insecure(f"{addr}:5000", cfg) is expected
    assert is_insecure(f"[::ffff:{addr}]", cfg) is expected


def test_insecure_info() -> None:
    assert insecure_cidrs(CFG) == ["::1/128", "127.0.0.0/8", "10.0.0.0/8", "fd00::/8"]
    assert insecure_cidrs(RegistryConfig(insecure=("127.0.0.0/8",))) == list(hosts.LOOPBACK_CIDRS)
    assert insecure_hosts(CFG) == ["myreg:5000", "other.example", "docker.io"]


# --- endpoints ----------------------------------------------------------------------------

MIRRORS = ("https://mirror.example/prefix/", "http://10.9.9.9:5000")


def test_hub_endpoints_with_mirrors() -> None:
    cfg = RegistryConfig(mirrors=MIRRORS, insecure=("10.0.0.0/8",))
    got = endpoints("docker.io", cfg)
    assert got == [
        Endpoint("mirror.example", "https", mirror=True, path_prefix="/prefix"),
        Endpoint("10.9.9.9:5000", "http", mirror=True, insecure=True),
        Endpoint("registry-1.docker.io", "https"),
    ]
    assert got[0].url("/v2/library/busybox/manifests/latest") == (
        "https://mirror.example/prefix/v2/library/busybox/manifests/latest"
    )
    assert got[2].url("/v2/") == "https://registry-1.docker.io/v2/"
    assert got[0].base == "https://mirror.example/prefix"


def test_push_never_uses_mirrors() -> None:
    cfg = RegistryConfig(mirrors=MIRRORS)
    assert endpoints("docker.io", cfg, push=True) == [Endpoint("registry-1.docker.io", "https")]


def test_mirrors_only_for_docker_hub() -> None:
    cfg = RegistryConfig(mirrors=MIRRORS)
    assert endpoints("quay.io", cfg) == [Endpoint("quay.io", "https")]


@pytest.mark.parametrize("push", [False, True])
def test_insecure_registry_https_then_http(push: bool) -> None:
    assert endpoints("myreg:5000", CFG, push=push) == [
        Endpoint("myreg:5000", "https", insecure=True),
        Endpoint("myreg:5000", "http", insecure=True),
    ]
    assert endpoints("127.0.0.1:5000", RegistryConfig(), push=push)[1].url("/v2/") == (
        "http://127.0.0.1:5000/v2/"
    )


def test_secure_registry_https_only() -> None:
    assert endpoints("registry.example:5000", CFG) == [Endpoint("registry.example:5000", "https")]


def test_endpoint_url_needs_a_path() -> None:
    with pytest.raises(InvalidArgument):
        Endpoint("h", "https").url("v2/")


hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True
)
paths = st.lists(st.from_regex(r"[a-zA-Z0-9._~-]{1,8}", fullmatch=True), max_size=3)


@given(st.sampled_from(["http", "https"]), hostnames, st.none() | st.integers(1, 65535), paths)
def test_mirror_urls(scheme: str, host: str, port: int | None, path: list[str]) -> None:
    netloc = host if port is None else f"{host}:{port}"
    prefix = "".join(f"/{p}" for p in path)
    url = f"{scheme}://{netloc}{prefix}"
    assert validate_mirror(url) == url + "/"
    assert validate_mirror(url + "/") == url + "/"
    (ep, hub) = endpoints("docker.io", RegistryConfig(mirrors=(url,)))
    assert (ep.scheme, ep.host, ep.path_prefix, ep.mirror) == (scheme, netloc, prefix, True)
    assert ep.url("/v2/x/blobs/sha256:0") == f"{url}/v2/x/blobs/sha256:0"
    assert hub == Endpoint("registry-1.docker.io", "https")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mirror.example:5000", "unsupported scheme"),
        ("ftp://mirror.example", "unsupported scheme"),
        ("//mirror.example", "unsupported scheme"),
        ("https://mirror.example/?x=1", "query or fragment"),
        ("https://mirror.example/?", "query or fragment"),
        ("https://mirror.example/#frag", "query or fragment"),
        ("https://user:pw@mirror.example", "username/password not allowed"),
        ("https://", "invalid host"),
        ("https://bad_host/", "invalid host"),
        ("https://mirror.example:99999", "not a valid URI"),
        ("https://mirror.example:port", "not a valid URI"),
        ("https://[::1", "not a valid URI"),
    ],
)
def test_bad_mirrors(url: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=f"invalid mirror: .*{why}"):
        validate_mirror(url)
    with pytest.raises(InvalidArgument):
        validate_config(RegistryConfig(mirrors=(url,)))


def test_mirror_error_hides_password() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_mirror("https://user:hunter2@mirror.example")
    assert "hunter2" not in str(info.value)


def test_validate_config_ok() -> None:
    validate_config(RegistryConfig())
    validate_config(
        RegistryConfig(
            mirrors=MIRRORS,
            insecure=("10.0.0.0/8", "10.1.2.3/8", "myreg", "myreg:5000", "[::1]:5000", "::1"),
        )
    )


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (RegistryConfig(insecure=("10.0.0.0/33",)), "insecure registry 10.0.0.0/33 is not valid"),
        (RegistryConfig(insecure=("ftp://h",)), "insecure registry ftp://h should not contain"),
        (RegistryConfig(insecure=("-h",)), r"invalid index name \(-h\)"),
        (RegistryConfig(insecure=("h:99999",)), "insecure registry h:99999 is not valid"),
        (RegistryConfig(insecure=("bad_host",)), "insecure registry bad_host is not valid"),
        (RegistryConfig(insecure=("[::1]x",)), r"insecure registry \[::1\]x is not valid"),
        (RegistryConfig(max_concurrent_downloads=0), "invalid max concurrent downloads: 0"),
        (RegistryConfig(max_concurrent_uploads=-1), "invalid max concurrent uploads: -1"),
        (RegistryConfig(max_download_attempts=0), "invalid max download attempts: 0"),
        (RegistryConfig(certs_dir=""), "certs directory"),
    ],
)
def test_validate_config_bad(cfg: RegistryConfig, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_config(cfg)


def test_endpoints_refuse_bad_host() -> None:
    with pytest.raises(InvalidArgument, match="invalid registry host"):
        endpoints("a/b", RegistryConfig())


# --- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (portside tls)."""
    d = tmp_path_factory.mktemp("pki")
    tls.init(str(d), ["127.0.0.1", "localhost"])
    return d


@pytest.fixture
def certs(tmp_path) -> str:
    return str(tmp_path / "certs.d")


def add(certs: str, host: str, files: dict[str, object]) -> str:
    d = os.path.join(certs, host)
    os.makedirs(d, exist_ok=True)
    for name, src in files.items():
        if isinstance(src, bytes):
            with open(os.path.join(d, name), "wb") as f:
                f.write(src)
        else:
            shutil.copy(src, os.path.join(d, name))
    return d


class TLSServer:
    """A TLS server on 127.0.0.1 answering each handshake with b"ok" (or recording the
    handshake's failure), optionally requiring a client certificate from the CA."""

    def __init__(self, pki, *, client_ca: bool = False) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / "server-cert.pem", pki / "server-key.pem")
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki / "ca.pem")
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tconn:
                    tconn.sendall(b"ok")
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def server(pki):
    s = TLSServer(pki)
    yield s
    s.close()


@pytest.fixture
def mtls_server(pki):
    s = TLSServer(pki, client_ca=True)
    yield s
    s.close()


def handshake(ctx: ssl.SSLContext, host: str) -> bytes:
    """Connect (to an IP literal: no resolver involved), shake hands, read the answer."""
    name, _, port = host.rpartition(":")
    with socket.socket() as raw:
        raw.settimeout(5)
        raw.connect((name, int(port)))
        with ctx.wrap_socket(raw, server_hostname=name) as conn:
            return conn.recv(2)


def test_certs_path(certs: str) -> None:
    cfg = RegistryConfig(certs_dir=certs)
    assert certs_path("127.0.0.1:5443", cfg) == f"{certs}/127.0.0.1:5443"
    for bad in ("", "..", "a/b", "../etc"):
        with pytest.raises(InvalidArgument):
            certs_path(bad, cfg)


def test_unknown_ca_refused_then_trusted_from_certs_d(pki, server: TLSServer, certs: str) -> None:
    cfg = RegistryConfig(certs_dir=certs)  # the directory does not even exist
    ctx = ssl_context(server.host, cfg)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ctx, server.host)
    add(certs, server.host, {"ca.crt": pki / "ca.pem"})
    trusted = ssl_context(server.host, cfg)  # picked up without a restart
    assert trusted is not ctx
    assert handshake(trusted, server.host) == b"ok"
    assert ssl_context(server.host, cfg) is trusted  # cached while nothing changes


def test_insecure_context_checks_nothing(server: TLSServer, certs: str) -> None:
    ctx = ssl_context(server.host, RegistryConfig(certs_dir=certs), verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert handshake(ctx, server.host) == b"ok"
    assert ssl_context(server.host, RegistryConfig(certs_dir=certs), verify=True) is not ctx


def test_client_certificate(pki, mtls_server: TLSServer, certs: str) -> None:
    cfg = RegistryConfig(certs_dir=certs)
    add(certs, mtls_server.host, {"ca.crt": pki / "ca.pem"})
    try:  # no client certificate: refused (with TLS 1.3, seen at the first read)
        answer = handshake(ssl_context(mtls_server.host, cfg), mtls_server.host)
    except OSError:  # ssl.SSLError included
        answer = b""
    assert answer != b"ok"
    add(certs, mtls_server.host, {"client.cert": pki / "cert.pem", "client.key": pki / "key.pem"})
    assert handshake(ssl_context(mtls_server.host, cfg), mtls_server.host) == b"ok"


def test_client_cert_without_key(pki, certs: str) -> None:
    d = add(certs, "h:1", {"client.cert": pki / "cert.pem"})
    with pytest.raises(InvalidArgument) as info:
        ssl_context("h:1", RegistryConfig(certs_dir=certs))
    assert str(info.value) == (
        f"missing key {d}/client.key for client certificate {d}/client.cert "
        "(CA certificates must use the extension .crt)"
    )


def test_client_key_without_cert(pki, certs: str) -> None:
    d = add(certs, "h:1", {"client.key": pki / "key.pem"})
    with pytest.raises(InvalidArgument, match=f"missing client certificate {d}/client.cert"):
        ssl_context("h:1", RegistryConfig(certs_dir=certs))


def test_bad_ca_file(certs: str) -> None:
    d = add(certs, "h:1", {"ca.crt": b"not a certificate\n"})
    with pytest.raises(InvalidArgument, match=f"invalid CA certificate {d}/ca.crt"):
        ssl_context("h:1", RegistryConfig(certs_dir=certs))


def test_encrypted_client_key_fails_without_prompt(pki, certs: str) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((pki / "key.pem").read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    d = add(certs, "h:1", {"client.cert": pki / "cert.pem", "client.key": encrypted})
    with pytest.raises(
        InvalidArgument, match=f"invalid client certificate {d}/client.cert.*encrypted"
    ):
        ssl_context("h:1", RegistryConfig(certs_dir=certs))
