"""Platforms (``os/architecture/variant``): parsing, normalisation and matching.

Normalisation and the preference order follow containerd's ``platforms`` package
(``Normalize``, ``Only``): ``x86_64`` is ``amd64``, ``aarch64`` is ``arm64`` (whose
default variant ``v8`` normalises away), ``armhf`` is ``arm/v7``, ``i386`` is ``386``.
Wanting ``arm/v7`` also accepts ``arm/v6`` then ``arm/v5``; ``amd64/v3`` accepts ``v2``
then plain ``amd64``; ``arm64/v8.2`` accepts ``v8.1`` then ``v8``. Unlike containerd, an
architecture does not fall back to another one (``amd64`` to ``386``, ``arm64`` to
``arm``) unless ``cross_arch=True``: those need kernel support a host may lack.
"""

from __future__ import annotations

import os as _os

from portside.errors import InvalidArgument
from portside.oci._json import STR, F, Record, list_of
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeVar

    T = TypeVar("T")

__all__ = [
    "InvalidPlatform",
    "Platform",
    "best_match",
    "host_platform",
    "matches",
    "normalize_arch",
    "parse_platform",
    "platform_vector",
    "rank",
]

# fmt: off
KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos",
))
KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))
# fmt: on
_SPECIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# uname -m -> (GOARCH, variant)
_UNAME_MACHINES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "loongarch64": ("loong64", ""),
}


