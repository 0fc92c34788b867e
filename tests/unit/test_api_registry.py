"""Pull, push, login and distribution inspect over the API, against a fake engine:
query and header decoding, moby's streaming (an early error is an HTTP error with the
class's status, a later one an errorDetail line), progress from several threads, a
client that goes away; the engine glue's reference rules; and the real docker CLI's
view of it when the CLI is installed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from portside.api import create_app
from portside.distribution.config import AuthConfig, RegistryConfig
from portside.distribution.errors import (
    RegistryDenied,
    RegistryNotFound,
    RegistryUnauthorized,
    RegistryUnavailable,
)
from portside.engine.registry import Distribution, pull_reference, push_reference
from portside.errors import InvalidArgument, PermissionDenied
from tests.unit.fake_engine import FakeEngine, ServerThread

MISSING = "manifest for 127.0.0.1:5000/app:nope not found: manifest unknown: manifest unknown"
DIGEST = "sha256:" + "c" * 64
ANONYMOUS = AuthConfig()

Progress = Callable[[dict[str, Any]], None]
Script = Callable[[Progress], None]


def layer_messages(progress: Progress, layers: int = 3, steps: int = 20) -> None:
    """What a pull reports: a status line, then per-layer progress from one thread each."""
    progress({"status": "Pulling from app", "id": "latest"})

    def one(n: int) -> None:
        ident = f"{n:012x}"
        progress({"status": "Pulling fs layer", "progressDetail": {}, "id": ident})
        for i in range(1, steps + 1):
            detail = {"current": i * 100, "total": steps * 100}
            progress({"status": "Downloading", "progressDetail": detail, "id": ident})
        progress({"status": "Pull complete", "progressDetail": {}, "id": ident})

    threads = [threading.Thread(target=one, args=(n,)) for n in range(layers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress({"status": "Digest: " + DIGEST})
    progress({"status": "Status: Downloaded newer image for 127.0.0.1:5000/app:latest"})


class RegistryEngine(FakeEngine):
    """The fake engine plus the registry calls; ``script`` decides what they do."""

    def __init__(self) -> None:
        super().__init__()
        self.script: Script = layer_messages
        self.login_error: Exception | None = None
        self.ended = threading.Event()
        self.ended_with: BaseException | None = None

    def _run(self, progress: Progress | None) -> None:
        try:
            self.script(progress or (lambda _m: None))
        except BaseException as exc:
            self.ended_with = exc
            raise
        finally:
            self.ended.set()

    def image_pull(self, name: str, **kw: Any) -> None:
        self._record("image_pull", name, **{k: v for k, v in kw.items() if k != "progress"})
        self._run(kw.get("progress"))

    def image_push(self, name: str, **kw: Any) -> None:
        self._record("image_push", name, **{k: v for k, v in kw.items() if k != "progress"})
        self._run(kw.get("progress"))

    def registry_login(self, auth: AuthConfig) -> dict:
        self._record("registry_login", auth)
        if self.login_error is not None:
            raise self.login_error
        return {"Status": "Login Succeeded", "IdentityToken": ""}

    def distribution_inspect(self, name: str, *, auth: AuthConfig = ANONYMOUS) -> dict:
        self._record("distribution_inspect", name, auth=auth)
        desc = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": DIGEST}
        return {"Descriptor": {**desc, "size": 9}, "Platforms": [{"os": "linux"}]}


Body = Callable[[TestClient], Awaitable[Any]]


def run(engine: RegistryEngine, body: Body) -> Any:
    async def main() -> Any:
        async with TestClient(TestServer(create_app(engine))) as client:
            return await body(client)

    return asyncio.run(main())


def header(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.split("\r\n") if line]


@pytest.fixture
def engine() -> RegistryEngine:
    return RegistryEngine()


def calls(engine: RegistryEngine, name: str) -> list[tuple[tuple, dict]]:
    return [(args, kw) for n, args, kw in engine.calls if n == name]


# --- pull -------------------------------------------------------------------------------


def test_pull_streams_every_message_from_the_threads(engine: RegistryEngine) -> None:
    auth = header({"username": "u", "password": "pw", "serveraddress": "127.0.0.1:5000"})

    async def body(c: TestClient) -> tuple[int, str, str]:
        r = await c.post(
            "/v1.47/images/create?fromImage=127.0.0.1:5000/app&tag=latest&platform=linux/arm64",
            headers={"X-Registry-Auth": auth},
        )
        return r.status, r.headers["Content-Type"], await r.text()

    status, ctype, text = run(engine, body)
    assert (status, ctype) == (200, "application/json")
    got = lines(text)
    assert len(got) == 1 + 3 * 22 + 2
    assert got[0] == {"status": "Pulling from app", "id": "latest"}
    assert got[-1]["status"].startswith("Status: Downloaded newer image")
    for n in range(3):  # each layer's messages arrive in the order its thread sent them
        mine = [m["status"] for m in got if m.get("id") == f"{n:012x}"]
        assert mine == ["Pulling fs layer", *["Downloading"] * 20, "Pull complete"]
    [(args, kw)] = calls(engine, "image_pull")
    assert args == ("127.0.0.1:5000/app",)
    assert kw == {
        "tag": "latest",
        "platform": "linux/arm64",
        "auth": AuthConfig(username="u", password="pw", server="127.0.0.1:5000"),
        "all_tags": False,
    }


def test_pull_without_tag_is_all_tags_and_bad_auth_is_anonymous(engine: RegistryEngine) -> None:
    async def body(c: TestClient) -> list[int]:
        out = []
        for query in ("fromImage=busybox", "fromImage=busybox&tag=" + DIGEST):
            r = await c.post(f"/images/create?{query}", headers={"X-Registry-Auth": "!!"})
            out.append(r.status)
            await r.read()
        return out

    assert run(engine, body) == [200, 200]
    (_, first), (_, second) = calls(engine, "image_pull")
    assert first["all_tags"] is True and first["tag"] is None and first["auth"] == AuthConfig()
    assert second["all_tags"] is False and second["tag"] == DIGEST


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RegistryNotFound(MISSING), 404),
        # never 401 on a pull: the docker CLI would prompt for a login (moby: 500, 404)
        (RegistryUnauthorized("unauthorized: authentication required (127.0.0.1:5000)"), 500),
        (RegistryDenied("denied: requested access to the resource is denied"), 404),
        (InvalidArgument("invalid reference 'A': repository name must be lowercase"), 400),
        (RegistryUnavailable("connection refused (registry 127.0.0.1:5000)"), 503),
        (RuntimeError("a bug"), 500),
    ],
)
def test_error_before_the_first_message_is_an_http_error(
    engine: RegistryEngine, error: Exception, status: int
) -> None:
    def fail(_progress: Progress) -> None:
        raise error

    engine.script = fail

    async def body(c: TestClient) -> tuple[int, Any]:
        r = await c.post("/images/create?fromImage=127.0.0.1:5000/app&tag=nope")
        return r.status, await r.json()

    assert run(engine, body) == (status, {"message": str(error)})


def test_error_after_a_message_is_an_error_line(engine: RegistryEngine) -> None:
    def midway(progress: Progress) -> None:
        progress({"status": "Pulling from app", "id": "latest"})
        progress({"status": "Downloading", "progressDetail": {"current": 1}, "id": "abc"})
        raise RegistryUnavailable("connection reset (registry 127.0.0.1:5000, after 5 attempts)")

    engine.script = midway

    async def body(c: TestClient) -> tuple[int, str]:
        r = await c.post("/images/create?fromImage=127.0.0.1:5000/app&tag=v1")
        return r.status, await r.text()

    status, text = run(engine, body)
    message = "connection reset (registry 127.0.0.1:5000, after 5 attempts)"
    assert status == 200
    assert lines(text)[-1] == {"errorDetail": {"message": message}, "error": message}
    assert len(lines(text)) == 3 and text.endswith("\r\n")


def test_a_stream_of_messages_goes_out_in_few_writes(engine: RegistryEngine) -> None:
    def burst(progress: Progress) -> None:  # a message a millisecond, as a many-layer pull
        for n in range(400):
            progress({"status": "Extracting", "progressDetail": {"current": n}, "id": "abc"})
            time.sleep(0.001)

    engine.script = burst

    async def body(c: TestClient) -> tuple[list[int], int]:
        r = await c.post("/images/create?fromImage=127.0.0.1:5000/app&tag=v1")
        data, writes = b"", 0
        async for chunk, end_of_chunk in r.content.iter_chunks():
            data += chunk
            writes += end_of_chunk
        return [m["progressDetail"]["current"] for m in lines(data.decode())], writes

    sent, writes = run(engine, body)
    assert sent == list(range(400))  # all of them, in order
    assert writes < 100  # gathered (~40 a second): not a write and a wake-up each


def test_a_client_that_goes_away_ends_the_pull(engine: RegistryEngine) -> None:
    def forever(progress: Progress) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            progress({"status": "Downloading", "progressDetail": {"current": 1}, "id": "abc"})
            time.sleep(0.01)

    engine.script = forever

    async def body(c: TestClient) -> None:
        r = await c.post("/images/create?fromImage=app&tag=v1")
        assert json.loads(await r.content.readline())["status"] == "Downloading"
        r.close()
        await asyncio.get_running_loop().run_in_executor(None, engine.ended.wait, 5)

    run(engine, body)
    assert engine.ended.is_set()
    assert type(engine.ended_with).__name__ == "ClientGone"


def test_a_call_with_no_message_answers_an_empty_stream(engine: RegistryEngine) -> None:
    engine.script = lambda _progress: None

    async def body(c: TestClient) -> tuple[int, bytes]:
        r = await c.post("/images/create?fromImage=app&tag=v1")
        return r.status, await r.read()

    assert run(engine, body) == (200, b"")


# --- push -------------------------------------------------------------------------------


def test_push_name_tag_and_credentials(engine: RegistryEngine) -> None:
    def pushed(progress: Progress) -> None:
        progress({"status": "The push refers to repository [127.0.0.1:5000/app]"})
        progress({"progressDetail": {}, "aux": {"Tag": "v1", "Digest": DIGEST, "Size": 527}})

    engine.script = pushed
    auth = header({"identitytoken": "tok"})

    async def body(c: TestClient) -> list[Any]:
        out = []
        r = await c.post(
            "/images/127.0.0.1:5000/app/push?tag=v1", headers={"X-Registry-Auth": auth}
        )
        out.append((r.status, lines(await r.text())[-1]["aux"]["Size"]))
        r = await c.post("/v1.41/images/127.0.0.1:5000/app/push", json={"Username": "old"})
        out.append(r.status)
        await r.read()
        r = await c.post("/images/app/push?tag=v1", headers={"X-Registry-Auth": "%%%"})
        out.append((r.status, (await r.json())["message"]))
        return out

    out = run(engine, body)
    assert out[0] == (200, 527) and out[1] == 200
    assert out[2][0] == 400 and "X-Registry-Auth" in out[2][1]
    (args1, kw1), (args2, kw2) = calls(engine, "image_push")
    assert args1 == args2 == ("127.0.0.1:5000/app",)
    assert kw1 == {"tag": "v1", "auth": AuthConfig(identity_token="tok"), "all_tags": False}
    assert kw2 == {"tag": None, "auth": AuthConfig(username="old"), "all_tags": True}


# --- /auth and /distribution ------------------------------------------------------------


def test_auth_success_and_failures(engine: RegistryEngine) -> None:
    async def body(c: TestClient) -> list[Any]:
        out = []
        creds = {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5443"}
        r = await c.post("/v1.47/auth", json=creds)
        out.append((r.status, await r.json()))
        engine.login_error = RegistryUnauthorized("unauthorized: incorrect username or password")
        r = await c.post("/auth", json=creds)
        out.append((r.status, await r.json()))
        r = await c.post("/auth", data=b"[1]")
        out.append(r.status)
        r = await c.post("/auth", json={"username": 7})
        out.append(r.status)
        return out

    out = run(engine, body)
    assert out[0] == (200, {"Status": "Login Succeeded", "IdentityToken": ""})
    assert out[1] == (401, {"message": "unauthorized: incorrect username or password"})
    assert out[2:] == [400, 400]
    first = calls(engine, "registry_login")[0][0][0]
    assert first == AuthConfig(username="u", password="p", server="127.0.0.1:5443")


def test_distribution_inspect(engine: RegistryEngine) -> None:
    async def body(c: TestClient) -> tuple[int, Any]:
        r = await c.get("/distribution/127.0.0.1:5000/app:v1/json")
        return r.status, await r.json()

    status, doc = run(engine, body)
    assert status == 200 and doc["Descriptor"]["digest"] == DIGEST
    assert calls(engine, "distribution_inspect")[0][0] == ("127.0.0.1:5000/app:v1",)


# --- the engine glue's reference rules --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tag", "want"),
    [
        ("busybox", None, "docker.io/library/busybox"),
        ("busybox", "1.36", "docker.io/library/busybox:1.36"),
        ("busybox:", None, "docker.io/library/busybox"),  # old `pull -a` clients
        ("busybox:1.36", None, "docker.io/library/busybox:1.36"),
        ("127.0.0.1:5000/app:v1", DIGEST, f"127.0.0.1:5000/app@{DIGEST}"),
        ("127.0.0.1:5000/app", "v2", "127.0.0.1:5000/app:v2"),
    ],
)
def test_pull_reference(name: str, tag: str | None, want: str) -> None:
    assert str(pull_reference(name, tag)) == want


def test_pull_and_push_reference_errors() -> None:
    with pytest.raises(PermissionDenied, match="'scratch' is a reserved name"):
        pull_reference("scratch", "latest")
    with pytest.raises(InvalidArgument):
        pull_reference("Busybox")
    with pytest.raises(InvalidArgument):
        pull_reference("busybox", "sha256:nothex")
    with pytest.raises(InvalidArgument, match="cannot push a digest reference"):
        push_reference(f"app@{DIGEST}")
    assert str(push_reference("app", "v1")) == "docker.io/library/app:v1"
    assert str(push_reference("localhost:5000/app:v1")) == "localhost:5000/app:v1"


class _Events:
    def __init__(self) -> None:
        self.published: list[tuple] = []

    def publish(self, type: str, action: str, actor: str, attributes: dict) -> dict:
        self.published.append((type, action, actor, attributes))
        return {}


class _Image:
    config = json.dumps({"config": {"Labels": {"a": "b"}}}).encode()


class _Result:
    image = _Image()


def test_distribution_pull_push_login_glue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distribution resolves references, picks pull vs pull_all_tags, passes the
    daemon's limits, closes its registry client and publishes moby's events."""
    import sys
    import types

    seen: list[tuple] = []
    pull_mod = types.ModuleType("portside.distribution.pull")
    pull_mod.pull = lambda ref, **kw: seen.append(("pull", str(ref), kw)) or _Result()  # type: ignore[attr-defined]
    pull_mod.pull_all_tags = lambda ref, **kw: seen.append(("all", str(ref), kw)) or []  # type: ignore[attr-defined]
    push_mod = types.ModuleType("portside.distribution.push")
    push_mod.push = lambda ref, **kw: seen.append(("push", str(ref), kw)) or []  # type: ignore[attr-defined]
    import portside.distribution as package

    for name, module in (("pull", pull_mod), ("push", push_mod)):
        monkeypatch.setitem(sys.modules, f"portside.distribution.{name}", module)
        monkeypatch.setattr(package, name, module, raising=False)

    class FakeRegistry:
        def __init__(self, domain: str, config: RegistryConfig, auth: AuthConfig, *, push: bool):
            self.domain, self.auth, self.push, self.closed = domain, auth, push, False
            registries.append(self)

        def ping(self) -> None:
            if self.auth.password != "right":
                raise RegistryUnauthorized("unauthorized: authentication required")

        def close(self) -> None:
            self.closed = True

    class Images:
        def get(self, ref: str) -> _Image:
            return _Image()

    registries: list[FakeRegistry] = []
    events = _Events()
    config = RegistryConfig(max_concurrent_downloads=7, max_concurrent_uploads=2)
    dist = Distribution(
        "content",
        Images(),
        "snaps",
        events,
        config,
        registry_factory=FakeRegistry,  # type: ignore[arg-type]
    )
    dist.pull("127.0.0.1:5000/app", platform="linux/arm/v7")
    dist.pull("busybox", all_tags=True)
    dist.push("127.0.0.1:5000/app", tag="v1")
    dist.push("127.0.0.1:5000/app", all_tags=True)
    assert [(s[0], s[1]) for s in seen] == [
        ("pull", "127.0.0.1:5000/app:latest"),
        ("all", "docker.io/library/busybox"),
        ("push", "127.0.0.1:5000/app:v1"),
        ("push", "127.0.0.1:5000/app"),
    ]
    assert seen[0][2]["concurrency"] == 7 and str(seen[0][2]["platform"]) == "linux/arm/v7"
    assert seen[2][2]["concurrency"] == 2 and seen[2][2]["all_tags"] is False
    assert seen[3][2]["all_tags"] is True
    assert [(r.domain, r.push, r.closed) for r in registries] == [
        ("127.0.0.1:5000", False, True),
        ("docker.io", False, True),
        ("127.0.0.1:5000", True, True),
        ("127.0.0.1:5000", True, True),
    ]
    assert events.published == [
        ("image", "pull", "127.0.0.1:5000/app:latest", {"a": "b", "name": "127.0.0.1:5000/app"}),
        ("image", "pull", "busybox", {"name": "busybox"}),
        ("image", "push", "127.0.0.1:5000/app:v1", {"a": "b", "name": "127.0.0.1:5000/app"}),
        ("image", "push", "127.0.0.1:5000/app", {"name": "127.0.0.1:5000/app"}),
    ]
    ok = AuthConfig(username="u", password="right", server="https://index.docker.io/v1/")
    assert dist.login(ok) == {"Status": "Login Succeeded", "IdentityToken": ""}
    assert (registries[-1].domain, registries[-1].push) == ("docker.io", True)
    with pytest.raises(RegistryUnauthorized):
        dist.login(AuthConfig(username="u", password="wrong", server="localhost:5000"))
    assert registries[-1].domain == "localhost:5000" and registries[-1].closed


