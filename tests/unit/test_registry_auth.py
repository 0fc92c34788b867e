"""portside.registry.auth: TokenAccess — authenticate (Bearer, Basic), authorize,
challenges, the catalog filter, what a token grants, and the token endpoint over HTTP
(GET with Basic or anonymous, the OAuth2 POST form, errors, rate limiting), with
Portside's own registry client fetching tokens from it."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from portside.registry.accounts import Accounts, LoginLimits, RateLimited
from portside.registry.auth import TokenAccess, TokenPrincipal, make_access
from portside.registry.db import Database, sqlite_url
from portside.registry.interfaces import ANONYMOUS, AuthChallenge, Principal
from portside.registry.scopes import parse_scopes
from portside.registry.tokens import TokenService

SERVICE = "registry.test"
ALICE = Principal("alice", "user")
BOB = Principal("bob", "user")
ROOT = Principal("root", "user", admin=True)
CONFIG = SimpleNamespace(
    service=SERVICE, issuer="iss.test", token_ttl=120, external_url="https://reg.test:5443",
    addr="127.0.0.1:0", tls_cert="", root="",
)  # fmt: skip


@pytest.fixture
def access(tmp_path: object) -> TokenAccess:
    db = Database(sqlite_url(str(tmp_path)))
    acc = Accounts(db, bcrypt_rounds=4, limits=LoginLimits(3, 100, 60.0))
    acc.add_user("root", "rootpw", admin=True)
    acc.add_user("alice", "alicepw")
    acc.add_user("bob", "bobpw")
    acc.add_org("acme")
    acc.add_team("acme", "readers")
    acc.grant("acme", "readers", "acme", "read")
    acc.add_member("acme", "readers", "bob")
    acc.set_visibility("acme/pub", "public")
    tokens = TokenService.open(f"{tmp_path}/keys", issuer="iss.test")
    yield TokenAccess(acc, tokens, CONFIG)  # type: ignore[misc]
    db.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer(access: TokenAccess, principal: Principal, *scopes: str) -> str:
    return "Bearer " + access.token_for(principal, parse_scopes(scopes))["token"]


# --- challenges -----------------------------------------------------------------------


def test_challenge(access: TokenAccess) -> None:
    assert (
        access.challenge([]) == 'Bearer realm="https://reg.test:5443/token",service="registry.test"'
    )
    value = access.challenge(
        [("repository", "a/b", {"push", "pull"}), ("repository", "c", {"pull"})],
        "insufficient_scope",
    )
    assert value == (
        'Bearer realm="https://reg.test:5443/token",service="registry.test",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"'
    )


def test_realm_from_the_address_when_no_external_url(access: TokenAccess) -> None:
    plain = SimpleNamespace(service="s", addr="127.0.0.1:5000", tls_cert="")
    assert TokenAccess(access.accounts, access.tokens, plain).realm == "http://127.0.0.1:5000/token"
    tls = SimpleNamespace(service="s", addr="reg:443", tls_cert="/c.pem", external_url="")
    assert TokenAccess(access.accounts, access.tokens, tls).realm == "https://reg:443/token"


# --- authenticate ---------------------------------------------------------------------


def test_anonymous(access: TokenAccess) -> None:
    assert access.authenticate({}, "1.2.3.4") is ANONYMOUS
    assert access.authorize(ANONYMOUS, "acme/pub", {"pull", "push"}) == {"pull"}
    assert access.authorize(ANONYMOUS, "acme/priv", {"pull"}) == set()


def test_bearer(access: TokenAccess) -> None:
    alice = Principal("alice", "user")
    value = bearer(access, alice, "repository:alice/app:pull,push", "repository:acme/pub:push,pull")
    principal = access.authenticate({"Authorization": value}, "")
    assert isinstance(principal, TokenPrincipal)
    assert principal.name == "alice" and principal.kind == "user"
    assert principal.granted == {"alice/app": {"pull", "push"}, "acme/pub": {"pull"}}
    assert principal.expires > time.time() + 100
    assert access.authorize(principal, "alice/app", {"pull", "push", "delete"}) == {"pull", "push"}
    assert access.authorize(principal, "acme/pub", {"push"}) == set()
    assert access.authorize(principal, "alice/other", {"pull"}) == set()  # not in the token
    # lower-case header names (a plain dict) work as well
    assert access.authenticate({"authorization": value}, "").name == "alice"


def test_bearer_star_and_anonymous_tokens(access: TokenAccess) -> None:
    value = bearer(access, Principal("root", "user", admin=True), "repository:x/y:*")
    principal = access.authenticate({"Authorization": value}, "")
    assert principal.granted == {"x/y": {"*"}}
    assert access.authorize(principal, "x/y", {"pull", "push", "delete"}) == {
        "pull",
        "push",
        "delete",
    }
    anon = access.authenticate(
        {"Authorization": bearer(access, ANONYMOUS, "repository:acme/pub:pull")}, ""
    )
    assert anon.anonymous and isinstance(anon, TokenPrincipal)
    assert access.authorize(anon, "acme/pub", {"pull"}) == {"pull"}


@pytest.mark.parametrize(
    "value",
    [
        "Bearer garbage",
        "Bearer ",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Digest x=1",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
    ],
)
def test_bad_authorization(access: TokenAccess, value: str) -> None:
    with pytest.raises(AuthChallenge) as info:
        access.authenticate({"Authorization": value}, "")
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED"
    assert 'error="invalid_token"' in info.value.www_authenticate
    assert info.value.www_authenticate.startswith('Bearer realm="https://reg.test:5443/token"')


def test_expired_and_misdirected_tokens(access: TokenAccess, tmp_path: object) -> None:
    old = TokenService.open(f"{tmp_path}/keys", issuer="iss.test", clock=lambda: time.time() - 999)
    expired, _, _ = old.issue("root", [], SERVICE, 120)
    elsewhere, _, _ = access.tokens.issue("root", [], "another-service", 120)
    for token in (expired, elsewhere):
        with pytest.raises(AuthChallenge, match="invalid token"):
            access.authenticate({"Authorization": f"Bearer {token}"}, "")


def test_basic(access: TokenAccess) -> None:
    principal = access.authenticate({"Authorization": basic("bob", "bobpw")}, "10.1.1.1")
    assert principal == Principal("bob", "user")
    assert access.authorize(principal, "acme/priv", {"pull", "push"}) == {"pull"}
    with pytest.raises(AuthChallenge, match="incorrect") as info:
        access.authenticate({"Authorization": basic("bob", "nope")}, "10.1.1.1")
    assert "error=" not in info.value.www_authenticate
    _, token = access.accounts.add_token("alice", "pat")
    assert access.authenticate({"Authorization": basic("alice", token)}, "").kind == "token"


def test_basic_throttled(access: TokenAccess) -> None:
    for _ in range(3):
        with pytest.raises(AuthChallenge):
            access.authenticate({"Authorization": basic("alice", "bad")}, "")
    with pytest.raises(RateLimited) as info:
        access.authenticate({"Authorization": basic("alice", "alicepw")}, "")
    assert info.value.status == 429 and info.value.code == "TOOMANYREQUESTS"
    assert 0 < info.value.retry_after <= 60


def test_may_list_and_manage(access: TokenAccess) -> None:
    repos = ["acme/pub", "acme/priv", "alice/app", "bob/app"]
    assert access.may_list(ANONYMOUS, repos) == ["acme/pub"]
    assert access.may_list(Principal("bob", "user"), repos) == ["acme/pub", "acme/priv", "bob/app"]
    token = access.authenticate(
        {"Authorization": bearer(access, Principal("alice", "user"), "registry:catalog:*")}, ""
    )
    assert access.may_list(token, repos) == ["acme/pub", "alice/app"]
    root_token = access.authenticate(
        {"Authorization": bearer(access, Principal("root", "user", admin=True))}, ""
    )
    assert access.may_list(root_token, repos) == repos  # the admin flag comes from the accounts
    assert access.may_manage(root_token, "acme")
    assert access.may_manage(token, "alice", "alice/app")
    assert not access.may_manage(token, "acme")


# --- what a token grants --------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "asked", "granted"),
    [
        (ANONYMOUS, "repository:acme/pub:pull,push", "repository:acme/pub:pull"),
        (ANONYMOUS, "repository:acme/priv:pull", ""),
        (ALICE, "repository:alice/a:push,pull,delete", "repository:alice/a:pull,push,delete"),
        (ALICE, "repository:alice/a:*", "repository:alice/a:*"),
        (BOB, "repository:acme/x:*", "repository:acme/x:pull"),
        (BOB, "repository:acme/x:pull repository:acme/x:push", "repository:acme/x:pull"),
        (BOB, "repository:alice/a:pull repository:acme/x:pull", "repository:acme/x:pull"),
        (ANONYMOUS, "registry:catalog:*", "registry:catalog:*"),
        (ALICE, "registry:catalog:push", ""),
        (ROOT, "foo:bar:baz", ""),
        (ROOT, "repository(plugin):x/p:pull", "repository(plugin):x/p:pull"),
        (ROOT, "repository:localhost:5000/x:pull", "repository:localhost:5000/x:pull"),
        (ALICE, "repository:alice/a:frobnicate", ""),
    ],
)
def test_grant(access: TokenAccess, principal: Principal, asked: str, granted: str) -> None:
    got = access.grant(principal, parse_scopes([asked]))
    assert " ".join(str(g) for g in got) == granted


def test_token_body(access: TokenAccess) -> None:
    body = access.token_for(Principal("alice", "user"), parse_scopes(["repository:alice/a:pull"]))
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 120
    issued = datetime.datetime.fromisoformat(body["issued_at"])
    assert issued.tzinfo is not None and abs(issued.timestamp() - time.time()) < 5
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "alice/a", "actions": ["pull"]}]
    assert claims["aud"] == SERVICE and claims["iss"] == "iss.test" and claims["sub"] == "alice"


# --- the token endpoint over HTTP -----------------------------------------------------


def serve(access: TokenAccess, check: object) -> None:
    """Run ``await check(client)`` against an app with the token routes."""

    async def main() -> None:
        app = web.Application()
        for method, path, handler in access.routes():
            app.router.add_route(method, path, handler)
        async with TestClient(TestServer(app)) as client:
            await check(client)  # type: ignore[operator]

    asyncio.run(main())


def test_get_token(access: TokenAccess) -> None:
    async def check(client: TestClient) -> None:
        query = [("service", SERVICE), ("scope", "repository:acme/priv:pull"),
                 ("scope", "repository:acme/pub:pull,push registry:catalog:*")]  # fmt: skip
        resp = await client.get(
            "/token?" + urlencode(query), headers={"Authorization": basic("bob", "bobpw")}
        )
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
        assert body["expires_in"] >= 60 and body["issued_at"].endswith("Z")
        assert "refresh_token" not in body
        claims = access.tokens.verify(body["token"], SERVICE)
        assert claims["sub"] == "bob"
        assert claims["access"] == [
            {"type": "repository", "name": "acme/priv", "actions": ["pull"]},
            {"type": "repository", "name": "acme/pub", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
        # anonymous: what anonymous may do, never an error
        resp = await client.get(
            "/token?" + urlencode([("scope", "repository:acme/priv:pull,push")])
        )
        assert resp.status == 200
        claims = access.tokens.verify((await resp.json())["token"], SERVICE)
        assert claims["sub"] == "" and claims["access"] == []

    serve(access, check)


def test_get_token_errors(access: TokenAccess) -> None:
    async def check(client: TestClient) -> None:
        resp = await client.get(
            "/token?scope=repository:a:pull", headers={"Authorization": basic("bob", "wrong")}
        )
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="https://reg.test:5443/token"'
        body = await resp.json()
        assert body["errors"][0]["code"] == "UNAUTHORIZED"
        assert "token" not in body
        resp = await client.get("/token", headers={"Authorization": "Bearer abc"})
        assert resp.status == 401
        resp = await client.get("/token?service=elsewhere")
        assert resp.status == 400 and "unknown service" in await resp.text()
        resp = await client.get("/token?scope=repository:a")
        assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == "UNSUPPORTED"
        # the rate limit (3 failures for a user name) then 429 with Retry-After
        for _ in range(2):
            resp = await client.get("/token", headers={"Authorization": basic("bob", "wrong")})
            assert resp.status == 401
        resp = await client.get("/token", headers={"Authorization": basic("bob", "bobpw")})
        assert resp.status == 429
        assert 0 < int(resp.headers["Retry-After"]) <= 60
        assert (await resp.json())["errors"][0]["code"] == "TOOMANYREQUESTS"

    serve(access, check)


def test_offline_token_and_oauth_post(access: TokenAccess) -> None:
    async def check(client: TestClient) -> None:
        resp = await client.get("/token?offline_token=true&client_id=docker&service=" + SERVICE,
                                headers={"Authorization": basic("alice", "alicepw")})  # fmt: skip
        refresh = (await resp.json())["refresh_token"]
        assert refresh.startswith("psr_")
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": SERVICE,
            "client_id": "docker",
            "scope": "repository:alice/a:pull,push repository:acme/priv:pull",
        }
        resp = await client.post("/token", data=form)
        assert resp.status == 200
        body = await resp.json()
        assert body["refresh_token"] == refresh and body["token"] == body["access_token"]
        assert body["scope"] == "repository:alice/a:pull,push"
        claims = access.tokens.verify(body["access_token"], SERVICE)
        assert claims["sub"] == "alice"
        form = {
            "grant_type": "password",
            "username": "bob",
            "password": "bobpw",
            "access_type": "offline",
            "client_id": "portside",
            "scope": "repository:acme/a:pull",
        }
        body = await (await client.post("/token", data=form)).json()
        assert body["scope"] == "repository:acme/a:pull" and body["refresh_token"].startswith(
            "psr_"
        )
        form.pop("access_type")
        assert "refresh_token" not in await (await client.post("/token", data=form)).json()
        pat = access.accounts.add_token("bob")[1]
        login = {"grant_type": "password", "username": "bob", "password": "bobpw"}
        for bad, status in (
            ({**login, "password": "x"}, 401),
            ({"grant_type": "refresh_token", "refresh_token": "psr_forged"}, 401),
            ({"grant_type": "refresh_token", "refresh_token": pat}, 401),
            ({"grant_type": "password", "username": "bob"}, 400),
            ({"grant_type": "client_credentials"}, 400),
            ({**login, "service": "x"}, 400),
            ({**login, "scope": "bad"}, 400),
        ):
            resp = await client.post("/token", data=bad)
            assert resp.status == status, bad
            assert "error" in await resp.json()

    serve(access, check)


def test_portside_client_fetches_tokens(access: TokenAccess) -> None:
    """portside.distribution's Authorizer (GET with Basic, then the OAuth refresh
    token POST) against the real endpoint."""
    from portside.distribution.auth import Authorizer, TokenCache, parse_challenges
    from portside.distribution.config import AuthConfig

    async def check(client: TestClient) -> None:
        base = str(client.make_url("/token"))
        challenge = access.challenge([("repository", "alice/app", {"pull", "push"})])
        challenge = challenge.replace("https://reg.test:5443/token", base)

        class Resp:
            def __init__(self, status: int, body: bytes) -> None:
                self.status, self._body = status, body

            def read(self, limit: int = -1) -> bytes:
                return self._body

        loop = asyncio.get_running_loop()

        def fetch(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Resp:
            async def go() -> Resp:
                resp = await client.session.request(method, url, headers=headers, data=body)
                return Resp(resp.status, await resp.read())

            return asyncio.run_coroutine_threadsafe(go(), loop).result(10)

        def authorize(auth: AuthConfig) -> str | None:
            authorizer = Authorizer(auth, TokenCache(), fetch, host="reg.test")
            return authorizer.answer(parse_challenges([challenge]), [])

        value = await asyncio.to_thread(authorize, AuthConfig("alice", "alicepw"))
        assert value is not None and value.startswith("Bearer ")
        principal = access.authenticate({"Authorization": value}, "")
        assert principal.granted == {"alice/app": {"pull", "push"}}
        refresh = access.accounts.add_refresh_token(Principal("alice", "user"), "portside", 60)
        value = await asyncio.to_thread(authorize, AuthConfig(identity_token=refresh))
        assert access.authenticate({"Authorization": value}, "").name == "alice"

    serve(access, check)


def test_make_access(tmp_path: object) -> None:
    config = SimpleNamespace(
        root=str(tmp_path),
        issuer="i",
        service="s",
        addr="h:1",
        tls_cert="",
        token_algorithm="ES256",
    )
    db = Database(sqlite_url(str(tmp_path)))
    try:
        made = make_access(config, db)
        assert made.tokens.algorithm == "ES256" and made.tokens.issuer == "i"
        assert made.tokens.certificate_path == f"{tmp_path}/keys/token-es256.crt"
        token = made.token_for(ANONYMOUS, [])["token"]
        assert (
            json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
            == made.tokens.kid
        )
    finally:
        db.close()


def test_make_access_signs_with_the_configured_algorithm(tmp_path: object) -> None:
    from portside.registry.config import build_config

    config = build_config({"root": str(tmp_path), "token_algorithm": "RS256"})
    db = Database(sqlite_url(str(tmp_path)))
    try:
        made = make_access(config, db)
        token = made.token_for(ANONYMOUS, [])["token"]
        assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "RS256"
    finally:
        db.close()


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9]+(?:/[a-z0-9]+)?", fullmatch=True),
            st.sets(st.sampled_from(["pull", "push", "delete"]), min_size=1),
        ),
        max_size=4,
    ),
    st.sampled_from(["", "invalid_token", "insufficient_scope"]),
)
def test_challenges_parse_back(scopes: list[tuple[str, set[str]]], error: str) -> None:
    """What the registry sends, Portside's client (and docker's grammar) reads back."""
    from portside.distribution.auth import parse_challenges

    config = SimpleNamespace(service="svc", external_url="http://h:1")
    access = TokenAccess(None, None, config)  # type: ignore[arg-type]
    value = access.challenge([("repository", n, a) for n, a in scopes], error)
    [challenge] = parse_challenges([value])
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "http://h:1/token" and challenge.params["service"] == "svc"
    asked = parse_scopes([challenge.params.get("scope", "")])
    assert [(s.name, set(s.actions)) for s in asked] == [(n, a) for n, a in scopes]
    assert challenge.params.get("error", "") == error
