"""Build triggers: a POST with a trigger's token and a tar build context queues a
build of the repository's image.

A trigger belongs to one repository and names the tag to push, a template where
``{build}`` is the build request's id, ``{date}`` the UTC date (YYYYMMDD) and
``{timestamp}`` the UTC seconds. Its token is shown once, at creation, and stored as
its SHA-256 (tokens are 256 random bits, so a fast hash is enough). The context is
streamed to disk under a size limit, checked to be a tar (plain or compressed — not
extracted), and moved to ``ROOT/triggers/<build id>/context.tar``; a build request row
(queued → running → succeeded | failed) is then visible to :class:`BuildWorker`.

The build itself is behind :class:`Builder`. The image builder is a later issue: until
it exists, :class:`NotYetBuilder` fails every request with "the image builder is not
available yet". A builder receives the directory holding ``context.tar``, the
repository and the tag, and returns the digest of the manifest it pushed; its
:class:`~portside.errors.PortsideError` messages become the request's message.

Tables: ``trigger_triggers``, ``trigger_builds``. Timestamps are UTC seconds since the
epoch, stored as floats.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from portside.errors import InvalidArgument, NotFound, PermissionDenied, PortsideError, Unavailable
from portside.registry.db import metadata
from portside.registry.names import check_name, check_tag

if TYPE_CHECKING:
    from collections.abc import Callable

    from portside.registry.db import Database

__all__ = [
    "BUILDER_MISSING",
    "BuildRequest",
    "BuildWorker",
    "Builder",
    "ContextTooLarge",
    "ContextUpload",
    "NotYetBuilder",
    "Trigger",
    "Triggers",
]

log = logging.getLogger("portside.registry.triggers")

QUEUED, RUNNING, FAILED, SUCCEEDED = "queued", "running", "failed", "succeeded"
STATUSES = (QUEUED, RUNNING, FAILED, SUCCEEDED)
BUILDER_MISSING = "the image builder is not available yet"
#: the default limit of a build context, in bytes
MAX_CONTEXT = 512 * 1024 * 1024
CONTEXT_NAME = "context.tar"

_PLACEHOLDER_RE = re.compile(r"\{(\w*)\}")
_PLACEHOLDERS = ("build", "date", "timestamp")
_INCOMING = "incoming"
_STALE_INCOMING = 3600.0

triggers_table = sa.Table(
    "trigger_triggers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("repository", sa.String(255), nullable=False, index=True),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

builds_table = sa.Table(
    "trigger_builds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "trigger_id",
        sa.Integer,
        sa.ForeignKey("trigger_triggers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("context_path", sa.Text, nullable=False),
    sa.Column("context_size", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("digest", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("trigger_builds_by_status", "status", "id"),
    sa.Index("trigger_builds_by_trigger", "trigger_id", "id"),
    sqlite_autoincrement=True,
)

TABLES = (triggers_table, builds_table)


class ContextTooLarge(InvalidArgument):
    """The build context is over the limit (HTTP 413)."""


class Builder(Protocol):
    """Builds the image of a context and pushes it; the issue of the image builder
    provides the real one."""

    def build(self, context_dir: str, repository: str, tag: str) -> str:
        """Build ``context_dir/context.tar`` (a tar, maybe gzip-, bzip2- or
        xz-compressed, holding a Dockerfile) and push it as ``repository:tag``; the
        digest of the pushed manifest."""
        ...


class NotYetBuilder:
    """The builder until the builder issue lands: every request fails."""

    def build(self, context_dir: str, repository: str, tag: str) -> str:
        raise Unavailable(BUILDER_MISSING)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def render_tag(template: str, build_id: int, now: float) -> str:
    """The tag ``template`` names for build ``build_id`` at ``now``."""
    values = {
        "build": str(build_id),
        "date": time.strftime("%Y%m%d", time.gmtime(now)),
        "timestamp": str(int(now)),
    }

    def sub(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise InvalidArgument(
                f"invalid tag template {template!r}: unknown {match.group(0)}, "
                f"want {', '.join('{' + p + '}' for p in _PLACEHOLDERS)}"
            )
        return values[match.group(1)]

    tag = _PLACEHOLDER_RE.sub(sub, template)
    try:
        return check_tag(tag)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid tag template {template!r}: gives the tag {tag!r}") from exc


@dataclass(frozen=True)
class Trigger:
    id: int
    repository: str
    tag: str
    created_by: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repository": self.repository,
            "tag": self.tag,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class BuildRequest:
    id: int
    trigger_id: int
    repository: str
    tag: str
    context_path: str
    context_size: int
    status: str
    message: str
    digest: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger_id,
            "repository": self.repository,
            "tag": self.tag,
            "context_size": self.context_size,
            "status": self.status,
            "message": self.message,
            "digest": self.digest,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _trigger(row: Any) -> Trigger:
    return Trigger(row.id, row.repository, row.tag, row.created_by, row.created_at)


def _build(row: Any) -> BuildRequest:
    return BuildRequest(**{c.name: row._mapping[c.name] for c in builds_table.columns})


class ContextUpload:
    """A build context being received: :meth:`write` chunks (over the limit:
    :class:`ContextTooLarge`), then :meth:`Triggers.submit` it or :meth:`discard` it."""

    def __init__(self, directory: str, limit: int) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, secrets.token_hex(16) + ".part")
        self.limit = limit
        self.size = 0
        self._file = open(self.path, "xb")  # noqa: SIM115 - closed by close/discard

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.discard()
            raise ContextTooLarge(f"build context over the limit of {self.limit} bytes")
        self._file.write(chunk)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _check_tar(path: str) -> None:
    import tarfile

    try:
        with tarfile.open(path, "r:*") as tar:
            first = tar.next()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise InvalidArgument(f"the build context is not a tar archive: {exc}") from exc
    if first is None:
        raise InvalidArgument("the build context is an empty tar archive")


class Triggers:
    """Triggers and build requests in the registry's database; contexts under
    ``ROOT/triggers``."""

    def __init__(self, db: Database, root: str, *, max_context: int = MAX_CONTEXT) -> None:
        self.db = db
        self.directory = os.path.join(os.path.abspath(root), "triggers")
        self.max_context = max_context
        self._listeners: list[Callable[[], None]] = []
        db.create(TABLES)
        os.makedirs(os.path.join(self.directory, _INCOMING), exist_ok=True)
        self._sweep_incoming()

    def _sweep_incoming(self) -> None:
        """Remove uploads abandoned by a crash (old enough that no process still
        writes them: several processes may share the root)."""
        incoming = os.path.join(self.directory, _INCOMING)
        for name in os.listdir(incoming):
            path = os.path.join(incoming, name)
            try:
                if os.stat(path).st_mtime < time.time() - _STALE_INCOMING:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- triggers --------------------------------------------------------------------

    def create(
        self, repository: str, *, tag: str = "latest", created_by: str = ""
    ) -> tuple[Trigger, str]:
        """A new trigger and its token (shown once; only its hash is kept)."""
        check_name(repository)
        render_tag(tag, 1, time.time())
        token = secrets.token_urlsafe(32)
        values = {
            "repository": repository,
            "tag": tag,
            "token_sha256": _hash(token),
            "created_by": created_by,
            "created_at": time.time(),
        }
        with self.db.begin() as conn:
            trigger_id = conn.execute(
                sa.insert(triggers_table).values(**values)
            ).inserted_primary_key[0]
        return self.get(trigger_id), token

    def get(self, trigger_id: int) -> Trigger:
        query = sa.select(triggers_table).where(triggers_table.c.id == trigger_id)
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"trigger {trigger_id} not found")
        return _trigger(row)

    def triggers(self, repository: str | None = None) -> list[Trigger]:
        query = sa.select(triggers_table).order_by(triggers_table.c.id)
        if repository is not None:
            query = query.where(triggers_table.c.repository == repository)
        with self.db.connect() as conn:
            return [_trigger(row) for row in conn.execute(query)]

    def delete(self, trigger_id: int) -> None:
        """Remove a trigger, its build requests and their contexts."""
        b = builds_table.c
        with self.db.begin() as conn:
            ids = [
                row.id for row in conn.execute(sa.select(b.id).where(b.trigger_id == trigger_id))
            ]
            conn.execute(sa.delete(builds_table).where(b.trigger_id == trigger_id))
            result = conn.execute(
                sa.delete(triggers_table).where(triggers_table.c.id == trigger_id)
            )
        if result.rowcount == 0:
            raise NotFound(f"trigger {trigger_id} not found")
        for build_id in ids:
            shutil.rmtree(self.context_dir(build_id), ignore_errors=True)

    def authenticate(self, trigger_id: int, token: str) -> Trigger:
        """The trigger if ``token`` is its token; otherwise :class:`PermissionDenied`,
        the same for an unknown trigger (nothing tells the two apart)."""
        query = sa.select(triggers_table).where(triggers_table.c.id == trigger_id)
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        expected = row.token_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(_hash(token or ""), expected) or row is None:
            raise PermissionDenied(f"invalid token for trigger {trigger_id}")
        return _trigger(row)

    # -- build requests --------------------------------------------------------------

    def context_dir(self, build_id: int) -> str:
        return os.path.join(self.directory, str(build_id))

    def upload(self) -> ContextUpload:
        """Somewhere to receive a context, under the size limit."""
        return ContextUpload(os.path.join(self.directory, _INCOMING), self.max_context)

    def submit(self, trigger_id: int, upload: ContextUpload) -> BuildRequest:
        """Queue a build of the received context (moved to
        ``ROOT/triggers/<id>/context.tar``); the upload is consumed either way."""
        build_id = None
        try:
            upload.close()
            _check_tar(upload.path)
            trigger = self.get(trigger_id)
            now = time.time()
            with self.db.begin() as conn:
                build_id = conn.execute(
                    sa.insert(builds_table).values(
                        trigger_id=trigger.id,
                        repository=trigger.repository,
                        tag="",
                        context_path="",
                        context_size=upload.size,
                        status=QUEUED,
                        message="",
                        created_at=now,
                    )
                ).inserted_primary_key[0]
                directory = self.context_dir(build_id)
                path = os.path.join(directory, CONTEXT_NAME)
                conn.execute(
                    sa.update(builds_table)
                    .where(builds_table.c.id == build_id)
                    .values(tag=render_tag(trigger.tag, build_id, now), context_path=path)
                )
                os.makedirs(directory, exist_ok=True)
                os.replace(upload.path, path)
        except BaseException:
            if build_id is not None:  # never reused (AUTOINCREMENT, sequences)
                shutil.rmtree(self.context_dir(build_id), ignore_errors=True)
            raise
        finally:
            upload.discard()
        for callback in list(self._listeners):
            callback()
        return self.build(trigger_id, build_id)

    def build(self, trigger_id: int, build_id: int) -> BuildRequest:
        b = builds_table.c
        query = sa.select(builds_table).where(b.id == build_id, b.trigger_id == trigger_id)
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"build {build_id} of trigger {trigger_id} not found")
        return _build(row)

    def builds(self, trigger_id: int, *, limit: int = 50) -> list[BuildRequest]:
        """A trigger's build requests, newest first."""
        b = builds_table.c
        query = (
            sa.select(builds_table)
            .where(b.trigger_id == trigger_id)
            .order_by(b.id.desc())
            .limit(max(1, min(limit, 1000)))
        )
        with self.db.connect() as conn:
            return [_build(row) for row in conn.execute(query)]

    def claim(self) -> BuildRequest | None:
        """Move the oldest queued request to running (one process wins it); None
        when nothing is queued."""
        b = builds_table.c
        with self.db.begin() as conn:
            ids = conn.execute(
                sa.select(b.id).where(b.status == QUEUED).order_by(b.id).limit(8)
            ).scalars()
            for build_id in list(ids):
                won = conn.execute(
                    sa.update(builds_table)
                    .where(b.id == build_id, b.status == QUEUED)
                    .values(status=RUNNING, started_at=time.time())
                ).rowcount
                if won == 1:
                    row = conn.execute(sa.select(builds_table).where(b.id == build_id)).first()
                    return _build(row)
        return None

    def finish(self, build_id: int, *, digest: str | None, message: str) -> None:
        """Settle a running request (succeeded with ``digest``, else failed) and drop
        its context."""
        b = builds_table.c
        with self.db.begin() as conn:
            conn.execute(
                sa.update(builds_table)
                .where(b.id == build_id, b.status == RUNNING)
                .values(
                    status=SUCCEEDED if digest else FAILED,
                    digest=digest,
                    message=message,
                    finished_at=time.time(),
                )
            )
        shutil.rmtree(self.context_dir(build_id), ignore_errors=True)