# --- the real docker CLI over the API ---------------------------------------------------

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@pytest.fixture
def served(engine: RegistryEngine) -> Iterator[tuple[RegistryEngine, str, str]]:
    tmp = tempfile.mkdtemp(prefix="psreg-", dir="/tmp")  # short: a unix socket path
    try:
        with ServerThread(engine, [f"unix://{tmp}/d.sock"]) as server:
            yield engine, server.addresses[0], tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def docker(host: str, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": host, "DOCKER_CONFIG": config}
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="needs the docker CLI")
def test_docker_cli_sees_dockerd(served: tuple[RegistryEngine, str, str]) -> None:
    engine, host, tmp = served
    result = docker(host, tmp, "pull", "127.0.0.1:5000/app")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "Using default tag: latest",
        "latest: Pulling from app",
    ]
    assert "000000000000: Pull complete" in result.stdout
    assert result.stdout.endswith("127.0.0.1:5000/app:latest\n")

    def missing(_progress: Progress) -> None:
        raise RegistryNotFound(MISSING)

    engine.script = missing
    result = docker(host, tmp, "pull", "127.0.0.1:5000/app:nope")
    assert (result.returncode, result.stderr) == (1, f"Error response from daemon: {MISSING}\n")

    def midway(progress: Progress) -> None:
        progress({"status": "The push refers to repository [127.0.0.1:5000/app]"})
        raise RegistryDenied("denied: requested access to the resource is denied")

    engine.script = midway
    result = docker(host, tmp, "push", "127.0.0.1:5000/app:v1")
    assert result.returncode == 1
    assert result.stdout == "The push refers to repository [127.0.0.1:5000/app]\n"
    assert result.stderr == "denied: requested access to the resource is denied\n"

    result = docker(host, tmp, "login", "-u", "u", "--password-stdin", "127.0.0.1:5000")
    assert result.returncode == 1  # empty stdin: docker refuses an empty password
    login = subprocess.run(
        [DOCKER, "login", "-u", "u", "--password-stdin", "127.0.0.1:5000"],
        input="pw\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "DOCKER_HOST": host, "DOCKER_CONFIG": tmp},
    )
    assert login.returncode == 0, login.stderr
    assert "Login Succeeded" in login.stdout
    assert calls(engine, "registry_login")[-1][0][0] == AuthConfig(
        username="u", password="pw", server="127.0.0.1:5000"
    )
