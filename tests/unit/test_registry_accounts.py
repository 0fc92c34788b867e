"""portside.registry.accounts on SQLite: users, organizations, teams, grants, visibility,
personal access tokens, robots, refresh tokens; constant-time password checks; the
failed-login rate limit; the rights table; and the admin CLI (``cli_accounts``)."""

from __future__ import annotations

import argparse
import io
import os
import sys

import pytest

from portside.errors import AlreadyExists, InvalidArgument, NotFound
from portside.registry.accounts import (
    Accounts,
    LoginLimits,
    RateLimited,
    namespace_of,
)
from portside.registry.cli_accounts import add_commands, parse_expiry
from portside.registry.db import Database, sqlite_url
from portside.registry.interfaces import ANONYMOUS, Principal

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: object) -> Database:
    database = Database(sqlite_url(str(tmp_path)))
    yield database  # type: ignore[misc]
    database.close()


@pytest.fixture
def acc(db: Database, clock: Clock) -> Accounts:
    return Accounts(db, bcrypt_rounds=4, clock=clock, limits=LoginLimits(3, 5, 60.0))


def user(name: str, *, admin: bool = False, kind: str = "user") -> Principal:
    return Principal(name=name, kind=kind, admin=admin)


# --- users ----------------------------------------------------------------------------


def test_users(acc: Accounts) -> None:
    acc.add_user("alice", "pw-alice", admin=True)
    acc.add_user("bob", "pw-bob")
    assert [(u.name, u.admin) for u in acc.users()] == [("alice", True), ("bob", False)]
    with pytest.raises(AlreadyExists):
        acc.add_user("alice", "x")
    assert acc.check_password("alice", "pw-alice") == user("alice", admin=True)
    assert acc.check_password("bob", "pw-bob") == user("bob")
    assert acc.check_password("bob", "pw-alice") is None
    acc.set_password("bob", "new")
    assert acc.check_password("bob", "pw-bob") is None
    assert acc.check_password("bob", "new") == user("bob")
    acc.set_admin("bob", True)
    assert acc.user("bob").admin
    acc.remove_user("bob")
    with pytest.raises(NotFound):
        acc.user("bob")
    with pytest.raises(NotFound):
        acc.remove_user("bob")
    with pytest.raises(NotFound):
        acc.set_password("nobody", "x")
    acc.add_user("bob", "again")  # the name is free again
    assert acc.check_password("bob", "new") is None


@pytest.mark.parametrize(
    "name", ["", "Alice", "a b", "../x", "a/b", "-a", "a-", "library", "a+b", "x" * 65]
)
def test_invalid_names(acc: Accounts, name: str) -> None:
    with pytest.raises(InvalidArgument):
        acc.add_user(name, "pw")
    with pytest.raises(InvalidArgument):
        acc.add_org(name)


@pytest.mark.parametrize("password", ["", "x" * 73, "é" * 37])
def test_invalid_passwords(acc: Accounts, password: str) -> None:
    with pytest.raises(InvalidArgument, match="password"):
        acc.add_user("alice", password)


def test_users_and_orgs_share_names(acc: Accounts) -> None:
    acc.add_user("alice", "pw")
    acc.add_org("acme")
    with pytest.raises(AlreadyExists):
        acc.add_org("alice")
    with pytest.raises(AlreadyExists):
        acc.add_user("acme", "pw")


# --- constant-time checks -------------------------------------------------------------


class RecordingBcrypt:
    def __init__(self, real: object) -> None:
        self.real = real
        self.checked: list[bytes] = []

    def checkpw(self, password: bytes, hashed: bytes) -> bool:
        self.checked.append(hashed)
        return self.real.checkpw(password, hashed)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_unknown_users_cost_a_bcrypt_check(acc: Accounts) -> None:
    acc.add_user("alice", "pw")
    acc.add_org("acme")
    name, _ = acc.add_robot("acme", "ci")
    recorder = RecordingBcrypt(acc._bcrypt)
    acc._bcrypt = recorder  # type: ignore[assignment]
    assert acc.check_password("nobody", "pw") is None
    assert acc.check_password(name, "not-the-token") is None  # a robot has no password
    assert acc.check_password("alice", "y" * 100) is None  # too long for bcrypt
    assert recorder.checked == [acc._dummy] * 3
    assert acc.check_password("alice", "wrong") is None
    assert recorder.checked[-1] != acc._dummy
    # the dummy hash costs what a real one costs
    assert acc._dummy.startswith(b"$2b$04$")


