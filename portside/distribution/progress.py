"""Docker's JSON progress stream, as a pull or a push reports it.

Every message is a dict ready to be sent as one line of ``/images/create`` or
``/images/{name}/push``, in the three shapes moby's stream formatter writes:

* :func:`status` — ``{"status": "Pulling from library/busybox", "id": "latest"}``
  (``progress.Message``: no ``progressDetail``);
* :func:`message` — ``{"status": "Downloading", "progressDetail": {"current": 1,
  "total": 2}, "progress": "[=>  ]  1B/2B", "id": "3f4d90098f5b"}``
  (``progress.Update``: always a ``progressDetail``, ``{}`` without counts);
* :func:`aux` — ``{"progressDetail": {}, "aux": {...}}`` (a push's result).

``progress`` is moby's ``JSONProgress.String()`` for a 200-column stream: a 50-step
bar and go-units' ``HumanSize`` counts (4 significant digits, powers of 1000).
:class:`Throttle` keeps byte counters to ten messages a second per id, and
serialises the messages of a pull's threads into the caller's callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: receives Docker JSON message dicts, ready to send
Progress = Callable[[dict[str, Any]], None]

__all__ = [
    "Progress",
    "Throttle",
    "aux",
    "human_size",
    "message",
    "noop",
    "progress_text",
    "short_id",
    "status",
]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
#: how often a byte counter of one id may be reported (seconds)
INTERVAL = 0.1


def noop(_message: dict[str, Any]) -> None:
    """A progress callback that drops everything."""


def short_id(digest: str) -> str:
    """The 12 hex digits Docker shows for a digest (``sha256:3f4d…`` → ``3f4d90098f5b``)."""
    return digest.partition(":")[2][:12] if ":" in digest else digest[:12]


def human_size(size: float) -> str:
    """go-units' ``HumanSize``: ``32.48kB``, ``2.22MB``, ``512B``."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def progress_text(current: int, total: int | None) -> str:
    """moby's ``JSONProgress.String()`` on a 200-column stream (no time left: the
    daemon sets no start time)."""
    total = total or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    steps = min(int(current / total * 100) // 2, 50)
    bar = f"[{'=' * steps}>{' ' * (50 - steps)}] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def status(text: str, *, id: str | None = None) -> dict[str, Any]:
    """A status line without progress (``Pulling from …``, ``Digest: …``)."""
    out: dict[str, Any] = {"status": text}
    if id:
        out["id"] = id
    return out


def message(
    status: str, *, id: str | None = None, current: int | None = None, total: int | None = None
) -> dict[str, Any]:
    """A progress update of ``id``: ``progressDetail`` always (``{}`` without counts),
    and the ``progress`` bar when there are counts. Zero counts are left out, as Go's
    ``omitempty`` does."""
    detail: dict[str, int] = {}
    if current:
        detail["current"] = current
    if total:
        detail["total"] = total
    out: dict[str, Any] = {"status": status, "progressDetail": detail}
    text = progress_text(current or 0, total) if detail else ""
    if text:
        out["progress"] = text
    if id:
        out["id"] = id
    return out


def aux(data: dict[str, Any]) -> dict[str, Any]:
    """Out-of-band data, e.g. a push's ``{"Tag", "Digest", "Size"}``."""
    return {"progressDetail": {}, "aux": data}


class Throttle:
    """The progress callback of one pull or push, shared by its threads.

    :meth:`send` passes a message on at once; :meth:`update` reports a byte counter
    of ``id`` at most once per ``interval`` (the last one, ``current >= total``,
    always, but never the same count twice in a row). Messages reach ``progress`` one
    at a time, in the order they were sent.
    """

    def __init__(
        self,
        progress: Progress,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def send(self, msg: dict[str, Any]) -> None:
        with self._lock:
            self._progress(msg)

    def status(self, text: str, *, id: str | None = None) -> None:
        self.send(status(text, id=id))

    def event(self, text: str, id: str) -> None:
        """A progress update without counts (``Pull complete``, ``Pushed``)."""
        self.send(message(text, id=id))

    def update(self, text: str, id: str, current: int, total: int, *, final: bool = False) -> None:
        """A byte counter, throttled per (``text``, ``id``)."""
        final = final or current >= total
        key = (text, id)
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and (
                last[1] == current or (not final and now - last[0] < self._interval)
            ):
                return
            self._last[key] = (now, current)
            self._progress(message(text, id=id, current=current, total=total))
