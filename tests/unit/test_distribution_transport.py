"""portside.distribution.transport: retries (503, 429 with Retry-After, connection
errors), keep-alive, the 401 answer, redirects without Authorization across hosts, and
registry errors mapped to classes, against FakeRegistry (waits recorded, not slept)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from portside.distribution.auth import TokenCache
from portside.distribution.config import AuthConfig, RegistryConfig
from portside.distribution.errors import (
    BadContent,
    RateLimited,
    RegistryDenied,
    RegistryError,
    RegistryNotFound,
    RegistryUnauthorized,
    RegistryUnavailable,
    UnsupportedContent,
)
from portside.distribution.hosts import Endpoint
from portside.distribution.transport import Session, error_from_response, retry_after
from portside.testing.fakeregistry import FakeRegistry

ANONYMOUS = AuthConfig()


@pytest.fixture
def reg() -> Iterator[FakeRegistry]:
    with FakeRegistry() as r:
        yield r


class Waits(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def session(
    reg: FakeRegistry, auth: AuthConfig = ANONYMOUS, **options: object
) -> tuple[Session, Waits]:
    waits = Waits()
    options.setdefault("sleep", waits)
    s = Session(
        Endpoint(reg.host, "http", insecure=True), RegistryConfig(), auth, TokenCache(), **options
    )  # type: ignore[arg-type]
    return s, waits


def test_get_and_keep_alive(reg: FakeRegistry) -> None:
    s, waits = session(reg)
    for _ in range(3):
        resp = s.request("GET", "/v2/")
        assert (resp.status, resp.json()) == (200, {})
    assert len({r.peer for r in reg.log}) == 1  # one connection for all three
    assert waits == []


def test_stale_idle_connection_is_replaced_silently(reg: FakeRegistry) -> None:
    s, waits = session(reg)
    s.request("GET", "/v2/")
    (pool,) = s._pools.values()
    pool._idle[0].sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it
    assert s.request("GET", "/v2/").status == 200
    assert waits == [] and len({r.peer for r in reg.log}) == 2


def test_concurrent_requests(reg: FakeRegistry) -> None:
    s, _ = session(reg)
    digest = reg.add_blob("app", b"x" * 100_000)
    got: list[bytes] = []

    def fetch() -> None:
        with s.request("GET", f"/v2/app/blobs/{digest}", stream=True) as resp:
            got.append(b"".join(resp.iter_chunks(4096)))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [b"x" * 100_000] * 8


def test_503_is_retried_with_backoff(reg: FakeRegistry) -> None:
    s, waits = session(reg, backoff=0.25)
    reg.fail_next(503, 3)
    assert s.request("GET", "/v2/").status == 200
    assert waits == [0.25, 0.5, 1.0]
    assert [r.status for r in reg.log] == [503, 503, 503, 200]


def test_503_gives_up_after_max_attempts(reg: FakeRegistry) -> None:
    s, waits = session(reg, backoff=0.1, max_wait=0.3)
    reg.fail_next(503, 10)
    with pytest.raises(RegistryUnavailable) as info:
        s.request("GET", "/v2/")
    assert len(reg.log) == 5 and waits == [0.1, 0.2, 0.3, 0.3]  # capped
    assert str(info.value) == (f"unavailable: injected (registry {reg.host}, after 5 attempts)")
    assert info.value.status == 503


def test_non_idempotent_requests_are_not_retried_on_5xx(reg: FakeRegistry) -> None:
    s, waits = session(reg)
    reg.fail_next(500)
    with pytest.raises(RegistryUnavailable, match=reg.host):
        s.request("PATCH", "/v2/app/blobs/uploads/x", body=b"", idempotent=False)
    assert waits == [] and len(reg.log) == 1


def test_429_honours_retry_after_up_to_the_cap(reg: FakeRegistry) -> None:
    s, waits = session(reg, max_wait=30)
    reg.fail_next(429, 1, {"Retry-After": "7"})
    reg.fail_next(429, 1, {"Retry-After": "3600"})
    reg.fail_next(429, 1)  # no Retry-After: back-off
    assert s.request("GET", "/v2/").status == 200
    assert waits == [7.0, 30.0, 2.0]


def test_429_after_all_attempts(reg: FakeRegistry) -> None:
    s, waits = session(reg)
    reg.fail_next(429, 5, {"Retry-After": "0"})
    with pytest.raises(RateLimited) as info:
        s.request("GET", "/v2/")
    assert waits == [0.0] * 4
    assert str(info.value) == f"toomanyrequests: injected (registry {reg.host}, after 5 attempts)"


def test_retry_after_formats() -> None:
    assert retry_after("12") == 12.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        waits = Waits()
        s = Session(
            Endpoint(host, "http"),
            RegistryConfig(max_download_attempts=3),
            AuthConfig(),
            sleep=waits,
        )
        with pytest.raises(RegistryUnavailable) as info:
            s.request("GET", "/v2/")
        assert str(info.value) == (
            f'get "http://{host}/v2/": dial tcp {host}: connect: connection refused '
            "(after 3 attempts)"
        )
        assert info.value.status == 0 and waits == [0.5, 1.0]
        s = Session(
            Endpoint(host, "http"), RegistryConfig(), AuthConfig(), sleep=waits, retry_connect=False
        )
        with pytest.raises(RegistryUnavailable, match=r"connection refused$"):
            s.request("GET", "/v2/")
        assert waits == [0.5, 1.0]


def test_401_is_answered_once(reg: FakeRegistry) -> None:
    reg.auth, reg.users = "basic", {"alice": "pw"}
    s, _ = session(reg, AuthConfig("alice", "pw"))
    assert s.request("GET", "/v2/").status == 200
    assert s.request("GET", "/v2/").status == 200  # sent with credentials from the start
    assert [r.status for r in reg.log] == [401, 200, 200]
    assert "authorization" not in reg.log[0].headers

    reg.log.clear()
    s, _ = session(reg, AuthConfig("alice", "wrong"))
    with pytest.raises(RegistryUnauthorized) as info:
        s.request("GET", "/v2/")
    assert str(info.value) == f"unauthorized: authentication required ({reg.host})"
    assert [r.status for r in reg.log] == [401, 401]


def test_401_unanswerable_without_check(reg: FakeRegistry) -> None:
    reg.auth = "basic"
    s, _ = session(reg)
    resp = s.request("GET", "/v2/", check=False)
    assert resp.status == 401 and b"UNAUTHORIZED" in resp.read()


def test_redirect_drops_authorization_across_hosts(reg: FakeRegistry) -> None:
    reg.auth, reg.users = "basic", {"alice": "pw"}
    reg.redirect_blobs = True
    digest = reg.add_blob("app", b"blob data")
    s, _ = session(reg, AuthConfig("alice", "pw"))
    s.request("GET", "/v2/")
    resp = s.request("GET", f"/v2/app/blobs/{digest}", headers={"Range": "bytes=5-"})
    assert (resp.status, resp.read()) == (206, b"data")
    first, second = reg.requests("GET", digest)
    assert first.status == 307 and first.headers["authorization"].startswith("Basic ")
    assert second.path == f"/_blobs/{digest}" and second.headers["host"].startswith("localhost:")
    assert "authorization" not in second.headers
    assert second.headers["range"] == "bytes=5-"


def test_http_error_bodies_map_to_classes(reg: FakeRegistry) -> None:
    s, _ = session(reg)
    with pytest.raises(RegistryNotFound) as info:
        s.request("GET", "/v2/nope/manifests/latest")
    assert str(info.value) == "name unknown: repository name not known to registry"
    assert (info.value.code, info.value.status) == ("NAME_UNKNOWN", 404)
    reg.deny.add("secret")
    with pytest.raises(
        RegistryDenied, match=r"^denied: requested access to the resource is denied \("
    ):
        s.request("GET", "/v2/secret/tags/list")
    with pytest.raises(RegistryNotFound, match=r"^not found$"):
        s.request("HEAD", "/v2/nope/blobs/sha256:" + "0" * 64)  # no body on HEAD


@pytest.mark.parametrize(
    ("status", "body", "cls", "text"),
    [
        (
            404,
            {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"},
            RegistryNotFound,
            "manifest unknown: manifest unknown",
        ),
        (
            404,
            {"code": "BLOB_UNKNOWN", "message": ""},
            RegistryNotFound,
            "blob unknown: blob unknown",
        ),
        (
            401,
            {"code": "UNAUTHORIZED", "message": "authentication required"},
            RegistryUnauthorized,
            "unauthorized: authentication required (h:1)",
        ),
        (403, {"code": "DENIED", "message": "no"}, RegistryDenied, "denied: no (h:1)"),
        (401, {"code": "DENIED", "message": "no"}, RegistryDenied, "denied: no (h:1)"),
        (
            429,
            {"code": "TOOMANYREQUESTS", "message": "slow down"},
            RateLimited,
            "toomanyrequests: slow down",
        ),
        (400, {"code": "DIGEST_INVALID", "message": "bad"}, BadContent, "digest invalid: bad"),
        (
            400,
            {"code": "MANIFEST_BLOB_UNKNOWN", "message": "x"},
            BadContent,
            "manifest blob unknown: x",
        ),
        (405, {"code": "UNSUPPORTED", "message": "no"}, UnsupportedContent, "unsupported: no"),
        (
            503,
            {"code": "UNAVAILABLE", "message": "later"},
            RegistryUnavailable,
            "unavailable: later (h:1)",
        ),
        (
            500,
            None,
            RegistryUnavailable,
            "received unexpected HTTP status: 500 Internal Server Error (h:1)",
        ),
        (418, None, RegistryError, "received unexpected HTTP status: 418 I'm a Teapot"),
        (401, None, RegistryUnauthorized, "unauthorized: authentication required (h:1)"),
        (404, None, RegistryNotFound, "not found"),
    ],
)
def test_error_from_response(status: int, body: dict | None, cls: type, text: str) -> None:
    import json

    raw = json.dumps({"errors": [body]}).encode() if body else b"<html>oops</html>"
    err = error_from_response(status, raw, host="h:1")
    assert type(err) is cls and str(err) == text
    assert err.status == status and err.code == (body or {}).get("code", "")


def test_several_errors_are_joined() -> None:
    raw = b'{"errors":[{"code":"DENIED","message":"a"},{"code":"NAME_UNKNOWN","message":"b"}]}'
    err = error_from_response(403, raw)
    assert isinstance(err, RegistryDenied) and str(err) == "denied: a; name unknown: b"


def test_large_bodies_are_refused_when_buffered(reg: FakeRegistry) -> None:
    digest = reg.add_blob("app", b"y" * 3000)
    s, _ = session(reg)
    resp = s.request("GET", f"/v2/app/blobs/{digest}", stream=True)
    with pytest.raises(BadContent, match="larger than 1000 bytes"):
        resp.buffer(1000)
