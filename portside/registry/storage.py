"""The registry's content: one content-addressed blob store on the filesystem shared by
every repository, and the ``content_*`` tables saying what each repository holds.

Layout under ROOT::

    blobs/<alg>/<2 hex>/<hex>     every blob and every manifest's bytes, once
    uploads/<uuid>/data           an upload session's bytes so far
    uploads/tmp-*                 a manifest being written

A blob becomes visible in a repository only when its upload is complete and hashes to
the digest the client named: the bytes are fsync'd, renamed into ``blobs/`` (atomic,
the directory fsync'd) and only then linked to the repository in the database. A
crash at any point leaves nothing visible (at worst an unlinked file that garbage
collection removes). Uploads of the same blob at the same time each write their own
session file; the first rename wins and the others find the blob already there.

Tables (timestamps: UTC seconds since the epoch, as floats): ``content_repositories``
(name, created), ``content_blobs`` (digest, size, created, touched — when something
last used it: GC's grace period counts from there), ``content_repo_blobs`` (which
repository may read which blob), ``content_manifests`` (repository, digest, media
type, size, subject, artifact type, annotations, created; the bytes are the blob of
that digest), ``content_manifest_refs`` (what each manifest references: config,
layer, manifest, subject), ``content_tags``, ``content_uploads`` (uuid, repository,
started). An upload's offset is its data file's size, read under an exclusive
``flock`` of that file, so several registry processes sharing ROOT agree on it. Its
running sha256 is kept in memory by the process that received the last chunk and
recomputed from the file when another process (or a restart) continues the session.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import sqlalchemy as sa

from portside.oci.digest import Digest
from portside.registry import manifests as mf
from portside.registry.db import Database, metadata
from portside.registry.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
    RangeInvalid,
)
from portside.registry.names import check_digest, fallback_tag, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "TABLES",
    "ManifestRecord",
    "PutResult",
    "Storage",
    "UploadWriter",
    "blobs",
    "manifest_refs",
    "manifests",
    "repo_blobs",
    "repositories",
    "tags",
    "uploads",
]

_NAME = sa.String(255)
_DIGEST = sa.String(200)

repositories = sa.Table(
    "content_repositories",
    metadata,
    sa.Column("name", _NAME, primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
)
blobs = sa.Table(
    "content_blobs",
    metadata,
    sa.Column("digest", _DIGEST, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("touched", sa.Float, nullable=False),
)
repo_blobs = sa.Table(
    "content_repo_blobs",
    metadata,
    sa.Column("repository", _NAME, primary_key=True),
    sa.Column("digest", _DIGEST, primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("content_repo_blobs_digest", "digest"),
)
manifests = sa.Table(
    "content_manifests",
    metadata,
    sa.Column("repository", _NAME, primary_key=True),
    sa.Column("digest", _DIGEST, primary_key=True),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("subject", _DIGEST, nullable=True),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("annotations", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("content_manifests_subject", "repository", "subject"),
)
manifest_refs = sa.Table(
    "content_manifest_refs",
    metadata,
    sa.Column("repository", _NAME, primary_key=True),
    sa.Column("digest", _DIGEST, primary_key=True),
    sa.Column("target", _DIGEST, primary_key=True),
    #: "blob" (config, layer), "manifest" (an index's child), "subject"
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Index("content_manifest_refs_target", "target"),
)
tags = sa.Table(
    "content_tags",
    metadata,
    sa.Column("repository", _NAME, primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("digest", _DIGEST, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Index("content_tags_digest", "repository", "digest"),
)
uploads = sa.Table(
    "content_uploads",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("repository", _NAME, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
)
TABLES = [repositories, blobs, repo_blobs, manifests, manifest_refs, tags, uploads]

_READ = 1 << 20


def insert(conn: sa.Connection, table: sa.Table) -> sa.Insert:
    """An INSERT of the connection's dialect (for ``on_conflict_do_*``)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)  # type: ignore[return-value]
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)  # type: ignore[return-value]


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    if rows:
        conn.execute(insert(conn, table).on_conflict_do_nothing(), rows)  # type: ignore[attr-defined]


