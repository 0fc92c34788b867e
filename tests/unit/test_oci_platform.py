"""portside.oci.platform: parsing, normalisation (containerd's), matching and preference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.oci.platform import (
    KNOWN_ARCH,
    InvalidPlatform,
    Platform,
    best_match,
    host_platform,
    matches,
    normalize_arch,
    parse_platform,
    platform_vector,
    rank,
)

AMD64_HOST = Platform(os="linux", architecture="amd64")
ARM_HOST = Platform(os="linux", architecture="arm", variant="v7")


def P(spec: str) -> Platform:
    return parse_platform(spec, host=AMD64_HOST)


@pytest.mark.parametrize(
    ("arch", "variant", "want"),
    [
        ("x86_64", "", ("amd64", "")),
        ("x86-64", "", ("amd64", "")),
        ("AMD64", "V1", ("amd64", "")),
        ("amd64", "v3", ("amd64", "v3")),
        ("i386", "whatever", ("386", "")),
        ("aarch64", "", ("arm64", "")),
        ("arm64", "v8", ("arm64", "")),
        ("arm64", "8", ("arm64", "")),
        ("arm64", "v8.2", ("arm64", "v8.2")),
        ("armhf", "", ("arm", "v7")),
        ("armel", "", ("arm", "v6")),
        ("arm", "", ("arm", "v7")),
        ("arm", "7", ("arm", "v7")),
        ("arm", "6", ("arm", "v6")),
        ("arm", "v5", ("arm", "v5")),
        ("ppc64le", "", ("ppc64le", "")),
        ("s390x", "", ("s390x", "")),
    ],
)
def test_normalize_arch(arch: str, variant: str, want: tuple[str, str]) -> None:
    assert normalize_arch(arch, variant) == want


@pytest.mark.parametrize(
    ("spec", "formatted", "json"),
    [
        ("linux/amd64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
        ("linux/x86_64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
        ("Linux/AMD64", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
        ("linux/arm64/v8", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
        ("linux/aarch64", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
        ("linux/arm", "linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
        ("linux/armhf", "linux/arm/v7", {"architecture": "arm", "os": "linux", "variant": "v7"}),
        ("linux/arm/6", "linux/arm/v6", {"architecture": "arm", "os": "linux", "variant": "v6"}),
        ("linux/i386", "linux/386", {"architecture": "386", "os": "linux"}),
        ("macos/arm64", "darwin/arm64", {"architecture": "arm64", "os": "darwin"}),
        ("linux", "linux/amd64", {"architecture": "amd64", "os": "linux"}),
        ("arm64", "linux/arm64", {"architecture": "arm64", "os": "linux"}),
        ("armel", "linux/arm/v6", {"architecture": "arm", "os": "linux", "variant": "v6"}),
        (
            "windows(10.0.17763)/amd64",
            "windows(10.0.17763)/amd64",
            {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763"},
        ),
        ("plan9/mips64le", "plan9/mips64le", {"architecture": "mips64le", "os": "plan9"}),
    ],
)
def test_parse(spec: str, formatted: str, json: dict[str, str]) -> None:
    p = P(spec)
    assert str(p) == formatted
    assert p.to_json() == json
    assert P(str(p)) == p


def test_lone_os_takes_host_arch() -> None:
    assert str(parse_platform("linux", host=ARM_HOST)) == "linux/arm/v7"
    assert str(parse_platform("windows", host=AMD64_HOST)) == "windows/amd64"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "invalid component ''"),
        ("linux/", "invalid component ''"),
        ("/amd64", "invalid component ''"),
        ("linux/amd64/v1/x", "want os[/arch[/variant]]"),
        ("linux/am d64", "invalid component 'am d64'"),
        ("linux/amd64/v!", "invalid component 'v!'"),
        ("nosuchthing", "unknown operating system or architecture"),
        ("windows(10/amd64", "invalid os version"),
        ("windows()/amd64", "invalid os version"),
    ],
)
def test_parse_errors(spec: str, reason: str) -> None:
    with pytest.raises(InvalidPlatform) as info:
        P(spec)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"invalid platform {spec!r}: ")
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    ("machine", "formatted"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("armv5tel", "linux/arm/v5"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_host_platform(machine: str, formatted: str) -> None:
    assert str(host_platform(machine, "Linux")) == formatted


def test_host_platform_of_this_machine() -> None:
    p = host_platform()
    assert p.os == "linux"
    assert p.architecture in KNOWN_ARCH


@pytest.mark.parametrize(
    ("wanted", "have", "ok"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/amd64", "linux/386", False),  # no cross-arch fallback by default
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/amd64/v3", "linux/amd64/v2", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64/v2", "linux/amd64/v3", False),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/arm/v7", False),
        ("linux/arm64/v8.2", "linux/arm64/v8.1", True),
        ("linux/arm64/v8.1", "linux/arm64/v8.2", False),
        ("linux/arm64/v9.1", "linux/arm64/v8.6", True),
        ("linux/arm64/v9.1", "linux/arm64/v8.7", False),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v5", "linux/arm/v6", False),
        ("linux/arm/v8", "linux/arm/v7", True),
    ],
)
def test_matches(wanted: str, have: str, ok: bool) -> None:
    assert matches(P(wanted), P(have)) is ok


def test_match_on_raw_descriptor_platforms() -> None:
    """Platforms as they come in manifests (not parsed) are normalised for matching."""
    want = P("linux/arm64")
    assert matches(want, Platform(os="linux", architecture="arm64", variant="v8"))
    assert matches(want, Platform(os="linux", architecture="aarch64"))
    assert matches(P("linux/amd64"), Platform(os="Linux", architecture="x86_64"))


def test_cross_arch() -> None:
    assert matches(P("linux/amd64"), P("linux/386"), cross_arch=True)
    assert matches(P("linux/arm64"), P("linux/arm/v7"), cross_arch=True)
    assert platform_vector(P("linux/arm64"), cross_arch=True) == [
        ("linux", "arm64", ""),
        ("linux", "arm", "v8"),
        ("linux", "arm", "v7"),
        ("linux", "arm", "v6"),
        ("linux", "arm", "v5"),
    ]


def test_vectors() -> None:
    assert platform_vector(P("linux/arm/v7")) == [
        ("linux", "arm", "v7"),
        ("linux", "arm", "v6"),
        ("linux", "arm", "v5"),
    ]
    assert platform_vector(P("linux/amd64/v3")) == [
        ("linux", "amd64", "v3"),
        ("linux", "amd64", "v2"),
        ("linux", "amd64", ""),
    ]
    assert platform_vector(P("linux/arm64/v9.1")) == [
        ("linux", "arm64", v)
        for v in ["v9.1", "v9", "v8.6", "v8.5", "v8.4", "v8.3", "v8.2", "v8.1", ""]
    ]
    assert rank(P("linux/arm/v7"), P("linux/arm/v5")) == 2
    assert rank(P("linux/arm/v7"), P("linux/arm64")) is None


class _Entry:
    def __init__(self, name: str, platform: Platform | None) -> None:
        self.name = name
        self.platform = platform


def test_best_match_picks_by_preference_then_order() -> None:
    entries = [
        _Entry("none", None),
        _Entry("arm5", P("linux/arm/v5")),
        _Entry("amd64", P("linux/amd64")),
        _Entry("arm6", P("linux/arm/v6")),
        _Entry("arm6-again", P("linux/arm/v6")),
        _Entry("s390x", P("linux/s390x")),
    ]
    pick = best_match(P("linux/arm/v7"), entries, key=lambda e: e.platform)
    assert pick is not None and pick.name == "arm6"
    pick = best_match(P("linux/amd64"), entries, key=lambda e: e.platform)
    assert pick is not None and pick.name == "amd64"
    assert best_match(P("linux/arm64"), entries, key=lambda e: e.platform) is None
    assert best_match(P("linux/arm64/v8"), [P("linux/arm64"), P("linux/arm/v7")]) == P(
        "linux/arm64"
    )


_ARCH_SPECS = st.sampled_from(
    ["amd64", "x86_64", "386", "i386", "arm64", "aarch64", "arm", "armhf", "armel", "s390x"]
)
_VARIANTS = st.sampled_from(["", "v1", "v2", "v3", "v5", "v6", "v7", "v8", "8", "v8.1", "v9.2"])


@given(st.sampled_from(["linux", "windows", "darwin"]), _ARCH_SPECS, _VARIANTS)
def test_normalisation_is_idempotent_and_self_matching(os_: str, arch: str, variant: str) -> None:
    spec = f"{os_}/{arch}/{variant}" if variant else f"{os_}/{arch}"
    p = P(spec)
    assert p.normalized() == p
    assert P(str(p)) == p
    assert matches(p, p) and rank(p, p) == 0
    raw = Platform(os=os_, architecture=arch, variant=variant or None)
    assert matches(p, raw) and matches(raw, p)


@given(st.text(max_size=40))
def test_random_text_raises_only_invalid_platform(text: str) -> None:
    try:
        p = P(text)
    except InvalidPlatform:
        return
    assert P(str(p)) == p


@given(st.lists(st.tuples(_ARCH_SPECS, _VARIANTS), max_size=6), _ARCH_SPECS, _VARIANTS)
def test_best_match_is_the_lowest_rank(
    candidates: list[tuple[str, str]], arch: str, variant: str
) -> None:
    wanted = Platform(os="linux", architecture=arch, variant=variant or None)
    platforms = [Platform(os="linux", architecture=a, variant=v or None) for a, v in candidates]
    pick = best_match(wanted, platforms)
    ranks = [r for r in (rank(wanted, p) for p in platforms) if r is not None]
    if pick is None:
        assert not ranks
    else:
        assert rank(wanted, pick) == min(ranks)
