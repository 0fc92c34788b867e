"""The web UI (``portside.registry.ui``) through aiohttp's test client, mounted on the
real app (``server.make_app``) over real stores: SQLite accounts, token access,
webhooks. Signing in, who sees what (anonymous: public only), who may delete, the CSRF
check, escaping of hostile text, tokens, webhooks and their deliveries, teams."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.registry import ui
from portside.registry.accounts import Accounts, LoginLimits
from portside.registry.auth import TokenAccess
from portside.registry.config import RegistryConfig
from portside.registry.db import Database, sqlite_url
from portside.registry.delivery import Deliverer
from portside.registry.interfaces import OpenAccess
from portside.registry.server import make_app
from portside.registry.storage import Storage
from portside.registry.tokens import TokenService
from portside.registry.ui_images import _config_facts, _history, image_view
from portside.registry.ui_session import Sessions
from portside.registry.webhooks import Webhooks

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ATTR = '"><img src=x onerror=alert(2)>'


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def store_image(
    storage: Storage,
    repo: str,
    tag: str,
    *,
    arch: str = "amd64",
    labels: dict[str, str] | None = None,
    created_by: str = "COPY app /app",
) -> str:
    """Store a one-layer image straight into ``storage``; its manifest's digest."""
    layer = b"layer of " + repo.encode() + tag.encode() + os.urandom(8)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Env": ["PATH=/bin", "MODE=ui-test"], "Cmd": ["sh"], "Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(layer))]},
            "history": [
                {"created": "2024-01-02T03:04:05Z", "created_by": created_by},
                {"created_by": 'CMD ["sh"]', "empty_layer": True},
            ],
        }
    ).encode()
    for blob in (layer, config):
        digest = str(Digest.of(blob))
        storage.write_blob(blob, digest)
        storage.link_blob(repo, digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": str(Digest.of(config)),
            "size": len(config),
        },
        "layers": [
            {"mediaType": mt.OCI_LAYER_GZIP, "digest": str(Digest.of(layer)), "size": len(layer)}
        ],
    }
    return storage.put_manifest(repo, tag, json.dumps(manifest).encode(), mt.OCI_MANIFEST).digest


