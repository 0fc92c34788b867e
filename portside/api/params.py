"""Docker's query-parameter and body conventions, as pure functions."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from portside.api.errors import BadRequest
from portside.text import is_number

_TRUE = frozenset({"1", "true", "True", "TRUE", "t", "T"})
_FALSE = frozenset({"", "0", "false", "False", "FALSE", "f", "F"})


def qbool(query: Mapping[str, str], key: str, default: bool = False) -> bool:
    """A boolean query parameter as Docker reads it: 1/true/True are true."""
    value = query.get(key)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    # Docker's BoolValue: anything else that is not "0"/"false"/"no"/"none" counts as true
    return value.strip().lower() not in ("0", "false", "no", "off", "none")


def qint(query: Mapping[str, str], key: str, default: int | None = None) -> int | None:
    """An integer query parameter; empty means the default."""
    value = query.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise BadRequest(f"invalid value for {key}: {value!r}") from exc


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """Docker's ``filters`` JSON: ``{"k":["v"]}`` or the old ``{"k":{"v":true}}`` form."""
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid filter {raw!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"invalid filter {raw!r}: not an object")
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, list):
            out[str(key)] = [str(v) for v in value]
        elif isinstance(value, dict):
            out[str(key)] = [str(v) for v, on in value.items() if on]
        elif isinstance(value, str):
            out[str(key)] = [value]
        else:
            raise BadRequest(f"invalid filter {raw!r}: bad value for {key!r}")
    return out


def parse_timestamp(value: str | None, now: float | None = None) -> float | None:
    """``since``/``until`` of events and logs: unix seconds (``"1700000000.5"``),
    RFC3339, or a Go duration relative to now (``"10m"``)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    now = time.time() if now is None else now
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ns", "us", "ms", "s", "m", "h"):
        head = value[: -len(suffix)]
        if value.endswith(suffix) and is_number(head.replace(".", "", 1)):
            return now - float(head) * units[suffix]
    try:
        from datetime import datetime

        text = value.replace("Z", "+00:00")
        if "." in text:  # datetime takes microseconds at most
            head, _, rest = text.partition(".")
            digits = "".join(c for c in rest if is_number(c))
            text = head + "." + digits[:6] + rest[len(digits) :]
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise BadRequest(f"invalid timestamp {value!r}") from exc


def split_create_body(body: dict[str, Any]) -> tuple[dict, dict, dict | None]:
    """Docker's create body: Config at top level, plus HostConfig and NetworkingConfig."""
    if not isinstance(body, dict):
        raise BadRequest("invalid JSON: the body must be an object")
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    host_config = body.get("HostConfig")
    if host_config is None:
        host_config = {}
    networking = body.get("NetworkingConfig")
    if not isinstance(host_config, dict):
        raise BadRequest("invalid JSON: HostConfig must be an object")
    return config, host_config, networking
