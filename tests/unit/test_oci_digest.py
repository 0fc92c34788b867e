"""portside.oci.digest: parsing digests, hashing, streaming verification."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.oci.digest import (
    ALGORITHMS,
    Digest,
    Digester,
    DigestMismatch,
    InvalidDigest,
    verify,
)

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = "sha512:" + hashlib.sha512(b"").hexdigest()
F64 = "f" * 64


@pytest.mark.parametrize(
    ("text", "algorithm", "hex_"),
    [
        (EMPTY_SHA256, "sha256", EMPTY_SHA256[7:]),
        (EMPTY_SHA512, "sha512", EMPTY_SHA512[7:]),
        ("sha256:" + "0123456789abcdef" * 4, "sha256", "0123456789abcdef" * 4),
    ],
)
def test_parse_valid(text: str, algorithm: str, hex_: str) -> None:
    d = Digest.parse(text)
    assert (d.algorithm, d.hex, d.encoded) == (algorithm, hex_, hex_)
    assert str(d) == text
    assert d == text
    assert d.short == hex_[:12]
    assert Digest.from_parts(algorithm, hex_) == d
    assert repr(d) == f"Digest({text!r})"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing ':' between algorithm and encoded value"),
        (F64, "missing ':' between algorithm and encoded value"),
        (":" + F64, "missing algorithm"),
        ("SHA256:" + F64, "malformed algorithm 'SHA256'"),
        ("sha256+:" + F64, "malformed algorithm 'sha256+'"),
        ("+sha256:" + F64, "malformed algorithm '+sha256'"),
        ("sha+/256:" + F64, "malformed algorithm 'sha+/256'"),
        ("sha256:", "malformed encoded value"),
        ("sha256:" + "f" * 63 + "!", "malformed encoded value"),
        ("sha256:" + "f" * 63 + ":", "malformed encoded value"),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm 'md5'"),
        ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported algorithm"),
        ("sha256:" + "F" * 64, "sha256 needs lowercase hex digits"),
        ("sha256:" + "g" * 64, "sha256 needs lowercase hex digits"),
        ("sha256:" + "f" * 63, "sha256 needs 64 hex digits, got 63"),
        ("sha256:" + "f" * 65, "sha256 needs 64 hex digits, got 65"),
        ("sha512:" + F64, "sha512 needs 128 hex digits, got 64"),
    ],
)
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        Digest.parse(text)
    assert reason in info.value.reason
    assert str(info.value) == f"invalid digest {text!r}: {info.value.reason}"
    assert isinstance(info.value, InvalidArgument)


def test_not_a_string() -> None:
    with pytest.raises(InvalidDigest, match="not a string"):
        Digest(b"sha256:" + F64.encode())  # type: ignore[arg-type]


def test_of_and_json() -> None:
    assert Digest.of(b"") == EMPTY_SHA256
    assert Digest.of(b"", "sha512") == EMPTY_SHA512
    assert isinstance(Digest.of(b"x"), Digest)
    assert json.loads(json.dumps({"d": Digest.of(b"")})) == {"d": EMPTY_SHA256}
    assert Digest(Digest.of(b"")) is not None
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm 'md5'"):
        Digest.of(b"", "md5")


def test_digester_streams_and_counts() -> None:
    d = Digester()
    for chunk in (b"hello ", bytearray(b"wor"), memoryview(b"ld")):
        d.update(chunk)
    assert d.size == 11
    assert d.digest() == Digest.of(b"hello world")
    assert d.verify(Digest.of(b"hello world"), 11) == Digest.of(b"hello world")


def test_digester_mismatch() -> None:
    d = Digester()
    d.update(b"abc")
    with pytest.raises(DigestMismatch, match="digest mismatch: expected sha256:"):
        d.verify(EMPTY_SHA256)
    with pytest.raises(DigestMismatch, match=r"size mismatch .* expected 4 bytes, got 3"):
        d.verify(Digest.of(b"abc"), 4)
    with pytest.raises(DigestMismatch, match="hashed with sha256"):
        d.verify(EMPTY_SHA512)


def test_verify() -> None:
    assert verify(EMPTY_SHA256, b"") == EMPTY_SHA256
    assert verify(Digest.of(b"abcdef"), iter([b"abc", b"def"]), 6) == Digest.of(b"abcdef")
    with pytest.raises(DigestMismatch):
        verify(EMPTY_SHA256, b"x")
    with pytest.raises(DigestMismatch):
        verify(Digest.of(b"x"), b"x", size=2)
    with pytest.raises(InvalidDigest):
        verify("sha256:nope", b"")


@given(st.binary(), st.sampled_from(sorted(ALGORITHMS)), st.integers(1, 7))
def test_streaming_equals_one_shot(data: bytes, algorithm: str, parts: int) -> None:
    d = Digester(algorithm)
    step = max(1, len(data) // parts)
    for i in range(0, len(data), step):
        d.update(data[i : i + step])
    expected = algorithm + ":" + hashlib.new(algorithm, data).hexdigest()
    assert d.digest() == Digest.of(data, algorithm) == expected
    assert Digest.parse(str(d.digest())) == expected
    assert d.size == len(data)


@given(st.text())
def test_random_text_parses_or_raises_invalid_digest(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert d.algorithm in ALGORITHMS
    assert len(d.hex) == ALGORITHMS[d.algorithm]


@given(st.sampled_from(sorted(ALGORITHMS)), st.data())
def test_generated_digests_round_trip(algorithm: str, data: st.DataObject) -> None:
    n = ALGORITHMS[algorithm]
    hex_ = data.draw(st.text("0123456789abcdef", min_size=n, max_size=n))
    d = Digest.parse(f"{algorithm}:{hex_}")
    assert Digest.parse(str(d)) == d
    assert (d.algorithm, d.hex) == (algorithm, hex_)
