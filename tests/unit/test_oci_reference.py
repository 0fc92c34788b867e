"""portside.oci.reference: the grammar and Docker's normalisation, with the cases of
distribution/reference's reference_test.go and normalize_test.go."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.oci.reference import (
    InvalidReference,
    Reference,
    _parse,
    parse_reference,
    valid_tag,
)

F64 = "f" * 64
SHA256 = "sha256:" + F64
SHA512 = "sha512:" + "f" * 128

# --- distribution's Parse (grammar only, no normalisation): reference_test.go ----------

# (input, name, domain, tag, digest)
PARSE_OK = [
    ("test_com", "test_com", "", None, None),
    ("test.com:tag", "test.com", "", "tag", None),
    ("test.com:5000", "test.com", "", "5000", None),
    ("test.com/repo:tag", "test.com/repo", "test.com", "tag", None),
    ("test:5000/repo", "test:5000/repo", "test:5000", None, None),
    ("test:5000/repo:tag", "test:5000/repo", "test:5000", "tag", None),
    (f"test:5000/repo@{SHA256}", "test:5000/repo", "test:5000", None, SHA256),
    (f"test:5000/repo:tag@{SHA256}", "test:5000/repo", "test:5000", "tag", SHA256),
    ("lowercase:Uppercase", "lowercase", "", "Uppercase", None),
    ("a/" * 127 + "a:tag-puts-this-over-max", "a/" * 127 + "a", "a", "tag-puts-this-over-max", None),  # noqa: E501
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", None, None),  # noqa: E501
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "some-long-tag", None),  # noqa: E501
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app", "b.gcr.io", "test.example.com", None),  # noqa: E501
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage", "xn--n3h.com", "xn--n3h.com", None),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", "xn--7o8h.com/myimage", "xn--7o8h.com", "xn--7o8h.com", SHA512),  # noqa: E501
    ("foo_bar.com:8080", "foo_bar.com", "", "8080", None),
    ("foo/foo_bar.com:8080", "foo/foo_bar.com", "foo", "8080", None),
    ("192.168.1.1", "192.168.1.1", "", None, None),
    ("192.168.1.1:tag", "192.168.1.1", "", "tag", None),
    ("192.168.1.1:5000", "192.168.1.1", "", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1/repo", "192.168.1.1", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo", "192.168.1.1:5000", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo", "192.168.1.1:5000", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]/repo", "[2001:db8::1]", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo", "[2001:db8:1:2:3:4:5:6]", "tag", None),  # noqa: E501
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", None),
    (f"[2001:db8::1]:5000/repo@{SHA256}", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", None, SHA256),  # noqa: E501
    (f"[2001:db8::1]:5000/repo:tag@{SHA256}", "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "tag", SHA256),  # noqa: E501
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo", "[2001:db8::]:5000", None, None),
    ("[::1]:5000/repo", "[::1]:5000/repo", "[::1]:5000", None, None),
    ("example.com/" + "a" * 255 + ":tag", "example.com/" + "a" * 255, "example.com", "tag", None),
]  # fmt: skip

PARSE_ERR = [
    (":justtag", "invalid reference format"),
    (f"@{SHA256}", "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "sha256 needs 64 hex digits, got 34"),
    (f"validname@invaliddigest:{F64}", "unsupported algorithm 'invaliddigest'"),
    ("Uppercase:tag", "repository name must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("domain/" + "a" * 256 + ":tag", "must not be more than 255 characters"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[2001:db8::1]", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
]


@pytest.mark.parametrize(("text", "name", "domain", "tag", "digest"), PARSE_OK)
def test_grammar_accepts(
    text: str, name: str, domain: str, tag: str | None, digest: str | None
) -> None:
    ref = _parse(text)
    full = ref.name if ref.domain else ref.path
    assert (full, ref.domain, ref.tag, ref.digest) == (name, domain, tag, digest)


@pytest.mark.parametrize(("text", "reason"), PARSE_ERR)
def test_grammar_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        _parse(text)
    assert reason in info.value.reason


# --- ParseNormalizedNamed: normalize_test.go -------------------------------------------

VALID_NAMES = [
    "docker/docker",
    "library/debian",
    "debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
]

INVALID_NAMES = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
    "",
    "foo_bar.com/x",  # a domain that is no valid host (distribution leaves it domain-less)
]


@pytest.mark.parametrize("text", VALID_NAMES)
def test_valid_names(text: str) -> None:
    ref = parse_reference(text)
    assert ref.domain
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("text", INVALID_NAMES)
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


# (remote name, familiar name, full name, ambiguous name, domain): TestParseRepositoryInfo
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),  # noqa: E501
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),  # noqa: E501
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),  # noqa: E501
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "", "example.com:8000"),  # noqa: E501
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),  # noqa: E501
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base", "index.docker.io/library/ubuntu-12.04-base", "docker.io"),  # noqa: E501
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]  # fmt: skip


@pytest.mark.parametrize(("remote", "familiar", "full", "ambiguous", "domain"), REPOSITORY_INFO)
def test_repository_info(
    remote: str, familiar: str, full: str, ambiguous: str, domain: str
) -> None:
    for text in filter(None, (familiar, full, ambiguous)):
        ref = parse_reference(text)
        assert ref.familiar_name == familiar
        assert ref.familiar() == familiar
        assert ref.name == str(ref) == full
        assert ref.domain == domain
        assert ref.path == remote


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("docker.io/a.b/c", "docker.io", "a.b/c"),
        ("docker.io/localhost/c", "docker.io", "localhost/c"),
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/foo/bar:1", "localhost:5000", "foo/bar"),
        ("localhost", "docker.io", "library/localhost"),
        ("localhost:5000", "docker.io", "library/localhost"),  # a tag, as in Docker
    ],
)
def test_normalized_split(text: str, domain: str, path: str) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)
    assert parse_reference(ref.familiar()) == ref  # docker.io/a.b/c must not become a.b/c


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        (f"redis@{SHA256}", f"docker.io/library/redis@{SHA256}"),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        (f"dmcgowan/myapp@{SHA256}", f"docker.io/dmcgowan/myapp@{SHA256}"),
        ("dbcc1", "docker.io/library/dbcc1"),
        ("f" * 63, "docker.io/library/" + "f" * 63),
        (f"busybox:latest@{SHA256}", f"docker.io/library/busybox:latest@{SHA256}"),
    ],
)
def test_full_form(text: str, full: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert parse_reference(full) == ref
    assert ref.familiar() == text.removeprefix("docker.io/library/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid reference '': repository name must have at least one component"),
        (
            F64,
            f"invalid reference {F64!r}: invalid repository name ({F64}), "
            "cannot specify 64-byte hexadecimal strings",
        ),
        (
            "Ubuntu",
            "invalid reference 'Ubuntu': invalid reference format: "
            "repository name (library/Ubuntu) must be lowercase",
        ),
        (
            "quay.io/Foo/bar:1",
            "invalid reference 'quay.io/Foo/bar:1': invalid reference format: "
            "repository name (Foo/bar) must be lowercase",
        ),
        (
            f"Foo@{SHA256}",
            f"invalid reference 'Foo@{SHA256}': invalid reference format: "
            "repository name (library/Foo) must be lowercase",
        ),
        ("a b", "invalid reference 'a b': invalid reference format"),
        ("ubuntu:", "invalid reference 'ubuntu:': invalid reference format"),
        ("ubuntu:-x", "invalid reference 'ubuntu:-x': invalid reference format"),
        ("ubuntu:" + "a" * 129, "invalid reference format"),
        (
            "x/" + "a" * 255,
            "invalid reference '" + "x/" + "a" * 255 + "': repository name (x/"
            + "a" * 255 + ") must not be more than 255 characters",
        ),
        ("u@sha256:" + "F" * 64, "sha256 needs lowercase hex digits"),
    ],
)  # fmt: skip
def test_error_messages(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert message in str(info.value)
    assert isinstance(info.value, InvalidArgument)
    assert info.value.value == text


def test_tags_and_digests() -> None:
    ref = parse_reference("ubuntu")
    assert ref.tag is None and ref.digest is None
    assert str(ref.with_default_tag()) == "docker.io/library/ubuntu:latest"
    assert ref.with_default_tag().familiar() == "ubuntu:latest"
    tagged = ref.with_tag("22.04")
    assert tagged.familiar() == "ubuntu:22.04"
    assert tagged.with_default_tag() is tagged
    digested = ref.with_digest(SHA256)
    assert digested.with_default_tag() is digested  # Docker adds no tag to name@digest
    both = tagged.with_digest(SHA256)
    assert str(both) == f"docker.io/library/ubuntu:22.04@{SHA256}"
    assert both.name_only() == ref
    assert str(parse_reference("test.com:8000/foo").with_tag("TAG5")) == "test.com:8000/foo:TAG5"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        ref.with_tag("-foo")
    with pytest.raises(InvalidReference, match="invalid digest format"):
        ref.with_digest("foo")
    assert valid_tag("a" * 128) and not valid_tag("a" * 129) and not valid_tag(".x")
    assert not valid_tag("é")  # \w is ASCII, as in Go


def test_reference_is_immutable_and_hashable() -> None:
    ref = parse_reference("busybox:1")
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]
    assert {ref, parse_reference("docker.io/library/busybox:1")} == {ref}
    assert ref != parse_reference("busybox:2")
    assert repr(ref) == "Reference('docker.io/library/busybox:1')"
    assert Reference("docker.io", "library/busybox", "1") == ref


def test_pathological_input_is_fast() -> None:
    for text in ("a" * 20000 + "!", "a." * 5000 + "!", "a-" * 5000 + "/", "a:" * 5000):
        with pytest.raises(InvalidReference):
            parse_reference(text)


# --- properties ------------------------------------------------------------------------

_ALNUM = st.from_regex(re.compile(r"[a-z0-9]{1,4}", re.ASCII), fullmatch=True)
_SEP = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_ALNUM, min_size=1, max_size=3))
    out = parts[0]
    for part in parts[1:]:
        out += draw(_SEP) + part
    return out


_DOMAINS = st.one_of(
    st.none(),
    st.sampled_from(
        ["localhost", "localhost:5000", "docker.io", "index.docker.io", "quay.io", "Foo"]
    ),
    st.from_regex(
        re.compile(r"[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?\.[a-z]{2,5}(:[0-9]{1,5})?", re.ASCII),
        fullmatch=True,
    ),
    st.from_regex(
        re.compile(r"\[[0-9a-f]{0,4}:[0-9a-f:]{1,10}\](:[0-9]{1,5})?", re.ASCII), fullmatch=True
    ),
)
_TAGS = st.one_of(
    st.none(), st.from_regex(re.compile(r"[\w][\w.-]{0,20}", re.ASCII), fullmatch=True)
)
_DIGESTS = st.one_of(
    st.none(),
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h),
)


@st.composite
def references(draw: st.DrawFn) -> str:
    domain = draw(_DOMAINS)
    path = "/".join(draw(st.lists(path_components(), min_size=1, max_size=3)))
    text = f"{domain}/{path}" if domain else path
    tag, digest = draw(_TAGS), draw(_DIGESTS)
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text


@given(references())
def test_generated_references_round_trip(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        # refused: a 64-hex name, or a first component with a dot (so taken for a
        # domain, as Docker does) that is no valid host name, such as "a_b.c/d"
        first = text.partition("/")[0]
        assert "64-byte hexadecimal" in exc.reason or (
            "/" in text and "." in first and exc.reason == "invalid reference format"
        )
        return
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert str(ref).startswith(ref.domain + "/")
    assert ref.path == ref.path.lower()
    assert text.endswith(str(ref)[len(ref.name) :])


@given(st.text(max_size=80))
def test_random_text_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref


@given(references(), st.integers(0, 200), st.characters())
def test_mutated_references_raise_only_invalid_reference(text: str, at: int, ch: str) -> None:
    mutated = text[:at] + ch + text[at:]
    try:
        ref = parse_reference(mutated)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref
