"""Build triggers: tokens, the context upload and its limit, the queue and its worker,
and the HTTP routes, on SQLite and a temporary root."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from portside.registry import hooks_api
from portside.registry.db import Database, sqlite_url
from portside.registry.interfaces import ANONYMOUS, Principal
from portside.registry.triggers import (
    BUILDER_MISSING,
    BuildWorker,
    ContextTooLarge,
    NotYetBuilder,
    Triggers,
    render_tag,
    triggers_table,
)
from portside.registry.webhooks import namespace_of


def context_tar(files: dict[str, bytes] | None = None, *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ({"Dockerfile": b"FROM scratch\n"} if files is None else files).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


@pytest.fixture
def db(tmp_path: Any) -> Iterator[Database]:
    database = Database(sqlite_url(str(tmp_path)))
    yield database
    database.close()


@pytest.fixture
def triggers(db: Database, tmp_path: Any) -> Triggers:
    return Triggers(db, str(tmp_path), max_context=64 * 1024)


def receive(triggers: Triggers, data: bytes, chunk: int = 1000) -> Any:
    upload = triggers.upload()
    for start in range(0, len(data), chunk):
        upload.write(data[start : start + chunk])
    return upload


def incoming(triggers: Triggers) -> list[str]:
    return os.listdir(os.path.join(triggers.directory, "incoming"))


# -- tags and tokens -------------------------------------------------------------------


def test_render_tag() -> None:
    now = time.mktime((2026, 3, 4, 12, 0, 0, 0, 0, 0)) - time.timezone
    assert render_tag("latest", 7, now) == "latest"
    assert render_tag("build-{build}", 7, now) == "build-7"
    assert render_tag("{date}.{build}", 7, now) == "20260304.7"
    assert render_tag("t{timestamp}", 7, now) == f"t{int(now)}"
    for bad in ("{nope}", "-x", "a/b", "", "x" * 129, "{build"):
        with pytest.raises(InvalidArgument):
            render_tag(bad, 7, now)


@given(st.text(alphabet="ab{}_.-/ildbutme", max_size=40))
def test_render_tag_gives_a_valid_tag_or_refuses(template: str) -> None:
    try:
        tag = render_tag(template, 12, 0.0)
    except InvalidArgument:
        return
    assert 0 < len(tag) <= 128 and "/" not in tag and "{" not in tag
    assert tag[0] not in ".-"


def test_token_is_shown_once_and_stored_hashed(triggers: Triggers, db: Database) -> None:
    trigger, token = triggers.create("alice/app", tag="v{build}", created_by="alice")
    assert (trigger.repository, trigger.tag, trigger.created_by) == (
        "alice/app",
        "v{build}",
        "alice",
    )
    with db.connect() as conn:
        (stored,) = conn.execute(sa.select(triggers_table.c.token_sha256)).scalars()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(trigger.to_json())
    assert triggers.authenticate(trigger.id, token) == trigger
    _, other_token = triggers.create("alice/app")
    assert other_token != token
    for tid, bad in ((trigger.id, other_token), (trigger.id, ""), (trigger.id, token + "x"),
                     (999, token)):  # fmt: skip
        with pytest.raises(PermissionDenied, match="invalid token"):
            triggers.authenticate(tid, bad)


def test_create_checks_repository_and_template(triggers: Triggers) -> None:
    with pytest.raises(InvalidArgument):
        triggers.create("../etc")
    with pytest.raises(InvalidArgument):
        triggers.create("alice/app", tag="{branch}")
    with pytest.raises(InvalidArgument):
        triggers.create("alice/app", tag="a:b")


# -- contexts --------------------------------------------------------------------------


def test_a_context_is_stored_and_queued(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app", tag="b{build}")
    data = context_tar()
    build = triggers.submit(trigger.id, receive(triggers, data))
    assert (build.status, build.tag, build.context_size) == ("queued", f"b{build.id}", len(data))
    path = os.path.join(triggers.directory, str(build.id), "context.tar")
    assert build.context_path == path
    with open(path, "rb") as f:
        assert f.read() == data
    assert incoming(triggers) == []
    assert triggers.builds(trigger.id) == [build]


def test_a_compressed_context_is_accepted(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    build = triggers.submit(trigger.id, receive(triggers, context_tar(compress=True)))
    assert build.status == "queued"


@pytest.mark.parametrize(
    "data", [b"", b"not a tar at all" * 100, context_tar({}), gzip.compress(b"x" * 600)]
)
def test_what_is_not_a_tar_is_refused(triggers: Triggers, data: bytes) -> None:
    trigger, _ = triggers.create("alice/app")
    with pytest.raises(InvalidArgument):
        triggers.submit(trigger.id, receive(triggers, data))
    assert triggers.builds(trigger.id) == []
    assert incoming(triggers) == []
    assert sorted(os.listdir(triggers.directory)) == ["incoming"]


def test_a_context_over_the_limit_is_refused(triggers: Triggers) -> None:
    upload = triggers.upload()
    upload.write(b"x" * 60 * 1024)
    with pytest.raises(ContextTooLarge):
        upload.write(b"x" * 5 * 1024)
    assert incoming(triggers) == []


def test_a_context_for_a_deleted_trigger_is_dropped(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    upload = receive(triggers, context_tar())
    triggers.delete(trigger.id)
    with pytest.raises(NotFound):
        triggers.submit(trigger.id, upload)
    assert incoming(triggers) == []


def test_stale_uploads_are_swept(db: Database, tmp_path: Any) -> None:
    first = Triggers(db, str(tmp_path))
    stale, fresh = first.upload(), first.upload()
    stale.close()
    fresh.close()
    os.utime(stale.path, (time.time() - 7200,) * 2)
    Triggers(db, str(tmp_path))
    assert incoming(first) == [os.path.basename(fresh.path)]


# -- the queue -------------------------------------------------------------------------


class FakeBuilder:
    def __init__(self, result: Any = "sha256:" + "b" * 64) -> None:
        self.result = result
        self.calls: list[tuple[str, str, str, list[str]]] = []

    def build(self, context_dir: str, repository: str, tag: str) -> str:
        self.calls.append((context_dir, repository, tag, os.listdir(context_dir)))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_not_yet_builder_fails_every_request(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    build = triggers.submit(trigger.id, receive(triggers, context_tar()))
    with pytest.raises(Unavailable):
        NotYetBuilder().build("/nonexistent", "alice/app", "latest")
    worker = BuildWorker(triggers, start=False)
    assert worker.run_once()
    assert not worker.run_once()
    done = triggers.build(trigger.id, build.id)
    assert (done.status, done.message, done.digest) == ("failed", BUILDER_MISSING, None)
    assert done.started_at is not None and done.finished_at is not None
    assert not os.path.exists(triggers.context_dir(build.id))


@pytest.mark.parametrize(
    ("result", "status", "message"),
    [
        ("sha256:" + "b" * 64, "succeeded", "pushed alice/app:latest"),
        (Unavailable("no space left for the build"), "failed", "no space left for the build"),
        (RuntimeError("boom"), "failed", "internal error: RuntimeError: boom"),
        (None, "failed", "the builder returned an invalid digest None"),
    ],
)
def test_the_worker_runs_the_builder(
    triggers: Triggers, result: Any, status: str, message: str
) -> None:
    trigger, _ = triggers.create("alice/app")
    build = triggers.submit(trigger.id, receive(triggers, context_tar()))
    builder = FakeBuilder(result)
    assert BuildWorker(triggers, builder, start=False).run_once()
    assert builder.calls == [
        (triggers.context_dir(build.id), "alice/app", "latest", ["context.tar"])
    ]
    done = triggers.build(trigger.id, build.id)
    assert (done.status, done.message) == (status, message)
    assert done.digest == (result if status == "succeeded" else None)


def test_the_worker_thread_takes_queued_requests(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    builder = FakeBuilder()
    worker = BuildWorker(triggers, builder, poll=30)
    try:
        build = triggers.submit(trigger.id, receive(triggers, context_tar()))
        deadline = time.monotonic() + 5
        while triggers.build(trigger.id, build.id).status != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        worker.close(5)


def test_concurrent_claims_never_share_a_build(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    for _ in range(10):
        triggers.submit(trigger.id, receive(triggers, context_tar()))
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        while (build := triggers.claim()) is not None:
            with lock:
                claimed.append(build.id)

    threads = [threading.Thread(target=claimer) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 10 == len(set(claimed))


def test_delete_removes_builds_and_contexts(triggers: Triggers) -> None:
    trigger, _ = triggers.create("alice/app")
    build = triggers.submit(trigger.id, receive(triggers, context_tar()))
    triggers.delete(trigger.id)
    assert not os.path.exists(triggers.context_dir(build.id))
    with pytest.raises(NotFound):
        triggers.build(trigger.id, build.id)
    with pytest.raises(NotFound):
        triggers.delete(trigger.id)


# -- HTTP ------------------------------------------------------------------------------


class FakeAccess:
    """Basic ``name:x``; a user manages their own namespace; "root" is an admin."""

    def authenticate(self, headers: Any, remote: str) -> Principal:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return ANONYMOUS
        name = base64.b64decode(auth.split()[1]).decode().split(":")[0]
        return Principal(name=name, kind="user", admin=name == "root")

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        return set(actions) if namespace_of(repository) == principal.name else set()

    def challenge(self, scopes: Any, error: str = "") -> str:
        return 'Basic realm="t"'

    def may_list(self, principal: Principal, repositories: Any) -> list[str]:
        return list(repositories)

    def routes(self) -> list[Any]:
        return []


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:x".encode()).decode()}


def api(triggers: Triggers, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = web.Application()
        for method, path, handler in hooks_api.routes(None, triggers, FakeAccess()):
            app.router.add_route(method, path, handler)
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    return asyncio.run(main())


async def answer(response: Any) -> tuple[int, Any]:
    text = await response.text()
    return response.status, json.loads(text) if text else None


def test_api_creates_fires_and_reports(triggers: Triggers) -> None:
    alice = basic("alice")
    data = context_tar()

    async def body(c: TestClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        new = {"repository": "alice/app", "tag": "v{build}"}
        out["denied"] = (await c.post("/api/v1/triggers", json=new, headers=basic("bob"))).status
        out["anon"] = (await c.post("/api/v1/triggers", json=new)).status
        out["create"] = await answer(await c.post("/api/v1/triggers", json=new, headers=alice))
        tid, token = out["create"][1]["id"], out["create"][1]["token"]
        path = f"/api/v1/triggers/{tid}"
        out["list"] = await answer(await c.get("/api/v1/triggers", headers=alice))
        out["bob_list"] = await answer(await c.get("/api/v1/triggers", headers=basic("bob")))
        out["fire"] = await answer(await c.post(f"{path}?token={token}", data=data))
        bearer = {"Authorization": f"Bearer {token}"}
        out["fire2"] = await answer(await c.post(path, data=data, headers=bearer))
        out["no_token"] = await c.post(path, data=data)
        out["bad_token"] = (await c.post(f"{path}?token=nope", data=data)).status
        out["bad_bearer"] = (
            await c.post(path, data=data, headers={"Authorization": "Bearer x"})
        ).status
        out["not_tar"] = (await c.post(f"{path}?token={token}", data=b"hello")).status
        status_url = out["fire"][1]["status_url"]
        out["status"] = await answer(await c.get(f"{status_url}?token={token}"))
        out["status_bearer"] = (await c.get(status_url, headers=bearer)).status
        out["status_admin"] = (await c.get(status_url, headers=basic("root"))).status
        out["status_bad"] = (await c.get(f"{status_url}?token=nope")).status
        out["status_bob"] = (await c.get(status_url, headers=basic("bob"))).status
        out["builds"] = await answer(await c.get(f"{path}/builds", headers=alice))
        out["delete"] = (await c.delete(path, headers=alice)).status
        out["gone"] = (await c.get(path, headers=alice)).status
        return out

    out = api(triggers, body)
    assert (out["denied"], out["anon"]) == (403, 401)
    status, created = out["create"]
    assert status == 201 and created["repository"] == "alice/app"
    assert created["url"].endswith(created["path"]) and created["path"] == "/api/v1/triggers/1"
    assert [t["id"] for t in out["list"][1]["triggers"]] == [created["id"]]
    assert "token" not in out["list"][1]["triggers"][0]
    assert out["bob_list"][1]["triggers"] == []
    status, fired = out["fire"]
    assert status == 202 and fired["status"] == "queued" and fired["tag"] == f"v{fired['id']}"
    assert fired["status_url"] == f"/api/v1/triggers/{created['id']}/builds/{fired['id']}"
    assert out["fire2"][0] == 202
    assert out["no_token"].status == 401 and "Bearer" in out["no_token"].headers["WWW-Authenticate"]
    assert out["bad_token"] == out["bad_bearer"] == 403
    assert out["not_tar"] == 400
    assert out["status"][0] == 200 and out["status"][1]["status"] == "queued"
    assert out["status"][1]["context_size"] == len(data)
    assert out["status_bearer"] == out["status_admin"] == 200
    assert out["status_bad"] == 403 and out["status_bob"] == 404
    assert [b["id"] for b in out["builds"][1]["builds"]] == [fired["id"] + 1, fired["id"]]
    assert (out["delete"], out["gone"]) == (204, 404)


def test_api_refuses_a_context_over_the_limit(triggers: Triggers) -> None:
    trigger, token = triggers.create("alice/app")
    big = context_tar({"Dockerfile": os.urandom(70 * 1024)})

    async def chunks() -> Any:  # no Content-Length: the limit is checked as it streams
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async def body(c: TestClient) -> list[int]:
        path = f"/api/v1/triggers/{trigger.id}?token={token}"
        declared = await c.post(path, data=big)
        streamed = await c.post(path, data=chunks())
        return [declared.status, streamed.status]

    assert api(triggers, body) == [413, 413]
    assert triggers.builds(trigger.id) == []
    assert incoming(triggers) == []
