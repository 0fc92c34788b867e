"""portside.distribution.auth: WWW-Authenticate parsing, Basic, the token flow (GET,
OAuth refresh-token POST, a registry token as it is) and the token cache, with a fake
token server behind the ``fetch`` callable."""

from __future__ import annotations

import base64
import json
import threading
import time
from email.message import Message
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.distribution.auth import (
    Authorizer,
    Challenge,
    TokenCache,
    parse_challenges,
    scope,
)
from portside.distribution.config import AuthConfig
from portside.distribution.errors import RegistryUnauthorized, RegistryUnavailable

REALM = "https://auth.example/token"
BEARER = [f'Bearer realm="{REALM}",service="registry.example"']
PULL = [scope("app", "pull")]

# --- challenges -----------------------------------------------------------------------------


def test_docker_hub_challenge() -> None:
    value = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert parse_challenges([value]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull",
            },
        )
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['Basic realm="x"'], [Challenge("basic", {"realm": "x"})]),
        (
            ['Basic realm="a, b", Bearer realm="y",service="z"'],
            [
                Challenge("basic", {"realm": "a, b"}),
                Challenge("bearer", {"realm": "y", "service": "z"}),
            ],
        ),
        (
            ['Basic realm="x"', "Bearer realm=y"],
            [Challenge("basic", {"realm": "x"}), Challenge("bearer", {"realm": "y"})],
        ),
        (
            ['BEARER Realm="q\\"uote\\\\d", ERROR=invalid_token'],
            [Challenge("bearer", {"realm": 'q"uote\\d', "error": "invalid_token"})],
        ),
        (
            ["Negotiate abc/+d==, Basic"],
            [Challenge("negotiate", {"": "abc/+d=="}), Challenge("basic", {})],
        ),
        (["Negotiate token68"], [Challenge("negotiate", {"": "token68"})]),
        (['Bearer realm="unterminated'], [Challenge("bearer", {"realm": "unterminated"})]),
        (["", " , ,"], []),
        (['realm="no scheme", Basic'], [Challenge("basic", {})]),
    ],
)
def test_parse_challenges(values: list[str], expected: list[Challenge]) -> None:
    assert parse_challenges(values) == expected


