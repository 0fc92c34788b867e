"""The registry's web UI: server-rendered pages under ``/ui/`` (Jinja2 templates in
``ui_templates/``, autoescaped; a little CSS, no script) over the same stores and the
same rules as the API. This module holds the plumbing (sessions, CSRF, errors,
rights), browsing and signing in; :mod:`portside.registry.ui_manage` the management
pages; :mod:`portside.registry.ui_images` what is shown of an image.

Pages: sign in and out; the namespaces and repositories the visitor may see (public
ones for anonymous visitors); search by repository name; a repository's tags (digest,
platform, size, created) and each image (manifest, platforms of an index, layers,
config, history — read from the stored manifests and configs); deleting a tag;
managing a repository's visibility, an organization's default visibility, teams,
members and roles, one's personal access tokens (created → shown once, revoked),
webhooks (created, enabled or disabled, deleted) and their deliveries (state,
attempts, response codes, payload).

Rights are the API's: seeing a repository is ``pull`` (``access.authorize``), deleting
a tag ``delete``, lists go through ``access.may_list``, managing (visibility, teams,
webhooks) is ``may_manage`` as the webhooks API decides it. A repository the visitor
may not pull is "not found", whether it exists or not.

Sessions (:mod:`portside.registry.ui_session`): a signed cookie ``portside_session``
(the key in ``ROOT/keys/ui-session.key``), HttpOnly, SameSite=Lax, Secure when the
registry is reached over HTTPS, 12 hours; a password change or removing the user ends
it. Every visitor has one (anonymous ones too, for the sign-in form's CSRF token).
Every POST must carry the session's CSRF token (compared in constant time) and, when
the browser sends an ``Origin``, come from this registry's own origin.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from portside.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
)
from portside.registry.interfaces import ANONYMOUS, Principal
from portside.registry.ui_images import (
    image_view,
    repo_url,
    short_digest,
    size_text,
    when_text,
)
from portside.registry.ui_session import Session, Sessions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from portside.registry.accounts import Accounts
    from portside.registry.config import RegistryConfig
    from portside.registry.interfaces import Access, EventSink
    from portside.registry.storage import Storage
    from portside.registry.webhooks import Webhooks

    Page = Callable[[web.Request, "Visit"], Awaitable[web.StreamResponse]]

__all__ = ["COOKIE", "Visit", "namespace_of", "routes"]

log = logging.getLogger("portside.registry.ui")

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_templates")
COOKIE = "portside_session"
LIBRARY = "library"
#: rows per page of repositories, tags, deliveries
PAGE = 100
HOOK_EVENTS = ("push", "tag", "pull", "delete", "mount")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFound, 404, "Not found"),
    (PermissionDenied, 403, "Not allowed"),
    (AlreadyExists, 409, "Already exists"),
    (Conflict, 409, "Conflict"),
    (InvalidArgument, 400, "Invalid input"),
    (FailedPrecondition, 400, "Invalid input"),
)


def namespace_of(repository: str) -> str:
    """``alice/app`` → ``alice``; ``busybox`` → ``library``."""
    head, sep, _ = repository.partition("/")
    return head if sep else LIBRARY


@dataclass
class Visit:
    """Who is asking, in this request: the principal, their session, a cookie to set,
    the checked form of a POST."""

    principal: Principal
    session: Session
    cookie: str = ""
    form: Any = None

    @property
    def user(self) -> str:
        return "" if self.principal.anonymous else self.principal.name

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""


def local_path(url: str) -> str:
    """``url`` when it is a path of this UI (a safe place to go after signing in)."""
    ok = url.startswith("/ui/") and "//" not in url and "\\" not in url
    return url if ok and url.isprintable() and len(url) < 2000 else "/ui/"


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


class UI:
    """The pages, over the registry's stores; :meth:`table` lists the routes."""

    def __init__(
        self,
        storage: Storage,
        accounts: Accounts | None,
        webhooks: Webhooks | None,
        access: Access,
        config: RegistryConfig,
        *,
        sink: EventSink | None,
        sessions: Sessions,
    ) -> None:
        import jinja2
        from markupsafe import Markup

        from portside.registry.ui_manage import Manage

        self.storage = storage
        self.accounts = accounts
        self.webhooks = webhooks
        self.access = access
        self.config = config
        self.sink = sink
        self.sessions = sessions
        self.secure = bool(config.tls_cert) or config.external_url.startswith("https://")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            urlpart=lambda v: quote(str(v), safe=""),
            urlquery=lambda v: quote(str(v), safe="/"),
            repo_url=repo_url,
            short=short_digest,
            size=size_text,
            when=when_text,
        )
        self._markup = Markup
        with open(os.path.join(TEMPLATES, "style.css"), "rb") as f:
            self.css = f.read()
        self.manage = Manage(self)

    # --- plumbing ------------------------------------------------------------------------

    def table(self) -> list[tuple[str, str, Any]]:
        page, manage = self._page, self.manage
        hook = r"/ui/hooks/{hook:\d{1,9}}"
        team = "/ui/n/{ns}/teams/{team}"
        return [
            ("GET", "/", self.home),
            ("GET", "/ui", self.home),
            ("GET", "/ui/static/style.css", self.style),
            ("GET", "/ui/", page(self.index)),
            ("GET", "/ui/login", page(self.login_form)),
            ("POST", "/ui/login", page(self.login)),
            ("POST", "/ui/logout", page(self.logout)),
            ("GET", "/ui/search", page(self.search)),
            ("GET", "/ui/r/{path:.+}", page(self.repository_get)),
            ("POST", "/ui/r/{path:.+}", page(self.repository_post)),
            ("GET", "/ui/n/{ns}", page(manage.namespace)),
            ("POST", "/ui/n/{ns}/{what:visibility|teams}", page(manage.namespace_post)),
            ("POST", team + "/{what:delete|members|grants}", page(manage.team_post)),
            ("POST", team + "/{what:members|grants}/delete", page(manage.team_delete)),
            ("GET", "/ui/hooks", page(manage.hooks)),
            ("POST", "/ui/hooks", page(manage.hook_create)),
            ("GET", hook, page(manage.hook)),
            ("POST", hook + "/{what:enable|delete}", page(manage.hook_post)),
            ("GET", hook + r"/deliveries/{delivery:\d{1,18}}", page(manage.delivery)),
            ("GET", "/ui/tokens", page(manage.tokens)),
            ("POST", "/ui/tokens", page(manage.token_create)),
            ("POST", r"/ui/tokens/{token:\d{1,18}}/delete", page(manage.token_delete)),
        ]

    async def home(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/ui/"})

    async def style(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=self.css, content_type="text/css", headers=headers)

    def _page(self, handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            visit = await self._visit(request)
            try:
                if request.method == "POST":
                    await self._check_post(request, visit)
                response = await handler(request, visit)
            except PortsideError as exc:
                response = self._failure(request, visit, exc)
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("web ui: %s %s failed", request.method, request.path)
                response = self._failure(request, visit, PortsideError("internal error"))
            if visit.cookie:
                response.set_cookie(
                    COOKIE, visit.cookie, max_age=int(self.sessions.ttl), path="/",
                    httponly=True, samesite="Lax", secure=self.secure,
                )  # fmt: skip
            response.headers.update(_HEADERS)
            return response

        page.__name__ = handler.__name__
        return page

    async def _visit(self, request: web.Request) -> Visit:
        """The visitor: their session (a new anonymous one when they have none, or it
        is no longer good) and principal, as it stands in the accounts now."""
        session = self.sessions.read(request.cookies.get(COOKIE, ""))
        principal = ANONYMOUS
        if session is not None and session.user:
            principal, stamp = await asyncio.to_thread(self._whois, session.user)
            if principal.anonymous or not hmac.compare_digest(stamp, session.stamp):
                session = None
        if session is None:
            session, cookie = self.sessions.issue()
            return Visit(ANONYMOUS, session, cookie)
        return Visit(principal, session)

    def _whois(self, user: str) -> tuple[Principal, str]:
        if self.accounts is None:
            return ANONYMOUS, ""
        principal = self.accounts.principal(user)
        if principal.kind != "user":
            return ANONYMOUS, ""
        stamp = getattr(self.accounts, "stamp", None)
        return principal, stamp(user) if stamp is not None else ""

    async def _check_post(self, request: web.Request, visit: Visit) -> None:
        origin = request.headers.get("Origin")
        if origin is not None:
            netloc = urlsplit(origin).netloc if origin != "null" else ""
            if netloc not in (request.host, self.config.external_host) or not netloc:
                raise PermissionDenied(f"refused a form posted from another origin {origin!r}")
        visit.form = await request.post()
        token = visit.form.get("_csrf")
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), visit.session.csrf.encode()
        ):
            raise PermissionDenied("the form's CSRF token is missing or stale: reload the page")

    def render(
        self, visit: Visit, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        csrf = self._markup('<input type="hidden" name="_csrf" value="{}">').format(
            visit.session.csrf
        )
        base = {
            "me": visit.user,
            "admin": visit.principal.admin,
            "has_accounts": self.accounts is not None,
            "q": "",
            "csrf_field": lambda: csrf,
        }
        html = self.env.get_template(template).render({**base, **context})
        return web.Response(text=html, content_type="text/html", status=status)

    def _failure(self, request: web.Request, visit: Visit, exc: PortsideError) -> web.Response:
        status = getattr(exc, "status", None)
        found = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), None)
        if found is None:
            log.error("web ui: %s %s: %s", request.method, request.path, exc)
            found = (500, "Error")
            exc = PortsideError("internal error: see the registry's log")
        if not isinstance(status, int) or not 400 <= status < 500:
            status = found[0]
        title = "Too many attempts" if status == 429 else found[1]
        anonymous = visit.principal.anonymous and self.accounts is not None
        if status == 403 and anonymous and request.method == "GET":
            return see_other("/ui/login?" + urlencode({"next": request.path_qs}))
        referer = urlsplit(request.headers.get("Referer", ""))
        back = "/ui/"
        if referer.netloc == request.host and referer.path.startswith("/ui/"):
            back = local_path(referer.path + (f"?{referer.query}" if referer.query else ""))
        return self.render(
            visit, "error.html", status, title=title, message=str(exc), back=back,
            code=status, path=request.path_qs,
        )  # fmt: skip

    # --- rights -----------------------------------------------------------------------

    def may(self, principal: Principal, repository: str, action: str) -> bool:
        return action in self.access.authorize(principal, repository, {action})

    def may_manage(self, principal: Principal, namespace: str, repository: str = "") -> bool:
        """As the webhooks API decides: admins, the access policy's ``may_manage``, or
        else the right to delete."""
        if principal.admin:
            return True
        manage = getattr(self.access, "may_manage", None)
        if manage is not None:
            return bool(manage(principal, namespace, repository))
        return self.may(principal, repository or namespace, "delete")

    def require(self, principal: Principal, repository: str, action: str = "pull") -> None:
        """Not found unless the visitor may pull; not allowed unless they may ``action``
        (``manage`` for the settings)."""
        if not self.may(principal, repository, "pull"):
            raise NotFound(f"repository {repository} not found")
        if action == "manage":
            if not self.may_manage(principal, namespace_of(repository), repository):
                raise PermissionDenied(f"not allowed to manage {repository}")
        elif action != "pull" and not self.may(principal, repository, action):
            raise PermissionDenied(f"not allowed to {action} in {repository}")

    def need_accounts(self) -> Accounts:
        if self.accounts is None:
            raise NotFound("this registry is open (--auth none): it has no accounts")
        return self.accounts

    def need_user(self, visit: Visit) -> str:
        if self.accounts is not None and visit.principal.anonymous:
            raise PermissionDenied("sign in first")
        return visit.user

    # --- listing ------------------------------------------------------------------------

    def _names(self, prefix: str, contains: str, last: str, limit: int) -> list[str]:
        import sqlalchemy as sa

        from portside.registry.storage import bytewise
        from portside.registry.storage import repositories as table

        with self.storage.db.connect() as conn:
            col = bytewise(conn, table.c.name)
            query = sa.select(table.c.name).order_by(col).limit(limit)
            if last:
                query = query.where(col > last)
            if prefix == LIBRARY + "/":
                query = query.where(~table.c.name.contains("/"))
            elif prefix:
                query = query.where(table.c.name.startswith(prefix, autoescape=True))
            if contains:
                query = query.where(table.c.name.contains(contains, autoescape=True))
            return [row[0] for row in conn.execute(query)]

    def listing(
        self, principal: Principal, *, prefix: str = "", contains: str = "", last: str = ""
    ) -> tuple[list[dict[str, str]], str]:
        """A page of the repositories the visitor may see, with their visibility, and
        the query of the next page ("" when this is the last)."""
        shown: list[str] = []
        batch = 500
        while len(shown) <= PAGE:
            names = self._names(prefix, contains, last, batch)
            shown += self.access.may_list(principal, names)
            if len(names) < batch:
                break
            last = names[-1]
        more = ""
        if len(shown) > PAGE:
            shown = shown[:PAGE]
            more = urlencode(
                {"q": contains, "last": shown[-1]} if contains else {"last": shown[-1]}
            )
        rows = [{"name": n, "visibility": self.visibility(n)} for n in shown]
        return rows, more

    def visibility(self, repository: str) -> str:
        return self.accounts.visibility(repository) if self.accounts is not None else ""

    def _namespaces(self, principal: Principal, repositories: list[dict[str, str]]) -> list[str]:
        found = {namespace_of(r["name"]) for r in repositories}
        if self.accounts is not None and not principal.anonymous:
            found.add(principal.name)
            found |= {
                org.name for org in self.accounts.orgs() if self.may_manage(principal, org.name)
            }
        return sorted(found)

    async def index(self, request: web.Request, visit: Visit) -> web.Response:
        def load() -> tuple[list[dict[str, str]], str, list[str]]:
            rows, more = self.listing(visit.principal, last=request.query.get("last", ""))
            return rows, more, self._namespaces(visit.principal, rows)

        rows, more, namespaces = await asyncio.to_thread(load)
        return self.render(
            visit, "index.html", title="Repositories", repositories=rows, more=more,
            namespaces=namespaces,
        )  # fmt: skip

    async def search(self, request: web.Request, visit: Visit) -> web.Response:
        q = request.query.get("q", "").strip().lower()[:255]
        rows, more = [], ""
        if q:
            rows, more = await asyncio.to_thread(
                lambda: self.listing(
                    visit.principal, contains=q, last=request.query.get("last", "")
                )
            )
        return self.render(visit, "search.html", title="Search", q=q, repositories=rows, more=more)

    # --- signing in ----------------------------------------------------------------------

    async def login_form(self, request: web.Request, visit: Visit) -> web.Response:
        target = local_path(request.query.get("next", "/ui/"))
        if visit.user:
            return see_other(target)
        return self.render(visit, "login.html", title="Sign in", next=target, error="", username="")

    async def login(self, request: web.Request, visit: Visit) -> web.Response:
        from portside.registry.ratelimit import RateLimited

        accounts = self.need_accounts()
        name, password = visit.field("username"), visit.form.get("password", "")
        target = local_path(visit.field("next") or "/ui/")
        error, status = "incorrect user name or password", 401
        try:
            found = await asyncio.to_thread(
                accounts.check_password, name, str(password), request.remote or ""
            )
        except RateLimited as exc:
            found, error, status = None, str(exc), 429
        if found is None or found.kind != "user":
            return self.render(
                visit, "login.html", status, title="Sign in", next=target, error=error,
                username=name,
            )  # fmt: skip
        _, stamp = await asyncio.to_thread(self._whois, found.name)
        _, visit.cookie = self.sessions.issue(found.name, stamp)
        return see_other(target)

    async def logout(self, request: web.Request, visit: Visit) -> web.Response:
        _, visit.cookie = self.sessions.issue()
        return see_other("/ui/")

    # --- repositories ----------------------------------------------------------------------

    @staticmethod
    def _repository_path(request: web.Request) -> tuple[str, list[str]]:
        """``NAME`` and the parts after ``/-/`` of ``/ui/r/NAME/-/…``."""
        from portside.registry.names import check_name

        name, _, rest = request.match_info["path"].partition("/-/")
        try:
            check_name(name)
        except InvalidArgument:
            raise NotFound(f"repository {name!r} not found") from None
        return name, rest.split("/") if rest else []

    async def repository_get(self, request: web.Request, visit: Visit) -> web.Response:
        name, parts = self._repository_path(request)
        if not parts:
            return await self.repository(request, visit, name)
        if parts == ["settings"]:
            return await self.manage.settings(visit, name)
        if len(parts) == 2 and parts[0] in ("tags", "manifests"):
            return await self.image(visit, name, parts[1], parts[0] == "manifests")
        raise NotFound(f"no page {request.path!r}")

    async def repository_post(self, request: web.Request, visit: Visit) -> web.Response:
        name, parts = self._repository_path(request)
        if len(parts) == 3 and parts[0] == "tags" and parts[2] == "delete":
            return await self.delete_tag(request, visit, name, parts[1])
        if parts == ["visibility"]:

            def change() -> None:
                accounts = self.need_accounts()
                self.require(visit.principal, name, "manage")
                accounts.set_visibility(name, visit.field("visibility"))

            await asyncio.to_thread(change)
            return see_other(repo_url(name, "settings"))
        raise NotFound(f"no page {request.path!r}")

    def _tag_rows(self, name: str, last: str) -> tuple[list[dict[str, Any]], str]:
        tags = self.storage.tags(name, last, PAGE + 1)
        more = urlencode({"last": tags[PAGE - 1]}) if len(tags) > PAGE else ""
        rows = []
        for tag in tags[:PAGE]:
            try:
                view = image_view(self.storage, name, tag)
            except NotFound:  # deleted meanwhile
                continue
            rows.append({"tag": tag, **{k: view[k] for k in ("digest", "platform", "size")},
                         "created": view["created"]})  # fmt: skip
        return rows, more

    async def repository(self, request: web.Request, visit: Visit, name: str) -> web.Response:
        p = visit.principal

        def load() -> dict[str, Any]:
            self.require(p, name)
            tags, more = self._tag_rows(name, request.query.get("last", ""))
            return {
                "tags": tags, "more": more, "can_delete": self.may(p, name, "delete"),
                "manage": self.may_manage(p, namespace_of(name), name),
                "visibility": self.visibility(name),
            }  # fmt: skip

        data = await asyncio.to_thread(load)
        host = self.config.external_host or request.host
        return self.render(
            visit, "repository.html", title=name, name=name, namespace=namespace_of(name),
            host=host, **data,
        )  # fmt: skip

    async def image(self, visit: Visit, name: str, reference: str, by_digest: bool) -> web.Response:
        from portside.registry.names import check_digest, check_tag

        p = visit.principal
        try:
            check_digest(reference) if by_digest else check_tag(reference)
        except InvalidArgument:
            raise NotFound(f"no manifest {reference!r} in {name}") from None

        def load() -> tuple[dict[str, Any], bool]:
            self.require(p, name)
            return image_view(self.storage, name, reference), self.may(p, name, "delete")

        view, can_delete = await asyncio.to_thread(load)
        title = f"{name}{'@' if by_digest else ':'}{reference}"
        return self.render(
            visit, "image.html", title=title, name=name, image=view, can_delete=can_delete
        )

    async def delete_tag(
        self, request: web.Request, visit: Visit, name: str, tag: str
    ) -> web.Response:
        from portside.registry.names import check_tag

        try:
            check_tag(tag)
        except InvalidArgument:
            raise NotFound(f"no tag {tag!r} in {name}") from None

        def delete() -> Any:
            self.require(visit.principal, name, "delete")
            return self.storage.delete_manifest(name, tag)[0]

        record = await asyncio.to_thread(delete)
        target = {"mediaType": record.media_type, "size": record.size, "digest": record.digest,
                  "repository": name, "tag": tag}  # fmt: skip
        await self._publish(request, visit.principal, "delete", target)
        return see_other(repo_url(name))

    async def _publish(
        self, request: web.Request, principal: Principal, action: str, target: dict[str, Any]
    ) -> None:
        """Tell the event sink, as the API does after a change."""
        if self.sink is None:
            return
        base = self.config.external_url or f"{request.scheme}://{request.host}"
        target["url"] = f"{base}/v2/{target['repository']}/manifests/{target['digest']}"
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": action,
            "target": target,
            "request": {"id": str(uuid.uuid4()), "addr": request.remote or "",
                        "host": request.host, "method": "DELETE",
                        "useragent": request.headers.get("User-Agent", "")},
            "actor": {"name": principal.name},
            "source": {"addr": self.config.external_host or request.host, "instanceID": "ui"},
        }  # fmt: skip
        try:
            await asyncio.to_thread(self.sink.publish, event)
        except Exception:  # the change is done: a sink failure must not undo the page
            log.exception("publishing a %s event failed", action)


def routes(
    storage: Storage,
    accounts: Accounts | None,
    webhooks: Webhooks | None,
    access: Access,
    config: RegistryConfig,
    *,
    sink: EventSink | None = None,
    sessions: Sessions | None = None,
) -> list[tuple[str, str, Any]]:
    """The web UI's (method, path, handler) routes, for ``make_app``'s ``extra_routes``:
    ``/`` and ``/ui`` redirect to ``/ui/``. ``accounts`` is None on an open registry
    (``--auth none``: no sign-in, everyone may do everything), ``webhooks`` None when
    webhooks are off; ``sink`` hears of the tags deleted here; the session key is
    ``ROOT/keys/ui-session.key`` unless ``sessions`` is given."""
    if sessions is None:
        sessions = Sessions.open(os.path.join(config.root, "keys"))
    return UI(storage, accounts, webhooks, access, config, sink=sink, sessions=sessions).table()
