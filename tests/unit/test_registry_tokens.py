"""portside.registry.tokens: the signing key under ROOT/keys, JWT claims, the libtrust
``kid``, and verification refusing forged, expired, early and misdirected tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import threading
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from portside.errors import InvalidArgument, PermissionDenied
from portside.registry.tokens import InvalidToken, TokenService, key_id

AUD = "registry.test"
ISS = "issuer.test"
ACCESS = [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]


@pytest.fixture
def keys(tmp_path: object) -> str:
    return os.path.join(str(tmp_path), "keys")


@pytest.fixture
def service(keys: str) -> TokenService:
    return TokenService.open(keys, issuer=ISS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _claims(service: TokenService, **over: object) -> dict[str, object]:
    token, _, _ = service.issue("alice", ACCESS, AUD, 300)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(over)
    return claims


# --- keys -----------------------------------------------------------------------------


def test_key_generated_once_private_and_reloaded(keys: str, service: TokenService) -> None:
    path = os.path.join(keys, "token-es256.pem")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    again = TokenService.open(keys, issuer=ISS)
    assert again.kid == service.kid
    token, _, _ = service.issue("alice", ACCESS, AUD)
    assert again.verify(token, AUD)["sub"] == "alice"


def test_certificate_holds_the_public_key(service: TokenService) -> None:
    with open(service.certificate_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    assert (
        cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == service.public_pem
    )
    assert key_id(cert.public_key()) == service.kid  # type: ignore[arg-type]


def test_concurrent_first_starts_agree_on_one_key(keys: str) -> None:
    kids: list[str] = []

    def start() -> None:
        kids.append(TokenService.open(keys, issuer=ISS).kid)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1
    assert sorted(os.listdir(keys)) == ["token-es256.crt", "token-es256.pem"]


def test_kid_is_libtrust_shaped(service: TokenService) -> None:
    assert re.fullmatch(r"[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}", service.kid)
    # the definition: base32 of the first 240 bits of SHA-256 over the DER public key
    der = service.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).digest()[:30]
    assert service.kid.replace(":", "") == base64.b32encode(digest).decode()


def test_rs256_when_configured(keys: str) -> None:
    rsa = TokenService.open(keys, issuer=ISS, algorithm="RS256")
    token, _, _ = rsa.issue("bob", [], AUD)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert rsa.verify(token, AUD)["sub"] == "bob"
    assert os.path.exists(os.path.join(keys, "token-rs256.pem"))
    es = TokenService.open(keys, issuer=ISS)
    with pytest.raises(InvalidToken, match="algorithm"):
        es.verify(token, AUD)


def test_bad_settings(keys: str) -> None:
    with pytest.raises(InvalidArgument, match="HS256"):
        TokenService.open(keys, issuer=ISS, algorithm="HS256")
    with pytest.raises(InvalidArgument, match="P-256"):
        TokenService(ec.generate_private_key(ec.SECP384R1()), issuer=ISS)


# --- issue ----------------------------------------------------------------------------


def test_issue_claims_and_header(service: TokenService) -> None:
    before = int(time.time())
    token, expires_in, issued_at = service.issue("alice", ACCESS, AUD, 120)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == service.kid and header["typ"] == "JWT"
    claims = service.verify(token, AUD)
    assert claims["iss"] == ISS and claims["aud"] == AUD and claims["sub"] == "alice"
    assert claims["access"] == ACCESS
    assert expires_in == 120 and claims["exp"] == claims["iat"] + 120
    assert before <= claims["iat"] == claims["nbf"] == issued_at <= time.time()
    other, _, _ = service.issue("alice", ACCESS, AUD, 120)
    assert service.verify(other, AUD)["jti"] != claims["jti"]


def test_anonymous_subject(service: TokenService) -> None:
    token, _, _ = service.issue("", [], AUD)
    assert service.verify(token, AUD)["sub"] == ""


# --- verify rejects -------------------------------------------------------------------


def test_rejects_another_key(keys: str, service: TokenService, tmp_path: object) -> None:
    other = TokenService.open(os.path.join(str(tmp_path), "other"), issuer=ISS)
    token, _, _ = other.issue("alice", ACCESS, AUD)
    with pytest.raises(InvalidToken, match="unknown key"):
        service.verify(token, AUD)
    # the same forged token claiming our kid: the signature fails
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, other._private, algorithm="ES256", headers={"kid": service.kid})
    with pytest.raises(InvalidToken, match=r"[Ss]ignature"):
        service.verify(forged, AUD)


def test_rejects_alg_none(service: TokenService) -> None:
    for alg in ("none", "None", "NONE"):
        token = _forge({"alg": alg, "typ": "JWT"}, _claims(service), b"")
        with pytest.raises(InvalidToken):
            service.verify(token, AUD)
    unsigned = jwt.encode(_claims(service), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        service.verify(unsigned, AUD)


def test_rejects_hs256_keyed_with_the_public_key(service: TokenService) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": service.kid}
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(_claims(service)).encode())
    for secret in (service.public_pem, service.public_pem.strip()):
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken, match="algorithm"):
            service.verify(f"{head}.{body}.{_b64(mac)}", AUD)


def test_rejects_expired(keys: str) -> None:
    past = TokenService.open(keys, issuer=ISS, clock=lambda: time.time() - 3600)
    token, _, _ = past.issue("alice", ACCESS, AUD, 300)
    with pytest.raises(InvalidToken, match="expired"):
        TokenService.open(keys, issuer=ISS).verify(token, AUD)


def test_leeway_tolerates_small_skew(keys: str) -> None:
    skewed = TokenService.open(keys, issuer=ISS, clock=lambda: time.time() + 20)
    token, _, _ = skewed.issue("alice", ACCESS, AUD, 300)
    assert TokenService.open(keys, issuer=ISS).verify(token, AUD)["sub"] == "alice"


def test_rejects_not_yet_valid(keys: str) -> None:
    future = TokenService.open(keys, issuer=ISS, clock=lambda: time.time() + 3600)
    token, _, _ = future.issue("alice", ACCESS, AUD, 300)
    with pytest.raises(InvalidToken, match="not yet valid"):
        TokenService.open(keys, issuer=ISS).verify(token, AUD)


def test_rejects_wrong_audience_and_issuer(keys: str, service: TokenService) -> None:
    token, _, _ = service.issue("alice", ACCESS, "another-registry")
    with pytest.raises(InvalidToken, match=r"[Aa]udience"):
        service.verify(token, AUD)
    stranger = TokenService.open(keys, issuer="someone-else")
    token, _, _ = stranger.issue("alice", ACCESS, AUD)
    with pytest.raises(InvalidToken, match=r"[Ii]ssuer"):
        service.verify(token, AUD)


@pytest.mark.parametrize("missing", ["exp", "nbf", "iat", "jti", "sub", "iss", "aud"])
def test_rejects_missing_claims(service: TokenService, missing: str) -> None:
    claims = _claims(service)
    del claims[missing]
    token = jwt.encode(claims, service._private, algorithm="ES256", headers={"kid": service.kid})
    with pytest.raises(InvalidToken):
        service.verify(token, AUD)


@pytest.mark.parametrize(
    "access",
    [
        {"type": "repository"},
        [{"type": "repository", "name": "a"}],
        [{"type": "repository", "name": "a", "actions": "pull"}],
        [{"type": "repository", "name": "a", "actions": [1]}],
        ["repository:a:pull"],
    ],
)
def test_rejects_malformed_access(service: TokenService, access: object) -> None:
    claims = _claims(service, access=access)
    token = jwt.encode(claims, service._private, algorithm="ES256", headers={"kid": service.kid})
    with pytest.raises(InvalidToken, match="access"):
        service.verify(token, AUD)


def test_rejects_tampering_and_garbage(service: TokenService) -> None:
    token, _, _ = service.issue("bob", [], AUD)
    head, _, sig = token.split(".")
    body = _b64(json.dumps(_claims(service, sub="bob", access=ACCESS)).encode())
    for bad in (f"{head}.{body}.{sig}", "", "a.b.c", "not a token", token + "x", token[:-4]):
        with pytest.raises(InvalidToken) as info:
            service.verify(bad, AUD)
        assert isinstance(info.value, PermissionDenied)
