"""Failed-login limits shared by every registry instance on one metadata store.

Each failed login is a row of ``account_login_failures`` (a key — ``user:NAME`` or
``addr:IP`` — and a time, UTC seconds as a float); a key with ``limit`` failures in
the last ``window`` seconds is refused until the oldest of them leaves the window. A
sliding window in the database, not in memory, so that several instances behind one
address count together and a restart forgets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from portside.errors import PermissionDenied
from portside.registry.db import metadata

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.registry.db import Database

__all__ = ["LoginLimiter", "LoginLimits", "RateLimited"]

failures_t = sa.Table(
    "account_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False, index=True),  # user:NAME | addr:IP
    sa.Column("at", sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True)
class LoginLimits:
    """At most ``per_user`` failed logins for one user name, and ``per_address`` from
    one remote address, in any ``window`` seconds."""

    per_user: int = 10
    per_address: int = 30
    window: float = 300.0


class RateLimited(PermissionDenied):
    """Too many failed logins; try again in ``retry_after`` seconds. ``code`` and
    ``status`` are the distribution error the server answers with."""

    code = "TOOMANYREQUESTS"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginLimiter:
    """Counts failed logins per user name and per remote address in ``db``."""

    def __init__(self, db: Database, limits: LoginLimits) -> None:
        self.db = db
        self.limits = limits
        db.create([failures_t])

    def keys(self, name: str, remote: str) -> list[tuple[str, int]]:
        """The keys a login of ``name`` from ``remote`` counts under, with their limits."""
        keys = [("user:" + name[:150], self.limits.per_user)]
        if remote:
            keys.append(("addr:" + remote[:150], self.limits.per_address))
        return keys

    def check(self, conn: sa.Connection, keys: list[tuple[str, int]], now: float) -> None:
        """:class:`RateLimited` when a key has reached its limit."""
        window = self.limits.window
        retry = 0.0
        for key, limit in keys:
            recent = (
                conn.execute(
                    sa.select(failures_t.c.at)
                    .where(failures_t.c.key == key, failures_t.c.at > now - window)
                    .order_by(failures_t.c.at.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            if len(recent) >= limit:
                retry = max(retry, recent[-1] + window - now)
        if retry > 0:
            seconds = max(1, int(retry + 0.999))
            raise RateLimited(f"too many failed logins: retry in {seconds}s", seconds)

    def record(self, keys: list[tuple[str, int]], now: float) -> None:
        """One more failure for each key (and the rows that left the window go)."""
        with self.db.begin() as conn:
            conn.execute(failures_t.insert(), [{"key": k, "at": now} for k, _ in keys])
            conn.execute(failures_t.delete().where(failures_t.c.at <= now - self.limits.window))
