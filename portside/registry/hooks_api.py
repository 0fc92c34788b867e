"""The JSON API of webhooks and build triggers, mounted by the server next to ``/v2/``.

Managing (who may: a registry admin, or whoever may manage the namespace or
repository — ``access.may_manage(principal, namespace, repository)`` when the access
policy has it, else the ``delete`` right on the repository)::

    GET    /api/v1/webhooks[?namespace=NS|?repository=REPO]   the hooks the caller manages
    POST   /api/v1/webhooks                  {"namespace"|"repository", "url", "events",
                                              "secret", "enabled"} → 201, secret shown
    GET    /api/v1/webhooks/{id}
    PATCH  /api/v1/webhooks/{id}             {"url", "events", "enabled", "secret"}
    DELETE /api/v1/webhooks/{id}
    GET    /api/v1/webhooks/{id}/deliveries[?state=&limit=&before=]
    GET    /api/v1/webhooks/{id}/deliveries/{delivery}         with attempts and payload
    POST   /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver → 202

    GET    /api/v1/triggers[?repository=REPO]
    POST   /api/v1/triggers                  {"repository", "tag"} → 201, token shown once
    GET    /api/v1/triggers/{id}
    DELETE /api/v1/triggers/{id}
    GET    /api/v1/triggers/{id}/builds

Triggering (the trigger's token as ``?token=`` or ``Authorization: Bearer``)::

    POST   /api/v1/triggers/{id}             a tar body → 202 {"id", "status", "status_url"}
    GET    /api/v1/triggers/{id}/builds/{build}   (the token, or a manager)

Errors are ``{"errors": [{"code", "message", "detail"}]}`` as on ``/v2/``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from portside.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)
from portside.registry.interfaces import AuthChallenge, OpenAccess
from portside.registry.triggers import ContextTooLarge
from portside.registry.webhooks import EVENTS, NAMESPACE, namespace_of
from portside.text import is_number

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from portside.registry.interfaces import Access, Principal
    from portside.registry.triggers import Trigger, Triggers
    from portside.registry.webhooks import Hook, Webhooks

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["routes"]

#: the largest JSON body of the management API
MAX_JSON = 64 * 1024
_CHUNK = 1024 * 1024
_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (ContextTooLarge, 413, "SIZE_INVALID"),
    (NotFound, 404, "NOT_FOUND"),
    (InvalidArgument, 400, "INVALID"),
    (AlreadyExists, 409, "CONFLICT"),
    (Conflict, 409, "CONFLICT"),
    (PermissionDenied, 403, "DENIED"),
    (Unavailable, 503, "UNAVAILABLE"),
)


def error_response(exc: PortsideError) -> web.Response:
    """The JSON error answering ``exc`` (401 with the challenge for an
    :class:`AuthChallenge`)."""
    if isinstance(exc, AuthChallenge):
        status, code = exc.status, exc.code
        headers = {"WWW-Authenticate": exc.www_authenticate} if status == 401 else {}
    else:
        status, code = next(((s, c) for t, s, c in _ERRORS if isinstance(exc, t)), (500, "UNKNOWN"))
        headers = {}
    body = {"errors": [{"code": code, "message": str(exc), "detail": None}]}
    return web.json_response(body, status=status, headers=headers)


def _guard(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PortsideError as exc:
            return error_response(exc)

    guarded.__name__ = handler.__name__
    return guarded


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON:
        raise InvalidArgument(f"request body over {MAX_JSON} bytes")
    raw = await request.content.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise InvalidArgument(f"request body over {MAX_JSON} bytes")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("the JSON body must be an object")
    return body


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``body[name]`` if present (None otherwise), of type ``kind``."""
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidArgument(f"invalid {name!r}: {value!r}")
    return value


def _events(body: dict[str, Any]) -> list[str] | None:
    events = _field(body, "events", list)
    if events is not None and not all(isinstance(e, str) for e in events):
        raise InvalidArgument(f"invalid 'events': {events!r}")
    return events


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not is_number(raw) or len(raw) > 18:
        raise InvalidArgument(f"invalid {name} {raw[:40]!r}")
    return int(raw)


