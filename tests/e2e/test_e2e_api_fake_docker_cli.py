"""The real docker CLI against Portside's API server over the fake engine: the wire
protocol (versions, JSON shapes, errors, hijacked attach/exec, streams, mutual TLS)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from portside.api.config import load_config
from portside.api.daemon import ssl_context
from portside.tls import init
from tests.unit.fake_engine import FakeEngine, ServerThread

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.path.exists(DOCKER), reason="needs the docker CLI")


@pytest.fixture(scope="module")
def tmpdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="psapi-", dir="/tmp")  # short: unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmpdir: str) -> Iterator[ServerThread]:
    with ServerThread(FakeEngine(), [f"unix://{tmpdir}/d.sock"]) as s:
        yield s


def docker(
    server: ServerThread, *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "DOCKER_HOST": server.addresses[0],
        **(env or {}),
    }
    return subprocess.run(
        [DOCKER, *args],
        input=input.decode() if input else None,
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
        env=environ,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_version(server: ServerThread) -> None:
    out = ok(
        docker(server, "version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}")
    )
    assert out.strip() == "1.50 1.41"


def test_too_old_api_version(server: ServerThread) -> None:
    r = docker(server, "version", env={"DOCKER_API_VERSION": "1.12"})
    assert r.returncode != 0
    assert (
        "Error response from daemon: client version 1.12 is too old. Minimum supported "
        "API version is 1.41"
    ) in r.stderr


def test_run_rm_echo(server: ServerThread) -> None:
    assert ok(docker(server, "run", "--rm", "busybox", "echo", "hi")) == "hi\n"


def test_run_tty_echo(server: ServerThread) -> None:
    assert ok(docker(server, "run", "--rm", "-t", "busybox", "echo", "tty")).strip() == "tty"


def test_run_stdin_half_close(server: ServerThread) -> None:
    """``echo x | docker run -i``: the CLI half-closes after stdin; output still arrives."""
    assert (
        ok(docker(server, "run", "-i", "--rm", "busybox", "sponge", input=b"piped\n")) == "piped\n"
    )


def test_detached_lifecycle_ps_inspect_exec(server: ServerThread) -> None:
    cid = ok(
        docker(server, "run", "-d", "--name", "e2e-detached", "busybox", "sleep", "60")
    ).strip()
    assert len(cid) == 64
    ps = ok(docker(server, "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Command}}"))
    assert f'{cid[:12]} e2e-detached "sleep 60"' in ps
    assert (
        ok(docker(server, "inspect", "-f", "{{.State.Status}} {{.Name}}", cid[:8]))
        == "running /e2e-detached\n"
    )
    assert ok(docker(server, "exec", "e2e-detached", "echo", "in-exec")) == "in-exec\n"
    assert ok(docker(server, "exec", "-i", "e2e-detached", "cat", input=b"stdin\n")) == "stdin\n"
    ok(docker(server, "stop", "e2e-detached"))
    ok(docker(server, "stop", "e2e-detached"))  # 304: already stopped is not an error
    ok(docker(server, "rm", "e2e-detached"))


def test_errors(server: ServerThread) -> None:
    r = docker(server, "inspect", "nosuch")
    assert r.returncode == 1 and "No such object: nosuch" in r.stderr
    r = docker(server, "rm", "nosuch")
    assert "Error response from daemon: No such container: nosuch" in r.stderr
    r = docker(server, "run", "-m", "1k", "busybox", "true")
    assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr
    ok(docker(server, "create", "--name", "e2e-dup", "busybox"))
    r = docker(server, "create", "--name", "e2e-dup", "busybox")
    assert r.returncode != 0 and "is already in use" in r.stderr


def test_images_import_save_load(server: ServerThread, tmpdir: str) -> None:
    assert "busybox      latest" in ok(docker(server, "images"))
    layer = os.path.join(tmpdir, "layer.tar")
    with open(layer, "wb") as f:
        f.write(b"x" * 5000)
    out = ok(docker(server, "import", layer, "imported:1"))
    assert out.strip().startswith("sha256:")
    assert ok(docker(server, "save", "busybox")) == "saved:busybox"
    assert ok(docker(server, "load", "-i", layer)).strip() == "Loaded image: busybox:latest"
    ok(docker(server, "tag", "busybox", "copy:2"))
    assert "Untagged: copy:2" in ok(docker(server, "rmi", "copy:2"))


def test_volumes(server: ServerThread) -> None:
    ok(docker(server, "volume", "create", "e2e-vol"))
    assert "e2e-vol" in ok(docker(server, "volume", "ls"))
    ok(docker(server, "volume", "rm", "e2e-vol"))
    assert "e2e-vol" not in ok(docker(server, "volume", "ls"))


def test_events_and_df(server: ServerThread) -> None:
    import time

    out = ok(
        docker(
            server,
            "events",
            "--since",
            "0",
            "--until",
            str(int(time.time()) + 1),
            "--filter",
            "type=container",
            "--format",
            "{{.Action}}",
        )
    )
    assert "create" in out.split()
    assert "Local Volumes" in ok(docker(server, "system", "df"))


def test_mutual_tls(tmpdir: str) -> None:
    certs = os.path.join(tmpdir, "certs")
    init(certs, ["127.0.0.1"])
    cfg = load_config(
        [
            "--tlsverify",
            "--tlscacert",
            f"{certs}/ca.pem",
            "--tlscert",
            f"{certs}/server-cert.pem",
            "--tlskey",
            f"{certs}/server-key.pem",
            "-H",
            "tcp://127.0.0.1:0",
        ]
    )
    with ServerThread(FakeEngine(), cfg.hosts, ssl_context(cfg)) as s:
        tls = ["--tlsverify", "--tlscacert", f"{certs}/ca.pem"]
        good = [*tls, "--tlscert", f"{certs}/cert.pem", "--tlskey", f"{certs}/key.pem"]
        assert ok(docker(s, *good, "version", "--format", "{{.Server.APIVersion}}")) == "1.50\n"
        assert ok(docker(s, *good, "run", "--rm", "busybox", "echo", "over-tls")) == "over-tls\n"
        assert (
            ok(docker(s, *good, "run", "-i", "--rm", "busybox", "sponge", input=b"in\n")) == "in\n"
        )
        r = docker(s, *tls, "version")
        assert r.returncode != 0 and "certificate required" in r.stderr
        r = docker(s, "version", env={"DOCKER_TLS_VERIFY": ""})
        assert r.returncode != 0 and "Server:" not in r.stdout
