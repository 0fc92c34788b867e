"""The grammar of the distribution spec (v1.1): repository names, tags, digests.

A repository name is path components joined by ``/``, each
``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*``. The spec notes that many clients limit the
registry host (with port), ``/`` and the name together to 255 characters: a name is
refused when it would break that limit for the registry's own host. Tags are
``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``; digests ``sha256:<64 hex>`` or
``sha512:<128 hex>`` (lowercase). Whatever passes here is safe in a file path: no
``..``, no leading ``/``, nothing but ``[a-z0-9._/-]``.
"""

from __future__ import annotations

import re

from portside.oci.digest import Digest, InvalidDigest
from portside.registry.errors import DigestInvalid, ManifestInvalid, NameInvalid

__all__ = [
    "NAME_MAX",
    "check_digest",
    "check_name",
    "check_tag",
    "fallback_tag",
    "is_digest",
    "parse_reference",
]

#: the longest host + "/" + name many clients accept
NAME_MAX = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")


def check_name(name: str, host: str = "") -> str:
    """``name`` if it is a valid repository name (for a registry reached as ``host``),
    else :class:`NameInvalid`."""
    limit = NAME_MAX - (len(host) + 1 if host else 0)
    if len(name) > limit:
        raise NameInvalid(
            f"invalid repository name {name[:40]!r}...: {len(name)} characters, "
            f"the limit is {limit}",
            {"name": name[:300]},
        )
    if not _NAME.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name!r}", {"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    """``tag`` if it is a valid tag, else :class:`ManifestInvalid` (the spec has no
    code of its own for a bad tag)."""
    if not _TAG.fullmatch(tag):
        raise ManifestInvalid(f"invalid tag {tag[:200]!r}", {"tag": tag[:200]})
    return tag


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is written as a digest (it has a ``:``; a tag
    never does)."""
    return ":" in reference


def check_digest(value: str) -> Digest:
    """``value`` as a :class:`Digest` of a supported algorithm, else
    :class:`DigestInvalid`."""
    try:
        return Digest(value)
    except InvalidDigest as exc:
        raise DigestInvalid(str(exc), {"digest": value[:200]}) from exc


def parse_reference(reference: str) -> tuple[str | None, Digest | None]:
    """A manifest reference: ``(tag, None)`` or ``(None, digest)``."""
    if is_digest(reference):
        return None, check_digest(reference)
    return check_tag(reference), None


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``<alg>-<ref>``, the algorithm
    cut at 32 characters and the encoded part at 64 (so the tag stays valid)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"