def _bearer(request: web.Request) -> str:
    """A trigger token from ``?token=`` or ``Authorization: Bearer``; "" when none."""
    token = request.query.get("token", "")
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if not token and scheme.lower() == "bearer":
        token = value.strip()
    return token


class _Api:
    def __init__(self, webhooks: Webhooks | None, triggers: Triggers | None, access: Access):
        self.webhooks = webhooks
        self.triggers = triggers
        self.access = access

    # -- who may -----------------------------------------------------------------------

    async def principal(self, request: web.Request) -> Principal:
        """The authenticated caller (anonymous: 401 with the access policy's challenge,
        except on an open registry, ``--auth none``, where everyone may do everything)."""
        principal = await asyncio.to_thread(
            self.access.authenticate, request.headers, request.remote or ""
        )
        if principal.anonymous and not isinstance(self.access, OpenAccess):
            raise AuthChallenge("authentication required", self.access.challenge([]))
        return principal

    def may_manage(self, principal: Principal, namespace: str, repository: str = "") -> bool:
        """Admins, and who the access policy lets manage the namespace (or repository);
        without a ``may_manage`` of its own, the right to delete in the repository."""
        if principal.admin:
            return True
        manage = getattr(self.access, "may_manage", None)
        if manage is not None:
            return bool(manage(principal, namespace, repository))
        target = repository or namespace
        return "delete" in self.access.authorize(principal, target, {"delete"})

    def _hook_manageable(self, principal: Principal, hook: Hook) -> bool:
        if hook.scope_kind == NAMESPACE:
            return self.may_manage(principal, hook.scope)
        return self.may_manage(principal, namespace_of(hook.scope), hook.scope)

    async def managed_hook(self, request: web.Request) -> tuple[Principal, Hook]:
        """The hook of the path, if the caller manages it (otherwise "not found")."""
        principal = await self.principal(request)
        hook_id = int(request.match_info["hook"])
        hook = await asyncio.to_thread(self._webhooks.get, hook_id)
        if not await asyncio.to_thread(self._hook_manageable, principal, hook):
            raise NotFound(f"webhook {hook_id} not found")
        return principal, hook

    async def managed_trigger(self, request: web.Request) -> tuple[Principal, Trigger]:
        principal = await self.principal(request)
        trigger_id = int(request.match_info["trigger"])
        trigger = await asyncio.to_thread(self._triggers.get, trigger_id)
        repo = trigger.repository
        if not await asyncio.to_thread(self.may_manage, principal, namespace_of(repo), repo):
            raise NotFound(f"trigger {trigger_id} not found")
        return principal, trigger

    @property
    def _webhooks(self) -> Webhooks:
        assert self.webhooks is not None
        return self.webhooks

    @property
    def _triggers(self) -> Triggers:
        assert self.triggers is not None
        return self.triggers

    # -- webhooks ----------------------------------------------------------------------

    async def list_hooks(self, request: web.Request) -> web.StreamResponse:
        principal = await self.principal(request)
        namespace, repository = request.query.get("namespace"), request.query.get("repository")
        hooks = await asyncio.to_thread(
            self._webhooks.hooks, namespace=namespace, repository=repository
        )

        def mine() -> list[Hook]:
            return [h for h in hooks if self._hook_manageable(principal, h)]

        shown = hooks if principal.admin else await asyncio.to_thread(mine)
        return web.json_response({"webhooks": [h.to_json() for h in shown]})

    async def create_hook(self, request: web.Request) -> web.StreamResponse:
        principal = await self.principal(request)
        body = await _json_body(request)
        namespace = _field(body, "namespace", str)
        repository = _field(body, "repository", str)
        scope_ns = namespace if namespace is not None else namespace_of(repository or "")
        if not await asyncio.to_thread(self.may_manage, principal, scope_ns, repository or ""):
            raise PermissionDenied(f"not allowed to manage {repository or namespace!r}")
        events = _events(body)
        hook = await asyncio.to_thread(
            lambda: self._webhooks.create(
                _field(body, "url", str) or "",
                namespace=namespace,
                repository=repository,
                events=EVENTS if events is None else events,
                secret=_field(body, "secret", str),
                enabled=_field(body, "enabled", bool) is not False,
                created_by=principal.name,
            )
        )
        return web.json_response(hook.to_json(with_secret=True), status=201)

    async def get_hook(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        return web.json_response(hook.to_json())

    async def update_hook(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        body = await _json_body(request)
        changed = await asyncio.to_thread(
            lambda: self._webhooks.update(
                hook.id,
                url=_field(body, "url", str),
                events=_events(body),
                enabled=_field(body, "enabled", bool),
                secret=_field(body, "secret", str),
            )
        )
        return web.json_response(changed.to_json())

    async def delete_hook(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        await asyncio.to_thread(self._webhooks.delete, hook.id)
        return web.Response(status=204)

    async def list_deliveries(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        found = await asyncio.to_thread(
            lambda: self._webhooks.deliveries(
                hook.id,
                state=request.query.get("state"),
                limit=_int_query(request, "limit", 50) or 50,
                before=_int_query(request, "before", None),
            )
        )
        return web.json_response({"deliveries": [d.to_json() for d in found]})

    async def get_delivery(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        delivery_id = int(request.match_info["delivery"])

        def read() -> dict[str, Any]:
            doc = self._webhooks.delivery(hook.id, delivery_id).to_json()
            doc["attempts_log"] = [a.to_json() for a in self._webhooks.attempts(delivery_id)]
            doc["payload"] = json.loads(self._webhooks.payload(delivery_id))
            return doc

        return web.json_response(await asyncio.to_thread(read))

    async def redeliver(self, request: web.Request) -> web.StreamResponse:
        _, hook = await self.managed_hook(request)
        delivery_id = int(request.match_info["delivery"])
        again = await asyncio.to_thread(self._webhooks.redeliver, hook.id, delivery_id)
        return web.json_response(again.to_json(), status=202)

    # -- triggers: managing ------------------------------------------------------------

    async def list_triggers(self, request: web.Request) -> web.StreamResponse:
        principal = await self.principal(request)
        repository = request.query.get("repository")

        def mine() -> list[Trigger]:
            found = self._triggers.triggers(repository)
            return [
                t
                for t in found
                if self.may_manage(principal, namespace_of(t.repository), t.repository)
            ]

        shown = await asyncio.to_thread(mine)
        return web.json_response({"triggers": [self._trigger_json(request, t) for t in shown]})

    @staticmethod
    def _trigger_json(request: web.Request, trigger: Trigger) -> dict[str, Any]:
        doc = trigger.to_json()
        doc["path"] = f"/api/v1/triggers/{trigger.id}"
        doc["url"] = f"{request.url.origin()}{doc['path']}"
        return doc

    async def create_trigger(self, request: web.Request) -> web.StreamResponse:
        principal = await self.principal(request)
        body = await _json_body(request)
        repository = _field(body, "repository", str) or ""
        if not await asyncio.to_thread(
            self.may_manage, principal, namespace_of(repository), repository
        ):
            raise PermissionDenied(f"not allowed to manage {repository!r}")
        trigger, token = await asyncio.to_thread(
            lambda: self._triggers.create(
                repository, tag=_field(body, "tag", str) or "latest", created_by=principal.name
            )
        )
        doc = self._trigger_json(request, trigger)
        doc["token"] = token
        return web.json_response(doc, status=201)

    async def get_trigger(self, request: web.Request) -> web.StreamResponse:
        _, trigger = await self.managed_trigger(request)
        return web.json_response(self._trigger_json(request, trigger))

    async def delete_trigger(self, request: web.Request) -> web.StreamResponse:
        _, trigger = await self.managed_trigger(request)
        await asyncio.to_thread(self._triggers.delete, trigger.id)
        return web.Response(status=204)

    async def list_builds(self, request: web.Request) -> web.StreamResponse:
        _, trigger = await self.managed_trigger(request)
        limit = _int_query(request, "limit", 50) or 50
        found = await asyncio.to_thread(self._triggers.builds, trigger.id, limit=limit)
        return web.json_response({"builds": [b.to_json() for b in found]})

    # -- triggers: with the token ------------------------------------------------------

    async def _token_trigger(self, request: web.Request) -> Trigger:
        trigger_id = int(request.match_info["trigger"])
        token = _bearer(request)
        if not token:
            raise AuthChallenge(
                "a trigger token is needed (?token= or Authorization: Bearer)",
                'Bearer realm="portside-trigger"',
            )
        return await asyncio.to_thread(self._triggers.authenticate, trigger_id, token)

    async def fire(self, request: web.Request) -> web.StreamResponse:
        trigger = await self._token_trigger(request)
        limit = self._triggers.max_context
        if request.content_length is not None and request.content_length > limit:
            raise ContextTooLarge(f"build context over the limit of {limit} bytes")
        upload = await asyncio.to_thread(self._triggers.upload)
        try:
            async for chunk in request.content.iter_chunked(_CHUNK):
                await asyncio.to_thread(upload.write, chunk)
        except BaseException:
            await asyncio.to_thread(upload.discard)
            raise
        build = await asyncio.to_thread(self._triggers.submit, trigger.id, upload)
        status_url = f"/api/v1/triggers/{trigger.id}/builds/{build.id}"
        return web.json_response(
            {"id": build.id, "status": build.status, "tag": build.tag, "status_url": status_url},
            status=202,
            headers={"Location": status_url},
        )

    async def get_build(self, request: web.Request) -> web.StreamResponse:
        """A build's status, for the trigger's token or a manager of the trigger (a
        Bearer that is not the trigger's token is tried as the registry's own)."""
        trigger_id = int(request.match_info["trigger"])
        try:
            if not _bearer(request):
                raise PermissionDenied("no trigger token")
            await self._token_trigger(request)
        except PermissionDenied:
            if request.query.get("token"):
                raise
            await self.managed_trigger(request)
        build_id = int(request.match_info["build"])
        build = await asyncio.to_thread(self._triggers.build, trigger_id, build_id)
        return web.json_response(build.to_json())


def routes(
    webhooks: Webhooks | None, triggers: Triggers | None, access: Access
) -> list[tuple[str, str, Handler]]:
    """The (method, path, handler) routes of the webhooks and triggers API; a group is
    left out when its store is None."""
    api = _Api(webhooks, triggers, access)
    table: list[tuple[str, str, Handler]] = []
    hook = r"/api/v1/webhooks/{hook:\d{1,9}}"  # ids: 32-bit columns, 64-bit deliveries
    trigger = r"/api/v1/triggers/{trigger:\d{1,9}}"
    if webhooks is not None:
        table += [
            ("GET", "/api/v1/webhooks", api.list_hooks),
            ("POST", "/api/v1/webhooks", api.create_hook),
            ("GET", hook, api.get_hook),
            ("PATCH", hook, api.update_hook),
            ("DELETE", hook, api.delete_hook),
            ("GET", hook + "/deliveries", api.list_deliveries),
            ("GET", hook + r"/deliveries/{delivery:\d{1,18}}", api.get_delivery),
            ("POST", hook + r"/deliveries/{delivery:\d+}/redeliver", api.redeliver),
        ]
    if triggers is not None:
        table += [
            ("GET", "/api/v1/triggers", api.list_triggers),
            ("POST", "/api/v1/triggers", api.create_trigger),
            ("GET", trigger, api.get_trigger),
            ("POST", trigger, api.fire),
            ("DELETE", trigger, api.delete_trigger),
            ("GET", trigger + "/builds", api.list_builds),
            ("GET", trigger + r"/builds/{build:\d{1,9}}", api.get_build),
        ]
    return [(method, path, _guard(handler)) for method, path, handler in table]
