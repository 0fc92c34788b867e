"""The API over the fake engine: routing, versions, errors, query parsing, streams."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from portside.api import create_app
from portside.api.hijack import frame
from tests.unit.fake_engine import FakeEngine

Body = Callable[[TestClient], Awaitable[Any]]


def run(engine: FakeEngine, body: Body) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(create_app(engine))) as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


async def create(client: TestClient, cmd: list[str], **extra: Any) -> str:
    r = await client.post(
        "/v1.50/containers/create", json={"Image": "busybox", "Cmd": cmd, **extra}
    )
    assert r.status == 201, await r.text()
    return (await r.json())["Id"]


def test_ping_get_and_head(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        for method in ("GET", "HEAD"):
            r = await c.request(method, "/_ping")
            assert r.status == 200
            assert r.headers["API-Version"] == "1.50"
            assert r.headers["Docker-Experimental"] == "false"
            assert r.headers["OSType"] == "linux"
            assert r.headers["Server"].startswith("Portside/")
            assert "Builder-Version" in r.headers
            assert (await r.text()) == ("OK" if method == "GET" else "")

    run(engine, body)


@pytest.mark.parametrize("prefix", ["", "/v1.41", "/v1.44", "/v1.50"])
def test_supported_versions(engine: FakeEngine, prefix: str) -> None:
    async def body(c: TestClient) -> None:
        r = await c.get(prefix + "/version")
        assert r.status == 200
        data = await r.json()
        assert data["ApiVersion"] == "1.50" and data["MinAPIVersion"] == "1.41"

    run(engine, body)


def test_version_too_old_and_too_new(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        r = await c.get("/v1.12/containers/json")
        assert r.status == 400
        assert r.headers["Content-Type"] == "application/json"
        assert (await r.json())["message"] == (
            "client version 1.12 is too old. Minimum supported API version is 1.41, "
            "please upgrade your client to a newer version"
        )
        r = await c.get("/v1.51/info")
        assert r.status == 400
        assert "too new" in (await r.json())["message"]

    run(engine, body)


def test_unknown_route_is_json_404(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        r = await c.get("/v1.50/nothing/here")
        assert r.status == 404
        assert (await r.json()) == {"message": "page not found"}

    run(engine, body)


def test_error_classes_map_to_status(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        r = await c.get("/containers/nosuch/json")
        assert (r.status, (await r.json())["message"]) == (404, "No such container: nosuch")
        r = await c.post(
            "/containers/create", json={"Image": "busybox", "HostConfig": {"Memory": 5}}
        )
        assert (r.status, (await r.json())["message"]) == (
            400,
            "Minimum memory limit allowed is 6MB",
        )
        await create(c, ["sleep"], HostConfig={})
        cid = await create(c, ["sleep", "1"])
        assert (await c.post(f"/containers/{cid}/start")).status == 204
        assert (await c.post(f"/containers/{cid}/start")).status == 304
        r = await c.delete(f"/containers/{cid}")
        assert r.status == 409 and "container is running" in (await r.json())["message"]
        r = await c.post("/containers/create?name=dup", json={"Image": "busybox"})
        r = await c.post("/containers/create?name=dup", json={"Image": "busybox"})
        assert r.status == 409
        r = await c.post("/containers/create", data=b"{not json")
        assert r.status == 400 and "invalid JSON" in (await r.json())["message"]

    run(engine, body)


def test_internal_error_is_500_json(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> dict:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(engine, "info", boom)

    async def body(c: TestClient) -> None:
        r = await c.get("/info")
        assert r.status == 500
        assert (await r.json()) == {"message": "disk on fire"}

    run(engine, body)


def test_create_query_and_body(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        payload = {
            "Image": "busybox",
            "Cmd": ["true"],
            "Env": ["A=1"],
            "HostConfig": {"AutoRemove": True},
            "NetworkingConfig": {"EndpointsConfig": {}},
        }
        r = await c.post("/v1.50/containers/create?name=web&platform=linux/amd64", json=payload)
        assert r.status == 201
        assert set(await r.json()) == {"Id", "Warnings"}
        r = await c.post("/containers/create?platform=windows/amd64", json=payload)
        assert r.status == 400

    run(engine, body)
    _, args, _ = next(call for call in engine.calls if call[0] == "container_create")
    assert args == (
        "web",
        {"Image": "busybox", "Cmd": ["true"], "Env": ["A=1"]},
        {"AutoRemove": True},
        {"EndpointsConfig": {}},
    )


def test_list_query_parsing(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> None:
        await c.get("/containers/json?all=1&limit=3&size=True")
        await c.get('/containers/json?filters={"status":{"exited":true}}')
        await c.get("/containers/json")

    run(engine, body)
    lists = [kw for name, _, kw in engine.calls if name == "container_list"]
    assert lists[0] == {"all": True, "limit": 3, "size": True, "filters": None}
    assert lists[1]["filters"] == {"status": ["exited"]}
    assert lists[2] == {"all": False, "limit": -1, "size": False, "filters": None}


def test_logs_framed_without_tty_raw_with(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> tuple[bytes, bytes, int, str]:
        plain = await create(c, ["echo", "hi"])
        tty = await create(c, ["echo", "ho"], Tty=True)
        for cid in (plain, tty):
            await c.post(f"/containers/{cid}/start")
        r1 = await c.get(f"/containers/{plain}/logs?stdout=1&stderr=1&tail=10")
        r2 = await c.get(f"/containers/{tty}/logs?stdout=true")
        r3 = await c.get(f"/containers/{tty}/logs")
        r4 = await c.get(f"/v1.41/containers/{plain}/logs?stdout=1")
        assert r4.headers["Content-Type"] == "application/vnd.docker.raw-stream"
        assert (
            await r4.read()
            == await (await c.get(f"/v1.42/containers/{plain}/logs?stdout=1")).read()
        )
        return (await r1.read(), await r2.read(), r3.status, r1.headers["Content-Type"])

    framed, raw, bad, ctype = run(engine, body)
    assert framed == struct.pack(">BxxxL", 1, 3) + b"hi\n"
    assert ctype == "application/vnd.docker.multiplexed-stream"
    assert raw == b"ho\n"
    assert bad == 400


def test_wait_conditions(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        cid = await create(c, ["echo", "x"])
        waiter = asyncio.ensure_future(c.post(f"/containers/{cid}/wait?condition=next-exit"))
        await asyncio.sleep(0.05)
        await c.post(f"/containers/{cid}/start")
        r = await waiter
        first = await r.json()
        bad = await c.post(f"/containers/{cid}/wait?condition=bogus")
        gone = await c.post("/containers/nosuch/wait")
        return [first, bad.status, gone.status]

    assert run(engine, body) == [{"Error": None, "StatusCode": 0}, 400, 404]


def test_lifecycle_routes(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[int]:
        cid = await create(c, ["sleep", "9"])
        out = []
        for path in (
            "start",
            "pause",
            "unpause",
            "restart?t=1",
            "kill?signal=SIGTERM",
            "rename?name=newname",
            "resize?h=10&w=20",
        ):
            out.append((await c.post(f"/containers/{cid}/{path}")).status)
        out.append((await c.post(f"/containers/{cid}/update", json={"Memory": 9 << 20})).status)
        out.append((await c.get(f"/containers/{cid}/top?ps_args=aux")).status)
        out.append((await c.get(f"/containers/{cid}/changes")).status)
        out.append((await c.delete(f"/containers/{cid}?force=1&v=1")).status)
        out.append((await c.post("/containers/prune?filters={}")).status)
        return out

    assert run(engine, body) == [204, 204, 204, 204, 204, 204, 200, 200, 200, 200, 204, 200]
    kills = [args for name, args, _ in engine.calls if name == "container_kill"]
    assert kills and kills[0][1] == "SIGTERM"
    removes = [kw for name, _, kw in engine.calls if name == "container_remove"]
    assert removes == [{"force": True, "volumes": True}]


def test_stats_stream_and_one_shot(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> tuple[list[dict], dict]:
        cid = await create(c, ["sleep", "9"])
        r = await c.get(f"/containers/{cid}/stats")
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
        one = await (await c.get(f"/containers/{cid}/stats?stream=0")).json()
        return lines, one

    lines, one = run(engine, body)
    assert [s["pids_stats"]["current"] for s in lines] == [1, 2, 3]
    assert one["pids_stats"]["current"] == 1


def test_archive_and_export(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        cid = await create(c, ["sleep", "9"])
        head = await c.head(f"/containers/{cid}/archive?path=/etc/hostname")
        get = await c.get(f"/containers/{cid}/archive?path=/etc/hostname")
        put = await c.put(f"/containers/{cid}/archive?path=/tmp", data=b"TARDATA" * 1000)
        nopath = await c.head(f"/containers/{cid}/archive")
        export = await c.get(f"/containers/{cid}/export")
        stat = head.headers["X-Docker-Container-Path-Stat"]
        return [stat, await get.read(), put.status, nopath.status, len(await export.read())]

    import base64

    stat, tar, put, nopath, size = run(engine, body)
    assert json.loads(base64.b64decode(stat))["name"] == "hostname"
    assert tar == b"tar-bytes" and put == 200 and nopath == 400 and size == 1536
    puts = [args for name, args, _ in engine.calls if name == "archive_put"]
    assert puts[0][1:] == ("/tmp", b"TARDATA" * 1000)


def test_images(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        out: list[Any] = [(await (await c.get("/images/json?all=1")).json())[0]["RepoTags"]]
        out.append((await c.get("/images/busybox:latest/json")).status)
        out.append((await c.get("/v1.50/images/busybox/history")).status)
        out.append((await c.post("/images/busybox/tag?repo=my/repo&tag=v1")).status)
        out.append((await c.get("/images/my/repo:v1/json")).status)
        out.append(await (await c.get("/images/get?names=busybox&names=my/repo:v1")).read())
        out.append(await (await c.get("/images/busybox/get")).read())
        load = await c.post("/images/load?quiet=1", data=b"TAR")
        out.append((load.headers["Content-Type"], await load.json()))
        imp = await c.post(
            "/images/create?fromSrc=-&repo=imp&tag=2&changes=CMD%20sh", data=b"LAYER"
        )
        out.append([json.loads(line) for line in (await imp.text()).splitlines()][-1])
        out.append((await c.post("/images/create?fromSrc=http://x/y.tar")).status)
        commit = await c.post("/commit?container=nosuch&repo=x")
        out.append(commit.status)
        out.append((await c.delete("/images/my/repo:v1?force=1")).status)
        out.append((await c.post("/images/prune")).status)
        return out

    out = run(engine, body)
    assert out[0] == ["busybox:latest"]
    assert out[1:5] == [200, 200, 201, 200]
    assert out[5] == b"saved:busybox,my/repo:v1" and out[6] == b"saved:busybox"
    assert out[7] == ("application/json", {"stream": "Loaded image: busybox:latest\n"})
    assert out[8]["status"].startswith("sha256:")
    assert out[9:] == [501, 404, 200, 200]
    imports = [kw for name, _, kw in engine.calls if name == "image_import"]
    assert imports == [{"repo": "imp", "tag": "2", "changes": ["CMD sh"]}]


def test_commit(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> Any:
        cid = await create(c, ["sleep", "9"])
        r = await c.post(
            f"/commit?container={cid}&repo=snap&tag=1&pause=0&changes=ENV%20A=1",
            json={"Cmd": ["sh"]},
        )
        return r.status, await r.json()

    assert run(engine, body) == (201, {"Id": "sha256:" + "c" * 64})
    kw = next(kw for name, _, kw in engine.calls if name == "commit")
    assert kw == {
        "repo": "snap",
        "tag": "1",
        "pause": False,
        "changes": ["ENV A=1"],
        "config": {"Cmd": ["sh"]},
    }


def test_volumes(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        r = await c.post("/volumes/create", json={"Name": "data", "Labels": {"a": "b"}})
        out: list[Any] = [r.status, (await r.json())["Labels"]]
        out.append([v["Name"] for v in (await (await c.get("/volumes")).json())["Volumes"]])
        out.append((await c.get("/volumes/data")).status)
        out.append((await c.delete("/volumes/data?force=1")).status)
        out.append((await c.get("/volumes/data")).status)
        out.append((await c.post("/volumes/prune")).status)
        return out

    assert run(engine, body) == [201, {"a": "b"}, ["data"], 200, 204, 404, 200]


def test_exec_create_inspect_detach(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        cid = await create(c, ["sleep", "9"])
        stopped = await c.post(f"/containers/{cid}/exec", json={"Cmd": ["true"]})
        await c.post(f"/containers/{cid}/start")
        nocmd = await c.post(f"/containers/{cid}/exec", json={})
        r = await c.post(f"/containers/{cid}/exec", json={"Cmd": ["true"]})
        eid = (await r.json())["Id"]
        start = await c.post(f"/exec/{eid}/start", json={"Detach": True})
        inspect = await (await c.get(f"/exec/{eid}/json")).json()
        resize = await c.post(f"/exec/{eid}/resize?h=5&w=6")
        missing = await c.get("/exec/nosuch/json")
        return [
            stopped.status,
            nocmd.status,
            r.status,
            start.status,
            inspect["ExitCode"],
            resize.status,
            missing.status,
        ]

    assert run(engine, body) == [409, 400, 201, 200, 0, 200, 404]


def test_system(engine: FakeEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        info = await (await c.get("/info")).json()
        df = await (await c.get("/system/df")).json()
        await create(c, ["true"])
        r = await c.get(
            '/events?since=0&until=9999999999&filters={"type":["container"]}', timeout=None
        )
        first = json.loads((await r.content.readline()).decode())
        r.close()
        return [info["OSType"], sorted(df), first["Action"]]

    info, df, action = run(engine, body)
    assert info == "linux" and "Volumes" in df and action == "create"


def test_frame() -> None:
    assert frame(2, b"err") == b"\x02\x00\x00\x00\x00\x00\x00\x03err"


# --- the threads of blocking calls ------------------------------------------------------------


def test_blocking_calls_reuse_idle_threads() -> None:
    import threading

    from portside.api.server import _Waiters

    waiters = _Waiters()
    names: list[int] = []
    for _ in range(20):  # one after another: one thread does them all
        done = threading.Event()
        waiters.submit(lambda d=done: (names.append(threading.get_ident()), d.set()))
        assert done.wait(5)
        deadline = time.monotonic() + 5
        while waiters._idle == 0 and time.monotonic() < deadline:
            time.sleep(0.001)  # until it counts itself idle again
    assert len(set(names)) == 1
    # blocked ones: each gets a thread of its own, and none waits for another
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        release.wait(10)

    for _ in range(5):
        waiters.submit(blocked)
    for _ in range(5):
        assert started.acquire(timeout=5)
    release.set()


def test_idle_threads_retire(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from portside.api.server import _Waiters

    monkeypatch.setattr(_Waiters, "IDLE_SECONDS", 0.05)
    waiters = _Waiters()
    ran: list[threading.Thread] = []
    done = threading.Event()
    waiters.submit(lambda: (ran.append(threading.current_thread()), done.set()))
    assert done.wait(5)
    ran[0].join(5)
    assert not ran[0].is_alive()  # idle past IDLE_SECONDS: gone
    again = threading.Event()
    waiters.submit(lambda: (ran.append(threading.current_thread()), again.set()))
    assert again.wait(5)  # a new thread once the last one is gone
    assert ran[1] is not ran[0]
