"""Error classes → HTTP status, in one place, and Docker's error body ``{"message": ...}``."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from portside import errors
from portside.distribution.errors import RegistryDenied, RegistryUnauthorized

log = logging.getLogger("portside.api")

# the class crosses the API boundary, never the message text; the first match wins
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    # a registry's refusal, as moby words it for a pull (translatePullError): denied is
    # "not found"; unauthorized is unknown (500) - on a 401 the docker CLI would ask for
    # a login and wait. Only /auth answers 401 (routes_system.auth).
    (RegistryDenied, 404),
    (RegistryUnauthorized, 500),
    (errors.NotFound, 404),
    (errors.InvalidArgument, 400),
    (errors.AlreadyExists, 409),
    (errors.Conflict, 409),
    (errors.FailedPrecondition, 409),
    (errors.NotModified, 304),
    (errors.PermissionDenied, 403),
    (errors.Unavailable, 503),
)


class BadRequest(errors.InvalidArgument):
    """A malformed request: bad query parameter, bad JSON body."""


class UnsupportedVersion(errors.InvalidArgument):
    """The client asked for an API version outside 1.41-1.50."""


class NotImplementedYet(errors.PortsideError):
    """A Docker API feature Portside does not provide (HTTP 501)."""


def status_of(exc: BaseException) -> int:
    """The HTTP status Docker answers for this error class."""
    if isinstance(exc, NotImplementedYet):
        return 501
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: BaseException, status: int = 0) -> web.Response:
    """Docker's error body for ``exc`` (304 has no body); ``status`` overrides the
    class's."""
    status = status or status_of(exc)
    if status == 304:
        return web.Response(status=304)
    message = str(exc) or type(exc).__name__
    if status == 500 and not isinstance(exc, errors.PortsideError):
        log.exception("internal error", exc_info=exc)
    body = json.dumps({"message": message}).encode() + b"\n"
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: object) -> web.StreamResponse:
    """Turn exceptions raised by a handler into Docker's error JSON."""
    try:
        return await handler(request)  # type: ignore[operator]
    except web.HTTPException as exc:
        if exc.status == 404 and exc.reason == "Not Found" and not exc.text.startswith("{"):
            return web.Response(
                status=404, body=b'{"message":"page not found"}\n', content_type="application/json"
            )
        if exc.status == 405:
            return web.Response(
                status=405,
                body=b'{"message":"method not allowed"}\n',
                content_type="application/json",
            )
        raise
    except errors.PortsideError as exc:
        return error_response(exc)
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as exc:  # a fault of ours: 500 with the message, logged
        return error_response(exc)
