"""``portside tls init``: a CA, a server and a client certificate for the daemon's mutual TLS.

Writes ``ca.pem ca-key.pem server-cert.pem server-key.pem cert.pem key.pem`` (keys 0600)
into ``--dir``; ECDSA P-256 keys, the server certificate valid for ``--hosts``. Then::

    portside daemon --tlsverify --tlscacert D/ca.pem --tlscert D/server-cert.pem \\
        --tlskey D/server-key.pem -H tcp://127.0.0.1:2376
    docker --tlsverify --tlscacert D/ca.pem --tlscert D/cert.pem --tlskey D/key.pem \\
        -H tcp://127.0.0.1:2376 version
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

FILES = ("ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem")


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portside"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    days: int,
    usage: list | None = None,
    sans: list | None = None,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def init(directory: str, hosts: list[str], *, days: int = 365, force: bool = False) -> list[str]:
    """Make the CA, server and client certificates in ``directory``; returns the paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from portside.errors import AlreadyExists

    os.makedirs(directory, mode=0o700, exist_ok=True)
    existing = [f for f in FILES if os.path.exists(os.path.join(directory, f))]
    if existing and not force:
        raise AlreadyExists(
            f"{os.path.join(directory, existing[0])} exists: use --force to replace"
        )
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca_name = _name("Portside CA")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True, days=days)
    server = _cert(
        _name(hosts[0] if hosts else "portside"),
        server_key,
        ca_name,
        ca_key,
        ca=False,
        days=days,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=_sans(hosts),
    )
    client = _cert(
        _name("portside-client"),
        client_key,
        ca_name,
        ca_key,
        ca=False,
        days=days,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    pem = serialization.Encoding.PEM

    def key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    out = {
        "ca.pem": (ca.public_bytes(pem), 0o644),
        "ca-key.pem": (key_bytes(ca_key), 0o600),
        "server-cert.pem": (server.public_bytes(pem), 0o644),
        "server-key.pem": (key_bytes(server_key), 0o600),
        "cert.pem": (client.public_bytes(pem), 0o644),
        "key.pem": (key_bytes(client_key), 0o600),
    }
    paths = []
    for name, (data, mode) in out.items():
        path = os.path.join(directory, name)
        _write(path, data, mode)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``portside tls init --dir D [--hosts 127.0.0.1,localhost] [--days N] [--force]``."""
    parser = argparse.ArgumentParser(prog="portside tls", description="Certificates for the daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="make a CA, a server and a client certificate")
    p.add_argument("--dir", required=True, help="where to write the PEM files")
    p.add_argument(
        "--hosts",
        default="127.0.0.1,localhost",
        help="comma-separated names and addresses the server certificate is valid for",
    )
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from portside.errors import PortsideError

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    try:
        paths = init(args.dir, hosts, days=args.days, force=args.force)
    except PortsideError as exc:
        print(f"portside tls: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"portside tls: {args.dir}: {exc.strerror}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