def bytewise(conn: sa.Connection, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` compared and sorted byte by byte (PostgreSQL's default collation
    follows the locale; SQLite's is already binary)."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ManifestRecord:
    repository: str
    digest: str
    media_type: str
    size: int
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    created: float = 0.0

    def descriptor(self) -> dict[str, object]:
        """This manifest as an OCI descriptor (for the referrers API)."""
        desc: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


@dataclass(frozen=True)
class PutResult:
    digest: str
    size: int
    media_type: str
    subject: str | None
    tag: str | None
    #: what the tag named before ("" when it is new; equal to ``digest`` when unchanged)
    previous: str | None = None


def _record(row: sa.Row[object]) -> ManifestRecord:
    m = row._mapping
    return ManifestRecord(
        repository=m["repository"],
        digest=m["digest"],
        media_type=m["media_type"],
        size=int(m["size"]),
        subject=m["subject"],
        artifact_type=m["artifact_type"],
        annotations=json.loads(m["annotations"]) if m["annotations"] else {},
        created=float(m["created"]),
    )


class UploadWriter:
    """Appends to an upload session under its exclusive lock: ``write`` (hashes as it
    writes), then ``commit`` or ``abort`` (back to where it started), or ``finish``
    (verify and store the blob). Blocking: call it from a thread."""

    def __init__(self, storage: Storage, repository: str, uuid: str, fd: int, hasher: object):
        self.storage = storage
        self.repository = repository
        self.uuid = uuid
        self.fd = fd
        self.hasher = hasher
        self.start = os.fstat(fd).st_size
        self.size = self.start
        os.lseek(fd, 0, os.SEEK_END)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.hasher.update(data)  # type: ignore[attr-defined]
        self.size += len(data)

    def commit(self) -> int:
        """Keep what was written; the new offset."""
        self.storage._remember(self.uuid, self.size, self.hasher)
        self.close()
        return self.size

    def abort(self) -> None:
        """Drop what this writer wrote (the session stays where it was)."""
        if self.fd >= 0:
            os.ftruncate(self.fd, self.start)
            self.storage._forget(self.uuid)
            self.close()

    def finish(self, digest: str) -> int:
        """Verify the whole upload against ``digest`` and store it as a blob linked to
        the repository; the session ends either way. Returns the blob's size;
        :class:`DigestInvalid` on a mismatch (nothing stored)."""
        try:
            want = check_digest(digest)
            hasher = self.hasher
            if want.algorithm != "sha256":
                hasher = self.storage._rehash(self.fd, self.size, want.algorithm)
            got = f"{want.algorithm}:{hasher.hexdigest()}"  # type: ignore[attr-defined]
            if got != want:
                raise DigestInvalid(
                    f"digest mismatch: the upload is {got}, not {want}",
                    {"expected": str(want), "got": got, "size": self.size},
                )
            os.fsync(self.fd)
            self.storage._place(self.storage._data_path(self.uuid), want, self.size)
            self.storage.link_blob(self.repository, want)
            return self.size
        finally:
            self.close()
            self.storage._end_upload(self.uuid)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock
            self.fd = -1


class Storage:
    """The blob store in ``root`` and the ``content_*`` tables in ``db``. Every method
    blocks (filesystem, SQL): the server calls them in threads."""

    def __init__(self, root: str, db: Database, *, touch_after: float = 600.0) -> None:
        self.root = os.path.abspath(root)
        self.db = db
        #: a blob read this long after it was last touched is touched again (GC grace)
        self.touch_after = touch_after
        self.blob_dir = os.path.join(self.root, "blobs")
        self.upload_dir = os.path.join(self.root, "uploads")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.upload_dir, exist_ok=True)
        db.create(TABLES)
        self._hashes: dict[str, tuple[int, object]] = {}
        self._lock = threading.Lock()

    # --- paths ------------------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return os.path.join(self.blob_dir, algorithm, encoded[:2], encoded)

    def _data_path(self, uuid: str) -> str:
        return os.path.join(self.upload_dir, uuid, "data")

    # --- repositories -----------------------------------------------------------------

    def repository_exists(self, name: str) -> bool:
        with self.db.connect() as conn:
            q = sa.select(repositories.c.name).where(repositories.c.name == name)
            return conn.execute(q).first() is not None

    def _ensure_repository(self, conn: sa.Connection, name: str) -> None:
        insert_ignore(conn, repositories, [{"name": name, "created": time.time()}])

    def repositories(self, last: str = "", limit: int = 1000) -> list[str]:
        """Repository names after ``last`` in byte order, at most ``limit``."""
        with self.db.connect() as conn:
            col = bytewise(conn, repositories.c.name)
            q = sa.select(repositories.c.name).order_by(col).limit(limit)
            if last:
                q = q.where(col > last)
            return [r[0] for r in conn.execute(q)]

    # --- blobs ------------------------------------------------------------------------

    def stat_blob(self, repository: str, digest: str) -> int:
        """The size of a blob ``repository`` may read (a blob or one of its
        manifests), else :class:`BlobUnknown`. Refreshes the blob's GC clock when it
        is getting old, so a push that found it can still reference it."""
        now = time.time()
        with self.db.connect() as conn:
            q = (
                sa.select(blobs.c.size, blobs.c.touched)
                .select_from(repo_blobs.join(blobs, blobs.c.digest == repo_blobs.c.digest))
                .where(repo_blobs.c.repository == repository, repo_blobs.c.digest == digest)
            )
            row = conn.execute(q).first()
            if row is None:
                q = sa.select(manifests.c.size, sa.literal(now)).where(
                    manifests.c.repository == repository, manifests.c.digest == digest
                )
                row = conn.execute(q).first()
            if row is None:
                raise BlobUnknown(f"blob unknown to registry: {digest}", {"digest": digest})
            if row[1] < now - self.touch_after:
                conn.execute(blobs.update().where(blobs.c.digest == digest).values(touched=now))
                conn.commit()
        if not os.path.exists(self.blob_path(digest)):
            raise BlobUnknown(f"blob unknown to registry: {digest}", {"digest": digest})
        return int(row[0])

    def link_blob(self, repository: str, digest: str) -> None:
        """Let ``repository`` read a stored blob (refreshing its GC clock)."""
        now = time.time()
        with self.db.begin() as conn:
            done = conn.execute(blobs.update().where(blobs.c.digest == digest).values(touched=now))
            if done.rowcount != 1:
                raise BlobUnknown(f"blob unknown to registry: {digest}", {"digest": digest})
            self._ensure_repository(conn, repository)
            insert_ignore(
                conn, repo_blobs, [{"repository": repository, "digest": digest, "created": now}]
            )

    def mount_blob(self, repository: str, digest: str, source: str) -> int | None:
        """Link a blob ``source`` holds into ``repository``: its size, or None when
        ``source`` does not hold it."""
        with self.db.connect() as conn:
            q = (
                sa.select(blobs.c.size)
                .select_from(repo_blobs.join(blobs, blobs.c.digest == repo_blobs.c.digest))
                .where(repo_blobs.c.repository == source, repo_blobs.c.digest == digest)
            )
            row = conn.execute(q).first()
        if row is None or not os.path.exists(self.blob_path(digest)):
            return None
        try:
            self.link_blob(repository, digest)
        except BlobUnknown:
            return None
        return int(row[0])

    def delete_blob(self, repository: str, digest: str) -> None:
        """Unlink a blob from ``repository`` (its bytes go at garbage collection)."""
        with self.db.begin() as conn:
            done = conn.execute(
                repo_blobs.delete().where(
                    repo_blobs.c.repository == repository, repo_blobs.c.digest == digest
                )
            )
        if done.rowcount == 0:
            raise BlobUnknown(f"blob unknown to registry: {digest}", {"digest": digest})

    def _place(self, src: str, digest: str, size: int) -> None:
        """Move a verified, fsync'd file into the blob store. The row comes first:
        garbage collection never removes a blob touched this recently, and puts back
        a file it moved away when it finds the row touched after it looked."""
        now = time.time()
        with self.db.begin() as conn:
            stmt = insert(conn, blobs).values(digest=digest, size=size, created=now, touched=now)
            conn.execute(
                stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=["digest"], set_={"touched": now}
                )
            )
        target = self.blob_path(digest)
        try:
            if os.path.getsize(target) == size:
                os.unlink(src)
                return
        except FileNotFoundError:
            pass
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        os.replace(src, target)
        fsync_dir(directory)

    def write_blob(self, data: bytes, digest: str) -> None:
        """Store small verified content (a manifest's bytes)."""
        fd, tmp = _mkstemp(self.upload_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._place(tmp, digest, len(data))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # --- uploads ----------------------------------------------------------------------

    def start_upload(self, repository: str) -> str:
        """A new upload session: its uuid."""
        uuid = str(uuidlib.uuid4())
        os.makedirs(os.path.join(self.upload_dir, uuid))
        with open(self._data_path(uuid), "xb"):
            pass
        with self.db.begin() as conn:
            conn.execute(
                uploads.insert().values(uuid=uuid, repository=repository, started=time.time())
            )
        return uuid

    def _check_upload(self, repository: str, uuid: str) -> None:
        try:
            uuidlib.UUID(uuid)
        except ValueError:
            raise BlobUploadUnknown(f"blob upload unknown: {uuid[:64]!r}") from None
        with self.db.connect() as conn:
            q = sa.select(uploads.c.uuid).where(
                uploads.c.uuid == uuid, uploads.c.repository == repository
            )
            if conn.execute(q).first() is None:
                raise BlobUploadUnknown(f"blob upload unknown: {uuid}", {"uuid": uuid})

    def upload_offset(self, repository: str, uuid: str) -> int:
        """How many bytes an upload session holds."""
        self._check_upload(repository, uuid)
        try:
            return os.path.getsize(self._data_path(uuid))
        except FileNotFoundError:
            raise BlobUploadUnknown(f"blob upload unknown: {uuid}", {"uuid": uuid}) from None

    def open_writer(self, repository: str, uuid: str, start: int | None = None) -> UploadWriter:
        """Lock an upload session to append to it; ``start``, when given, must be its
        offset (else :class:`RangeInvalid`, as for a chunk sent out of order or while
        another request writes to it)."""
        self._check_upload(repository, uuid)
        try:
            fd = os.open(self._data_path(uuid), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobUploadUnknown(f"blob upload unknown: {uuid}", {"uuid": uuid}) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RangeInvalid(
                    f"upload {uuid} is being written by another request", os.fstat(fd).st_size
                ) from None
            size = os.fstat(fd).st_size
            if start is not None and start != size:
                raise RangeInvalid(
                    f"chunk starts at {start} but upload {uuid} holds {size} bytes", size
                )
            return UploadWriter(self, repository, uuid, fd, self._hasher(uuid, fd, size))
        except BaseException:
            os.close(fd)
            raise

    def _hasher(self, uuid: str, fd: int, size: int) -> object:
        with self._lock:
            kept = self._hashes.pop(uuid, None)
        if kept is not None and kept[0] == size:
            return kept[1]
        return self._rehash(fd, size, "sha256")

    def _rehash(self, fd: int, size: int, algorithm: str) -> object:
        import hashlib

        hasher = hashlib.new(algorithm)
        pos = 0
        while pos < size:
            chunk = os.pread(fd, min(_READ * 4, size - pos), pos)
            if not chunk:
                break
            hasher.update(chunk)
            pos += len(chunk)
        return hasher

    def _remember(self, uuid: str, size: int, hasher: object) -> None:
        with self._lock:
            self._hashes[uuid] = (size, hasher)

    def _forget(self, uuid: str) -> None:
        with self._lock:
            self._hashes.pop(uuid, None)

    def _end_upload(self, uuid: str) -> None:
        self._forget(uuid)
        with self.db.begin() as conn:
            conn.execute(uploads.delete().where(uploads.c.uuid == uuid))
        shutil.rmtree(os.path.join(self.upload_dir, uuid), ignore_errors=True)

    def cancel_upload(self, repository: str, uuid: str) -> None:
        self._check_upload(repository, uuid)
        self._end_upload(uuid)

    # --- manifests --------------------------------------------------------------------

    def put_manifest(
        self, repository: str, reference: str, data: bytes, content_type: str = ""
    ) -> PutResult:
        """Store a manifest (byte-exact) under a tag or its digest, once its structure,
        digest and references check out."""
        tag, want = parse_reference(reference)
        parsed = mf.parse(data, content_type)
        digest = Digest.of(data, want.algorithm if want else "sha256")
        if want is not None and digest != want:
            raise DigestInvalid(
                f"manifest digest mismatch: the body is {digest}, not {want}",
                {"expected": str(want), "got": str(digest)},
            )
        with self.db.connect() as conn:
            self._check_references(conn, repository, parsed)
        self.write_blob(data, digest)
        now = time.time()
        with self.db.begin() as conn:
            self._check_references(conn, repository, parsed, touch=now)
            self._ensure_repository(conn, repository)
            insert_ignore(conn, manifests, [_manifest_row(repository, digest, data, parsed, now)])
            insert_ignore(conn, manifest_refs, _ref_rows(repository, digest, parsed))
            previous = self._set_tag(conn, repository, tag, digest, now) if tag else None
        return PutResult(digest, len(data), parsed.media_type, parsed.subject, tag, previous)

    def _check_references(
        self, conn: sa.Connection, repository: str, parsed: mf.ParsedManifest, touch: float = 0
    ) -> None:
        """:class:`ManifestBlobUnknown` unless the blobs and manifests ``parsed``
        references are in ``repository``. With ``touch`` (in the storing transaction)
        their GC clocks are reset *first*: a collection running at the same time either
        sees them fresh and keeps them, or has removed them before this check looks."""
        wanted = [*parsed.blobs, *parsed.manifests]
        if touch and wanted:
            conn.execute(blobs.update().where(blobs.c.digest.in_(wanted)).values(touched=touch))
        missing: list[str] = []
        if parsed.blobs:
            q = sa.select(repo_blobs.c.digest).where(
                repo_blobs.c.repository == repository, repo_blobs.c.digest.in_(parsed.blobs)
            )
            have = {r[0] for r in conn.execute(q)}
            missing += [d for d in parsed.blobs if d not in have]
        if parsed.manifests:
            q = sa.select(manifests.c.digest).where(
                manifests.c.repository == repository, manifests.c.digest.in_(parsed.manifests)
            )
            have = {r[0] for r in conn.execute(q)}
            missing += [d for d in parsed.manifests if d not in have]
        if missing:
            raise ManifestBlobUnknown(
                f"manifest references unknown content: {', '.join(missing[:5])}",
                {"digests": missing[:100]},
            )

    def _set_tag(
        self, conn: sa.Connection, repository: str, tag: str, digest: str, now: float
    ) -> str:
        q = sa.select(tags.c.digest).where(tags.c.repository == repository, tags.c.name == tag)
        row = conn.execute(q).first()
        stmt = insert(conn, tags).values(
            repository=repository, name=tag, digest=digest, updated=now
        )
        conn.execute(
            stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["repository", "name"], set_={"digest": digest, "updated": now}
            )
        )
        return row[0] if row else ""

    def manifest(self, repository: str, reference: str) -> ManifestRecord:
        """The manifest a tag or digest names in ``repository``."""
        tag, digest = parse_reference(reference)
        with self.db.connect() as conn:
            q = sa.select(manifests)
            if tag is not None:
                q = q.select_from(
                    tags.join(
                        manifests,
                        (manifests.c.repository == tags.c.repository)
                        & (manifests.c.digest == tags.c.digest),
                    )
                ).where(tags.c.repository == repository, tags.c.name == tag)
            else:
                q = q.where(manifests.c.repository == repository, manifests.c.digest == digest)
            row = conn.execute(q).first()
        if row is None:
            if not self.repository_exists(repository):
                raise NameUnknown(f"repository name not known to registry: {repository}")
            raise ManifestUnknown(f"manifest unknown: {repository}:{reference}")
        return _record(row)

    def read_manifest(self, record: ManifestRecord) -> bytes:
        try:
            with open(self.blob_path(record.digest), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ManifestUnknown(f"manifest unknown: {record.digest}") from None

    def delete_manifest(self, repository: str, reference: str) -> tuple[ManifestRecord, list[str]]:
        """Delete a tag (the manifest stays) or a manifest with every tag naming it:
        the manifest and the tags that went."""
        tag, _ = parse_reference(reference)
        record = self.manifest(repository, reference)
        with self.db.begin() as conn:
            if tag is not None:
                conn.execute(
                    tags.delete().where(tags.c.repository == repository, tags.c.name == tag)
                )
                return record, [tag]
            where = (tags.c.repository == repository) & (tags.c.digest == record.digest)
            gone = [r[0] for r in conn.execute(sa.select(tags.c.name).where(where))]
            conn.execute(tags.delete().where(where))
            self.drop_manifest(conn, repository, record.digest)
        return record, gone

    @staticmethod
    def drop_manifest(conn: sa.Connection, repository: str, digest: str) -> None:
        conn.execute(
            manifest_refs.delete().where(
                manifest_refs.c.repository == repository, manifest_refs.c.digest == digest
            )
        )
        conn.execute(
            manifests.delete().where(
                manifests.c.repository == repository, manifests.c.digest == digest
            )
        )

    # --- listing ----------------------------------------------------------------------

    def tags(self, repository: str, last: str = "", limit: int = 1000) -> list[str]:
        """Tags after ``last`` in byte order, at most ``limit``; :class:`NameUnknown`
        for a repository that does not exist."""
        with self.db.connect() as conn:
            col = bytewise(conn, tags.c.name)
            q = sa.select(tags.c.name).where(tags.c.repository == repository)
            q = q.order_by(col).limit(limit)
            if last:
                q = q.where(col > last)
            names = [r[0] for r in conn.execute(q)]
        if not names and not self.repository_exists(repository):
            raise NameUnknown(f"repository name not known to registry: {repository}")
        return names

    def referrers(
        self, repository: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, object]]:
        """Descriptors of the manifests whose subject is ``digest``, and of those listed
        by the tag schema's fallback index (``sha256-<hex>``), filtered by artifact type."""
        with self.db.connect() as conn:
            q = sa.select(manifests).where(
                manifests.c.repository == repository, manifests.c.subject == digest
            )
            q = q.order_by(manifests.c.created, manifests.c.digest)
            found = [_record(r).descriptor() for r in conn.execute(q)]
        found += self._fallback_referrers(repository, digest)
        seen: set[object] = set()
        out = []
        for desc in found:
            if desc["digest"] in seen:
                continue
            seen.add(desc["digest"])
            if artifact_type is None or desc.get("artifactType") == artifact_type:
                out.append(desc)
        return out

    def _fallback_referrers(self, repository: str, digest: str) -> list[dict[str, object]]:
        try:
            record = self.manifest(repository, fallback_tag(digest))
            doc = json.loads(self.read_manifest(record))
        except (NameUnknown, ManifestUnknown, ValueError):
            return []
        items = doc.get("manifests") if isinstance(doc, dict) else None
        return [d for d in items or [] if isinstance(d, dict) and isinstance(d.get("digest"), str)]

    def close(self) -> None:
        self.db.close()


def _manifest_row(
    repository: str, digest: str, data: bytes, parsed: mf.ParsedManifest, now: float
) -> dict[str, object]:
    return {
        "repository": repository,
        "digest": digest,
        "media_type": parsed.media_type,
        "size": len(data),
        "subject": parsed.subject,
        "artifact_type": parsed.artifact_type,
        "annotations": json.dumps(parsed.annotations) if parsed.annotations else None,
        "created": now,
    }


def _ref_rows(repository: str, digest: str, parsed: mf.ParsedManifest) -> list[dict[str, object]]:
    refs: Iterable[tuple[str, str]] = [
        *((d, "blob") for d in parsed.blobs),
        *((d, "manifest") for d in parsed.manifests),
        *([(parsed.subject, "subject")] if parsed.subject else []),
    ]
    return [{"repository": repository, "digest": digest, "target": t, "kind": k} for t, k in refs]


def _mkstemp(directory: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix="tmp-", dir=directory)
