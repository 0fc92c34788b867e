"""Accounts of the registry: users, organizations, teams, grants, repository visibility,
personal access tokens, robot accounts, refresh tokens, and who may do what.

Namespaces: a repository ``ns/name`` (or ``ns/a/b``) lives in namespace ``ns``; a
single-component name lives in the admin-owned ``library`` namespace. A user's own
namespace is the user's name; an organization is a namespace without a password.
User and organization names share one table (``account_namespaces``), so neither can
take the other's name.

Rights (:meth:`Accounts.rights`): an admin may do everything; a user may pull, push
and delete in their own namespace; a team of an organization holds a role on the
organization's namespace or on one of its repositories (read → pull, write → pull and
push, admin → pull, push, delete and manage); anyone, anonymous included, may pull a
public repository. A repository's visibility is its row in ``account_repositories``,
else its namespace's default, which is private unless set otherwise.

Secrets: passwords are bcrypt hashes; tokens (personal, robot, refresh) are random,
shown once, and stored as their SHA-256. A failed login is recorded per user name and
per remote address (:mod:`portside.registry.ratelimit`: a sliding window shared by
every instance on the same database); past the limit, :class:`RateLimited`.

Timestamps are UTC seconds since the epoch, stored as floats.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from portside.errors import AlreadyExists, InvalidArgument, NotFound
from portside.registry.db import metadata
from portside.registry.interfaces import ANONYMOUS, Principal
from portside.registry.ratelimit import LoginLimiter, LoginLimits, RateLimited
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from portside.registry.db import Database

__all__ = [
    "ALL_ACTIONS",
    "LIBRARY",
    "ROLES",
    "Accounts",
    "LoginLimits",
    "Org",
    "RateLimited",
    "Team",
    "TokenInfo",
    "User",
    "namespace_of",
]

LIBRARY = "library"
ALL_ACTIONS = frozenset({"pull", "push", "delete"})
#: role → the actions it allows, weakest first
ROLES: dict[str, frozenset[str]] = {
    "read": frozenset({"pull"}),
    "write": frozenset({"pull", "push"}),
    "admin": ALL_ACTIONS,
}
_RANK = {"read": 1, "write": 2, "admin": 3}
VISIBILITIES = ("private", "public")
TOKEN_PREFIX = "psp_"
REFRESH_PREFIX = "psr_"
DEFAULT_BCRYPT_ROUNDS = 12
#: bcrypt reads at most 72 bytes; longer passwords are refused rather than truncated
MAX_PASSWORD = 72
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(_COMPONENT)
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_RESERVED = frozenset({LIBRARY})
_LAST_USED_EVERY = 60.0  # seconds between two updates of a token's last_used

# --- tables ---------------------------------------------------------------------------


def _ref(
    name: str, kind: sa.types.TypeEngine[object], target: str, **kw: object
) -> sa.Column[object]:
    """A column referencing ``target`` ("table.column"), its rows gone with the target's."""
    return sa.Column(name, kind, sa.ForeignKey(target, ondelete="CASCADE"), **kw)  # type: ignore[arg-type]