class InvalidPlatform(InvalidArgument):
    """A platform specifier cannot be parsed."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid platform {value!r}: {reason}")
        self.value = value
        self.reason = reason


class Platform(Record):
    """The ``platform`` of an image-spec descriptor (also the fields of an image config)."""

    architecture: str = F(STR, required=True)
    os: str = F(STR, required=True)
    os_version: str | None = F(STR, json="os.version")
    os_features: list[str] = F(list_of(STR), json="os.features")
    variant: str | None = F(STR)
    #: reserved by image-spec; Docker manifest lists may carry it
    features: list[str] = F(list_of(STR))

    def __str__(self) -> str:
        """``os[(os.version)]/arch[/variant]`` (containerd's ``FormatAll``)."""
        os_part = self.os or "unknown"
        if self.os_version:
            os_part += f"({self.os_version})"
        parts = [os_part, self.architecture or "unknown"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    def normalized(self) -> Platform:
        """A copy with OS, architecture and variant in containerd's canonical form."""
        arch, variant = normalize_arch(self.architecture, self.variant or "")
        return Platform(
            architecture=arch,
            os=_normalize_os(self.os),
            os_version=self.os_version,
            os_features=list(self.os_features),
            variant=variant or None,
            features=list(self.features),
        )


def _normalize_os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """containerd's ``normalizeArch``: canonical (architecture, variant); no variant is ``""``."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def host_platform(machine: str | None = None, system: str | None = None) -> Platform:
    """The platform of this host, from ``os.uname()`` (or the given ``uname -m``/``-s``)."""
    if machine is None or system is None:
        uname = _os.uname()
        machine = uname.machine if machine is None else machine
        system = uname.sysname if system is None else system
    arch, variant = _UNAME_MACHINES.get(machine, (machine, ""))
    return Platform(os=_normalize_os(system), architecture=arch, variant=variant or None)


def _check_part(spec: str, part: str) -> None:
    if not part or not _SPECIFIER_CHARS.issuperset(part):
        raise InvalidPlatform(spec, f"invalid component {part!r}")


def _split_os(spec: str, part: str) -> tuple[str, str | None]:
    """``windows(10.0.17763)`` -> (``windows``, ``10.0.17763``)."""
    name, paren, rest = part.partition("(")
    version = None
    if paren:
        if not rest.endswith(")") or not rest[:-1]:
            raise InvalidPlatform(spec, f"invalid os version in {part!r}")
        version = rest[:-1]
        _check_part(spec, version)
    _check_part(spec, name)
    return _normalize_os(name), version


def parse_platform(spec: str, host: Platform | None = None) -> Platform:
    """Parse ``os[/arch[/variant]]`` or a lone ``arch``, normalised.

    A lone OS takes the host's architecture, a lone architecture the host's OS
    (``host`` defaults to :func:`host_platform`)."""
    parts = spec.split("/")
    if len(parts) > 3:
        raise InvalidPlatform(spec, "want os[/arch[/variant]]")
    os_name, os_version = _split_os(spec, parts[0])
    if len(parts) == 1:
        if host is None:
            host = host_platform()
        if os_name in KNOWN_OS:
            return Platform(
                os=os_name,
                os_version=os_version,
                architecture=host.architecture,
                variant=host.variant,
            )
        arch, variant = normalize_arch(parts[0])
        if arch in KNOWN_ARCH and os_version is None:
            return Platform(os=host.os, architecture=arch, variant=variant or None)
        raise InvalidPlatform(spec, "unknown operating system or architecture")
    for part in parts[1:]:
        _check_part(spec, part)
    arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(os=os_name, os_version=os_version, architecture=arch, variant=variant or None)


def _variant_number(variant: str, prefix: str = "v") -> int | None:
    text = variant[len(prefix) :] if variant.startswith(prefix) else variant
    return int(text) if is_number(text) else None


def _arm64_vector(variant: str) -> list[str]:
    """arm64 variants acceptable for ``variant``, best first (containerd ``platformVector``)."""
    variant = variant or "v8"
    major_text, dot, minor_text = variant.partition(".")
    major = _variant_number(major_text)
    if major is None or major < 8:
        return [variant]
    minor = int(minor_text) if dot and len(variant) == 4 and is_number(minor_text) else 0
    out = [variant]
    if major == 9:
        out += [f"v9.{m}" if m else "v9" for m in range(minor - 1, -1, -1)]
        major, minor = 8, minor + 5
        out.append(f"v8.{minor}")
    out += [f"v{major}.{m}" if m else f"v{major}" for m in range(minor - 1, -1, -1)]
    return out


def platform_vector(wanted: Platform, *, cross_arch: bool = False) -> list[tuple[str, str, str]]:
    """The (os, architecture, variant) triples ``wanted`` accepts, best first, normalised."""
    p = wanted.normalized()
    arch, variant = p.architecture, p.variant or ""
    triples: list[tuple[str, str]] = [(arch, variant)]
    if arch == "amd64":
        level = _variant_number(variant)
        if level is not None and level > 1:
            triples += [("amd64", f"v{n}") for n in range(level - 1, 0, -1)]
        if cross_arch:
            triples.append(("386", ""))
    elif arch == "arm":
        level = _variant_number(variant)
        if level is not None and level > 5:
            triples += [("arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        triples = [("arm64", v) for v in _arm64_vector(variant)]
        if cross_arch:
            arm = "v8" if variant.startswith(("v8.", "v9.")) else variant or "v8"
            triples += [("arm", f"v{n}") for n in range(_variant_number(arm) or 8, 4, -1)]
    out: list[tuple[str, str, str]] = []
    for a, v in triples:
        key = (p.os, *normalize_arch(a, v))
        if key not in out:
            out.append(key)
    return out


def _key(p: Platform) -> tuple[str, str, str]:
    n = p.normalized()
    return (n.os, n.architecture, n.variant or "")


def rank(wanted: Platform, have: Platform, *, cross_arch: bool = False) -> int | None:
    """How well ``have`` serves ``wanted``: 0 is exact, higher is a fallback, None is no."""
    vector = platform_vector(wanted, cross_arch=cross_arch)
    key = _key(have)
    return vector.index(key) if key in vector else None


def matches(wanted: Platform, have: Platform, *, cross_arch: bool = False) -> bool:
    """Whether an image built for ``have`` runs where ``wanted`` is asked for."""
    return rank(wanted, have, cross_arch=cross_arch) is not None


def best_match(
    wanted: Platform,
    candidates: Iterable[T],
    key: Callable[[T], Platform | None] | None = None,
    *,
    cross_arch: bool = False,
) -> T | None:
    """The candidate that suits ``wanted`` best (the first of equals), or None.

    ``key`` gets a candidate's platform, e.g. ``lambda d: d.platform`` for the
    descriptors of an index; candidates without one never match."""
    vector = platform_vector(wanted, cross_arch=cross_arch)
    best: T | None = None
    best_rank = len(vector)
    for candidate in candidates:
        platform = key(candidate) if key is not None else candidate
        if not isinstance(platform, Platform):
            continue
        k = _key(platform)
        if k in vector and vector.index(k) < best_rank:
            best, best_rank = candidate, vector.index(k)
    return best