def test_successful_checks_are_remembered_not_failures(acc: Accounts) -> None:
    acc.add_user("alice", "pw")
    recorder = RecordingBcrypt(acc._bcrypt)
    acc._bcrypt = recorder  # type: ignore[assignment]
    assert acc.check_password("alice", "pw") is not None
    assert acc.check_password("alice", "pw") is not None
    assert len(recorder.checked) == 1
    assert acc.check_password("alice", "bad") is None
    assert acc.check_password("alice", "bad") is None
    assert len(recorder.checked) == 3
    acc.set_password("alice", "other")  # a new hash: the remembered pair no longer fits
    assert acc.check_password("alice", "pw") is None


# --- rate limiting --------------------------------------------------------------------


def test_failed_logins_per_user(acc: Accounts, clock: Clock) -> None:
    acc.add_user("alice", "pw")
    for _ in range(3):
        assert acc.check_password("alice", "bad", "10.0.0.1") is None
        clock.now += 1
    with pytest.raises(RateLimited) as info:
        acc.check_password("alice", "pw", "10.0.0.2")  # even the right password
    assert info.value.retry_after == 57  # when the first failure leaves the window
    assert "too many failed logins" in str(info.value)
    assert acc.check_password("bob", "x", "10.0.0.2") is None  # another user is not limited
    clock.now = T0 + 60.5
    assert acc.check_password("alice", "pw", "10.0.0.3") == user("alice")


def test_failed_logins_per_address(acc: Accounts, clock: Clock) -> None:
    acc.add_user("alice", "pw")
    for i in range(5):
        assert acc.check_password(f"user{i}", "bad", "192.0.2.7") is None
    with pytest.raises(RateLimited):
        acc.check_password("alice", "pw", "192.0.2.7")
    assert acc.check_password("alice", "pw", "192.0.2.8") == user("alice")
    clock.now += 61
    assert acc.check_password("alice", "pw", "192.0.2.7") == user("alice")


def test_the_limit_is_shared_by_instances(db: Database, acc: Accounts, clock: Clock) -> None:
    other = Accounts(db, bcrypt_rounds=4, clock=clock, limits=acc.limiter.limits)
    acc.add_user("alice", "pw")
    acc.check_password("alice", "bad")
    other.check_password("alice", "bad")
    acc.check_password("alice", "bad")
    with pytest.raises(RateLimited):
        other.check_password("alice", "pw")


def test_old_failures_are_pruned(acc: Accounts, clock: Clock, db: Database) -> None:
    import sqlalchemy as sa

    from portside.registry.ratelimit import failures_t

    for i in range(4):
        acc.check_password(f"u{i}", "bad", "a")
        clock.now += 100
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(failures_t)).scalar() == 2


# --- tokens and robots ----------------------------------------------------------------


def test_personal_access_tokens(acc: Accounts, clock: Clock) -> None:
    acc.add_user("alice", "pw", admin=True)
    acc.add_user("bob", "pw")
    tid, secret = acc.add_token("alice", "ci", expires=T0 + 3600)
    assert secret.startswith("psp_") and len(secret) > 40
    assert acc.check_password("alice", secret) == Principal("alice", "token", admin=True)
    assert acc.check_password("bob", secret) is None  # another user's token
    [info] = acc.tokens("alice")
    assert (info.id, info.name, info.expires, info.last_used) == (tid, "ci", T0 + 3600, T0)
    clock.now += 3600
    assert acc.check_password("alice", secret) is None  # expired
    _, other = acc.add_token("alice", "laptop")
    acc.remove_token("alice", "laptop")
    assert acc.check_password("alice", other) is None
    acc.remove_token("alice", str(tid))
    assert acc.tokens("alice") == []
    with pytest.raises(NotFound):
        acc.remove_token("alice", "laptop")
    with pytest.raises(InvalidArgument, match="past"):
        acc.add_token("alice", "old", expires=T0)
    with pytest.raises(NotFound):
        acc.add_token("nobody")


def test_tokens_are_stored_hashed(acc: Accounts, db: Database) -> None:
    import sqlalchemy as sa

    from portside.registry.accounts import tokens_t

    acc.add_user("alice", "pw")
    _, secret = acc.add_token("alice")
    with db.connect() as conn:
        stored = conn.execute(sa.select(tokens_t.c.hash)).scalar()
    assert secret not in str(stored) and len(stored) == 64


