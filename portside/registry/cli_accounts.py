"""``portside registry user|org|team|repo|token|robot …``: the account admin commands.

They open the metadata store directly (``--root DIR``, ``--db URL``, or the root and
database of ``--config FILE``); no server needs to run. Secrets are read from stdin
(``--password-stdin``) and printed once (``token add``, ``robot add``)::

    portside registry user add alice --password-stdin [--admin]
    portside registry user passwd alice --password-stdin
    portside registry user rm alice | user ls
    portside registry org add acme [--public] | org rm acme | org ls
    portside registry team add acme devs | team rm acme devs | team ls acme
    portside registry team member add|rm acme devs alice
    portside registry team grant acme devs acme/app write     # or the namespace: acme
    portside registry team revoke acme devs acme/app
    portside registry repo visibility acme/app public|private
    portside registry token add alice [--name ci] [--expires 30d|2030-01-01]
    portside registry token rm alice ID|NAME | token ls alice
    portside registry robot add acme ci | robot rm acme ci | robot ls acme

Each handler is ``func(args) -> int`` (set as the parser's ``func`` default).
"""

from __future__ import annotations

import argparse
import os
import sys

from portside.errors import InvalidArgument, PortsideError
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portside.registry.accounts import Accounts

__all__ = ["add_commands", "open_accounts", "parse_expiry"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float) -> float:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` from ``now``, or a date
    (``2030-01-31``, UTC) or ISO 8601 time: a UNIX time."""
    text = text.strip()
    if len(text) > 1 and is_number(text[:-1]) and text[-1] in _UNITS:
        seconds = int(text[:-1]) * _UNITS[text[-1]]
        if seconds <= 0:
            raise InvalidArgument(f"invalid expiry {text!r}: not in the future")
        return now + seconds
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(
            f"invalid expiry {text!r}: want a duration (30d, 12h, 90m) or a date (2030-01-31)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def open_accounts(args: argparse.Namespace) -> Accounts:
    """The account store of ``--root``/``--db``/``--config`` (``args.settings`` when
    ``portside registry`` resolved them already)."""
    from portside.registry.accounts import Accounts
    from portside.registry.config import build_config
    from portside.registry.db import Database

    settings = getattr(args, "settings", None)
    if settings is None:
        flags = {"root": getattr(args, "root", None), "db": getattr(args, "db", None)}
        settings = build_config(flags, getattr(args, "config", None))
    if not settings.db:
        os.makedirs(settings.root, exist_ok=True)
    return Accounts(Database(settings.db_url))


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise InvalidArgument("the passwords differ")
    else:
        raise InvalidArgument("no password: use --password-stdin")
    if not password:
        raise InvalidArgument("empty password")
    return password


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --- handlers -------------------------------------------------------------------------


def _user_add(acc: Accounts, args: argparse.Namespace) -> None:
    acc.add_user(args.name, _read_password(args), admin=args.admin)


def _user_passwd(acc: Accounts, args: argparse.Namespace) -> None:
    acc.set_password(args.name, _read_password(args))


def _user_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_user(args.name)


def _user_ls(acc: Accounts, args: argparse.Namespace) -> None:
    rows = [("NAME", "ADMIN", "CREATED")]
    rows += [(u.name, "yes" if u.admin else "no", _when(u.created)) for u in acc.users()]
    _table(rows)


def _org_add(acc: Accounts, args: argparse.Namespace) -> None:
    acc.add_org(args.name, default_visibility="public" if args.public else "private")


def _org_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_org(args.name)


def _org_ls(acc: Accounts, args: argparse.Namespace) -> None:
    rows = [("NAME", "DEFAULT VISIBILITY", "CREATED")]
    rows += [(o.name, o.default_visibility, _when(o.created)) for o in acc.orgs()]
    _table(rows)


def _team_add(acc: Accounts, args: argparse.Namespace) -> None:
    acc.add_team(args.org, args.team)


def _team_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_team(args.org, args.team)


def _team_ls(acc: Accounts, args: argparse.Namespace) -> None:
    rows = [("TEAM", "MEMBERS", "ROLES")]
    for team in acc.teams(args.org):
        roles = ", ".join(f"{target}:{role}" for target, role in team.grants)
        rows.append((team.name, ", ".join(team.members) or "-", roles or "-"))
    _table(rows)


def _member_add(acc: Accounts, args: argparse.Namespace) -> None:
    acc.add_member(args.org, args.team, args.user)


def _member_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_member(args.org, args.team, args.user)


def _team_grant(acc: Accounts, args: argparse.Namespace) -> None:
    acc.grant(args.org, args.team, args.target, args.role)


def _team_revoke(acc: Accounts, args: argparse.Namespace) -> None:
    acc.revoke(args.org, args.team, args.target)


def _repo_visibility(acc: Accounts, args: argparse.Namespace) -> None:
    if args.visibility is None:
        print(acc.visibility(args.repository))
    else:
        acc.set_visibility(args.repository, args.visibility)


def _token_add(acc: Accounts, args: argparse.Namespace) -> None:
    expires = parse_expiry(args.expires, acc.clock()) if args.expires else None
    _, secret = acc.add_token(args.user, args.name or "", expires)
    print(secret)
    print("the token is shown only this once", file=sys.stderr)


def _token_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_token(args.user, args.token)


def _token_ls(acc: Accounts, args: argparse.Namespace) -> None:
    rows = [("ID", "NAME", "CREATED", "EXPIRES", "LAST USED")]
    for t in acc.tokens(args.user):
        rows.append(
            (str(t.id), t.name or "-", _when(t.created), _when(t.expires), _when(t.last_used))
        )
    _table(rows)


def _robot_add(acc: Accounts, args: argparse.Namespace) -> None:
    name, secret = acc.add_robot(args.org, args.name)
    print(secret)
    print(f"robot {name}: log in as {name!r} with this token, shown only once", file=sys.stderr)


def _robot_rm(acc: Accounts, args: argparse.Namespace) -> None:
    acc.remove_robot(args.org, args.name)


def _robot_ls(acc: Accounts, args: argparse.Namespace) -> None:
    rows = [("NAME", "CREATED")]
    rows += [(r.name, _when(r.created)) for r in acc.robots(args.org)]
    _table(rows)


# --- parsers --------------------------------------------------------------------------


def _run(handler: Callable[[Accounts, argparse.Namespace], None]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            handler(open_accounts(args), args)
        except PortsideError as exc:
            print(f"portside registry: {exc}", file=sys.stderr)
            return 1
        return 0

    run.__name__ = handler.__name__.lstrip("_")
    return run


def _leaf(
    group: Any, name: str, handler: Callable[[Accounts, argparse.Namespace], None], help: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help, description=help)
    # SUPPRESS: the same options given before the command (to "registry") are kept
    parser.add_argument("--root", default=argparse.SUPPRESS, help="the registry's data directory")
    parser.add_argument("--db", default=argparse.SUPPRESS, help="metadata store URL")
    parser.add_argument("--config", default=argparse.SUPPRESS, help="the registry's config file")
    parser.set_defaults(func=_run(handler))
    return parser


def _group(subparsers: Any, name: str, help: str) -> Any:
    parser = subparsers.add_parser(name, help=help, description=help)
    group = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    group.required = True
    return group


def _password_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def add_commands(subparsers: Any) -> None:
    """Add ``user``, ``org``, ``team``, ``repo``, ``token`` and ``robot`` to
    ``portside registry``'s subparsers."""
    users = _group(subparsers, "user", "manage users")
    p = _leaf(users, "add", _user_add, "add a user")
    p.add_argument("name")
    _password_flags(p)
    p.add_argument("--admin", action="store_true", help="the user may do everything")
    p = _leaf(users, "passwd", _user_passwd, "change a user's password")
    p.add_argument("name")
    _password_flags(p)
    _leaf(users, "rm", _user_rm, "remove a user").add_argument("name")
    _leaf(users, "ls", _user_ls, "list users")

    orgs = _group(subparsers, "org", "manage organizations")
    p = _leaf(orgs, "add", _org_add, "add an organization")
    p.add_argument("name")
    p.add_argument(
        "--public", action="store_true", help="its repositories are public unless set otherwise"
    )
    _leaf(orgs, "rm", _org_rm, "remove an organization, its teams and robots").add_argument("name")
    _leaf(orgs, "ls", _org_ls, "list organizations")

    _team_commands(subparsers)

    repos = _group(subparsers, "repo", "repository settings")
    p = _leaf(repos, "visibility", _repo_visibility, "show or set a repository's visibility")
    p.add_argument("repository")
    p.add_argument("visibility", nargs="?", choices=["public", "private"])

    tokens = _group(subparsers, "token", "personal access tokens")
    p = _leaf(tokens, "add", _token_add, "create a token (printed once)")
    p.add_argument("user")
    p.add_argument("--name", help="a label for the token")
    p.add_argument("--expires", help="a duration (30d, 12h) or a date (2030-01-31)")
    p = _leaf(tokens, "rm", _token_rm, "revoke a token")
    p.add_argument("user")
    p.add_argument("token", help="its ID or name")
    _leaf(tokens, "ls", _token_ls, "list a user's tokens").add_argument("user")

    robots = _group(subparsers, "robot", "robot accounts of organizations")
    p = _leaf(robots, "add", _robot_add, "create a robot ORG+NAME (its token printed once)")
    p.add_argument("org")
    p.add_argument("name")
    p = _leaf(robots, "rm", _robot_rm, "remove a robot")
    p.add_argument("org")
    p.add_argument("name")
    _leaf(robots, "ls", _robot_ls, "list an organization's robots").add_argument("org")


def _team_commands(subparsers: Any) -> None:
    teams = _group(subparsers, "team", "manage an organization's teams")
    for name, handler, text in (
        ("add", _team_add, "add a team"),
        ("rm", _team_rm, "remove a team"),
    ):
        p = _leaf(teams, name, handler, text)
        p.add_argument("org")
        p.add_argument("team")
    _leaf(teams, "ls", _team_ls, "list an organization's teams").add_argument("org")
    members = teams.add_parser("member", help="team members").add_subparsers(
        dest="member_command", metavar="COMMAND"
    )
    members.required = True
    for name, handler, text in (
        ("add", _member_add, "add a user or robot to a team"),
        ("rm", _member_rm, "remove a member from a team"),
    ):
        p = _leaf(members, name, handler, text)
        p.add_argument("org")
        p.add_argument("team")
        p.add_argument("user")
    p = _leaf(teams, "grant", _team_grant, "give a team a role on the namespace or a repository")
    p.add_argument("org")
    p.add_argument("team")
    p.add_argument("target", help="the organization (its namespace) or ORG/REPOSITORY")
    p.add_argument("role", choices=["read", "write", "admin"])
    p = _leaf(teams, "revoke", _team_revoke, "take a team's role away")
    p.add_argument("org")
    p.add_argument("team")
    p.add_argument("target")