namespaces_t = sa.Table(
    "account_namespaces",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # user | org
    sa.Column("default_visibility", sa.String(8), nullable=False, default="private"),
    sa.Column("created", sa.Float, nullable=False),
)
users_t = sa.Table(
    "account_users",
    metadata,
    sa.Column("name", sa.String(140), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # user | robot
    sa.Column("password_hash", sa.String(100), nullable=True),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    _ref("org", sa.String(64), "account_namespaces.name"),  # a robot's organization
    sa.Column("created", sa.Float, nullable=False),
)
teams_t = sa.Table(
    "account_teams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _ref("org", sa.String(64), "account_namespaces.name", nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("org", "name", name="account_teams_org_name"),
)
members_t = sa.Table(
    "account_members",
    metadata,
    _ref("team_id", sa.Integer(), "account_teams.id", primary_key=True),
    _ref("user", sa.String(140), "account_users.name", primary_key=True),
)
grants_t = sa.Table(
    "account_grants",
    metadata,
    _ref("team_id", sa.Integer(), "account_teams.id", primary_key=True),
    # the organization's namespace itself, or one repository "org/…" in it
    sa.Column("target", sa.String(255), primary_key=True),
    sa.Column("role", sa.String(8), nullable=False),
)
repositories_t = sa.Table(
    "account_repositories",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("visibility", sa.String(8), nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
tokens_t = sa.Table(
    "account_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _ref("user", sa.String(140), "account_users.name", nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # pat | robot | refresh
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the secret
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("last_used", sa.Float, nullable=True),
)
TABLES = (namespaces_t, users_t, teams_t, members_t, grants_t, repositories_t, tokens_t)

# --- records --------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    kind: str  # user | robot
    admin: bool
    created: float
    org: str = ""  # a robot's organization


@dataclass(frozen=True)
class Org:
    name: str
    default_visibility: str
    created: float


@dataclass(frozen=True)
class Team:
    org: str
    name: str
    members: tuple[str, ...]
    #: (namespace or repository, role)
    grants: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    kind: str  # pat | robot | refresh
    name: str
    created: float
    expires: float | None
    last_used: float | None


# --- names ----------------------------------------------------------------------------


def namespace_of(repository: str) -> str:
    """``alice/app`` → ``alice``; ``busybox`` → ``library``."""
    head, sep, _ = repository.partition("/")
    return head if sep else LIBRARY


def _check_name(name: str, what: str) -> str:
    if len(name) > 64 or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: lowercase letters, digits and separators "
            "(. _ __ -) between them, at most 64 characters"
        )
    if name in _RESERVED:
        raise InvalidArgument(f"invalid {what} name {name!r}: reserved")
    return name


def _check_repository(name: str) -> str:
    if len(name) > 255 or not _REPO.fullmatch(name):
        raise InvalidArgument(f"invalid repository name {name!r}")
    return name


def _check_password(password: str) -> bytes:
    data = password.encode()
    if not data:
        raise InvalidArgument("invalid password: empty")
    if len(data) > MAX_PASSWORD:
        raise InvalidArgument(f"invalid password: longer than {MAX_PASSWORD} bytes")
    return data


def _secret(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """The account store over ``db`` (tables created when missing). Thread-safe."""

    def __init__(
        self,
        db: Database,
        *,
        bcrypt_rounds: int | None = None,
        limits: LoginLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import bcrypt

        self.db = db
        self.rounds = bcrypt_rounds or DEFAULT_BCRYPT_ROUNDS
        self.limiter = LoginLimiter(db, limits or LoginLimits())
        self.clock = clock
        self._bcrypt = bcrypt
        self._dummy_hash = b""
        # (hash, password) pairs that matched lately, keyed by a keyed digest
        self._pepper = os.urandom(32)
        self._verified: dict[bytes, float] = {}
        self._lock = threading.Lock()
        db.create(TABLES)

    @property
    def _dummy(self) -> bytes:
        """Checked against when a user does not exist, so that an unknown name costs
        as much as a known one (made on first use: the admin commands never need it)."""
        if not self._dummy_hash:
            self._dummy_hash = self._bcrypt.hashpw(
                os.urandom(16), self._bcrypt.gensalt(self.rounds)
            )
        return self._dummy_hash

    def warm(self) -> None:
        """Make the dummy hash now (a server does at start, so that its first check of
        an unknown name costs what the others cost)."""
        _ = self._dummy

    # --- users ------------------------------------------------------------------------

    def _hash(self, password: str) -> str:
        data = _check_password(password)
        return self._bcrypt.hashpw(data, self._bcrypt.gensalt(self.rounds)).decode()

    def add_user(self, name: str, password: str, *, admin: bool = False) -> User:
        """A new user (and namespace) ``name``; AlreadyExists if a user or organization
        has that name."""
        _check_name(name, "user")
        hashed = self._hash(password)
        now = self.clock()
        try:
            with self.db.begin() as conn:
                conn.execute(
                    namespaces_t.insert().values(
                        name=name, kind="user", default_visibility="private", created=now
                    )
                )
                conn.execute(
                    users_t.insert().values(
                        name=name, kind="user", password_hash=hashed, admin=admin, created=now
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(f"user or organization {name!r} already exists") from exc
        return User(name, "user", admin, now)

    def set_password(self, name: str, password: str) -> None:
        self._update_user(name, password_hash=self._hash(password))

    def set_admin(self, name: str, admin: bool) -> None:
        self._update_user(name, admin=admin)

    def _update_user(self, name: str, **values: object) -> None:
        where = (users_t.c.name == name, users_t.c.kind == "user")
        with self.db.begin() as conn:
            done = conn.execute(users_t.update().where(*where).values(**values))
        if done.rowcount != 1:
            raise NotFound(f"no such user {name!r}")

    def remove_user(self, name: str) -> None:
        """Remove a user, their tokens, memberships and namespace entry (their
        repositories stay in storage)."""
        with self.db.begin() as conn:
            kind = conn.execute(sa.select(users_t.c.kind).where(users_t.c.name == name)).scalar()
            if kind != "user":
                raise NotFound(f"no such user {name!r}")
            self._delete_user(conn, name)
            conn.execute(
                namespaces_t.delete().where(
                    namespaces_t.c.name == name, namespaces_t.c.kind == "user"
                )
            )

    @staticmethod
    def _delete_user(conn: sa.Connection, name: str) -> None:
        # explicit, not only ON DELETE CASCADE: SQLite enforces it only with the pragma
        conn.execute(tokens_t.delete().where(tokens_t.c.user == name))
        conn.execute(members_t.delete().where(members_t.c.user == name))
        conn.execute(users_t.delete().where(users_t.c.name == name))

    def user(self, name: str) -> User:
        with self.db.connect() as conn:
            row = conn.execute(sa.select(users_t).where(users_t.c.name == name)).first()
        if row is None:
            raise NotFound(f"no such user {name!r}")
        return User(row.name, row.kind, bool(row.admin), row.created, row.org or "")

    def users(self, *, robots: bool = False) -> list[User]:
        query = sa.select(users_t).order_by(users_t.c.name)
        if not robots:
            query = query.where(users_t.c.kind == "user")
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
        return [User(r.name, r.kind, bool(r.admin), r.created, r.org or "") for r in rows]

    # --- organizations and teams ------------------------------------------------------

    def add_org(self, name: str, *, default_visibility: str = "private") -> Org:
        _check_name(name, "organization")
        _check_visibility(default_visibility)
        now = self.clock()
        try:
            with self.db.begin() as conn:
                conn.execute(
                    namespaces_t.insert().values(
                        name=name, kind="org", default_visibility=default_visibility, created=now
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(f"user or organization {name!r} already exists") from exc
        return Org(name, default_visibility, now)

    def set_default_visibility(self, namespace: str, visibility: str) -> None:
        """The visibility of the namespace's repositories that have none of their own."""
        _check_visibility(visibility)
        with self.db.begin() as conn:
            done = conn.execute(
                namespaces_t.update()
                .where(namespaces_t.c.name == namespace)
                .values(default_visibility=visibility)
            )
        if done.rowcount != 1:
            raise NotFound(f"no such user or organization {namespace!r}")

    def remove_org(self, name: str) -> None:
        """Remove an organization with its teams and robots."""
        with self.db.begin() as conn:
            if self._org_exists(conn, name) is False:
                raise NotFound(f"no such organization {name!r}")
            teams = sa.select(teams_t.c.id).where(teams_t.c.org == name)
            conn.execute(members_t.delete().where(members_t.c.team_id.in_(teams)))
            conn.execute(grants_t.delete().where(grants_t.c.team_id.in_(teams)))
            conn.execute(teams_t.delete().where(teams_t.c.org == name))
            robots = conn.execute(sa.select(users_t.c.name).where(users_t.c.org == name))
            for (robot,) in robots.all():
                self._delete_user(conn, robot)
            conn.execute(namespaces_t.delete().where(namespaces_t.c.name == name))

    def orgs(self) -> list[Org]:
        query = sa.select(namespaces_t).where(namespaces_t.c.kind == "org")
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(namespaces_t.c.name)).all()
        return [Org(r.name, r.default_visibility, r.created) for r in rows]

    @staticmethod
    def _org_exists(conn: sa.Connection, org: str) -> bool:
        query = sa.select(namespaces_t.c.name).where(
            namespaces_t.c.name == org, namespaces_t.c.kind == "org"
        )
        return conn.execute(query).first() is not None

    def _team_id(self, conn: sa.Connection, org: str, team: str) -> int:
        query = sa.select(teams_t.c.id).where(teams_t.c.org == org, teams_t.c.name == team)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no such team {org}/{team}")
        return int(row.id)

    def add_team(self, org: str, team: str) -> None:
        _check_name(team, "team")
        with self.db.begin() as conn:
            if not self._org_exists(conn, org):
                raise NotFound(f"no such organization {org!r}")
            try:
                conn.execute(teams_t.insert().values(org=org, name=team, created=self.clock()))
            except sa.exc.IntegrityError as exc:
                raise AlreadyExists(f"team {org}/{team} already exists") from exc

    def remove_team(self, org: str, team: str) -> None:
        with self.db.begin() as conn:
            team_id = self._team_id(conn, org, team)
            conn.execute(members_t.delete().where(members_t.c.team_id == team_id))
            conn.execute(grants_t.delete().where(grants_t.c.team_id == team_id))
            conn.execute(teams_t.delete().where(teams_t.c.id == team_id))

    def teams(self, org: str) -> list[Team]:
        """The organization's teams with their members and roles, by name."""
        of_org = teams_t.c.org == org
        with self.db.connect() as conn:
            if not self._org_exists(conn, org):
                raise NotFound(f"no such organization {org!r}")
            names = conn.execute(sa.select(teams_t.c.name).where(of_org)).scalars().all()
            members = conn.execute(
                sa.select(teams_t.c.name, members_t.c.user).join(teams_t).where(of_org)
            ).all()
            grants = conn.execute(
                sa.select(teams_t.c.name, grants_t.c.target, grants_t.c.role)
                .join(teams_t)
                .where(of_org)
            ).all()
        return [
            Team(org, name, tuple(sorted(u for t, u in members if t == name)),
                 tuple(sorted((g, r) for t, g, r in grants if t == name)))
            for name in sorted(names)
        ]  # fmt: skip

    def add_member(self, org: str, team: str, user: str) -> None:
        """Add a user, or a robot of this organization, to a team."""
        with self.db.begin() as conn:
            team_id = self._team_id(conn, org, team)
            row = conn.execute(
                sa.select(users_t.c.kind, users_t.c.org).where(users_t.c.name == user)
            ).first()
            if row is None:
                raise NotFound(f"no such user {user!r}")
            if row.kind == "robot" and row.org != org:
                raise InvalidArgument(f"robot {user!r} belongs to another organization")
            try:
                conn.execute(members_t.insert().values(team_id=team_id, user=user))
            except sa.exc.IntegrityError as exc:
                raise AlreadyExists(f"{user!r} is already a member of {org}/{team}") from exc

    def remove_member(self, org: str, team: str, user: str) -> None:
        with self.db.begin() as conn:
            team_id = self._team_id(conn, org, team)
            done = conn.execute(
                members_t.delete().where(members_t.c.team_id == team_id, members_t.c.user == user)
            )
        if done.rowcount != 1:
            raise NotFound(f"{user!r} is not a member of {org}/{team}")

    def grant(self, org: str, team: str, target: str, role: str) -> None:
        """Give ``team`` ``role`` on the organization's namespace (``target`` = ``org``)
        or on one of its repositories (``org/…``); replaces an earlier role there."""
        if role not in ROLES:
            raise InvalidArgument(f"invalid role {role!r}: want read, write or admin")
        if target != org:
            _check_repository(target)
            if namespace_of(target) != org:
                raise InvalidArgument(
                    f"invalid grant target {target!r}: not organization {org!r} nor one "
                    "of its repositories"
                )
        with self.db.begin() as conn:
            team_id = self._team_id(conn, org, team)
            where = (grants_t.c.team_id == team_id, grants_t.c.target == target)
            conn.execute(grants_t.delete().where(*where))
            conn.execute(grants_t.insert().values(team_id=team_id, target=target, role=role))

    def revoke(self, org: str, team: str, target: str) -> None:
        with self.db.begin() as conn:
            team_id = self._team_id(conn, org, team)
            done = conn.execute(
                grants_t.delete().where(grants_t.c.team_id == team_id, grants_t.c.target == target)
            )
        if done.rowcount != 1:
            raise NotFound(f"team {org}/{team} has no role on {target!r}")

    # --- visibility -------------------------------------------------------------------

    def set_visibility(self, repository: str, visibility: str) -> None:
        """Make ``repository`` public or private (it need not exist yet: the setting
        applies from its first push)."""
        _check_repository(repository)
        _check_visibility(visibility)
        now = self.clock()
        with self.db.begin() as conn:
            done = conn.execute(
                repositories_t.update()
                .where(repositories_t.c.name == repository)
                .values(visibility=visibility, updated=now)
            )
            if done.rowcount == 0:
                conn.execute(
                    repositories_t.insert().values(
                        name=repository, visibility=visibility, updated=now
                    )
                )

    def visibility(self, repository: str) -> str:
        """ "public" or "private"."""
        with self.db.connect() as conn:
            return self._visibility(conn, repository)

    @staticmethod
    def _visibility(conn: sa.Connection, repository: str) -> str:
        own = conn.execute(
            sa.select(repositories_t.c.visibility).where(repositories_t.c.name == repository)
        ).scalar()
        if own is not None:
            return str(own)
        default = conn.execute(
            sa.select(namespaces_t.c.default_visibility).where(
                namespaces_t.c.name == namespace_of(repository)
            )
        ).scalar()
        return str(default or "private")

    # --- tokens and robots ------------------------------------------------------------

    def _insert_token(
        self, conn: sa.Connection, user: str, kind: str, name: str, expires: float | None
    ) -> tuple[int, str]:
        secret = _secret(REFRESH_PREFIX if kind == "refresh" else TOKEN_PREFIX)
        result = conn.execute(
            tokens_t.insert().values(
                user=user, kind=kind, name=name, hash=_digest(secret),
                created=self.clock(), expires=expires,
            )
        )  # fmt: skip
        return int(result.inserted_primary_key[0]), secret

    def add_token(self, user: str, name: str = "", expires: float | None = None) -> tuple[int, str]:
        """A personal access token for ``user``: (id, secret). The secret is not stored
        and cannot be shown again."""
        if expires is not None and expires <= self.clock():
            raise InvalidArgument("invalid token expiry: in the past")
        with self.db.begin() as conn:
            kind = conn.execute(sa.select(users_t.c.kind).where(users_t.c.name == user)).scalar()
            if kind != "user":
                raise NotFound(f"no such user {user!r}")
            return self._insert_token(conn, user, "pat", name[:100], expires)

    def remove_token(self, user: str, token: str) -> None:
        """Revoke ``user``'s token by id or by name."""
        where = [tokens_t.c.user == user, tokens_t.c.kind == "pat"]
        where.append(tokens_t.c.id == int(token) if is_number(token) else tokens_t.c.name == token)
        with self.db.begin() as conn:
            done = conn.execute(tokens_t.delete().where(*where))
        if done.rowcount == 0:
            raise NotFound(f"user {user!r} has no token {token!r}")

    def tokens(self, user: str, *, kinds: Iterable[str] = ("pat",)) -> list[TokenInfo]:
        query = (
            sa.select(tokens_t)
            .where(tokens_t.c.user == user, tokens_t.c.kind.in_(list(kinds)))
            .order_by(tokens_t.c.id)
        )
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
        return [
            TokenInfo(r.id, r.user, r.kind, r.name, r.created, r.expires, r.last_used) for r in rows
        ]

    def add_robot(self, org: str, name: str) -> tuple[str, str]:
        """A robot account ``ORG+NAME`` of an organization with its token: (name, secret).
        It may do what the teams it joins may do."""
        _check_name(name, "robot")
        robot = f"{org}+{name}"
        try:
            with self.db.begin() as conn:
                if not self._org_exists(conn, org):
                    raise NotFound(f"no such organization {org!r}")
                conn.execute(
                    users_t.insert().values(
                        name=robot, kind="robot", password_hash=None, admin=False, org=org,
                        created=self.clock(),
                    )
                )  # fmt: skip
                _, secret = self._insert_token(conn, robot, "robot", name, None)
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(f"robot {robot!r} already exists") from exc
        return robot, secret

    def remove_robot(self, org: str, name: str) -> None:
        robot = name if "+" in name else f"{org}+{name}"
        with self.db.begin() as conn:
            kind = conn.execute(
                sa.select(users_t.c.kind).where(users_t.c.name == robot, users_t.c.org == org)
            ).scalar()
            if kind != "robot":
                raise NotFound(f"no such robot {robot!r}")
            self._delete_user(conn, robot)

    def robots(self, org: str) -> list[User]:
        return [u for u in self.users(robots=True) if u.kind == "robot" and u.org == org]

    def add_refresh_token(self, principal: Principal, client_id: str, ttl: float) -> str:
        """An OAuth2 refresh token for ``principal`` (a user, or a robot), valid ``ttl``
        seconds; stored hashed like a personal token, revoked with its account."""
        with self.db.begin() as conn:
            return self._insert_token(
                conn, principal.name, "refresh", client_id[:100], self.clock() + ttl
            )[1]

    # --- checking credentials ---------------------------------------------------------

    def check_password(self, name: str, password: str, remote: str = "") -> Principal | None:
        """The principal ``name`` authenticates as with ``password`` (a password, a
        personal access token or a robot's token); None when wrong. The time taken does
        not tell whether the user exists. :class:`RateLimited` past the failed-login
        limit for ``name`` or for ``remote``."""
        now = self.clock()
        keys = self.limiter.keys(name, remote)
        with self.db.connect() as conn:
            self.limiter.check(conn, keys, now)
            found: Principal | None = None
            if password.startswith(TOKEN_PREFIX):
                found = self._check_token(conn, name, password, now)
            if found is None:
                found = self._check_bcrypt(conn, name, password)
        if found is None:
            self.limiter.record(keys, now)
        return found

    def _check_bcrypt(self, conn: sa.Connection, name: str, password: str) -> Principal | None:
        row = conn.execute(
            sa.select(users_t.c.password_hash, users_t.c.admin).where(
                users_t.c.name == name, users_t.c.kind == "user"
            )
        ).first()
        data = password.encode()
        stored = row.password_hash.encode() if row is not None and row.password_hash else None
        if stored is None or len(data) > MAX_PASSWORD:
            self._bcrypt.checkpw(data[:MAX_PASSWORD], self._dummy)  # the same cost
            return None
        if not self._matches(data, stored):
            return None
        return Principal(name=name, kind="user", admin=bool(row.admin))

    def _matches(self, password: bytes, stored: bytes) -> bool:
        """bcrypt, with successful checks remembered for a few minutes (a token request
        per pull would otherwise pay a bcrypt each)."""
        key = hmac.new(self._pepper, stored + b"\0" + password, hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            until = self._verified.get(key)
        if until is not None and until > now:
            return True
        if not self._bcrypt.checkpw(password, stored):
            return False
        with self._lock:
            if len(self._verified) >= 1024:
                self._verified = {k: v for k, v in self._verified.items() if v > now}
                if len(self._verified) >= 1024:
                    self._verified.clear()
            self._verified[key] = now + 300.0
        return True

    def _check_token(
        self, conn: sa.Connection, name: str, secret: str, now: float
    ) -> Principal | None:
        row = self._token_row(conn, secret, ("pat", "robot"), now)
        if row is None or not hmac.compare_digest(row.user.encode(), name.encode()):
            return None
        if row.kind == "robot":
            return Principal(name=row.user, kind="robot")
        return Principal(name=row.user, kind="token", admin=bool(row.admin))

    def check_refresh_token(self, secret: str) -> Principal | None:
        """The principal an OAuth2 refresh token stands for; None when unknown,
        expired or revoked."""
        if not secret.startswith(REFRESH_PREFIX):
            return None
        with self.db.connect() as conn:
            row = self._token_row(conn, secret, ("refresh",), self.clock())
        if row is None:
            return None
        kind = "robot" if row.user_kind == "robot" else "user"
        return Principal(name=row.user, kind=kind, admin=bool(row.admin))

    def _token_row(
        self, conn: sa.Connection, secret: str, kinds: tuple[str, ...], now: float
    ) -> sa.Row[object] | None:
        query = (
            sa.select(
                tokens_t.c.id, tokens_t.c.user, tokens_t.c.kind, tokens_t.c.expires,
                tokens_t.c.last_used, users_t.c.admin, users_t.c.kind.label("user_kind"),
            )
            .join(users_t, users_t.c.name == tokens_t.c.user)
            .where(tokens_t.c.hash == _digest(secret), tokens_t.c.kind.in_(kinds))
        )  # fmt: skip
        row = conn.execute(query).first()
        if row is None or (row.expires is not None and row.expires <= now):
            return None
        if row.last_used is None or row.last_used < now - _LAST_USED_EVERY:
            with self.db.begin() as write:
                write.execute(
                    tokens_t.update().where(tokens_t.c.id == row.id).values(last_used=now)
                )
        return row

    def principal(self, name: str) -> Principal:
        """The principal of a user or robot as it stands now (ANONYMOUS when gone)."""
        if not name:
            return ANONYMOUS
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(users_t.c.kind, users_t.c.admin).where(users_t.c.name == name)
            ).first()
        if row is None:
            return ANONYMOUS
        return Principal(name=name, kind=row.kind, admin=bool(row.admin))

    def stamp(self, name: str) -> str:
        """A value that changes with the user's password ("" when there is no such
        user): the web UI's sessions carry it and end when it changes."""
        query = sa.select(users_t.c.password_hash).where(
            users_t.c.name == name, users_t.c.kind == "user"
        )
        with self.db.connect() as conn:
            hashed = conn.execute(query).scalar()
        return hashlib.sha256(hashed.encode()).hexdigest()[:32] if hashed else ""

    # --- rights -----------------------------------------------------------------------

    def rights(self, principal: Principal, repository: str) -> set[str]:
        """What ``principal`` may do on ``repository``: a subset of pull, push, delete."""
        if principal.admin:
            return set(ALL_ACTIONS)
        namespace = namespace_of(repository)
        if principal.kind in ("user", "token") and principal.name == namespace:
            return set(ALL_ACTIONS)
        with self.db.connect() as conn:
            actions = set()
            if self._visibility(conn, repository) == "public":
                actions.add("pull")
            if not principal.anonymous:
                role = self._role(conn, principal.name, namespace, repository)
                actions |= ROLES.get(role, frozenset())
        return actions

    @staticmethod
    def _role(conn: sa.Connection, user: str, namespace: str, repository: str) -> str:
        """The strongest role ``user``'s teams hold on the repository or its namespace."""
        query = (
            sa.select(grants_t.c.role)
            .join(teams_t, teams_t.c.id == grants_t.c.team_id)
            .join(members_t, members_t.c.team_id == grants_t.c.team_id)
            .where(
                members_t.c.user == user,
                teams_t.c.org == namespace,
                grants_t.c.target.in_([namespace, repository]),
            )
        )
        roles = conn.execute(query).scalars().all()
        return max(roles, key=lambda r: _RANK.get(r, 0), default="")

    def may_manage(self, principal: Principal, namespace: str, repository: str = "") -> bool:
        """Whether ``principal`` may manage the namespace (or one repository in it):
        its visibility, webhooks, triggers. Admins, the namespace's user, and teams
        with the admin role there."""
        if principal.admin:
            return True
        if principal.anonymous or principal.kind == "robot":
            return False
        if principal.name == namespace:
            return True
        with self.db.connect() as conn:
            role = self._role(conn, principal.name, namespace, repository or namespace)
        return role == "admin"

    def visible(self, principal: Principal, repositories: Iterable[str]) -> list[str]:
        """The repositories among ``repositories`` that ``principal`` may pull, in
        order (the catalog), with a fixed number of queries."""
        names = list(repositories)
        if principal.admin:
            return names
        with self.db.connect() as conn:
            own = dict(
                conn.execute(sa.select(repositories_t.c.name, repositories_t.c.visibility)).all()
            )
            public_ns = set(
                conn.execute(
                    sa.select(namespaces_t.c.name).where(
                        namespaces_t.c.default_visibility == "public"
                    )
                ).scalars()
            )
            granted: set[str] = set()
            if not principal.anonymous:
                granted = set(
                    conn.execute(
                        sa.select(grants_t.c.target)
                        .join(teams_t, teams_t.c.id == grants_t.c.team_id)
                        .join(members_t, members_t.c.team_id == grants_t.c.team_id)
                        .where(members_t.c.user == principal.name)
                    ).scalars()
                )
        mine = principal.name if principal.kind in ("user", "token") else None

        def shown(repo: str) -> bool:
            ns = namespace_of(repo)
            vis = own.get(repo) or ("public" if ns in public_ns else "private")
            return vis == "public" or ns == mine or ns in granted or repo in granted

        return [r for r in names if shown(r)]


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise InvalidArgument(f"invalid visibility {visibility!r}: want public or private")