def test_a_password_that_looks_like_a_token(acc: Accounts) -> None:
    acc.add_user("alice", "psp_not-a-token")
    assert acc.check_password("alice", "psp_not-a-token") == user("alice")


def test_robots(acc: Accounts) -> None:
    acc.add_org("acme")
    acc.add_team("acme", "ci")
    acc.grant("acme", "ci", "acme/app", "write")
    name, secret = acc.add_robot("acme", "builder")
    assert name == "acme+builder"
    with pytest.raises(AlreadyExists):
        acc.add_robot("acme", "builder")
    with pytest.raises(NotFound):
        acc.add_robot("nope", "builder")
    robot = acc.check_password(name, secret)
    assert robot == Principal(name, "robot")
    assert acc.rights(robot, "acme/app") == set()
    acc.add_member("acme", "ci", name)
    assert acc.rights(robot, "acme/app") == {"pull", "push"}
    assert [r.name for r in acc.robots("acme")] == [name]
    acc.add_org("other")
    acc.add_team("other", "t")
    with pytest.raises(InvalidArgument, match="another organization"):
        acc.add_member("other", "t", name)
    acc.remove_robot("acme", "builder")
    assert acc.check_password(name, secret) is None
    assert acc.teams("acme")[0].members == ()


def test_refresh_tokens(acc: Accounts, clock: Clock) -> None:
    acc.add_user("alice", "pw")
    secret = acc.add_refresh_token(user("alice"), "docker", 100)
    assert secret.startswith("psr_")
    assert acc.check_refresh_token(secret) == user("alice")
    assert acc.check_password("alice", secret) is None  # not a login secret
    assert acc.check_refresh_token("psr_forged") is None
    assert acc.check_refresh_token("psp_x") is None
    clock.now += 100
    assert acc.check_refresh_token(secret) is None
    fresh = acc.add_refresh_token(user("alice"), "docker", 100)
    acc.remove_user("alice")
    assert acc.check_refresh_token(fresh) is None


# --- orgs, teams, grants --------------------------------------------------------------


def test_teams_members_grants(acc: Accounts) -> None:
    acc.add_user("carol", "pw")
    acc.add_org("acme")
    acc.add_team("acme", "devs")
    with pytest.raises(AlreadyExists):
        acc.add_team("acme", "devs")
    with pytest.raises(NotFound):
        acc.add_team("nope", "devs")
    acc.add_member("acme", "devs", "carol")
    with pytest.raises(AlreadyExists):
        acc.add_member("acme", "devs", "carol")
    with pytest.raises(NotFound):
        acc.add_member("acme", "devs", "nobody")
    acc.grant("acme", "devs", "acme", "read")
    acc.grant("acme", "devs", "acme/app", "write")
    acc.grant("acme", "devs", "acme/app", "admin")  # replaces
    [team] = acc.teams("acme")
    assert team.members == ("carol",)
    assert team.grants == (("acme", "read"), ("acme/app", "admin"))
    with pytest.raises(InvalidArgument, match="role"):
        acc.grant("acme", "devs", "acme", "owner")
    for target in ("other/app", "other", "acme/../x", "ACME/app"):
        with pytest.raises(InvalidArgument):
            acc.grant("acme", "devs", target, "read")
    acc.revoke("acme", "devs", "acme/app")
    with pytest.raises(NotFound):
        acc.revoke("acme", "devs", "acme/app")
    acc.remove_member("acme", "devs", "carol")
    with pytest.raises(NotFound):
        acc.remove_member("acme", "devs", "carol")
    acc.remove_team("acme", "devs")
    assert acc.teams("acme") == []


def test_removing_an_org_removes_its_teams_and_robots(acc: Accounts) -> None:
    acc.add_user("carol", "pw")
    acc.add_org("acme")
    acc.add_team("acme", "devs")
    acc.add_member("acme", "devs", "carol")
    acc.grant("acme", "devs", "acme", "write")
    robot, secret = acc.add_robot("acme", "ci")
    acc.remove_org("acme")
    assert acc.orgs() == []
    assert acc.check_password(robot, secret) is None
    assert acc.rights(user("carol"), "acme/app") == set()
    with pytest.raises(NotFound):
        acc.remove_org("acme")
    acc.add_org("acme")  # no leftovers in the way
    assert acc.teams("acme") == []