class BuildWorker:
    """A thread running queued build requests through ``builder``, one at a time.
    Starts at once unless ``start=False`` (then :meth:`run_once` drives it)."""

    def __init__(
        self,
        triggers: Triggers,
        builder: Builder | None = None,
        *,
        poll: float = 2.0,
        start: bool = True,
    ) -> None:
        self.triggers = triggers
        self.builder: Builder = builder if builder is not None else NotYetBuilder()
        self.poll = poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        triggers.add_listener(self._wake.set)
        if start:
            self.start()

    def start(self) -> BuildWorker:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="portside-build-triggers", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop after the build in progress (if any)."""
        self._stop.set()
        self._wake.set()
        self.triggers.remove_listener(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("build trigger worker failed")
                worked = False
            if not worked and not self._stop.is_set():
                self._wake.wait(self.poll)
                self._wake.clear()

    def run_once(self) -> bool:
        """Run one queued request; False when none was queued."""
        request = self.triggers.claim()
        if request is None:
            return False
        directory = os.path.dirname(request.context_path)
        digest: str | None = None
        try:
            digest = self.builder.build(directory, request.repository, request.tag)
            if not isinstance(digest, str) or ":" not in digest:
                raise InvalidArgument(f"the builder returned an invalid digest {digest!r}")
            message = f"pushed {request.repository}:{request.tag}"
        except PortsideError as exc:
            digest, message = None, str(exc)
        except Exception as exc:
            log.exception("build %d of %s failed", request.id, request.repository)
            digest, message = None, f"internal error: {type(exc).__name__}: {exc}"
        self.triggers.finish(request.id, digest=digest, message=message[:2000])
        return True
