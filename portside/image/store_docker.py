"""Images in Docker's shapes: ``ImageInspect``, ``ImageSummary``, history items, and
the filters of ``GET /images/json``. Pure functions of stored :class:`Image` rows.

The store speaks Docker's current API (1.44+): no ``VirtualSize``, ``Container`` or
``ContainerConfig``, and untagged images have empty ``RepoTags``/``RepoDigests`` (the
API layer adds the ``<none>:<none>`` placeholders older versions show).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from portside.errors import InvalidArgument
from portside.oci.reference import parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from portside.image.store_db import Image

__all__ = [
    "ZERO_TIME",
    "familiar",
    "format_time",
    "history",
    "inspect",
    "normalize_filters",
    "parse_time",
    "path_match",
    "select",
    "summary",
]

#: Go's zero ``time.Time`` as Docker prints it
ZERO_TIME = "0001-01-01T00:00:00Z"
_LIST_FILTERS = frozenset({"dangling", "label", "reference", "before", "since"})


def parse_time(text: str | None) -> float:
    """Unix time of an RFC 3339 timestamp (nanoseconds allowed); 0.0 when absent
    or unreadable, as a config with a bad ``created`` must still list."""
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def format_time(ts: float | None) -> str:
    """RFC 3339 with trimmed fractional seconds, as Go's RFC3339Nano; zero time for None."""
    if ts is None:
        return ZERO_TIME
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def familiar(name: str) -> str:
    """Docker's short form of a stored reference: ``busybox:latest``."""
    return parse_reference(name).familiar()


def _config(image: Image) -> dict[str, Any]:
    doc = json.loads(image.config)
    return doc if isinstance(doc, dict) else {}


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    config = doc.get("config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    return dict(labels) if isinstance(labels, dict) else {}


def inspect(image: Image) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    doc = _config(image)
    out: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": sorted(familiar(t) for t in image.tags),
        "RepoDigests": sorted(familiar(d) for d in image.repo_digests),
        "Parent": "",
        "Comment": doc.get("comment") or "",
        "Created": image.created or ZERO_TIME,
        "DockerVersion": doc.get("docker_version") or "",
        "Author": doc.get("author") or "",
        "Config": doc.get("config") if isinstance(doc.get("config"), dict) else {},
        "Architecture": doc.get("architecture", ""),
    }
    if doc.get("variant"):
        out["Variant"] = doc["variant"]
    out["Os"] = doc.get("os", "")
    if doc.get("os.version"):
        out["OsVersion"] = doc["os.version"]
    out["Size"] = image.size
    out["RootFS"] = {"Type": "layers", "Layers": image.diff_ids}
    out["Metadata"] = {"LastTagTime": format_time(image.last_tag_time)}
    return out


def history(image: Image) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``: newest first; only the top entry has the ID
    and tags; an ``empty_layer`` entry has size 0, the others take their layer's."""
    doc = _config(image)
    entries = doc.get("history")
    out: list[dict[str, Any]] = []
    layer = 0
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        size = 0
        if not entry.get("empty_layer"):
            if layer < len(image.layers):
                size = image.layers[layer].size
            layer += 1
        out.append(
            {
                "Id": "<missing>",
                "Created": int(parse_time(entry.get("created"))),
                "CreatedBy": entry.get("created_by") or "",
                "Tags": None,
                "Size": size,
                "Comment": entry.get("comment") or "",
            }
        )
    out.reverse()
    if out:
        out[0]["Id"] = image.id
        out[0]["Tags"] = sorted(familiar(t) for t in image.tags)
    return out


def summary(image: Image, chain_users: Mapping[str, int]) -> dict[str, Any]:
    """An ``ImageSummary``; ``chain_users`` counts the images using each chainID,
    so SharedSize is the size of the layers another image also uses."""
    shared = sum(layer.size for layer in image.layers if chain_users.get(layer.chain_id, 0) > 1)
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": sorted(familiar(t) for t in image.tags),
        "RepoDigests": sorted(familiar(d) for d in image.repo_digests),
        "Created": int(image.created_unix),
        "Size": image.size,
        "SharedSize": shared,
        "Labels": _labels(_config(image)),
        "Containers": -1,
    }