# --- visibility and rights ------------------------------------------------------------


def test_namespace_of() -> None:
    assert namespace_of("busybox") == "library"
    assert namespace_of("library/busybox") == "library"
    assert namespace_of("acme/team/app") == "acme"


def test_visibility(acc: Accounts) -> None:
    acc.add_user("alice", "pw")
    acc.add_org("open", default_visibility="public")
    assert acc.visibility("alice/app") == "private"
    assert acc.visibility("busybox") == "private"
    assert acc.visibility("open/app") == "public"
    acc.set_visibility("open/secret", "private")
    acc.set_visibility("alice/app", "public")
    assert acc.visibility("open/secret") == "private"
    assert acc.visibility("alice/app") == "public"
    acc.set_visibility("alice/app", "private")
    assert acc.visibility("alice/app") == "private"
    acc.set_default_visibility("alice", "public")
    assert acc.visibility("alice/other") == "public"
    with pytest.raises(InvalidArgument):
        acc.set_visibility("alice/app", "internal")
    with pytest.raises(InvalidArgument):
        acc.set_visibility("../etc", "public")
    with pytest.raises(NotFound):
        acc.set_default_visibility("nobody", "public")


@pytest.fixture
def world(acc: Accounts) -> Accounts:
    """admin; alice (own namespace); acme with readers, writers, admins, a repo team;
    acme/pub public, acme/priv private, library busybox public."""
    acc.add_user("root", "pw", admin=True)
    for name in ("alice", "reader", "writer", "boss", "appdev", "outsider"):
        acc.add_user(name, "pw")
    acc.add_org("acme")
    acc.add_org("other")
    for team, target, role, member in (
        ("readers", "acme", "read", "reader"),
        ("writers", "acme", "write", "writer"),
        ("admins", "acme", "admin", "boss"),
        ("app", "acme/app", "write", "appdev"),
    ):
        acc.add_team("acme", team)
        acc.grant("acme", team, target, role)
        acc.add_member("acme", team, member)
    acc.add_team("other", "all")
    acc.grant("other", "all", "other", "admin")
    acc.add_member("other", "all", "outsider")
    acc.set_visibility("acme/pub", "public")
    acc.set_visibility("busybox", "public")
    return acc


ALL = {"pull", "push", "delete"}
RW = {"pull", "push"}
R = {"pull"}
NONE: set[str] = set()

RIGHTS = [
    # principal, acme/priv, acme/pub, acme/app, alice/app, busybox, library/private
    (ANONYMOUS, NONE, R, NONE, NONE, R, NONE),
    (user("root", admin=True), ALL, ALL, ALL, ALL, ALL, ALL),
    (user("alice"), NONE, R, NONE, ALL, R, NONE),
    (Principal("alice", "token"), NONE, R, NONE, ALL, R, NONE),
    (user("reader"), R, R, R, NONE, R, NONE),
    (user("writer"), RW, RW, RW, NONE, R, NONE),
    (user("boss"), ALL, ALL, ALL, NONE, R, NONE),
    (user("appdev"), NONE, R, RW, NONE, R, NONE),
    (user("outsider"), NONE, R, NONE, NONE, R, NONE),
    (user("ghost"), NONE, R, NONE, NONE, R, NONE),
    (Principal("alice", "robot"), NONE, R, NONE, NONE, R, NONE),  # robots own nothing
]
REPOS = ["acme/priv", "acme/pub", "acme/app", "alice/app", "busybox", "library/private"]


@pytest.mark.parametrize("row", RIGHTS, ids=lambda r: f"{r[0].kind}:{r[0].name or '-'}")
def test_rights_table(world: Accounts, row: tuple[object, ...]) -> None:
    principal = row[0]
    assert isinstance(principal, Principal)
    got = [world.rights(principal, repo) for repo in REPOS]
    assert got == list(row[1:])
    # the catalog shows what may be pulled
    assert world.visible(principal, REPOS) == [
        repo for repo, rights in zip(REPOS, row[1:], strict=True) if "pull" in rights
    ]


def test_may_manage(world: Accounts) -> None:
    assert world.may_manage(user("root", admin=True), "acme")
    assert world.may_manage(user("alice"), "alice")
    assert world.may_manage(user("boss"), "acme", "acme/priv")
    assert not world.may_manage(user("writer"), "acme", "acme/priv")
    assert not world.may_manage(user("alice"), "acme")
    assert not world.may_manage(ANONYMOUS, "acme")
    world.grant("acme", "app", "acme/app", "admin")
    assert world.may_manage(user("appdev"), "acme", "acme/app")
    assert not world.may_manage(user("appdev"), "acme")


