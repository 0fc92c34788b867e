"""Calls of the Docker Engine API, returning the decoded JSON.

``Client.call`` is the general form; the methods below it name the calls the
CLI makes more than once. Errors: ``APIError`` (status + the daemon's message),
``ConnectionFailed`` when the socket does not answer.
"""

from __future__ import annotations

from portside.client.http import (
    DEFAULT_HOST,
    APIError,
    Response,
    TLSOptions,
    Transport,
    quote,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from portside.client.http import Socket

__all__ = ["API_VERSION", "Client", "encode_filters"]

API_VERSION = "1.47"


def encode_filters(filters: list[str] | dict[str, list[str]] | None) -> str | None:
    """``["label=a=b", "status=running"]`` → docker's JSON filter argument
    (``{"label": {"a=b": true}, ...}``), or None when there is none."""
    if not filters:
        return None
    import json

    out: dict[str, dict[str, bool]] = {}
    if isinstance(filters, dict):
        for key, values in filters.items():
            for value in values:
                out.setdefault(key, {})[value] = True
    else:
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"bad format of filter (expected name=value): {item}")
            out.setdefault(key.strip().lower(), {})[value] = True
    return json.dumps(out, separators=(",", ":"))


class Client:
    """One daemon: ``host`` like ``unix:///run/portside.sock`` or ``tcp://h:2376``."""

    def __init__(self, host: str = DEFAULT_HOST, tls: TLSOptions | None = None) -> None:
        self.transport = Transport(host, tls)
        self.host = host
        self.prefix = f"/v{API_VERSION}"

    # -- general forms
    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, object] | None = None,
        body: object = None,
        data: bytes | None = None,
        stream: Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        hijack: bool = False,
    ) -> Response:
        """Send a request; raise APIError for a status >= 400."""
        hdrs = dict(headers or {})
        if body is not None:
            from portside.oci import fastjson

            data = fastjson.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        response = self.transport.request(
            method,
            self.prefix + path,
            query=query,
            body=data,
            stream=stream,
            headers=hdrs,
            hijack=hijack,
        )
        if response.status >= 400:
            message = response.error_message()
            response.close()
            raise APIError(response.status, message)
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Request and decode the JSON answer (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        finally:
            response.close()

    def hijack(
        self, path: str, *, query: dict[str, object] | None = None, body: object = None
    ) -> tuple[Socket, bytes]:
        """POST with ``Upgrade: tcp``; the raw stream socket and buffered bytes."""
        response = self.request("POST", path, query=query, body=body, hijack=True)
        if response.status not in (101, 200):
            response.close()
            raise APIError(response.status, f"unexpected status {response.status} on {path}")
        return response.detach()

    # -- named calls
    def ping(self) -> str:
        response = self.request("GET", "/_ping")
        try:
            return response.read().decode()
        finally:
            response.close()

    def version(self) -> dict:
        return self.call("GET", "/version")

    def container_inspect(self, ref: str, *, size: bool = False) -> dict:
        query = {"size": 1} if size else None
        return self.call("GET", f"/containers/{quote(ref)}/json", query=query)

    def container_create(self, config: dict, name: str | None = None) -> dict:
        return self.call("POST", "/containers/create", query={"name": name}, body=config)

    def container_start(self, ref: str) -> None:
        self.call("POST", f"/containers/{quote(ref)}/start")

    def container_attach(
        self,
        ref: str,
        *,
        stdin: bool,
        stdout: bool = True,
        stderr: bool = True,
        logs: bool = False,
        detach_keys: str | None = None,
    ) -> tuple[Socket, bytes]:
        query: dict[str, object] = {
            "stream": 1,
            "stdin": int(stdin),
            "stdout": int(stdout),
            "stderr": int(stderr),
        }
        if logs:
            query["logs"] = 1
        if detach_keys:
            query["detachKeys"] = detach_keys
        return self.hijack(f"/containers/{quote(ref)}/attach", query=query)

    def container_wait_request(self, ref: str, condition: str = "next-exit") -> Response:
        """Send the wait request now; read its answer later (``read_wait``)."""
        return self.request(
            "POST", f"/containers/{quote(ref)}/wait", query={"condition": condition}
        )

    def container_resize(self, ref: str, height: int, width: int, *, exec_: bool = False) -> None:
        kind = "exec" if exec_ else "containers"
        self.call("POST", f"/{kind}/{quote(ref)}/resize", query={"h": height, "w": width})

    def container_kill(self, ref: str, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{quote(ref)}/kill", query={"signal": signal})

    def container_remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        query = {"force": force or None, "v": volumes or None}
        self.call("DELETE", f"/containers/{quote(ref)}", query=query)

    # -- networks
    def network_list(self, filters: list[str] | dict[str, list[str]] | None = None) -> list[dict]:
        """``GET /networks``; ``filters`` as ``["driver=bridge"]`` or a dict of lists."""
        return self.call("GET", "/networks", query={"filters": encode_filters(filters)}) or []

    def network_inspect(self, ref: str, *, verbose: bool = False, scope: str = "") -> dict:
        query = {"verbose": "true" if verbose else None, "scope": scope or None}
        return self.call("GET", f"/networks/{quote(ref)}", query=query)

    def network_create(self, body: dict) -> dict:
        """``POST /networks/create`` with Docker's NetworkCreateRequest: {"Id", "Warning"}."""
        return self.call("POST", "/networks/create", body=body) or {}

    def network_remove(self, ref: str) -> None:
        self.call("DELETE", f"/networks/{quote(ref)}")

    def network_connect(self, ref: str, container: str, endpoint: dict | None = None) -> None:
        body = {"Container": container, "EndpointConfig": endpoint}
        self.call("POST", f"/networks/{quote(ref)}/connect", body=body)

    def network_disconnect(self, ref: str, container: str, *, force: bool = False) -> None:
        body = {"Container": container, "Force": force}
        self.call("POST", f"/networks/{quote(ref)}/disconnect", body=body)

    def networks_prune(self, filters: list[str] | dict[str, list[str]] | None = None) -> dict:
        """``POST /networks/prune``: {"NetworksDeleted": [names]}."""
        query = {"filters": encode_filters(filters)}
        return self.call("POST", "/networks/prune", query=query) or {}

    # -- registries
    def image_pull(
        self, name: str, tag: str | None, *, platform: str | None = None, auth: str | None = None
    ) -> Response:
        """Start a pull of repository ``name`` (``tag``: a tag or digest; None: every
        tag); its JSON message stream. ``auth`` is the X-Registry-Auth value."""
        query = {"fromImage": name, "tag": tag, "platform": platform or None}
        headers = {"X-Registry-Auth": auth} if auth else None
        return self.request("POST", "/images/create", query=query, headers=headers)

    def image_push(self, name: str, tag: str | None, *, auth: str | None = None) -> Response:
        """Start a push of repository ``name`` (``tag``; None: every tag); its JSON
        message stream."""
        headers = {"X-Registry-Auth": auth} if auth else None
        # "/" and ":" as the docker CLI sends them: /images/127.0.0.1:5000/app/push
        path = "/".join(quote(part).replace("%3A", ":") for part in name.split("/"))
        return self.request("POST", f"/images/{path}/push", query={"tag": tag}, headers=headers)

    def login(self, username: str, password: str, server: str) -> dict:
        """``POST /auth``: ``{"Status": "Login Succeeded", "IdentityToken": …}``."""
        body = {"username": username, "password": password, "serveraddress": server}
        return self.call("POST", "/auth", body=body) or {}


def read_wait(response: Response) -> tuple[int, str | None]:
    """The answer of a wait request: (status code, error message or None)."""
    try:
        value = response.json() or {}
    finally:
        response.close()
    error = value.get("Error") if isinstance(value, dict) else None
    message = error.get("Message") if isinstance(error, dict) else None
    return int(value.get("StatusCode", 0) if isinstance(value, dict) else 0), message or None