# --- filters ---------------------------------------------------------------------------


def normalize_filters(
    filters: Mapping[str, Any] | None, allowed: frozenset[str] = _LIST_FILTERS
) -> dict[str, list[str]]:
    """Docker's filter arguments (``{"label": ["a=b"]}``, or the legacy
    ``{"label": {"a=b": true}}``, or a bare string) as lists of values."""
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter {key!r}")
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, dict):
            values = [str(k) for k, v in value.items() if v]
        elif isinstance(value, bool):
            values = ["true" if value else "false"]
        else:
            values = [str(v) for v in value]
        out[key] = values
    return out


def _dangling(values: list[str]) -> bool | None:
    if not values:
        return None
    wanted = {v.lower() for v in values}
    if wanted <= {"true", "1"}:
        return True
    if wanted <= {"false", "0"}:
        return False
    raise InvalidArgument(f"invalid filter 'dangling={values[0]}'")


def _label_match(labels: Mapping[str, str], wanted: Iterable[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _reference_match(image: Image, patterns: list[str]) -> bool:
    for name in (*image.tags, *image.repo_digests):
        ref = parse_reference(name)
        for pattern in patterns:
            if path_match(pattern, ref.familiar()) or path_match(pattern, ref.familiar_name):
                return True
    return False


def select(
    images: list[Image],
    filters: dict[str, list[str]],
    resolve: Callable[[str], Image],
) -> list[Image]:
    """The images that pass ``filters`` (see :func:`normalize_filters`);
    ``resolve`` turns a ``before``/``since`` value into an image."""
    dangling = _dangling(filters.get("dangling", []))
    before = since = None
    for value in filters.get("before", []):
        before = resolve(value).created_unix
    for value in filters.get("since", []):
        since = resolve(value).created_unix
    labels = filters.get("label", [])
    patterns = filters.get("reference", [])
    for pattern in patterns:
        path_match(pattern, "")  # a malformed pattern is an error even with no images
    out = []
    for image in images:
        if dangling is not None and dangling != (not image.tags):
            continue
        if before is not None and not image.created_unix < before:
            continue
        if since is not None and not image.created_unix > since:
            continue
        if labels and not _label_match(_labels(_config(image)), labels):
            continue
        if patterns and not _reference_match(image, patterns):
            continue
        out.append(image)
    return out


def path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` stop at ``/``, ``[a-z]`` and ``[^…]``
    classes, ``\\`` escapes; a malformed pattern is InvalidArgument."""
    import re

    parts = ["(?s:"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            parts.append("[^/]*")
        elif c == "?":
            parts.append("[^/]")
        elif c == "\\":
            if i == n:
                raise InvalidArgument(f"invalid reference pattern {pattern!r}: trailing \\")
            parts.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            end, cls = _char_class(pattern, i)
            parts.append(cls)
            i = end
        else:
            parts.append(re.escape(c))
    parts.append(")")
    return re.fullmatch("".join(parts), name) is not None


def _char_class(pattern: str, i: int) -> tuple[int, str]:
    """The regex of the class opening before ``i``, and the index after its ``]``."""
    import re

    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while True:
        if i >= len(pattern):
            raise InvalidArgument(f"invalid reference pattern {pattern!r}: unclosed [")
        if pattern[i] == "]" and items:
            break
        lo, i = _class_char(pattern, i)
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise InvalidArgument(f"invalid reference pattern {pattern!r}: bad range")
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            items.append(re.escape(lo))
    body = "".join(items)
    return i + 1, f"[^{body}]" if negate else f"[{body}]"


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise InvalidArgument(f"invalid reference pattern {pattern!r}: bad character class")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise InvalidArgument(f"invalid reference pattern {pattern!r}: trailing \\")
    return pattern[i], i + 1