# --- the admin CLI --------------------------------------------------------------------


def _cli(
    tmp: str, *argv: str, stdin: str = "", capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="portside registry")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*argv, "--root", tmp])
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = args.func(args)
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def test_cli(tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: object) -> None:
    tmp = os.path.join(str(tmp_path), "root")
    import portside.registry.accounts as accounts_mod

    monkeypatch.setattr(accounts_mod, "DEFAULT_BCRYPT_ROUNDS", 4)  # type: ignore[attr-defined]
    run = lambda *a, stdin="": _cli(tmp, *a, stdin=stdin, capsys=capsys)  # noqa: E731
    assert run("user", "add", "alice", "--password-stdin", "--admin", stdin="s3cret\n")[0] == 0
    assert run("user", "add", "bob", "--password-stdin", stdin="pw\r\n")[0] == 0
    code, _, err = run("user", "add", "bob", "--password-stdin", stdin="pw\n")
    assert code == 1 and "already exists" in err
    code, _, err = run("user", "add", "carol")
    assert code == 1 and "--password-stdin" in err
    code, out, _ = run("user", "ls")
    assert out.split("\n")[0].split() == ["NAME", "ADMIN", "CREATED"]
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["alice", "yes"], ["bob", "no"]]
    assert run("user", "passwd", "bob", "--password-stdin", stdin="new\n")[0] == 0
    assert run("org", "add", "acme", "--public")[0] == 0
    assert run("team", "add", "acme", "devs")[0] == 0
    assert run("team", "member", "add", "acme", "devs", "bob")[0] == 0
    assert run("team", "grant", "acme", "devs", "acme/app", "write")[0] == 0
    code, out, _ = run("team", "ls", "acme")
    assert "devs" in out and "bob" in out and "acme/app:write" in out
    assert run("repo", "visibility", "acme/app", "private")[0] == 0
    assert run("repo", "visibility", "acme/app")[1] == "private\n"
    code, token, err = run("token", "add", "bob", "--name", "ci", "--expires", "30d")
    assert code == 0 and token.startswith("psp_") and "once" in err
    code, robot_token, err = run("robot", "add", "acme", "ci")
    assert code == 0 and "acme+ci" in err
    assert "acme+ci" in run("robot", "ls", "acme")[1]
    acc = Accounts(Database(sqlite_url(tmp)), bcrypt_rounds=4)
    assert acc.check_password("bob", "new") == user("bob")
    assert acc.check_password("alice", "s3cret") == user("alice", admin=True)
    assert acc.check_password("bob", token.strip()) is not None
    assert acc.check_password("acme+ci", robot_token.strip()) is not None
    assert acc.rights(user("bob"), "acme/app") == RW
    assert acc.visibility("acme/other") == "public"
    assert "ci" in run("token", "ls", "bob")[1]
    assert run("token", "rm", "bob", "ci")[0] == 0
    assert acc.check_password("bob", token.strip()) is None
    assert run("team", "revoke", "acme", "devs", "acme/app")[0] == 0
    assert run("team", "member", "rm", "acme", "devs", "bob")[0] == 0
    assert run("robot", "rm", "acme", "ci")[0] == 0
    assert run("team", "rm", "acme", "devs")[0] == 0
    assert run("org", "rm", "acme")[0] == 0
    assert run("user", "rm", "bob")[0] == 0
    code, _, err = run("user", "rm", "bob")
    assert code == 1 and "no such user" in err


def test_cli_options_before_the_command(tmp_path: object) -> None:
    parser = argparse.ArgumentParser(prog="portside registry")
    parser.add_argument("--root")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--root", str(tmp_path), "user", "ls"])
    assert args.root == str(tmp_path)


def test_parse_expiry() -> None:
    assert parse_expiry("30d", T0) == T0 + 30 * 86400
    assert parse_expiry("12h", T0) == T0 + 12 * 3600
    assert parse_expiry("2030-01-01", T0) == 1893456000.0
    assert parse_expiry("2030-01-01T01:00:00+01:00", T0) == 1893456000.0
    for bad in ("0d", "soon", "12x", "-1d"):
        with pytest.raises(InvalidArgument):
            parse_expiry(bad, T0)
