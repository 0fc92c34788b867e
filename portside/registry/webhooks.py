"""Webhooks: registry events delivered over HTTP from a durable outbox.

A hook watches a namespace or a repository for some of the actions push, pull, delete,
mount and tag. :class:`OutboxSink` (the server's :class:`~portside.registry.interfaces.EventSink`)
writes one outbox row per matching hook per event; the threads of
:class:`~portside.registry.delivery.Deliverer` POST them as distribution's
notification envelope ``{"events": [event]}``, signed with the
hook's secret (``X-Portside-Signature-256: sha256=<hex HMAC-SHA256 of the body>``).

Delivery is at least once, in order per hook, and a dead endpoint never delays another
hook: only the oldest pending row of each hook may be claimed, and a claim is an
``UPDATE … WHERE state = 'pending' AND lease is free`` whose row count says who won, so
several registry processes sharing PostgreSQL never send the same row at once. A row
claimed by a process that died is retried once its lease expires — or at once when a
deliverer starts where that process ran (same host, same pid namespace) and finds it
gone, so a registry killed mid-attempt sends again as soon as it is back. Failed attempts
back off exponentially (1 s, 2 s, 4 s… capped at 10 minutes) up to ``max_attempts``,
after which the row is ``failed``. Every attempt is logged in ``hook_deliveries``;
settled rows are forgotten after 30 days.

Tables: ``hook_hooks``, ``hook_outbox``, ``hook_deliveries``. Timestamps are UTC
seconds since the epoch, stored as floats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from portside.errors import InvalidArgument, NotFound
from portside.registry.db import metadata
from portside.registry.names import check_name
from portside.text import is_number

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from portside.registry.db import Database

__all__ = [
    "EVENTS",
    "MEDIA_TYPE",
    "Attempt",
    "Claim",
    "Delivery",
    "Hook",
    "OutboxSink",
    "Webhooks",
    "backoff",
    "namespace_of",
    "sign",
]

log = logging.getLogger("portside.registry.webhooks")

#: the actions a hook may subscribe to
EVENTS = frozenset({"push", "pull", "delete", "mount", "tag"})
#: the content type of distribution's notification envelope
MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Portside-Signature-256"
DELIVERY_HEADER = "X-Portside-Delivery"
EVENT_HEADER = "X-Portside-Event"

#: how long delivered and failed rows stay in the log (seconds)
KEEP = 30 * 86400

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES = (PENDING, DELIVERED, FAILED)
NAMESPACE, REPOSITORY = "namespace", "repository"

_MAX_URL = 2048

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

hooks_table = sa.Table(
    "hook_hooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope_kind", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(255), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("events", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("hook_hooks_by_scope", "scope_kind", "scope"),
)

outbox_table = sa.Table(
    "hook_outbox",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "hook_id", sa.Integer, sa.ForeignKey("hook_hooks.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("hook_outbox_by_hook", "hook_id", "state", "id"),
    sa.Index("hook_outbox_due", "state", "next_attempt"),
)

deliveries_table = sa.Table(
    "hook_deliveries",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "outbox_id", _ID, sa.ForeignKey("hook_outbox.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("hook_deliveries_by_outbox", "outbox_id", "attempt"),
)

TABLES = (hooks_table, outbox_table, deliveries_table)


def namespace_of(repository: str) -> str:
    """The namespace of ``repository``: its first component, ``library`` for a
    single-component name (as issue 6's design says)."""
    head, sep, _ = repository.partition("/")
    return head if sep else "library"


def sign(secret: str, body: bytes) -> str:
    """The value of ``X-Portside-Signature-256`` for ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int, base: float = 1.0, cap: float = 600.0) -> float:
    """Seconds to wait after ``attempts`` failed attempts: base, 2·base, 4·base… ≤ cap."""
    return min(cap, base * 2.0 ** min(max(attempts - 1, 0), 62))


def check_url(url: str) -> str:
    """``url`` if it is an absolute http or https URL, else :class:`InvalidArgument`."""
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= _MAX_URL else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"invalid webhook url {url!r}: want http:// or https://HOST/…")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidArgument(f"invalid webhook url {url!r}: {exc}") from exc
    return url


def _check_secret(secret: str) -> str:
    if not secret or len(secret) > 255:
        raise InvalidArgument("a webhook secret must have 1 to 255 characters")
    return secret


def _check_events(events: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(events)
    unknown = chosen - EVENTS
    if unknown or not chosen:
        raise InvalidArgument(
            f"invalid webhook events {sorted(chosen)!r}: want some of {sorted(EVENTS)}"
        )
    return chosen


def _scope(namespace: str | None, repository: str | None) -> tuple[str, str]:
    if (namespace is None) == (repository is None):
        raise InvalidArgument("a webhook needs either a namespace or a repository")
    if namespace is not None:
        if "/" in namespace:
            raise InvalidArgument(f"invalid namespace {namespace!r}")
        return NAMESPACE, check_name(namespace)
    assert repository is not None
    return REPOSITORY, check_name(repository)


@dataclass(frozen=True)
class Hook:
    """A webhook. ``scope_kind`` is "namespace" or "repository"."""

    id: int
    scope_kind: str
    scope: str
    url: str
    events: frozenset[str]
    enabled: bool
    created_by: str
    created_at: float
    secret: str = field(repr=False)

    def matches(self, repository: str, action: str) -> bool:
        if not self.enabled or action not in self.events:
            return False
        if self.scope_kind == REPOSITORY:
            return self.scope == repository
        return self.scope == namespace_of(repository)

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            self.scope_kind: self.scope,
            "url": self.url,
            "events": sorted(self.events),
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }
        if with_secret:
            doc["secret"] = self.secret
        return doc


@dataclass(frozen=True)
class Attempt:
    """One POST of a delivery: ``status_code`` when the receiver answered, ``error``
    when it did not answer 2xx."""

    attempt: int
    started_at: float
    duration: float
    status_code: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    """An outbox row: one event for one hook, with its delivery state."""

    id: int
    uuid: str
    hook_id: int
    event_id: str
    action: str
    repository: str
    state: str
    attempts: int
    next_attempt: float
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "delivery": self.uuid,
            "hook": self.hook_id,
            "event": self.event_id,
            "action": self.action,
            "repository": self.repository,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt if self.state == PENDING else None,
            "status_code": self.last_status,
            "error": self.last_error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Claim:
    """A row this process holds the lease of, with what it needs to send it."""

    outbox_id: int
    uuid: str
    hook_id: int
    url: str
    secret: str = field(repr=False)
    action: str
    payload: bytes = field(repr=False)
    attempt: int
    token: str


def _hook(row: Any) -> Hook:
    return Hook(
        id=row.id,
        scope_kind=row.scope_kind,
        scope=row.scope,
        url=row.url,
        events=frozenset(row.events.split(",")),
        enabled=bool(row.enabled),
        created_by=row.created_by,
        created_at=row.created_at,
        secret=row.secret,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(**{f.name: row._mapping[f.name] for f in fields(Delivery)})


def envelope(event: dict[str, Any]) -> bytes:
    """The body delivered for ``event``: ``{"events": [event]}``, with ``id`` and
    ``timestamp`` filled in when the server left them out."""
    event = dict(event)
    event.setdefault("id", str(uuid.uuid4()))
    if "timestamp" not in event:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        event["timestamp"] = f"{stamp}.{int(now % 1 * 1e6):06d}Z"
    return json.dumps({"events": [event]}, separators=(",", ":"), default=str).encode()


class Webhooks:
    """The hooks, the outbox and the delivery log, in the registry's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.create(TABLES)
        self._listeners: list[Callable[[], None]] = []

    # -- hooks -----------------------------------------------------------------------

    def create(
        self,
        url: str,
        *,
        namespace: str | None = None,
        repository: str | None = None,
        events: Iterable[str] = EVENTS,
        secret: str | None = None,
        enabled: bool = True,
        created_by: str = "",
    ) -> Hook:
        """A new hook on ``namespace`` or ``repository``; a random secret when none
        is given."""
        kind, scope = _scope(namespace, repository)
        values = {
            "scope_kind": kind,
            "scope": scope,
            "url": check_url(url),
            "secret": secrets.token_hex(32) if secret is None else _check_secret(secret),
            "events": ",".join(sorted(_check_events(events))),
            "enabled": bool(enabled),
            "created_by": created_by,
            "created_at": time.time(),
        }
        with self.db.begin() as conn:
            result = conn.execute(sa.insert(hooks_table).values(**values))
            hook_id = result.inserted_primary_key[0]
        return self.get(hook_id)

    def get(self, hook_id: int) -> Hook:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(hooks_table).where(hooks_table.c.id == hook_id)).first()
        if row is None:
            raise NotFound(f"webhook {hook_id} not found")
        return _hook(row)

    def hooks(self, *, namespace: str | None = None, repository: str | None = None) -> list[Hook]:
        """Every hook, or those on ``namespace`` / on ``repository`` (exactly)."""
        query = sa.select(hooks_table).order_by(hooks_table.c.id)
        if namespace is not None or repository is not None:
            kind, scope = _scope(namespace, repository)
            query = query.where(hooks_table.c.scope_kind == kind, hooks_table.c.scope == scope)
        with self.db.connect() as conn:
            return [_hook(row) for row in conn.execute(query)]

    def update(
        self,
        hook_id: int,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
    ) -> Hook:
        """Change a hook; disabling it pauses its pending deliveries."""
        values: dict[str, Any] = {}
        if url is not None:
            values["url"] = check_url(url)
        if events is not None:
            values["events"] = ",".join(sorted(_check_events(events)))
        if enabled is not None:
            values["enabled"] = bool(enabled)
        if secret is not None:
            values["secret"] = _check_secret(secret)
        if values:
            with self.db.begin() as conn:
                result = conn.execute(
                    sa.update(hooks_table).where(hooks_table.c.id == hook_id).values(**values)
                )
            if result.rowcount == 0:
                raise NotFound(f"webhook {hook_id} not found")
            if values.get("enabled"):
                self._notify()
        return self.get(hook_id)

    def delete(self, hook_id: int) -> None:
        """Remove a hook with its outbox rows and delivery log."""
        with self.db.begin() as conn:
            ids = sa.select(outbox_table.c.id).where(outbox_table.c.hook_id == hook_id)
            conn.execute(sa.delete(deliveries_table).where(deliveries_table.c.outbox_id.in_(ids)))
            conn.execute(sa.delete(outbox_table).where(outbox_table.c.hook_id == hook_id))
            result = conn.execute(sa.delete(hooks_table).where(hooks_table.c.id == hook_id))
        if result.rowcount == 0:
            raise NotFound(f"webhook {hook_id} not found")

    def matching(self, repository: str, action: str) -> list[Hook]:
        """The enabled hooks that want ``action`` on ``repository``."""
        h = hooks_table.c
        query = sa.select(hooks_table).where(
            h.enabled == sa.true(),
            sa.or_(
                sa.and_(h.scope_kind == REPOSITORY, h.scope == repository),
                sa.and_(h.scope_kind == NAMESPACE, h.scope == namespace_of(repository)),
            ),
        )
        with self.db.connect() as conn:
            found = [_hook(row) for row in conn.execute(query)]
        return [hook for hook in found if hook.matches(repository, action)]

    # -- the outbox ------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (quickly, never raising) when rows become due."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    def enqueue(self, event: dict[str, Any]) -> list[int]:
        """One outbox row per hook matching ``event``; their ids (none: no hook)."""
        target = event.get("target") or {}
        repository = target.get("repository") or event.get("repository") or ""
        action = event.get("action") or ""
        hooks = self.matching(repository, action) if repository and action else []
        if not hooks:
            return []
        body = envelope(event)
        event_id = str(json.loads(body)["events"][0]["id"])[:64]
        now = time.time()
        rows = [
            {
                "hook_id": hook.id,
                "uuid": str(uuid.uuid4()),
                "event_id": event_id,
                "action": action[:16],
                "repository": repository[:255],
                "payload": body,
                "state": PENDING,
                "attempts": 0,
                "next_attempt": now,
                "created_at": now,
                "updated_at": now,
            }
            for hook in hooks
        ]
        ids = []
        with self.db.begin() as conn:
            for row in rows:  # one by one: the ids, portably
                ids.append(
                    conn.execute(sa.insert(outbox_table).values(**row)).inserted_primary_key[0]
                )
        self._notify()
        return ids

    def _heads(self) -> sa.Select[Any]:
        """Rows that may be sent next: the oldest pending row of each enabled hook."""
        o = outbox_table.c
        earlier = outbox_table.alias("earlier")
        return (
            sa.select(outbox_table, hooks_table.c.url, hooks_table.c.secret)
            .join(hooks_table, hooks_table.c.id == o.hook_id)
            .where(
                o.state == PENDING,
                hooks_table.c.enabled == sa.true(),
                ~sa.exists().where(
                    earlier.c.hook_id == o.hook_id,
                    earlier.c.state == PENDING,
                    earlier.c.id < o.id,
                ),
            )
        )

    def claim(self, owner: str, *, now: float | None = None, lease: float = 60.0) -> Claim | None:
        """Lease one due row for ``lease`` seconds (a hook's rows in order; other
        hooks' rows are not behind it), counting the attempt; None when none is due."""
        now = time.time() if now is None else now
        with self.db.begin() as conn:
            for row in self._due(conn, now):
                claim = self._take(conn, row, owner, now, lease)
                if claim is not None:
                    return claim
        return None

    def _due(self, conn: sa.Connection, now: float) -> list[Any]:
        """Up to 8 rows that may be claimed at ``now``, the most overdue first. Read
        outside any lock: by the time one is taken it may have been claimed and even
        settled by someone else (see :meth:`_take`)."""
        o = outbox_table.c
        free = sa.or_(o.lease_until.is_(None), o.lease_until < now)
        query = self._heads().where(o.next_attempt <= now, free)
        return list(conn.execute(query.order_by(o.next_attempt, o.id).limit(8)).all())

    def _take(
        self, conn: sa.Connection, row: Any, owner: str, now: float, lease: float
    ) -> Claim | None:
        """Lease ``row`` (as :meth:`_due` read it) if it is still as read: pending, due,
        not leased, and with no attempt since (else another worker may have tried it
        and set its retry meanwhile: a second POST at once would skip the back-off)."""
        o = outbox_table.c
        token = f"{owner}:{secrets.token_hex(6)}"[:64]
        won = conn.execute(
            sa.update(outbox_table)
            .where(
                o.id == row.id,
                o.state == PENDING,
                o.attempts == row.attempts,
                o.next_attempt <= now,
                sa.or_(o.lease_until.is_(None), o.lease_until < now),
            )
            .values(
                lease_owner=token,
                lease_until=now + lease,
                attempts=o.attempts + 1,
                updated_at=now,
            )
        ).rowcount
        if won != 1:
            return None
        return Claim(
            outbox_id=row.id,
            uuid=row.uuid,
            hook_id=row.hook_id,
            url=row.url,
            secret=row.secret,
            action=row.action,
            payload=bytes(row.payload),
            attempt=row.attempts + 1,
            token=token,
        )

    def release_dead(
        self, place: str, alive: Callable[[int], bool], *, now: float | None = None
    ) -> int:
        """Free the leases held by processes of ``place`` (see :func:`process_place`)
        that ``alive`` says are gone; how many were freed."""
        now = time.time() if now is None else now
        o = outbox_table.c
        held = sa.select(o.id, o.lease_owner).where(
            o.state == PENDING, o.lease_owner.is_not(None), o.lease_until >= now
        )
        freed = 0
        with self.db.begin() as conn:
            for row_id, owner in conn.execute(held).all():
                pid = _owner_pid(owner, place)
                if pid is None or alive(pid):
                    continue
                freed += conn.execute(
                    sa.update(outbox_table)
                    .where(o.id == row_id, o.lease_owner == owner, o.state == PENDING)
                    .values(lease_owner=None, lease_until=None)
                ).rowcount
        if freed:
            self._notify()
        return freed

    def next_due(self) -> float | None:
        """When the next claimable row becomes due (its retry time or the end of its
        lease), or None when nothing is pending."""
        heads = self._heads().subquery()
        ready = sa.case(
            (heads.c.lease_until > heads.c.next_attempt, heads.c.lease_until),
            else_=heads.c.next_attempt,
        )
        with self.db.connect() as conn:
            return conn.execute(sa.select(sa.func.min(ready))).scalar()

    def finish(
        self,
        claim: Claim,
        attempt: Attempt,
        *,
        delivered: bool,
        retry_at: float | None,
    ) -> bool:
        """Record ``attempt`` and settle the row: delivered, retried at ``retry_at``,
        or failed when that is None. False when the lease was lost meanwhile."""
        o = outbox_table.c
        state = DELIVERED if delivered else (PENDING if retry_at is not None else FAILED)
        with self.db.begin() as conn:
            conn.execute(
                sa.insert(deliveries_table).values(outbox_id=claim.outbox_id, **attempt.to_json())
            )
            won = conn.execute(
                sa.update(outbox_table)
                .where(o.id == claim.outbox_id, o.lease_owner == claim.token, o.state == PENDING)
                .values(
                    state=state,
                    next_attempt=retry_at if retry_at is not None else o.next_attempt,
                    lease_owner=None,
                    lease_until=None,
                    last_status=attempt.status_code,
                    last_error=attempt.error,
                    updated_at=attempt.started_at + attempt.duration,
                )
            ).rowcount
        if state == PENDING:
            self._notify()
        return won == 1

    # -- the delivery log ------------------------------------------------------------

    def deliveries(
        self,
        hook_id: int,
        *,
        state: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        """A hook's deliveries, newest first (``before``: an id, to page on)."""
        if state is not None and state not in STATES:
            raise InvalidArgument(f"invalid delivery state {state!r}: want one of {STATES}")
        o = outbox_table.c
        query = sa.select(outbox_table).where(o.hook_id == hook_id)
        if state is not None:
            query = query.where(o.state == state)
        if before is not None:
            query = query.where(o.id < before)
        query = query.order_by(o.id.desc()).limit(max(1, min(limit, 1000)))
        with self.db.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def delivery(self, hook_id: int, delivery_id: int) -> Delivery:
        o = outbox_table.c
        query = sa.select(outbox_table).where(o.id == delivery_id, o.hook_id == hook_id)
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"delivery {delivery_id} of webhook {hook_id} not found")
        return _delivery(row)

    def payload(self, delivery_id: int) -> bytes:
        query = sa.select(outbox_table.c.payload).where(outbox_table.c.id == delivery_id)
        with self.db.connect() as conn:
            body = conn.execute(query).scalar()
        if body is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return bytes(body)

    def attempts(self, delivery_id: int) -> list[Attempt]:
        """The attempts of one delivery, oldest first."""
        d = deliveries_table.c
        query = (
            sa.select(d.attempt, d.started_at, d.duration, d.status_code, d.error)
            .where(d.outbox_id == delivery_id)
            .order_by(d.id)
        )
        with self.db.connect() as conn:
            return [Attempt(*row) for row in conn.execute(query)]

    def redeliver(self, hook_id: int, delivery_id: int) -> Delivery:
        """Queue the payload of a delivery again, as a new delivery at the end of the
        hook's queue (the old one keeps its log)."""
        old = self.delivery(hook_id, delivery_id)
        now = time.time()
        with self.db.begin() as conn:
            new_id = conn.execute(
                sa.insert(outbox_table).values(
                    hook_id=hook_id,
                    uuid=str(uuid.uuid4()),
                    event_id=old.event_id,
                    action=old.action,
                    repository=old.repository,
                    payload=self.payload(delivery_id),
                    state=PENDING,
                    attempts=0,
                    next_attempt=now,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
        self._notify()
        return self.delivery(hook_id, new_id)

    def prune(self, before: float) -> int:
        """Forget delivered and failed rows last touched before ``before``; how many."""
        o = outbox_table.c
        done = sa.and_(o.state.in_((DELIVERED, FAILED)), o.updated_at < before)
        with self.db.begin() as conn:
            ids = sa.select(o.id).where(done)
            conn.execute(sa.delete(deliveries_table).where(deliveries_table.c.outbox_id.in_(ids)))
            return conn.execute(sa.delete(outbox_table).where(done)).rowcount

    def statistics(self) -> dict[str, int]:
        """How many outbox rows are in each state."""
        o = outbox_table.c
        query = sa.select(o.state, sa.func.count()).group_by(o.state)
        counts = dict.fromkeys(STATES, 0)
        with self.db.connect() as conn:
            counts.update({state: n for state, n in conn.execute(query)})
        return counts


class OutboxSink:
    """The server's :class:`~portside.registry.interfaces.EventSink`: ``publish``
    hands the event to one writer thread (so it never blocks the event loop, and rows
    keep the order of the events) which inserts the outbox rows."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portside-outbox")

    def publish(self, event: dict[str, Any]) -> None:
        try:
            self._writer.submit(self._write, event)
        except RuntimeError:
            log.warning("webhook event dropped after shutdown: %s", event.get("id"))

    def _write(self, event: dict[str, Any]) -> None:
        try:
            self.webhooks.enqueue(event)
        except Exception:
            log.exception("cannot queue webhook event %s", event.get("id"))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event published so far is in the outbox."""
        self._writer.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Write what was published, then stop."""
        self._writer.shutdown(wait=True)


def _owner_pid(owner: str, place: str) -> int | None:
    """The pid in a lease owner ``PLACE:PID:…`` when it is of ``place``."""
    head, sep, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return int(pid) if sep and head == place and is_number(pid) else None
