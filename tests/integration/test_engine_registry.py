"""The engine's registry glue end to end in one process: the API routes over
:class:`~portside.engine.registry.Distribution` with real stores (content, images, an
overlay snapshotter in temporary directories), the real registry client and
:class:`portside.testing.fakeregistry.FakeRegistry` with Basic auth.

Push, pull back into another store, login, distribution inspect and the errors a
client sees (a missing tag: HTTP 404 before any message, as dockerd; bad credentials:
401 from /auth, 500 from a pull), with the ``pull``/``push`` events."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from mount_helpers import scratch_root

from portside.api import create_app
from portside.distribution.config import AuthConfig, RegistryConfig
from portside.engine.events import EventBus
from portside.engine.registry import Distribution
from portside.image.content import ContentStore
from portside.image.snapshots import open_snapshotter
from portside.image.store import ImageStore
from portside.testing.busybox import busybox_available

pytestmark = pytest.mark.root

USER, PASSWORD = "alice", "s3cret"


class Side:
    """One daemon's stores and its Distribution, behind the Engine's method names."""

    def __init__(self, root: str, config: RegistryConfig) -> None:
        self.content = ContentStore(os.path.join(root, "content"))
        self.images = ImageStore(os.path.join(root, "images"), self.content)
        self.snapshotter = open_snapshotter(os.path.join(root, "snapshots"), kind="overlay")
        self.events = EventBus()
        self.dist = Distribution(self.content, self.images, self.snapshotter, self.events, config)

    def image_pull(self, name: str, **kw: Any) -> None:
        self.dist.pull(name, **kw)

    def image_push(self, name: str, **kw: Any) -> None:
        self.dist.push(name, **kw)

    def registry_login(self, auth: AuthConfig) -> dict:
        return self.dist.login(auth)

    def distribution_inspect(self, name: str, **kw: Any) -> dict:
        return self.dist.inspect(name, **kw)

    def actions(self) -> list[tuple[str, str]]:
        return [(e["Action"], e["Actor"]["ID"]) for e in self.events.backlog()]


@pytest.fixture
def registry() -> Iterator[Any]:
    fake = pytest.importorskip("portside.testing.fakeregistry")
    with fake.FakeRegistry(auth="basic", users={USER: PASSWORD}) as reg:
        yield reg


@pytest.fixture
def sides(tmp_path: Any) -> Iterator[tuple[Side, Side]]:
    if not busybox_available():
        pytest.skip("needs Debian's busybox-static")
    with scratch_root("ps-engreg-") as root:
        config = RegistryConfig(certs_dir=str(tmp_path / "certs.d"))
        a = Side(os.path.join(root, "a"), config)
        b = Side(os.path.join(root, "b"), config)
        try:
            yield a, b
        finally:
            for side in (a, b):
                side.snapshotter.close()


def auth_header(user: str, password: str, server: str) -> str:
    doc = {"username": user, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def call(side: Side, method: str, path: str, **kw: Any) -> tuple[int, str]:
    async def main() -> tuple[int, str]:
        async with TestClient(TestServer(create_app(side))) as client:
            r = await client.request(method, path, **kw)
            return r.status, await r.text()

    return asyncio.run(main())


def test_push_pull_login_inspect_and_errors(registry: Any, sides: tuple[Side, Side]) -> None:
    from portside.image.base import make_busybox_image

    a, b = sides
    host = registry.host
    ref = f"{host}/team/app"
    make_busybox_image(a.content, a.images, tag=f"{ref}:v1")
    good = {"X-Registry-Auth": auth_header(USER, PASSWORD, host)}
    bad = {"X-Registry-Auth": auth_header(USER, "wrong", host)}

    body = {"username": USER, "password": "wrong", "serveraddress": host}
    status, text = call(a, "POST", "/auth", json=body)
    assert status == 401, text
    status, text = call(a, "POST", "/auth", json={**body, "password": PASSWORD})
    assert (status, json.loads(text)["Status"]) == (200, "Login Succeeded")

    status, text = call(a, "POST", f"/images/{ref}/push?tag=v1", headers=good)
    assert status == 200, text
    pushed = messages(text)
    assert pushed[0] == {"status": f"The push refers to repository [{ref}]"}
    assert not any("error" in m for m in pushed), pushed
    digest = next(m["aux"]["Digest"] for m in pushed if "aux" in m)

    status, text = call(b, "POST", f"/images/create?fromImage={ref}&tag=v1", headers=good)
    assert status == 200, text
    pulled = messages(text)
    assert not any("error" in m for m in pulled), pulled
    assert {"status": f"Digest: {digest}"} in pulled
    image = b.images.get(f"{ref}:v1")
    assert image.id == a.images.get(f"{ref}:v1").id
    assert f"{ref}@{digest}" in image.repo_digests

    status, text = call(b, "GET", f"/distribution/{ref}:v1/json", headers=good)
    assert status == 200, text
    assert json.loads(text)["Descriptor"]["digest"] == digest

    # a missing tag: an HTTP error before any message, so docker prints
    # "Error response from daemon: manifest for … not found: manifest unknown…"
    status, text = call(b, "POST", f"/images/create?fromImage={ref}&tag=nope", headers=good)
    assert status == 404, text
    assert "manifest unknown" in json.loads(text)["message"]
    status, text = call(b, "POST", f"/images/create?fromImage={ref}&tag=v1", headers=bad)
    assert status == 500, text  # not 401: the docker CLI would prompt for a login

    assert a.actions() == [("push", f"{ref}:v1")]
    assert b.actions() == [("pull", f"{ref}:v1")]
    assert b.content.ingests() == [] and b.content.leases() == []
