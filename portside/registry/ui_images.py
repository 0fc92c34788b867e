"""What the web UI shows of an image, read from the stored manifest and config
(:func:`image_view`, blocking), and the small formatting helpers of its templates.
Every value read from a manifest or config is the pusher's text: the templates escape
it, and nothing here trusts its shape (a field of the wrong type shows as empty).
"""

from __future__ import annotations

import datetime
import json
from urllib.parse import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.registry.storage import Storage

__all__ = ["MAX_CONFIG", "image_view", "repo_url", "short_digest", "size_text", "when_text"]

#: the largest image config read to be shown
MAX_CONFIG = 1 << 20
#: config media types of plain images (the stored "artifact type" then says nothing)
_IMAGE_CONFIGS = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _platform(doc: object) -> str:
    """``os/architecture[/variant]`` of a config or a descriptor's platform."""
    if not isinstance(doc, dict):
        return ""
    parts = [_text(doc.get(k)) for k in ("os", "architecture", "variant")]
    return "/".join(p for p in parts if p)


def when_text(ts: float | None) -> str:
    """A UTC time of the epoch seconds ``ts``; "—" for none."""
    if not ts:
        return "—"
    moment = datetime.datetime.fromtimestamp(float(ts), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_config(storage: Storage, desc: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """An image config's JSON, or None and why it is not shown."""
    from portside.oci.digest import Digest, InvalidDigest

    try:
        digest = Digest(_text(desc.get("digest")))
    except InvalidDigest:
        return None, "the manifest names no valid config"
    size = _int(desc.get("size"))
    if size > MAX_CONFIG:
        return None, f"the config ({size} bytes) is too large to show"
    try:
        with open(storage.blob_path(digest), "rb") as f:
            data = f.read(MAX_CONFIG + 1)
    except OSError:
        return None, "the config blob is missing"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, f"the config ({_text(desc.get('mediaType'))}) is not JSON"
    return (doc, "") if isinstance(doc, dict) else (None, "the config is not a JSON object")


def _config_facts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """What an image config says about how its containers run, as (label, text)."""
    run = config.get("config") if isinstance(config.get("config"), dict) else {}
    facts = [
        ("Platform", _platform(config)),
        ("Author", _text(config.get("author"))),
        ("User", _text(run.get("User"))),
        ("Entrypoint", _text(run.get("Entrypoint"))),
        ("Cmd", _text(run.get("Cmd"))),
        ("Working directory", _text(run.get("WorkingDir"))),
        ("Stop signal", _text(run.get("StopSignal"))),
    ]
    env = run.get("Env")
    if isinstance(env, list):
        facts.append(("Environment", "\n".join(_text(e) for e in env)))
    for key, label in (("ExposedPorts", "Exposed ports"), ("Volumes", "Volumes")):
        if isinstance(run.get(key), dict):
            facts.append((label, ", ".join(sorted(str(k) for k in run[key]))))
    labels = run.get("Labels")
    if isinstance(labels, dict):
        facts.append(("Labels", "\n".join(f"{k}={_text(v)}" for k, v in sorted(labels.items()))))
    return [(k, v) for k, v in facts if v]


def _history(config: dict[str, Any]) -> list[dict[str, Any]]:
    items = config.get("history")
    return [
        {
            "created": _text(h.get("created")),
            "created_by": _text(h.get("created_by")),
            "comment": _text(h.get("comment")),
            "empty_layer": bool(h.get("empty_layer")),
        }
        for h in (items if isinstance(items, list) else [])
        if isinstance(h, dict)
    ]


def image_view(storage: Storage, repository: str, reference: str) -> dict[str, Any]:
    """What the image page shows of ``repository``'s manifest ``reference`` (a tag or a
    digest): read from the stored manifest and config (blocking). Every value is text
    from the pusher: the templates escape it."""
    from portside.oci.mediatypes import is_index

    record = storage.manifest(repository, reference)
    try:
        doc = json.loads(storage.read_manifest(record))
    except (ValueError, UnicodeDecodeError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    artifact_type = record.artifact_type or ""
    view: dict[str, Any] = {
        "reference": reference, "by_digest": ":" in reference, "digest": record.digest,
        "media_type": record.media_type, "manifest_size": record.size,
        "artifact_type": "" if artifact_type in _IMAGE_CONFIGS else artifact_type,
        "subject": record.subject or "",
        "annotations": sorted(record.annotations.items()), "pushed": when_text(record.created),
        "created": "—", "platform": "", "size": 0, "is_index": is_index(record.media_type),
        "children": [], "layers": [], "config": [], "config_digest": "", "config_note": "",
        "history": [],
    }  # fmt: skip
    if view["is_index"]:
        descs = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
        view["children"] = [
            {"digest": _text(d.get("digest")), "media_type": _text(d.get("mediaType")),
             "size": _int(d.get("size")), "platform": _platform(d.get("platform"))}
            for d in descs
        ]  # fmt: skip
        view["platform"] = ", ".join(c["platform"] for c in view["children"] if c["platform"])
        view["size"] = sum(c["size"] for c in view["children"])
        return view
    config_desc = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    view["size"] = _int(config_desc.get("size")) + sum(_int(d.get("size")) for d in layers)
    view["config_digest"] = _text(config_desc.get("digest"))
    config, view["config_note"] = _read_config(storage, config_desc)
    config = config or {}
    view["history"] = _history(config)
    built = [h["created_by"] for h in view["history"] if not h["empty_layer"]]
    if len(built) != len(layers):
        built = [""] * len(layers)
    view["layers"] = [
        {"digest": _text(d.get("digest")), "media_type": _text(d.get("mediaType")),
         "size": _int(d.get("size")), "created_by": by}
        for d, by in zip(layers, built, strict=True)
    ]  # fmt: skip
    view["platform"] = _platform(config)
    view["created"] = _text(config.get("created")) or "—"
    view["config"] = _config_facts(config)
    return view


def size_text(n: int) -> str:
    """``3.7 kB``: decimal units, as the docker CLI shows sizes."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab``: the algorithm and 12 hex digits."""
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else digest


def repo_url(name: str, *parts: str) -> str:
    """``/ui/r/NAME[/-/PART/…]`` (``-`` is never a name component)."""
    url = "/ui/r/" + quote(name, safe="/")
    return url + "/-/" + "/".join(quote(p, safe=":") for p in parts) if parts else url
