"""The distribution spec's grammar: repository names, tags, digests, fallback tags."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.registry.errors import DigestInvalid, ManifestInvalid, NameInvalid
from portside.registry.names import (
    NAME_MAX,
    check_digest,
    check_name,
    check_tag,
    fallback_tag,
    parse_reference,
)

# the spec's own expressions, as written there, for the property tests
SPEC_NAME = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
separator = st.sampled_from([".", "_", "__", "-", "--", "---"])
component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    alnum,
    st.lists(st.tuples(separator, alnum), max_size=3),
)
valid_names = st.lists(component, min_size=1, max_size=4).map("/".join)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "library/busybox",
        "a/b/c/d",
        "my-app",
        "my--app",
        "a.b",
        "a_b",
        "a__b",
        "0/1",
        "ghcr.io/owner/repo",
        "x" * 255,
    ],
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "..",
        "a/../b",
        "./a",
        "/a",
        "a/",
        "a//b",
        "A",
        "Library/busybox",
        "a..b",
        "a___b",
        "-a",
        "a-",
        "_a",
        "a.",
        "a/.b",
        "a b",
        "a:b",
        "a\x00b",
        "a\\b",
        "é",
        "x" * 256,
        "x" * 300,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid) as info:
        check_name(name)
    assert info.value.code == "NAME_INVALID" and info.value.status == 400


def test_name_limit_counts_the_registry_host() -> None:
    host = "registry.example.org:5000"  # 25 characters: 229 left for the name
    assert check_name("x" * 229, host)
    with pytest.raises(NameInvalid, match="the limit is 229"):
        check_name("x" * 230, host)
    assert NAME_MAX == 255


@given(valid_names)
def test_generated_names_match_the_spec(name: str) -> None:
    if len(name) <= NAME_MAX:
        assert check_name(name) == name
        assert SPEC_NAME.fullmatch(name)


@given(st.text(max_size=40))
def test_any_text_agrees_with_the_spec_expression(text: str) -> None:
    ok = SPEC_NAME.fullmatch(text) is not None
    try:
        check_name(text)
    except NameInvalid:
        assert not ok
    else:
        assert ok
        # nothing that passes can climb out of a directory or be absolute
        assert ".." not in text.split("/") and not text.startswith("/")
        assert set(text) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-/")


@given(st.text(max_size=140))
def test_tags_agree_with_the_spec_expression(text: str) -> None:
    ok = SPEC_TAG.fullmatch(text) is not None
    try:
        check_tag(text)
    except ManifestInvalid:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_x", "A-b_c.d", "9", "a" * 128])
def test_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", "a b", "../x"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(ManifestInvalid):
        check_tag(tag)


def test_digests() -> None:
    sha256 = "sha256:" + "a" * 64
    sha512 = "sha512:" + "b" * 128
    assert check_digest(sha256) == sha256 and check_digest(sha512) == sha512
    for bad in (
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha512:" + "b" * 64,
        "md5:" + "a" * 32,
        "sha256",
        "sha256:../../etc",
        "",
    ):
        with pytest.raises(DigestInvalid) as info:
            check_digest(bad)
        assert info.value.code == "DIGEST_INVALID"


@given(st.binary(min_size=32, max_size=64).map(bytes.hex), st.sampled_from(["sha256", "sha512"]))
def test_digest_length_must_fit_the_algorithm(hexpart: str, algorithm: str) -> None:
    value = f"{algorithm}:{hexpart}"
    want = {"sha256": 64, "sha512": 128}[algorithm]
    if len(hexpart) == want:
        assert check_digest(value) == value
    else:
        with pytest.raises(DigestInvalid):
            check_digest(value)


def test_parse_reference() -> None:
    digest = "sha256:" + "c" * 64
    assert parse_reference("v1") == ("v1", None)
    assert parse_reference(digest) == (None, digest)
    with pytest.raises(DigestInvalid):
        parse_reference("sha256:short")
    with pytest.raises(ManifestInvalid):
        parse_reference("bad/tag")


def test_fallback_tag_is_a_valid_tag() -> None:
    assert fallback_tag("sha256:" + "d" * 64) == "sha256-" + "d" * 64
    long = fallback_tag("sha512:" + "e" * 128)
    assert long == "sha512-" + "e" * 64
    check_tag(long)
