"""docker-py against Portside's API server over the fake engine."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.unit.fake_engine import FakeEngine, ServerThread

docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="module")
def client(engine: FakeEngine) -> Iterator[docker.DockerClient]:
    path = tempfile.mkdtemp(prefix="psapi-", dir="/tmp")
    try:
        with ServerThread(engine, [f"unix://{path}/d.sock"]) as server:
            c = docker.DockerClient(base_url=server.addresses[0], timeout=20)
            yield c
            c.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_ping_version(client: docker.DockerClient) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.50"
    assert client.api.api_version == "1.50"  # negotiated from /_ping and /version


def test_run_detach_list_logs_remove(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "30"], detach=True, name="py-detached")
    c.reload()
    assert c.status == "running"
    assert [x.name for x in client.containers.list()] == ["py-detached"]
    assert client.containers.get("py-detached").id == c.id
    c.stop()
    assert client.containers.get(c.id).status == "exited"
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_run_foreground_output(client: docker.DockerClient) -> None:
    out = client.containers.run("busybox", ["echo", "from-py"], remove=True)
    assert out == b"from-py\n"


def test_exec_run(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "30"], detach=True)
    try:
        code, out = c.exec_run(["echo", "in-exec"])
        assert (code, out) == (0, b"in-exec\n")
        code, (stdout, _) = c.exec_run(["echo", "demux"], demux=True)
        assert stdout == b"demux\n"
    finally:
        c.remove(force=True)


def test_attach_socket(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["cat"], stdin_open=True)
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock
    raw.sendall(b"attached\n")
    data = b""
    while len(data) < 8 + len(b"attached\n"):
        data += raw.recv(4096)
    assert data[8:] == b"attached\n" and data[0] == 1
    sock.close()
    c.remove(force=True)


def test_errors_and_images_volumes(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("nosuchimage")
    with pytest.raises(docker.errors.APIError) as info:
        client.containers.create("busybox", mem_limit="1k")
    assert info.value.status_code == 400
    assert next(i.tags for i in client.images.list()) == ["busybox:latest"]
    client.images.get("busybox").tag("py/tagged", "v1")
    assert "py/tagged:v1" in client.images.get("busybox").tags
    v = client.volumes.create("py-vol")
    assert client.volumes.get("py-vol").name == v.name
    v.remove()