class Env:
    """A registry with users root (admin), alice, bob (reads acme), carol (admin of acme)
    and images alice/private:1, alice/public:1, acme/app:1."""

    def __init__(self, root: str, *, open_registry: bool = False) -> None:
        self.root = root
        self.config = RegistryConfig(root=root, addr="127.0.0.1:5000")
        self.db = Database(sqlite_url(root))
        self.storage = Storage(root, self.db)
        self.hooks = Webhooks(self.db)
        self.sink = RecordingSink()
        self.accounts: Accounts | None = None
        if open_registry:
            self.access: Any = OpenAccess()
        else:
            self.accounts = acc = Accounts(self.db, bcrypt_rounds=4, limits=LoginLimits(3, 100))
            acc.add_user("root", "rootpw", admin=True)
            for name in ("alice", "bob", "carol"):
                acc.add_user(name, f"{name}pw")
            acc.add_org("acme")
            acc.add_team("acme", "readers")
            acc.grant("acme", "readers", "acme", "read")
            acc.add_member("acme", "readers", "bob")
            acc.add_team("acme", "owners")
            acc.grant("acme", "owners", "acme", "admin")
            acc.add_member("acme", "owners", "carol")
            acc.set_visibility("alice/public", "public")
            tokens = TokenService.open(os.path.join(root, "keys"), issuer="portside-registry")
            self.access = TokenAccess(acc, tokens, self.config)
        self.digests = {
            repo: store_image(self.storage, repo, "1")
            for repo in ("alice/private", "alice/public", "acme/app")
        }

    def run(self, body: Callable[[Client], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            routes = ui.routes(
                self.storage, self.accounts, self.hooks, self.access, self.config, sink=self.sink
            )
            app = make_app(self.config, self.storage, self.access, self.sink, routes)
            async with TestClient(TestServer(app)) as client:
                return await body(Client(client))

        return asyncio.run(main())


class Client:
    """A browser of sorts: keeps the cookies, finds the CSRF token of the last page."""

    def __init__(self, client: TestClient) -> None:
        self.c = client
        self.csrf = ""

    async def get(self, path: str, status: int = 200) -> str:
        resp = await self.c.get(path, allow_redirects=False)
        text = await resp.text()
        assert resp.status == status, (path, resp.status, text[:2000])
        found = re.search(r'name="_csrf" value="([^"]+)"', text)
        if found:
            self.csrf = found.group(1)
        return text

    async def post(
        self,
        path: str,
        data: dict[str, Any] | list[tuple[str, str]] | None = None,
        *,
        status: int = 303,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """POST a form (with the CSRF token unless told not to): (body, Location)."""
        form = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf:
            form.append(("_csrf", self.csrf))
        resp = await self.c.post(path, data=form, allow_redirects=False, headers=headers)
        text = await resp.text()
        assert resp.status == status, (path, resp.status, text[:2000])
        return text, resp.headers.get("Location", "")

    async def sign_in(self, user: str, password: str = "", status: int = 303) -> str:
        await self.get("/ui/login")
        body, _ = await self.post(
            "/ui/login", {"username": user, "password": password or f"{user}pw"}, status=status
        )
        return body

    async def sign_out(self) -> None:
        await self.get("/ui/")
        await self.post("/ui/logout")


@pytest.fixture
def env(tmp_path: Any) -> Iterator[Env]:
    made = Env(str(tmp_path))
    yield made
    made.db.close()


def test_anonymous_sees_only_public_repositories(env: Env) -> None:
    async def check(b: Client) -> None:
        resp = await b.c.get("/", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/ui/"
        page = await b.get("/ui/")
        assert "alice/public" in page
        assert "alice/private" not in page and "acme/app" not in page
        search = await b.get("/ui/search?q=alice")
        assert "alice/public" in search and "alice/private" not in search
        public = await b.get("/ui/r/alice/public")
        assert ui.repo_url("alice/public", "tags", "1") in public
        assert "Delete" not in public
        # private, or missing: the same "not found", nothing of it shown
        for path in ("/ui/r/alice/private", "/ui/r/alice/nothing", "/ui/r/acme/app/-/tags/1"):
            page = await b.get(path, status=404)
            assert env.digests["alice/private"] not in page
            assert env.digests["acme/app"] not in page
        # a management page sends an anonymous visitor to sign in
        resp = await b.c.get("/ui/tokens", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login?next=")

    env.run(check)


def test_sign_in_sets_a_safe_cookie_and_shows_more(env: Env) -> None:
    async def check(b: Client) -> None:
        page = await b.sign_in("alice", "wrong", status=401)
        assert "incorrect user name or password" in page
        await b.get("/ui/login")
        resp = await b.c.post(
            "/ui/login",
            data={"username": "alice", "password": "alicepw", "_csrf": b.csrf},
            allow_redirects=False,
        )
        assert resp.status == 303
        cookie = resp.headers["Set-Cookie"]
        assert "portside_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain http here
        page = await b.get("/ui/")
        assert "alice/private" in page and "alice/public" in page
        assert "acme/app" not in page  # alice is in no team of acme
        assert 'id="whoami"' in page
        await b.sign_out()
        assert "alice/private" not in await b.get("/ui/")

    env.run(check)


def test_next_is_only_a_local_page(env: Env) -> None:
    async def check(b: Client) -> None:
        for target, want in (
            ("/ui/r/alice/private", "/ui/r/alice/private"),
            ("//evil.example/ui/", "/ui/"),
            ("https://evil.example/", "/ui/"),
            ("/ui//evil.example", "/ui/"),
        ):
            await b.get("/ui/login")
            _, location = await b.post(
                "/ui/login", {"username": "alice", "password": "alicepw", "next": target}
            )
            assert location == want
            await b.sign_out()

    env.run(check)


def test_failed_sign_ins_are_rate_limited(env: Env) -> None:
    async def check(b: Client) -> None:
        for _ in range(3):
            await b.sign_in("bob", "nope", status=401)
        page = await b.sign_in("bob", "bobpw", status=429)
        assert 'id="error"' in page

    env.run(check)


def test_image_page_shows_manifest_layers_config_history(env: Env) -> None:
    digest = env.digests["alice/private"]
    record = env.storage.manifest("alice/private", "1")
    manifest = json.loads(env.storage.read_manifest(record))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": record.size,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": mt.OCI_MANIFEST,
                 "digest": store_image(env.storage, "alice/private", "arm", arch="arm64"),
                 "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ],
        }
    ).encode()  # fmt: skip
    env.storage.put_manifest("alice/private", "multi", index, mt.OCI_INDEX)

    async def check(b: Client) -> None:
        await b.sign_in("alice")
        repo = await b.get("/ui/r/alice/private")
        assert ui.short_digest(digest) in repo and "linux/amd64" in repo
        assert 'data-tag="multi"' in repo and "linux/arm64/v8" in repo
        page = await b.get("/ui/r/alice/private/-/tags/1")
        assert digest in page
        assert manifest["layers"][0]["digest"] in page
        assert manifest["config"]["digest"] in page
        assert "linux/amd64" in page and "2024-01-02T03:04:05Z" in page
        assert "COPY app /app" in page and "MODE=ui-test" in page
        by_digest = await b.get(f"/ui/r/alice/private/-/manifests/{digest}")
        assert manifest["layers"][0]["digest"] in by_digest
        multi = await b.get("/ui/r/alice/private/-/tags/multi")
        assert (
            "linux/arm64/v8" in multi and ui.repo_url("alice/private", "manifests", digest) in multi
        )
        await b.get("/ui/r/alice/private/-/tags/nope", status=404)
        await b.get("/ui/r/alice/private/-/manifests/sha256:zz", status=404)

    env.run(check)


def test_a_reader_cannot_delete_an_admin_can(env: Env) -> None:
    async def check(b: Client) -> None:
        await b.sign_in("bob")
        page = await b.get("/ui/r/acme/app")
        assert 'data-tag="1"' in page and "Delete" not in page
        body, _ = await b.post("/ui/r/acme/app/-/tags/1/delete", status=403)
        assert "not allowed to delete" in body
        assert env.storage.tags("acme/app") == ["1"]
        # who may not even pull gets "not found"
        await b.post("/ui/r/alice/private/-/tags/1/delete", status=404)
        await b.sign_out()
        await b.sign_in("carol")
        assert "Delete" in await b.get("/ui/r/acme/app")
        _, location = await b.post("/ui/r/acme/app/-/tags/1/delete")
        assert location == "/ui/r/acme/app"
        assert env.storage.tags("acme/app") == []
        [event] = env.sink.events
        assert event["action"] == "delete" and event["actor"]["name"] == "carol"
        assert event["target"]["tag"] == "1" and event["target"]["repository"] == "acme/app"

    env.run(check)


def test_posts_without_the_csrf_token_are_refused(env: Env) -> None:
    async def check(b: Client) -> None:
        await b.sign_in("alice")
        await b.get("/ui/r/alice/private")
        path = "/ui/r/alice/private/-/tags/1/delete"
        body, _ = await b.post(path, status=403, csrf=False)
        assert "CSRF" in body
        await b.post(path, [("_csrf", "x" * 32)], status=403, csrf=False)
        evil = {"Origin": "http://evil.example"}
        await b.post(path, status=403, headers=evil)
        await b.post("/ui/logout", status=403, csrf=False)  # still signed in after
        assert env.storage.tags("alice/private") == ["1"]
        await b.post(path, headers={"Origin": str(b.c.make_url("")).rstrip("/")})
        assert env.storage.tags("alice/private") == []
        # the sign-in form needs it too (no login CSRF)
        await b.sign_out()
        await b.post("/ui/login", {"username": "alice", "password": "alicepw"}, status=403,
                     csrf=False)  # fmt: skip

    env.run(check)


def test_hostile_text_is_escaped(env: Env) -> None:
    store_image(
        env.storage, "alice/private", "evil", labels={"x": HOSTILE, HOSTILE_ATTR: "y"},
        created_by=HOSTILE_ATTR,
    )  # fmt: skip

    async def check(b: Client) -> None:
        await b.sign_in("alice")
        pages = [await b.get("/ui/r/alice/private/-/tags/evil")]
        pages.append(await b.get("/ui/search?q=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        await b.get("/ui/tokens")
        pages.append(
            (await b.post("/ui/tokens", {"name": HOSTILE, "expires": "30"}, status=200))[0]
        )
        pages.append(await b.get("/ui/tokens"))
        await b.post(
            "/ui/hooks",
            [("scope_kind", "namespace"), ("scope", "alice"), ("event", "push"),
             ("url", "http://example.com/" + HOSTILE_ATTR), ("secret", "s")],
        )  # fmt: skip
        pages.append(await b.get("/ui/hooks"))
        await b.get("/ui/hooks")
        pages.append((await b.post("/ui/hooks", {"scope_kind": HOSTILE}, status=400))[0])
        for page in pages:
            assert HOSTILE not in page and HOSTILE_ATTR not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
        assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in pages[0]
        assert "&lt;script&gt;" in pages[1] and "&lt;script&gt;" in pages[3]

    env.run(check)


def test_sessions_are_signed_and_end_with_the_password(env: Env) -> None:
    async def page_with(b: Client, cookie: str) -> str:
        resp = await b.c.get("/ui/", headers={"Cookie": f"{ui.COOKIE}={cookie}"})
        assert resp.status == 200
        return await resp.text()

    async def check(b: Client) -> None:
        await b.sign_in("alice")
        jar = b.c.session.cookie_jar
        value = next(c.value for c in jar if c.key == ui.COOKIE)
        jar.clear()
        assert "alice/private" in await page_with(b, value)
        body, mac = value.split(".")
        forged = json.loads(ui_session_b64decode(body))
        forged["u"] = "root"
        assert "alice/private" not in await page_with(b, f"{ui_session_b64encode(forged)}.{mac}")
        assert env.accounts is not None
        env.accounts.set_password("alice", "new-password")
        assert "alice/private" not in await page_with(b, value)

    env.run(check)


def ui_session_b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ui_session_b64encode(doc: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_session_key_and_expiry(tmp_path: Any) -> None:
    keys = str(tmp_path / "keys")
    first, second = Sessions.open(keys), Sessions.open(keys)
    assert first.key == second.key and len(first.key) == 32
    assert os.stat(os.path.join(keys, "ui-session.key")).st_mode & 0o777 == 0o600
    session, cookie = first.issue("alice", "stamp")
    assert second.read(cookie) == session.__class__(
        "alice", session.csrf, int(session.expires), "stamp"
    )
    for bad in ("", "x", cookie + "x", "e30." + cookie.split(".")[1], cookie.replace(".", "")):
        assert first.read(bad) is None
    later = Sessions(first.key, clock=lambda: session.expires + 1)
    assert later.read(cookie) is None
    assert Sessions(os.urandom(32)).read(cookie) is None


def test_personal_access_tokens(env: Env) -> None:
    assert env.accounts is not None
    accounts = env.accounts

    async def check(b: Client) -> None:
        await b.sign_in("alice")
        assert 'id="no-tokens"' in await b.get("/ui/tokens")
        page, _ = await b.post("/ui/tokens", {"name": "ci", "expires": "30"}, status=200)
        secret = re.search(r'id="secret">(psp_[^<]+)<', page)
        assert secret is not None
        principal = accounts.check_password("alice", secret.group(1))
        assert principal is not None and principal.kind == "token"
        listing = await b.get("/ui/tokens")
        assert "ci" in listing and secret.group(1) not in listing
        [token] = accounts.tokens("alice")
        assert token.expires is not None
        await b.post("/ui/tokens", {"expires": "-1"}, status=400)
        # bob cannot revoke alice's token
        await b.sign_out()
        await b.sign_in("bob")
        await b.get("/ui/tokens")
        await b.post(f"/ui/tokens/{token.id}/delete", status=404)
        await b.sign_out()
        await b.sign_in("alice")
        await b.get("/ui/tokens")
        await b.post(f"/ui/tokens/{token.id}/delete")
        assert accounts.tokens("alice") == []

    env.run(check)


def test_webhooks_and_their_deliveries(env: Env) -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        sent.append((url, body, headers))
        return 204

    async def check(b: Client) -> None:
        await b.sign_in("alice")
        await b.get("/ui/hooks?namespace=alice")
        page, _ = await b.post(
            "/ui/hooks",
            [("scope_kind", "namespace"), ("scope", "alice"), ("url", "http://127.0.0.1:9/h"),
             ("event", "push"), ("event", "tag")],
            status=200,
        )  # fmt: skip
        assert 'id="secret"' in page  # made, shown once
        [hook] = env.hooks.hooks()
        assert hook.events == {"push", "tag"} and hook.created_by == "alice"
        assert hook.secret in page and hook.secret not in await b.get(f"/ui/hooks/{hook.id}")
        # a repository of another namespace: not allowed
        await b.post(
            "/ui/hooks",
            {"scope_kind": "repository", "scope": "acme/app", "url": "http://x.test/"},
            status=403,
        )
        event = {"action": "push", "target": {"repository": "alice/private", "digest": "d"}}
        env.hooks.enqueue(event)
        deliverer = Deliverer(env.hooks, send=send, start=False)
        assert deliverer.run_once()
        page = await b.get(f"/ui/hooks/{hook.id}")
        assert "delivered" in page and '<td class="status-code">204</td>' in page
        assert '<td class="attempts">1</td>' in page
        [delivery] = env.hooks.deliveries(hook.id)
        detail = await b.get(f"/ui/hooks/{hook.id}/deliveries/{delivery.id}")
        assert "alice/private" in detail and "&#34;action&#34;: &#34;push&#34;" in detail
        await b.post(f"/ui/hooks/{hook.id}/enable", {"enabled": "0"})
        assert not env.hooks.get(hook.id).enabled
        # bob neither sees nor touches it
        await b.sign_out()
        await b.sign_in("bob")
        assert "127.0.0.1:9" not in await b.get("/ui/hooks")
        await b.get(f"/ui/hooks/{hook.id}", status=404)
        await b.post(f"/ui/hooks/{hook.id}/delete", status=404)
        await b.sign_out()
        await b.sign_in("alice")
        await b.get(f"/ui/hooks/{hook.id}")
        _, location = await b.post(f"/ui/hooks/{hook.id}/delete")
        assert location == "/ui/hooks" and env.hooks.hooks() == []

    env.run(check)


def test_org_teams_members_and_visibility(env: Env) -> None:
    assert env.accounts is not None
    accounts = env.accounts

    async def check(b: Client) -> None:
        await b.sign_in("bob")
        page = await b.get("/ui/n/acme")
        assert "acme/app" in page and "Teams" not in page
        await b.post("/ui/n/acme/teams", {"team": "devs"}, status=403)
        await b.sign_out()
        await b.sign_in("carol")
        page = await b.get("/ui/n/acme")
        assert 'id="team-owners"' in page and 'id="team-readers"' in page
        await b.post("/ui/n/acme/teams", {"team": "devs"})
        await b.post("/ui/n/acme/teams/devs/members", {"user": "alice"})
        await b.post("/ui/n/acme/teams/devs/grants", {"target": "acme/app", "role": "write"})
        await b.post("/ui/n/acme/teams/devs/members", {"user": "nobody"}, status=404)
        await b.post("/ui/n/acme/teams/devs/grants", {"target": "alice/x", "role": "read"},
                     status=400)  # fmt: skip
        devs = next(t for t in accounts.teams("acme") if t.name == "devs")
        assert devs.members == ("alice",) and devs.grants == (("acme/app", "write"),)
        await b.post("/ui/n/acme/visibility", {"visibility": "public"})
        assert accounts.visibility("acme/other") == "public"
        await b.get("/ui/r/acme/app/-/settings")
        await b.post("/ui/r/acme/app/-/visibility", {"visibility": "public"})
        await b.post("/ui/n/acme/teams/devs/grants/delete", {"target": "acme/app"})
        await b.post("/ui/n/acme/teams/devs/members/delete", {"user": "alice"})
        await b.post("/ui/n/acme/teams/devs/delete")
        assert [t.name for t in accounts.teams("acme")] == ["owners", "readers"]
        # bob (a reader) may not open the settings of acme/app
        await b.sign_out()
        await b.sign_in("bob")
        await b.get("/ui/r/acme/app/-/settings", status=403)
        await b.post("/ui/r/acme/app/-/visibility", {"visibility": "private"}, status=403)
        await b.sign_out()
        assert "acme/app" in await b.get("/ui/")  # public now

    env.run(check)


def test_open_registry(tmp_path: Any) -> None:
    env = Env(str(tmp_path), open_registry=True)

    async def check(b: Client) -> None:
        page = await b.get("/ui/")
        assert all(repo in page for repo in env.digests)
        assert "Sign in" not in page
        assert "is open" in await b.get("/ui/login")
        await b.get("/ui/tokens", status=404)
        assert "Delete" in await b.get("/ui/r/acme/app")
        await b.post("/ui/r/acme/app/-/tags/1/delete", status=403, csrf=False)
        await b.post("/ui/r/acme/app/-/tags/1/delete")
        await b.get("/ui/hooks")
        await b.post(
            "/ui/hooks", {"scope_kind": "repository", "scope": "acme/app", "url": "http://h.test/",
                          "secret": "s3", "event": "delete"}
        )  # fmt: skip
        assert [h.scope for h in env.hooks.hooks()] == ["acme/app"]

    try:
        env.run(check)
    finally:
        env.db.close()


def test_security_headers_and_css(env: Env) -> None:
    async def check(b: Client) -> None:
        resp = await b.c.get("/ui/")
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
        css = await b.c.get("/ui/static/style.css")
        assert css.status == 200 and css.content_type == "text/css"

    env.run(check)


def test_image_view_of_odd_content(env: Env) -> None:
    config = b"not json at all"
    digest = str(Digest.of(config))
    env.storage.write_blob(config, digest)
    env.storage.link_blob("alice/odd", digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/x-thing",
        "config": {"mediaType": "application/x-thing", "digest": digest, "size": len(config)},
        "layers": [],
        "annotations": {"org.example": HOSTILE},
    }
    env.storage.put_manifest("alice/odd", "a", json.dumps(manifest).encode(), mt.OCI_MANIFEST)
    view = image_view(env.storage, "alice/odd", "a")
    assert view["config"] == [] and "not JSON" in view["config_note"]
    assert view["artifact_type"] == "application/x-thing"
    assert image_view(env.storage, "alice/private", "1")["artifact_type"] == ""  # an image
    assert view["annotations"] == [("org.example", HOSTILE)]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["config", "history", "os", "architecture", "created",
                                        "author", "variant"]), JSON))  # fmt: skip
def test_config_of_any_shape_is_shown_as_text(config: dict[str, Any]) -> None:
    for key, value in _config_facts(config):
        assert isinstance(key, str) and isinstance(value, str)
    for entry in _history(config):
        assert all(isinstance(entry[k], str) for k in ("created", "created_by", "comment"))
