"""The token service's signing key and its JWTs (distribution's ``docs/spec/auth/jwt.md``).

On first start an ES256 key pair (or RS256, when configured) is generated under
``ROOT/keys/`` — ``token-es256.pem``, the private key, mode 0600 — with a self-signed
certificate beside it (``token-es256.crt``); later starts load them. Several instances
sharing the root share the key: the first to create it wins (link, never overwrite).

Tokens carry ``iss``, ``sub`` ("" for anonymous), ``aud`` (the service, a string as
distribution 2.8 expects), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``
(``[{"type", "name", "actions"}]``); the header's ``kid`` is the libtrust key ID of the
public key (SHA-256 of its DER SubjectPublicKeyInfo, first 240 bits, base32 in twelve
groups of four), which is how distribution finds the key in its ``rootcertbundle``: a
distribution registry given ``token-es256.crt`` as its bundle trusts these tokens.

:meth:`TokenService.verify` accepts only the configured algorithm and key: ``alg:
none``, HS256 keyed with the public key, another key, an expired token, one not valid
yet, or one for another audience or issuer raise :class:`InvalidToken`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import secrets
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from portside.errors import FailedPrecondition, InvalidArgument, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

__all__ = ["ALGORITHMS", "InvalidToken", "TokenService", "key_id"]

ALGORITHMS = ("ES256", "RS256")
#: clock skew tolerated between instances (nbf, exp), as distribution's leeway
LEEWAY = 60.0
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]


class InvalidToken(PermissionDenied):
    """A bearer token that is malformed, forged, expired or meant for someone else."""


def key_id(public_key: PublicKey) -> str:
    """libtrust's key ID: ``ABCD:EFGH:…`` (12 groups of 4 base32 characters)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: PrivateKey, kid: str) -> bytes:
    """A self-signed certificate of the key, for a distribution registry's
    ``auth.token.rootcertbundle``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "portside registry token signer"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, kid.replace(":", "")[:64]),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: str, data: bytes, mode: int) -> bool:
    """Write ``path`` unless it exists (atomically: a temporary file linked into
    place); False when another process made it first."""
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


class TokenService:
    """Signs and verifies the registry's bearer tokens with one key pair."""

    def __init__(
        self,
        private_key: PrivateKey,
        *,
        issuer: str,
        algorithm: str = "ES256",
        leeway: float = LEEWAY,
        clock: Callable[[], float] = time.time,
        certificate_path: str = "",
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"invalid token algorithm {algorithm!r}: want ES256 or RS256")
        want = ec.EllipticCurvePrivateKey if algorithm == "ES256" else rsa.RSAPrivateKey
        if not isinstance(private_key, want):
            raise InvalidArgument(f"the token key does not fit algorithm {algorithm}")
        if algorithm == "ES256" and private_key.curve.name != "secp256r1":
            raise InvalidArgument(f"ES256 needs a P-256 key, not {private_key.curve.name}")
        self.algorithm = algorithm
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
        self.certificate_path = certificate_path
        self._private = private_key
        self.public_key: PublicKey = private_key.public_key()
        self.kid = key_id(self.public_key)

    @classmethod
    def open(
        cls, keys_dir: str, *, issuer: str, algorithm: str = "ES256", **kwargs: Any
    ) -> TokenService:
        """The service with the key under ``keys_dir`` (generated on first use)."""
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(f"invalid token algorithm {algorithm!r}: want ES256 or RS256")
        os.makedirs(keys_dir, mode=0o700, exist_ok=True)
        base = os.path.join(keys_dir, f"token-{algorithm.lower()}")
        key_path, cert_path = base + ".pem", base + ".crt"
        if not os.path.exists(key_path):
            fresh = _generate(algorithm)
            pem = fresh.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_new(key_path, pem, 0o600)
        try:
            with open(key_path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise FailedPrecondition(f"cannot load the token key {key_path}: {exc}") from exc
        service = cls(
            key,  # type: ignore[arg-type]  # checked by the constructor
            issuer=issuer,
            algorithm=algorithm,
            certificate_path=cert_path,
            **kwargs,
        )
        if not os.path.exists(cert_path):
            _write_new(cert_path, _certificate(service._private, service.kid), 0o644)
        return service

    @property
    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(
        self, subject: str, access: list[dict[str, Any]], audience: str, ttl: int = 300
    ) -> tuple[str, int, float]:
        """A token for ``subject`` granting ``access`` to ``audience`` for ``ttl``
        seconds: (jwt, expires_in, issued_at as a UNIX time)."""
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        token = jwt.encode(claims, self._private, algorithm=self.algorithm, headers=headers)
        return token, ttl, float(now)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a token this service signed for ``audience``, still valid;
        :class:`InvalidToken` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        if header.get("alg") != self.algorithm:
            raise InvalidToken(f"invalid token: algorithm {header.get('alg')!r} not accepted")
        if "kid" in header and header["kid"] != self.kid:
            raise InvalidToken(f"invalid token: signed by an unknown key {header['kid']!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.public_key,
                algorithms=[self.algorithm],
                audience=audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        _check_access(claims.get("access", []))
        if not isinstance(claims["sub"], str):
            raise InvalidToken("invalid token: sub is not a string")
        return claims


def _check_access(access: object) -> None:
    if not isinstance(access, list):
        raise InvalidToken("invalid token: access is not a list")
    for entry in access:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("type"), str)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("actions"), list)
            and all(isinstance(a, str) for a in entry["actions"])
        ):
            raise InvalidToken(f"invalid token: bad access entry {entry!r}")
