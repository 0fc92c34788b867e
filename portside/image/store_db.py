"""The image store's metadata: SQLite schema, migrations, and the rows as objects.

``<root>/images.db`` (WAL, foreign keys on) holds what Docker's image store keeps
beside the blobs: one row per image (its ID is its config digest, kept with the
config bytes so listing and inspecting never open a blob), its layers in order,
its tags and its RepoDigests. Tags and RepoDigests are stored as normalised
references (``docker.io/library/busybox:latest``, ``docker.io/library/busybox@sha256:…``)
and cascade away with their image. The schema version is a row of
``schema_version``; :func:`migrate` brings an older database up to date.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from portside.errors import FailedPrecondition, Internal, PortsideError
from portside.image.content_common import NoSpace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["SCHEMA_VERSION", "Image", "ImageDB", "Layer", "migrate"]

#: connections a forked child inherited: kept referenced, so never closed in the child
_INHERITED: list[sqlite3.Connection] = []

_V1 = """
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    config BLOB NOT NULL,
    created TEXT,
    created_unix REAL NOT NULL,
    size INTEGER NOT NULL,
    added REAL NOT NULL,
    last_tag_time REAL
);
CREATE INDEX images_manifest ON images (manifest_digest);
CREATE TABLE layers (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
) WITHOUT ROWID;
CREATE INDEX layers_chain ON layers (chain_id);
CREATE TABLE tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    created REAL NOT NULL
);
CREATE INDEX tags_image ON tags (image_id);
CREATE TABLE repo_digests (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    created REAL NOT NULL
);
CREATE INDEX repo_digests_image ON repo_digests (image_id);
"""


def _run_script(script: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


#: migration ``i`` takes the schema from version ``i`` to ``i + 1``
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_run_script(_V1)]
SCHEMA_VERSION = len(MIGRATIONS)


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target`` in one transaction; returns the version
    found. A database newer than this code is refused (FailedPrecondition)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _version(conn)
        if found > SCHEMA_VERSION:
            raise FailedPrecondition(
                f"{path} has schema version {found}, newer than this portside ({SCHEMA_VERSION})"
            )
        if found < target:
            if found == 0:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            for step in MIGRATIONS[found:target]:
                step(conn)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (?)", (target,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def db_error(exc: sqlite3.Error, what: str) -> PortsideError:
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return NoSpace(f"no space left on device {what}")
    return Internal(f"{str(exc).lower()} {what}")


class Layer:
    """One layer of an image: its diffID (uncompressed digest), chainID, and the
    compressed blob (digest, media type, size) in the content store."""

    __slots__ = ("chain_id", "diff_id", "digest", "media_type", "size")

    def __init__(self, diff_id: str, chain_id: str, digest: str, media_type: str, size: int):
        self.diff_id = diff_id
        self.chain_id = chain_id
        self.digest = digest
        self.media_type = media_type
        self.size = size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, str, str, int]:
        return (self.diff_id, self.chain_id, self.digest, self.media_type, self.size)

    def __repr__(self) -> str:
        return f"Layer(diff_id={self.diff_id!r}, digest={self.digest!r}, size={self.size})"


class Image:
    """A snapshot of one image's metadata, as read from the store.

    ``id`` is the config digest; ``tags`` and ``repo_digests`` are normalised
    references, sorted; ``config`` is the config blob's bytes."""

    __slots__ = (
        "added",
        "config",
        "created",
        "created_unix",
        "id",
        "last_tag_time",
        "layers",
        "manifest_digest",
        "media_type",
        "repo_digests",
        "size",
        "tags",
    )

    def __init__(
        self,
        *,
        id: str,
        manifest_digest: str,
        media_type: str,
        config: bytes,
        created: str | None,
        created_unix: float,
        size: int,
        added: float,
        last_tag_time: float | None,
        layers: list[Layer],
        tags: list[str],
        repo_digests: list[str],
    ) -> None:
        self.id = id
        self.manifest_digest = manifest_digest
        self.media_type = media_type
        self.config = config
        self.created = created
        self.created_unix = created_unix
        self.size = size
        self.added = added
        self.last_tag_time = last_tag_time
        self.layers = layers
        self.tags = tags
        self.repo_digests = repo_digests

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID, as Docker shows it."""
        return self.id.partition(":")[2][:12]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def chain_id(self) -> str | None:
        """The chainID of the top layer (the snapshot to mount), None without layers."""
        return self.layers[-1].chain_id if self.layers else None

    def __repr__(self) -> str:
        return f"Image({self.id!r}, tags={self.tags!r})"


_IMAGE_COLUMNS = (
    "id, manifest_digest, media_type, config, created, created_unix, size, added, last_tag_time"
)


class ImageDB:
    """The database file, migrated the first time this object opens it. Each thread
    keeps a connection open between operations (:meth:`cached`); a forked child opens
    its own, as a connection never crosses ``fork``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._migrated = False
        self._local = threading.local()

    def cached(self) -> tuple[sqlite3.Connection, bool]:
        """This thread's connection and True; a fresh one and False inside one of
        its transactions (the caller closes that one)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            if conn.in_transaction:
                return self.connect(), False
            return conn, True
        if conn is not None:
            _INHERITED.append(conn)  # the parent's: neither used nor closed here
            local.conn = None
        conn = self.connect()
        local.conn, local.pid = conn, os.getpid()
        return conn, True

    def release(self, conn: sqlite3.Connection, cached: bool, *, failed: bool = False) -> None:
        """Give back what :meth:`cached` gave; a failed or unfinished one is dropped."""
        if cached and not failed and not conn.in_transaction:
            return
        if cached and getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()

    def connect(self) -> sqlite3.Connection:
        """An autocommit connection with foreign keys on; callers use BEGIN/COMMIT."""
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA foreign_keys = ON")
                if not self._migrated:
                    conn.execute("PRAGMA journal_mode = WAL")
                    migrate(conn, self.path)
                    self._migrated = True
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise db_error(exc, f"opening {self.path}") from exc
        return conn

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        conn, cached = self.cached()
        failed = True
        try:
            rows = conn.execute(sql, args).fetchall()
            failed = False
            return rows
        except sqlite3.Error as exc:
            raise db_error(exc, f"reading {self.path}") from exc
        finally:
            self.release(conn, cached, failed=failed)

    def transaction(self, body: Callable[[sqlite3.Connection], object]) -> object:
        """Run ``body(conn)`` inside BEGIN IMMEDIATE … COMMIT (rolled back on error)."""
        conn, cached = self.cached()
        failed = True
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            failed = False
            return result
        except sqlite3.Error as exc:
            raise db_error(exc, f"writing {self.path}") from exc
        finally:
            self.release(conn, cached, failed=failed)

    # --- loading images -----------------------------------------------------------------

    def load(self, conn: sqlite3.Connection, ids: Iterable[str] | None = None) -> list[Image]:
        """The images ``ids`` (all of them when None), with layers, tags, RepoDigests."""
        if ids is None:
            rows = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images").fetchall()
            layer_rows = conn.execute("SELECT * FROM layers ORDER BY image_id, idx").fetchall()
            tag_rows = conn.execute("SELECT image_id, name FROM tags").fetchall()
            digest_rows = conn.execute("SELECT image_id, name FROM repo_digests").fetchall()
        else:
            wanted = list(ids)
            marks = ",".join("?" * len(wanted))
            rows = conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", wanted
            ).fetchall()
            layer_rows = conn.execute(
                f"SELECT * FROM layers WHERE image_id IN ({marks}) ORDER BY image_id, idx",
                wanted,
            ).fetchall()
            tag_rows = conn.execute(
                f"SELECT image_id, name FROM tags WHERE image_id IN ({marks})", wanted
            ).fetchall()
            digest_rows = conn.execute(
                f"SELECT image_id, name FROM repo_digests WHERE image_id IN ({marks})", wanted
            ).fetchall()
        layers: dict[str, list[Layer]] = {}
        for image_id, _idx, diff_id, chain_id, digest, media_type, size in layer_rows:
            layers.setdefault(image_id, []).append(
                Layer(diff_id, chain_id, digest, media_type, size)
            )
        tags: dict[str, list[str]] = {}
        for image_id, name in tag_rows:
            tags.setdefault(image_id, []).append(name)
        digests: dict[str, list[str]] = {}
        for image_id, name in digest_rows:
            digests.setdefault(image_id, []).append(name)
        return [
            Image(
                id=row[0],
                manifest_digest=row[1],
                media_type=row[2],
                config=bytes(row[3]),
                created=row[4],
                created_unix=row[5],
                size=row[6],
                added=row[7],
                last_tag_time=row[8],
                layers=layers.get(row[0], []),
                tags=sorted(tags.get(row[0], [])),
                repo_digests=sorted(digests.get(row[0], [])),
            )
            for row in rows
        ]


def db_path(root: str) -> str:
    return os.path.join(root, "images.db")
