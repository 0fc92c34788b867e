"""The web UI's management pages: a namespace with an organization's default
visibility, teams, members and roles; a repository's settings; webhooks and their
deliveries; one's personal access tokens. Each checks the visitor's rights as the API
does (through :class:`~portside.registry.ui.UI`'s ``may_manage`` and ``require``)
before it reads or changes anything. Every POST reaching here has passed the CSRF
check.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

from portside.errors import InvalidArgument, NotFound, PermissionDenied
from portside.registry.ui import HOOK_EVENTS, LIBRARY, PAGE, namespace_of, see_other
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from aiohttp import web

    from portside.registry.accounts import Accounts
    from portside.registry.interfaces import Principal
    from portside.registry.ui import UI, Visit
    from portside.registry.webhooks import Webhooks

__all__ = ["Manage"]


class Manage:
    """The management pages of ``ui``."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui

    # --- namespaces and teams ------------------------------------------------------------

    def _namespace_name(self, request: web.Request) -> str:
        from portside.registry.names import check_name

        ns = request.match_info["ns"]
        try:
            check_name(ns)
        except InvalidArgument:
            raise NotFound(f"namespace {ns!r} not found") from None
        if "/" in ns:
            raise NotFound(f"namespace {ns!r} not found")
        return ns

    async def namespace(self, request: web.Request, visit: Visit) -> web.Response:
        ns = self._namespace_name(request)

        def load() -> dict[str, Any]:
            rows, more = self.ui.listing(
                visit.principal, prefix=ns + "/", last=request.query.get("last", "")
            )
            org = kind = None
            teams: list[Any] = []
            manage = self.ui.may_manage(visit.principal, ns)
            if self.ui.accounts is not None:
                org = next((o for o in self.ui.accounts.orgs() if o.name == ns), None)
                if org is not None and manage:
                    teams = self.ui.accounts.teams(ns)
                kind = "organization" if org else self._user_kind(ns)
            kind = kind or (LIBRARY if ns == LIBRARY else "namespace")
            return {"repositories": rows, "more": more, "org": org, "teams": teams,
                    "manage": manage, "kind": kind}  # fmt: skip

        data = await asyncio.to_thread(load)
        return self.ui.render(visit, "namespace.html", title=ns, namespace=ns, **data)

    def _user_kind(self, name: str) -> str | None:
        try:
            return "user" if self.ui.need_accounts().user(name).kind == "user" else None
        except NotFound:
            return None

    def _managed_org(self, visit: Visit, ns: str) -> Accounts:
        accounts = self.ui.need_accounts()
        if not self.ui.may_manage(visit.principal, ns):
            raise PermissionDenied(f"not allowed to manage {ns}")
        return accounts

    async def namespace_post(self, request: web.Request, visit: Visit) -> web.Response:
        ns, what = self._namespace_name(request), request.match_info["what"]

        def change() -> None:
            accounts = self._managed_org(visit, ns)
            if what == "visibility":
                accounts.set_default_visibility(ns, visit.field("visibility"))
            else:
                accounts.add_team(ns, visit.field("team"))

        await asyncio.to_thread(change)
        return see_other(f"/ui/n/{quote(ns, safe='')}")

    async def team_post(self, request: web.Request, visit: Visit) -> web.Response:
        ns, what = self._namespace_name(request), request.match_info["what"]
        team = request.match_info["team"]

        def change() -> None:
            accounts = self._managed_org(visit, ns)
            if what == "delete":
                accounts.remove_team(ns, team)
            elif what == "members":
                accounts.add_member(ns, team, visit.field("user"))
            else:
                accounts.grant(ns, team, visit.field("target"), visit.field("role"))

        await asyncio.to_thread(change)
        return see_other(f"/ui/n/{quote(ns, safe='')}")

    async def team_delete(self, request: web.Request, visit: Visit) -> web.Response:
        ns, what = self._namespace_name(request), request.match_info["what"]
        team = request.match_info["team"]

        def change() -> None:
            accounts = self._managed_org(visit, ns)
            if what == "members":
                accounts.remove_member(ns, team, visit.field("user"))
            else:
                accounts.revoke(ns, team, visit.field("target"))

        await asyncio.to_thread(change)
        return see_other(f"/ui/n/{quote(ns, safe='')}")

    async def settings(self, visit: Visit, name: str) -> web.Response:
        def load() -> dict[str, Any]:
            self.ui.require(visit.principal, name, "manage")
            hooks = self.ui.webhooks.hooks(repository=name) if self.ui.webhooks is not None else []
            return {"hooks": hooks, "visibility": self.ui.visibility(name),
                    "hooks_enabled": self.ui.webhooks is not None}  # fmt: skip

        data = await asyncio.to_thread(load)
        return self.ui.render(
            visit, "settings.html", title=f"Settings of {name}", name=name,
            namespace=namespace_of(name), scope_kind="repository", scope=name,
            events=HOOK_EVENTS, **data,
        )  # fmt: skip

    # --- webhooks ------------------------------------------------------------------------

    def _need_webhooks(self) -> Webhooks:
        if self.ui.webhooks is None:
            raise NotFound("webhooks are not enabled on this registry")
        return self.ui.webhooks

    def _manages_hook(self, principal: Principal, kind: str, scope: str) -> bool:
        if kind == "namespace":
            return self.ui.may_manage(principal, scope)
        return self.ui.may_manage(principal, namespace_of(scope), scope)

    async def hooks(self, request: web.Request, visit: Visit) -> web.Response:
        hooks_store = self._need_webhooks()
        self.ui.need_user(visit)
        namespace, repository = request.query.get("namespace"), request.query.get("repository")
        kind, scope = ("namespace", namespace) if namespace else ("repository", repository)

        def load() -> tuple[list[Any], bool]:
            found = hooks_store.hooks(namespace=namespace or None, repository=repository or None)
            shown = [h for h in found if self._manages_hook(visit.principal, h.scope_kind, h.scope)]
            may_create = not scope or self._manages_hook(visit.principal, kind, scope)
            return shown, may_create

        hooks, may_create = await asyncio.to_thread(load)
        title = f"Webhooks of {kind} {scope}" if scope else "Webhooks"
        return self.ui.render(
            visit, "hooks.html", title=title, hooks=hooks, may_create=may_create,
            scope_kind=kind if scope else "", scope=scope or "", events=HOOK_EVENTS,
        )  # fmt: skip

    async def hook_create(self, request: web.Request, visit: Visit) -> web.Response:
        hooks_store = self._need_webhooks()
        self.ui.need_user(visit)
        kind, scope = visit.field("scope_kind"), visit.field("scope")
        if kind not in ("namespace", "repository"):
            raise InvalidArgument(f"invalid webhook scope {kind!r}")
        events = [e for e in visit.form.getall("event", []) if isinstance(e, str)]
        secret = visit.field("secret")

        def create() -> Any:
            if not self._manages_hook(visit.principal, kind, scope):
                raise PermissionDenied(f"not allowed to manage {kind} {scope!r}")
            return hooks_store.create(
                visit.field("url"), namespace=scope if kind == "namespace" else None,
                repository=scope if kind == "repository" else None, events=events,
                secret=secret or None, created_by=visit.principal.name,
            )  # fmt: skip

        hook = await asyncio.to_thread(create)
        if secret:
            return see_other(f"/ui/hooks/{hook.id}")
        return self.ui.render(
            visit, "secret.html", title=f"Webhook {hook.id}: its signing secret",
            secret=hook.secret, back=f"/ui/hooks/{hook.id}",
        )  # fmt: skip

    def _managed_hook(self, visit: Visit, hook_id: int) -> Any:
        hook = self._need_webhooks().get(hook_id)
        if not self._manages_hook(visit.principal, hook.scope_kind, hook.scope):
            raise NotFound(f"webhook {hook_id} not found")
        return hook

    async def hook(self, request: web.Request, visit: Visit) -> web.Response:
        self.ui.need_user(visit)
        hook_id = int(request.match_info["hook"])

        def load() -> tuple[Any, list[Any]]:
            hook = self._managed_hook(visit, hook_id)
            return hook, self._need_webhooks().deliveries(hook_id, limit=PAGE)

        hook, deliveries = await asyncio.to_thread(load)
        return self.ui.render(
            visit, "hook.html", title=f"Webhook {hook_id}", hook=hook, deliveries=deliveries
        )

    async def hook_post(self, request: web.Request, visit: Visit) -> web.Response:
        self.ui.need_user(visit)
        hook_id, what = int(request.match_info["hook"]), request.match_info["what"]

        def change() -> None:
            self._managed_hook(visit, hook_id)
            if what == "delete":
                self._need_webhooks().delete(hook_id)
            else:
                self._need_webhooks().update(hook_id, enabled=visit.field("enabled") == "1")

        await asyncio.to_thread(change)
        return see_other("/ui/hooks" if what == "delete" else f"/ui/hooks/{hook_id}")

    async def delivery(self, request: web.Request, visit: Visit) -> web.Response:
        self.ui.need_user(visit)
        hook_id, delivery_id = int(request.match_info["hook"]), int(request.match_info["delivery"])

        def load() -> dict[str, Any]:
            hook = self._managed_hook(visit, hook_id)
            store = self._need_webhooks()
            delivery = store.delivery(hook_id, delivery_id)
            raw = store.payload(delivery_id)
            try:
                payload = json.dumps(json.loads(raw), indent=2, sort_keys=True)
            except ValueError:
                payload = raw.decode(errors="replace")
            return {"hook": hook, "delivery": delivery, "payload": payload,
                    "attempts": store.attempts(delivery_id)}  # fmt: skip

        data = await asyncio.to_thread(load)
        return self.ui.render(visit, "delivery.html", title=f"Delivery {delivery_id}", **data)

    # --- personal access tokens ------------------------------------------------------------

    async def tokens(self, request: web.Request, visit: Visit) -> web.Response:
        accounts = self.ui.need_accounts()
        user = self.ui.need_user(visit)
        found = await asyncio.to_thread(accounts.tokens, user)
        return self.ui.render(visit, "tokens.html", title="Tokens", tokens=found)

    async def token_create(self, request: web.Request, visit: Visit) -> web.Response:
        accounts = self.ui.need_accounts()
        user = self.ui.need_user(visit)
        days = visit.field("expires")
        if days and (not is_number(days) or not 0 < int(days) <= 3650):
            raise InvalidArgument(f"invalid expiry {days!r}: want 1 to 3650 days")
        expires = time.time() + int(days) * 86400 if days else None
        _, secret = await asyncio.to_thread(
            accounts.add_token, user, visit.field("name")[:100], expires
        )
        return self.ui.render(
            visit, "secret.html", title="Your new token", secret=secret, back="/ui/tokens"
        )

    async def token_delete(self, request: web.Request, visit: Visit) -> web.Response:
        accounts = self.ui.need_accounts()
        user = self.ui.need_user(visit)
        await asyncio.to_thread(accounts.remove_token, user, request.match_info["token"])
        return see_other("/ui/tokens")
