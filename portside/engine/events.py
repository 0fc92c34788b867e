"""Docker's ``/events``: an in-memory bus with a backlog, and Docker's filters.

The engine publishes (``bus.publish("container", "start", cid, {"image": ..., "name": ...})``);
each ``GET /events`` subscribes, gets the backlog since ``since`` replayed, then the live
events, until ``until`` or until it is closed. Everything here is thread-safe: the engine
publishes from its worker threads, and each subscriber reads from its own.

A subscriber that falls more than ``MAX_PENDING`` events behind loses the oldest ones
(Docker drops events for slow listeners too) rather than letting memory grow.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from portside.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FILTER_KEYS", "EventBus", "Subscription", "match_filters", "validate_filters"]

#: the filter keys Docker accepts on ``/events``
FILTER_KEYS = frozenset(
    {
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    }
)
#: the actor-name filters matched by ID or ``name`` attribute prefix, as Docker's fuzzy match
_NAMED = (
    "container",
    "volume",
    "network",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
)
#: event filter values Docker matches by prefix ("health_status" → "health_status: healthy")
_FUZZY_ACTIONS = frozenset({"health_status", "exec_create", "exec_start", "exec_die"})
MAX_PENDING = 10_000


def validate_filters(filters: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """``filters`` with its keys checked (InvalidArgument, Docker's message, otherwise)."""
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        out[key] = [values] if isinstance(values, str) else list(values)
    return out


def _exact(filters: dict[str, list[str]], key: str, value: str) -> bool:
    values = filters.get(key)
    return not values or value in values


def _fuzzy(filters: dict[str, list[str]], key: str, value: str) -> bool:
    values = filters.get(key)
    return not values or any(value.startswith(v) for v in values)


def _strip_tag(name: str) -> str:
    """``busybox:latest`` → ``busybox`` (a registry port is not a tag)."""
    if "@" in name:
        return name.partition("@")[0]
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        return head
    return name


def _match_image(event: dict, filters: dict[str, list[str]]) -> bool:
    if not filters.get("image"):
        return True
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    ident = event.get("id") or actor.get("ID", "")
    name = attrs.get("name" if event.get("Type") == "image" else "image", "")
    wanted = filters["image"]
    return any(c in wanted for c in (ident, name, _strip_tag(ident), _strip_tag(name)) if c)


def _match_labels(attrs: dict[str, str], wanted: list[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in attrs or (sep and attrs[key] != value):
            return False
    return True


def match_filters(event: dict, filters: dict[str, list[str]]) -> bool:
    """Does ``event`` pass Docker's event ``filters``? Different keys must all match;
    several values of one key are alternatives (labels: all must match)."""
    if not filters:
        return True
    action = event.get("Action", "")
    wanted = filters.get("event")
    if wanted and any(v in _FUZZY_ACTIONS for v in wanted):
        if not _fuzzy(filters, "event", action):
            return False
    elif not _exact(filters, "event", action):
        return False
    if not _exact(filters, "type", event.get("Type", "")):
        return False
    if not _exact(filters, "scope", event.get("scope", "local")):
        return False
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    for key in _NAMED:
        if filters.get(key) and not (
            _fuzzy(filters, key, actor.get("ID", "")) or _fuzzy(filters, key, attrs.get("name", ""))
        ):
            return False
    return _match_image(event, filters) and _match_labels(attrs, filters.get("label", []))


def make_event(
    type: str, action: str, actor_id: str, attributes: dict[str, str] | None, time_ns: int
) -> dict:
    """Docker's event JSON, its keys in Docker's order; the deprecated ``status``,
    ``id`` and ``from`` only for container and image events, as Docker fills them."""
    attrs = dict(attributes or {})
    event: dict = {}
    if type in ("container", "image"):
        event["status"] = action
        event["id"] = actor_id
        if type == "container" and attrs.get("image"):
            event["from"] = attrs["image"]
    event.update(
        Type=type,
        Action=action,
        Actor={"ID": actor_id, "Attributes": attrs},
        scope="local",
        time=time_ns // 1_000_000_000,
        timeNano=time_ns,
    )
    return event


def _to_ns(ts: float | int | None) -> int | None:
    if ts is None:
        return None
    if isinstance(ts, int):
        return ts * 1_000_000_000
    return round(ts * 1e9)


class Subscription:
    """One listener's queue. :meth:`get` blocks; iteration ends at ``until`` or
    :meth:`close`."""

    def __init__(self, bus: EventBus, filters: dict[str, list[str]], until_ns: int | None) -> None:
        self._bus = bus
        self.filters = filters
        self.until_ns = until_ns
        self._queue: deque[dict] = deque(maxlen=MAX_PENDING)
        self._cond = threading.Condition(threading.Lock())
        self.closed = False
        self.dropped = 0

    def _offer(self, event: dict) -> None:
        """Called by the bus under its lock."""
        if not match_filters(event, self.filters):
            return
        with self._cond:
            if self.closed:
                return
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify_all()

    def _expired(self) -> bool:
        return self.until_ns is not None and time.time_ns() > self.until_ns

    def get(self, timeout: float | None = None) -> dict | None:
        """The next event; None on timeout, once closed, or once ``until`` has passed
        (the subscription is then closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._queue:
                    event = self._queue.popleft()
                    if self.until_ns is None or event["timeNano"] <= self.until_ns:
                        return event
                    self._queue.clear()
                if self.closed:
                    return None
                if self._expired():
                    break
                wait = None if deadline is None else deadline - time.monotonic()
                if self.until_ns is not None:
                    left = (self.until_ns - time.time_ns()) / 1e9 + 0.001
                    wait = left if wait is None else min(wait, left)
                if wait is not None and wait <= 0:
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue
                self._cond.wait(wait)
        self.close()
        return None

    def close(self) -> None:
        """Stop listening; a blocked :meth:`get` returns None. Idempotent."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._bus._unsubscribe(self)

    def __iter__(self) -> Iterator[dict]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Publish events; subscribe with Docker's ``since``/``until``/``filters``."""

    def __init__(self, backlog: int = 1024) -> None:
        self._lock = threading.Lock()
        self._backlog: deque[dict] = deque(maxlen=backlog)
        self._subs: set[Subscription] = set()
        self._last_ns = 0

    def publish(
        self,
        type: str,
        action: str,
        actor_id: str,
        attributes: dict[str, str] | None = None,
    ) -> dict:
        """Record an event and hand it to every matching subscriber; returns it."""
        with self._lock:
            now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing
            self._last_ns = now
            event = make_event(type, action, actor_id, attributes, now)
            self._backlog.append(event)
            for sub in self._subs:
                sub._offer(event)
        return event

    def subscribe(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        filters: dict[str, list[str]] | None = None,
    ) -> Subscription:
        """A new listener. With ``since`` (unix seconds), the backlog's events at or
        after it are replayed first; with ``until``, the subscription ends then (at
        once, after the replay, when it is past)."""
        checked = validate_filters(filters)
        since_ns, until_ns = _to_ns(since), _to_ns(until)
        if since_ns is not None and until_ns is not None and since_ns > until_ns:
            raise InvalidArgument(f"since ({since}) must not be after until ({until})")
        sub = Subscription(self, checked, until_ns)
        with self._lock:
            if since_ns is not None:
                for event in self._backlog:
                    if event["timeNano"] >= since_ns:
                        sub._offer(event)
            if until_ns is None or until_ns >= time.time_ns():
                self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def subscribers(self) -> int:
        """How many listeners there are (``NEventsListener`` of /info)."""
        with self._lock:
            return len(self._subs)

    def backlog(self) -> list[dict]:
        with self._lock:
            return list(self._backlog)