_token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+!#$&'*^`|",
    min_size=1,
    max_size=12,
)
_name = st.text("abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=10)
_value = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.lists(
        st.tuples(_token, st.dictionaries(_name, _value, min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_parse_challenges_round_trip(
    challenges: list[tuple[str, dict[str, str]]], one_header: bool
) -> None:
    rendered = [
        scheme + " " + ", ".join(f"{k}={_quote(v)}" for k, v in params.items())
        for scheme, params in challenges
    ]
    values = [", ".join(rendered)] if one_header else rendered
    assert parse_challenges(values) == [
        Challenge(scheme.lower(), params) for scheme, params in challenges
    ]


@given(st.lists(st.text(max_size=80), max_size=3))
def test_parse_challenges_never_fails(values: list[str]) -> None:
    for ch in parse_challenges(values):
        assert ch.scheme and ch.scheme == ch.scheme.lower()


def test_scope() -> None:
    assert scope("team/app", "pull,push") == "repository:team/app:pull,push"


# --- token cache ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = (REALM, "svc", ("repository:app:pull",), "fp")


def test_cache_reuses_until_ten_seconds_before_expiry() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock, wall=clock)
    cache.put(KEY, "t1", 300)
    clock.now += 289
    assert cache.get(KEY) == "t1"
    clock.now += 1
    assert cache.get(KEY) is None


def test_cache_default_lifetime_and_issued_at() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock, wall=clock)
    cache.put(KEY, "t", None)  # 60 s
    clock.now += 49
    assert cache.get(KEY) == "t"
    clock.now += 1
    assert cache.get(KEY) is None
    cache.put(KEY, "old", 100, issued_at=clock.now - 80)  # 20 s left, 10 usable
    clock.now += 9
    assert cache.get(KEY) == "old"
    clock.now += 1
    assert cache.get(KEY) is None


def test_cache_drop_only_the_rejected_token() -> None:
    cache = TokenCache()
    cache.put(KEY, "new", 300)
    cache.drop(KEY, "old")
    assert cache.get(KEY) == "new"
    cache.drop(KEY, "new")
    assert cache.get(KEY) is None and len(cache) == 0


def test_cache_fetches_once_for_concurrent_callers() -> None:
    cache = TokenCache()
    calls = []

    def get() -> tuple[str, float | None, float | None]:
        calls.append(1)
        time.sleep(0.05)
        return "tok", 300.0, None

    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(cache.fetch(KEY, get))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["tok"] * 8 and len(calls) == 1


# --- authorizer against a fake token server ---------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.headers = Message()
        self._body = body

    def read(self, n: int = -1) -> bytes:
        data, self._body = self._body, b""
        return data


class TokenServer:
    """Records what the Authorizer asks; answers from ``replies`` (else a token)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], bytes | None]] = []
        self.replies: list[tuple[int, dict | bytes]] = []
        self.n = 0

    def __call__(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> FakeResponse:
        self.calls.append((method, url, headers, body))
        if self.replies:
            status, doc = self.replies.pop(0)
        else:
            self.n += 1
            status, doc = 200, {"token": f"tok{self.n}", "expires_in": 300}
        return FakeResponse(status, doc if isinstance(doc, bytes) else json.dumps(doc).encode())

    def query(self, i: int = -1) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.calls[i][1]).query)


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_basic() -> None:
    server = TokenServer()
    a = Authorizer(AuthConfig("alice", "pw"), TokenCache(), server)
    assert a.header(PULL) is None  # no challenge seen yet: anonymous first
    value = a.answer(parse_challenges(['Basic realm="r"']), PULL)
    assert value == basic("alice", "pw")
    assert a.header(PULL) == value  # known now: sent from the start
    assert a.answer(parse_challenges(['Basic realm="r"']), PULL, rejected=value) is None
    assert server.calls == []


def test_basic_without_credentials_cannot_answer() -> None:
    a = Authorizer(AuthConfig(), TokenCache(), TokenServer())
    assert a.answer(parse_challenges(['Basic realm="r"']), PULL) is None
    assert a.answer(parse_challenges(['Digest realm="r"']), PULL) is None


def test_bearer_get_with_credentials() -> None:
    server = TokenServer()
    a = Authorizer(AuthConfig("alice", "pw"), TokenCache(), server, host="reg")
    challenge = BEARER[0] + ',scope="repository:app:pull"'
    assert (
        a.answer(parse_challenges([challenge, 'Basic realm="x"']), [scope("app", "pull,push")])
        == "Bearer tok1"
    )
    method, url, headers, body = server.calls[0]
    assert (method, body, headers) == ("GET", None, {"Authorization": basic("alice", "pw")})
    assert url.startswith(REALM + "?")
    assert server.query() == {
        "service": ["registry.example"],
        "scope": ["repository:app:pull", "repository:app:pull,push"],
        "account": ["alice"],
    }


def test_bearer_anonymous_sends_no_credentials() -> None:
    server = TokenServer()
    a = Authorizer(AuthConfig(), TokenCache(), server)
    assert a.answer(parse_challenges(BEARER), PULL) == "Bearer tok1"
    assert server.calls[0][2] == {}
    assert "account" not in server.query()


def test_refresh_token_post() -> None:
    server = TokenServer()
    server.replies = [(200, {"access_token": "acc", "expires_in": 300, "refresh_token": "r2"})]
    a = Authorizer(AuthConfig(identity_token="refresh-1"), TokenCache(), server)
    assert a.answer(parse_challenges(BEARER), PULL) == "Bearer acc"
    method, url, headers, body = server.calls[0]
    assert (method, url) == ("POST", REALM)
    assert headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert parse_qs(body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-1"],
        "service": ["registry.example"],
        "client_id": ["portside"],
        "scope": ["repository:app:pull"],
    }


def test_refresh_token_post_unsupported_falls_back_to_get() -> None:
    server = TokenServer()
    server.replies = [(404, b"not found")]
    a = Authorizer(AuthConfig(identity_token="refresh-1"), TokenCache(), server)
    assert a.answer(parse_challenges(BEARER), PULL) == "Bearer tok1"
    assert [c[0] for c in server.calls] == ["POST", "GET"]


def test_registry_token_is_sent_as_it_is() -> None:
    server = TokenServer()
    a = Authorizer(AuthConfig(registry_token="rt"), TokenCache(), server)
    assert a.header(PULL) == "Bearer rt"
    assert a.answer(parse_challenges(BEARER), PULL, rejected="Bearer rt") is None
    assert server.calls == []


def test_tokens_are_cached_per_scope_and_credentials() -> None:
    server = TokenServer()
    cache = TokenCache()
    first = Authorizer(AuthConfig("alice", "pw"), cache, server)
    assert first.answer(parse_challenges(BEARER), PULL) == "Bearer tok1"
    assert first.header(PULL) == "Bearer tok1"
    second = Authorizer(AuthConfig("alice", "pw"), cache, server)  # the next pull
    assert second.answer(parse_challenges(BEARER), PULL) == "Bearer tok1"
    assert len(server.calls) == 1
    assert first.header([scope("other", "pull")]) == "Bearer tok2"  # another scope
    bob = Authorizer(AuthConfig("bob", "pw"), cache, server)
    assert bob.answer(parse_challenges(BEARER), PULL) == "Bearer tok3"  # other credentials
    assert len(server.calls) == 3


def test_expired_token_is_fetched_again() -> None:
    clock = Clock()
    server = TokenServer()
    server.replies = [(200, {"token": "short", "expires_in": 30}), (200, {"token": "next"})]
    a = Authorizer(AuthConfig(), TokenCache(clock=clock, wall=clock), server)
    assert a.answer(parse_challenges(BEARER), PULL) == "Bearer short"
    clock.now += 19
    assert a.header(PULL) == "Bearer short"
    clock.now += 1
    assert a.header(PULL) == "Bearer next"
    assert len(server.calls) == 2


def test_rejected_token_is_dropped_and_fetched_again_once() -> None:
    server = TokenServer()
    a = Authorizer(AuthConfig(), TokenCache(), server)
    first = a.answer(parse_challenges(BEARER), PULL)
    invalid = parse_challenges([BEARER[0] + ',error="invalid_token"'])
    assert a.answer(invalid, PULL, rejected=first) == "Bearer tok2"
    assert a.header(PULL) == "Bearer tok2"
    assert len(server.calls) == 2


@pytest.mark.parametrize(
    ("auth", "reply", "message"),
    [
        (
            AuthConfig("a", "b"),
            (401, {"details": "incorrect username or password"}),
            "incorrect username or password",
        ),
        (AuthConfig("a", "b"), (401, b""), "incorrect username or password"),
        (AuthConfig(), (401, {"errors": [{"code": "UNAUTHORIZED", "message": "nope"}]}), "nope"),
        (AuthConfig(identity_token="x"), (400, {"error": "invalid_grant"}), "invalid_grant"),
        (AuthConfig(), (200, {"expires_in": 60}), "answered without a token"),
        (AuthConfig(), (200, b"<html>"), "answered without a token"),
    ],
)
def test_token_server_refusals(
    auth: AuthConfig, reply: tuple[int, dict | bytes], message: str
) -> None:
    server = TokenServer()
    server.replies = [reply]
    a = Authorizer(auth, TokenCache(), server, host="reg:5000")
    with pytest.raises(RegistryUnauthorized, match=message) as info:
        a.answer(parse_challenges(BEARER), PULL)
    assert str(info.value).startswith("unauthorized: ") and str(info.value).endswith("(reg:5000)")


def test_token_server_down() -> None:
    server = TokenServer()
    server.replies = [(503, b"")]
    with pytest.raises(RegistryUnavailable, match="answered 503"):
        Authorizer(AuthConfig(), TokenCache(), server).answer(parse_challenges(BEARER), PULL)


def test_bearer_without_realm() -> None:
    a = Authorizer(AuthConfig(), TokenCache(), TokenServer(), host="reg")
    with pytest.raises(RegistryUnauthorized, match="no usable realm"):
        a.answer(parse_challenges(['Bearer service="x"']), PULL)


def test_issued_at_shortens_the_lifetime() -> None:
    clock = Clock()
    clock.now = time.time()
    server = TokenServer()
    issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - 100))
    server.replies = [(200, {"token": "t", "expires_in": 120, "issued_at": issued})]
    a = Authorizer(AuthConfig(), TokenCache(clock=clock, wall=clock), server)
    a.answer(parse_challenges(BEARER), PULL)
    clock.now += 8
    assert a.header(PULL) == "Bearer t"
    clock.now += 4  # 20 s after issue, minus the 10 s margin, has passed
    assert a.header(PULL) == "Bearer tok1"
