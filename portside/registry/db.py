"""The registry's metadata store: SQLAlchemy Core over SQLite (the default, one file
under the root, WAL) or PostgreSQL (``postgresql://…``, several registry processes
sharing it). Every module declares its tables on :data:`metadata`; :meth:`Database.create`
creates the ones a store needs. Only portable SQL: the same statements run on both."""

from __future__ import annotations

import os

import sqlalchemy as sa

from portside.errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["Database", "metadata", "sqlite_url"]

#: every table of the registry, whichever module declares it
metadata = sa.MetaData()


def sqlite_url(root: str) -> str:
    """The default store: ``ROOT/registry.db``."""
    return "sqlite:///" + os.path.join(os.path.abspath(root), "registry.db")


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    """One connection pool to the metadata store (thread-safe)."""

    def __init__(self, url: str) -> None:
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise InvalidArgument(f"invalid database url {url!r}: {exc}") from exc
        self.url = url
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def create(self, tables: Iterable[sa.Table]) -> None:
        """Create ``tables`` where missing (idempotent; safe from several processes)."""
        try:
            metadata.create_all(self.engine, tables=list(tables), checkfirst=True)
        except sa.exc.OperationalError as exc:
            raise Unavailable(f"cannot reach the registry database {self.safe_url}: {exc}") from exc

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def begin(self) -> Iterator[sa.Connection]:
        """A transaction: ``with db.begin() as conn:`` commits at the end, rolls back
        on an exception."""
        return self.engine.begin()  # type: ignore[return-value]

    def connect(self) -> sa.Connection:
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()
