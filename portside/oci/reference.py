"""Image references, ``[domain[:port]/]path[:tag][@digest]``, normalised as Docker does.

The grammar and the normalisation follow distribution/reference (``regexp.go``,
``normalize.go``): a reference without a domain is on ``docker.io``, a single path
component there is under ``library/``, ``index.docker.io`` means ``docker.io``, and the
first component is a domain when it is ``localhost``, has a ``.`` or a ``:port``, or has
uppercase letters. The repository path must be lowercase. :func:`parse_reference` is
distribution's ``ParseNormalizedNamed``; :attr:`InvalidReference.reason` carries
distribution's message, for clients that show Docker's text.
"""

from __future__ import annotations

import re

from portside.errors import InvalidArgument
from portside.oci.digest import Digest, InvalidDigest

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "REPOSITORY_NAME_MAX",
    "InvalidReference",
    "Reference",
    "parse_reference",
    "valid_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
REPOSITORY_NAME_MAX = 255

# regexp.go, term by term (re.ASCII: Go's \w is [0-9A-Za-z_])
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PORT = r"(?::[0-9]+)?"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_NAME}|{_IPV6}){_PORT}"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)


class InvalidReference(InvalidArgument):
    """A string is not a valid image reference.

    ``reason`` is distribution/reference's message (``invalid reference format``,
    ``repository name must be lowercase``...); ``str()`` also names the input."""

    def __init__(self, value: str, reason: str) -> None:
        super().__init__(f"invalid reference {value!r}: {reason}")
        self.value = value
        self.reason = reason


def valid_tag(tag: str) -> bool:
    """Whether ``tag`` matches ``[\\w][\\w.-]{0,127}``."""
    return _TAG_RE.fullmatch(tag) is not None


class Reference:
    """A normalised reference: ``domain`` and ``path`` always set, ``tag`` and ``digest``
    optional. Immutable and hashable; the ``with_*`` methods return new references."""

    __slots__ = ("digest", "domain", "path", "tag")

    domain: str
    path: str
    tag: str | None
    digest: Digest | None

    def __init__(
        self, domain: str, path: str, tag: str | None = None, digest: Digest | None = None
    ) -> None:
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "digest", digest)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Reference is immutable (tried to set {name!r})")

    @property
    def name(self) -> str:
        """``domain/path``, e.g. ``docker.io/library/ubuntu``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker shows it: ``ubuntu``, ``user/app``, ``quay.io/x/y``.

        Unlike Docker, ``docker.io/`` stays when dropping it would make the first path
        component read as a domain (``docker.io/a.b/c``), so the result always parses back."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX):
            rest = self.path[len(OFFICIAL_PREFIX) :]
            if "/" not in rest:
                return rest
        first = self.path.partition("/")[0]
        if "." in first or first == "localhost":
            return self.name
        return self.path

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """Docker's short form, e.g. ``ubuntu:22.04``."""
        return self.familiar_name + self._suffix()

    def __repr__(self) -> str:
        return f"Reference({str(self)!r})"

    def _key(self) -> tuple[str, str, str | None, str | None]:
        return (self.domain, self.path, self.tag, self.digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def with_tag(self, tag: str) -> Reference:
        if not valid_tag(tag):
            raise InvalidReference(tag, "invalid tag format")
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        try:
            parsed = Digest(digest)
        except InvalidDigest as exc:
            raise InvalidReference(digest, "invalid digest format") from exc
        return Reference(self.domain, self.path, self.tag, parsed)

    def name_only(self) -> Reference:
        """The repository alone, without tag or digest."""
        return Reference(self.domain, self.path)

    def with_default_tag(self) -> Reference:
        """Add ``:latest`` when there is neither tag nor digest (``reference.TagNameOnly``)."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG)
        return self


def _split_docker_domain(s: str) -> tuple[str, str]:
    """Split a familiar name into domain and remainder (``splitDockerDomain``)."""
    maybe_domain, sep, rest = s.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + s
    if maybe_domain == "localhost" or (
        maybe_domain != LEGACY_DEFAULT_DOMAIN
        and ("." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain)
    ):
        domain, remainder = maybe_domain, rest
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, s
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def _parse(s: str) -> Reference:
    """distribution's ``Parse`` of a fully qualified string, domain included."""
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lower = s.lower()
        if lower != s and _REFERENCE_RE.fullmatch(lower) is not None:
            raise InvalidReference(s, "repository name must be lowercase")
        raise InvalidReference(s, "invalid reference format")
    name, tag, digest = m.group(1, 2, 3)
    nm = _NAME_RE.fullmatch(name)
    assert nm is not None  # _NAME matched inside _REFERENCE_RE
    domain, path = nm.group(1, 2)
    if len(path) > REPOSITORY_NAME_MAX:
        raise InvalidReference(
            s, f"repository name ({path}) must not be more than {REPOSITORY_NAME_MAX} characters"
        )
    parsed: Digest | None = None
    if digest is not None:
        try:
            parsed = Digest(digest)
        except InvalidDigest as exc:
            raise InvalidReference(s, str(exc)) from exc
    return Reference(domain or "", path, tag, parsed)


def parse_reference(s: str) -> Reference:
    """Parse and normalise a reference as ``docker pull`` does.

    ``ubuntu`` is ``docker.io/library/ubuntu`` (no tag: see
    :meth:`Reference.with_default_tag`); raises :class:`InvalidReference`."""
    if not s:
        raise InvalidReference(s, "repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(
            s, f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    remote = remainder.partition("@")[0].partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(
            s, f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    try:
        ref = _parse(f"{domain}/{remainder}")
    except InvalidReference as exc:  # name the input, not its normalised form
        raise InvalidReference(s, exc.reason) from exc
    if ref.domain != domain:  # e.g. "a:b/c" whose domain part is not a valid host
        raise InvalidReference(s, "invalid reference format")
    return ref
