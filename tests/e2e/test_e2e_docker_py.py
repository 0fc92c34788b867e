"""docker-py (the ``docker`` package on PyPI) against a real Portside daemon."""

from __future__ import annotations

import io
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator

import pytest

from portside.testing.daemon import Daemon

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.root


@pytest.fixture
def client(daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, timeout=60)
    try:
        yield c
    finally:
        c.close()


def name() -> str:
    return f"py-{uuid.uuid4().hex[:8]}"


def test_ping_version(client: docker.DockerClient) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.50"


def test_run_returns_output(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", ["echo", "from", "py"], remove=True)
    assert out == b"from py\n"
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "exit 5"], remove=True)
    assert info.value.exit_status == 5


def test_create_start_logs_stream_wait_remove(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; done"],
                                 name=name())  # fmt: skip
    try:
        c.start()
        lines = b"".join(c.logs(stream=True, follow=True))
        assert lines == b"1\n2\n3\n"
        assert c.wait(timeout=30)["StatusCode"] == 0
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_exec_run_top_stats(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name=name())
    try:
        result = c.exec_run(["sh", "-c", "echo out; exit 2"])
        assert result.exit_code == 2
        assert result.output == b"out\n"
        top = c.top()
        assert "PID" in top["Titles"]
        assert any("sleep 300" in " ".join(p) for p in top["Processes"])
        stats = c.stats(stream=False)
        assert stats["pids_stats"]["current"] == 1
        assert stats["memory_stats"]["usage"] > 0
    finally:
        c.remove(force=True)


def test_put_and_get_archive(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["true"], name=name())
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("greeting")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"hello\n"))
        assert c.put_archive("/tmp", buf.getvalue()) is True
        chunks, stat = c.get_archive("/tmp/greeting")
        assert stat["name"] == "greeting"
        assert stat["size"] == 6
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.extractfile("greeting")
            assert member is not None
            assert member.read() == b"hello\n"
    finally:
        c.remove(force=True)


def test_attach_socket_stdin_round_trip(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["cat"], stdin_open=True, name=name())
    try:
        sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
        raw: socket.socket = sock._sock
        c.start()
        raw.sendall(b"ping\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"ping" not in data and time.monotonic() < deadline:
            data += raw.recv(4096)
        assert b"ping\n" in data  # inside an 8-byte frame: no TTY
        raw.close()
    finally:
        c.remove(force=True)


def test_attach_over_a_websocket(client: docker.DockerClient, daemon: Daemon) -> None:
    """GET /containers/{id}/attach/ws with aiohttp's websocket client: stdin in, the
    container's output back in binary messages, not multiplexed (no TTY here)."""
    import asyncio

    import aiohttp

    c = client.containers.create(
        "busybox", ["sh", "-c", "read line; echo got:$line; echo oops >&2"], stdin_open=True,
        name=name(),
    )  # fmt: skip
    path = f"/v1.50/containers/{c.id}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1"

    async def talk() -> list[tuple[aiohttp.WSMsgType, bytes]]:
        connector = aiohttp.UnixConnector(path=daemon.socket)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.ws_connect("http://localhost" + path) as ws,
        ):
            await asyncio.to_thread(c.start)
            await ws.send_str("hello\n")
            got = []
            async for msg in ws:  # until the daemon closes it: the container ended
                got.append((msg.type, msg.data))
            return got

    try:
        got = asyncio.run(asyncio.wait_for(talk(), 30))
        assert {kind for kind, _ in got} == {aiohttp.WSMsgType.BINARY}
        assert b"".join(data for _, data in got) in (b"got:hello\noops\n", b"oops\ngot:hello\n")
        assert c.wait(timeout=10)["StatusCode"] == 0
    finally:
        c.remove(force=True)


def test_images_list_get_tag_remove_load(client: docker.DockerClient) -> None:
    image = client.images.get("busybox")
    assert "busybox:latest" in image.tags
    assert any("busybox:latest" in i.tags for i in client.images.list())
    tag = f"py/copy:{uuid.uuid4().hex[:6]}"
    assert image.tag(tag) is True
    data = b"".join(client.images.get(tag).save(named=tag))
    client.images.remove(tag)
    loaded = client.images.load(data)
    assert tag in loaded[0].tags
    client.images.remove(tag)


def test_volumes(client: docker.DockerClient) -> None:
    vol = client.volumes.create(name=name(), labels={"team": "e2e"})
    try:
        assert client.volumes.get(vol.name).attrs["Labels"] == {"team": "e2e"}
        assert vol.name in [v.name for v in client.volumes.list(filters={"label": "team=e2e"})]
    finally:
        vol.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(vol.name)
