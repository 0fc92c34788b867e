"""The docker CLI (v28) and docker-py log in, push and pull through a real Portside
daemon, against Debian's ``docker-registry`` with htpasswd auth and TLS from a test
CA (in the daemon's ``--registry-certs-dir``). ``DOCKER_CONFIG`` is the daemon's
temporary directory, so ``docker login`` writes nowhere else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from portside.testing.daemon import Daemon, running_daemon
from portside.testing.registry import (
    DockerRegistry,
    TestCA,
    local_address,
    registry_unavailable,
    sha256_digest,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(registry_unavailable() is not None, reason=str(registry_unavailable())),
]

USER, PASSWORD = "bob", "docker-pw-1"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
needs_docker_cli = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-docker")


@pytest.fixture(scope="module")
def certs_dir(work: Path) -> str:
    path = work / "certs.d"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="module")
def secure(work: Path, certs_dir: str) -> Iterator[DockerRegistry]:
    """htpasswd + TLS on a non-loopback address (loopback is never checked)."""
    address = local_address()
    if address is None:
        pytest.skip("needs a non-loopback IPv4 address (TLS is not checked on loopback)")
    ca = TestCA(str(work / "ca"), hosts=(address,))
    with DockerRegistry(str(work), tls=ca, htpasswd={USER: PASSWORD}, address=address) as reg:
        ca.install(certs_dir, reg.host)
        yield reg


@pytest.fixture(scope="module")
def daemon(certs_dir: str) -> Iterator[Daemon]:
    with running_daemon(extra_args=["--registry-certs-dir", certs_dir]) as d:
        yield d


def docker(
    d: Daemon, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return d.run(["docker"], *args, check=check, input=input, timeout=60)


def token() -> str:
    return uuid.uuid4().hex[:10]


def manifest_digest(reg: DockerRegistry, repo: str, tag: str) -> str:
    status, _, body = reg.request(
        "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}, auth=(USER, PASSWORD)
    )
    assert status == 200, body
    return sha256_digest(body)


def docker_auths(d: Daemon) -> dict[str, object]:
    path = os.path.join(d.dir, "config.json")  # DOCKER_CONFIG of Daemon.env()
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f).get("auths", {})


# --- the docker CLI ------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged_in(daemon: Daemon, secure: DockerRegistry) -> Iterator[str]:
    """``docker login`` through our daemon (its /auth); ``docker logout`` afterwards."""
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    out = docker(daemon, "login", "-u", USER, "--password-stdin", secure.host,
                 input=PASSWORD + "\n").stdout  # fmt: skip
    assert "Login Succeeded" in out
    assert secure.host in docker_auths(daemon)
    yield secure.host
    docker(daemon, "logout", secure.host, check=False)


@needs_docker_cli
def test_docker_login_wrong_password(daemon: Daemon, secure: DockerRegistry) -> None:
    proc = docker(daemon, "login", "-u", USER, "--password-stdin", secure.host,
                  input="nope\n", check=False)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error response from daemon: ")
    assert "unauthorized" in proc.stderr.lower()


@needs_docker_cli
def test_docker_push_pull_run(daemon: Daemon, secure: DockerRegistry, logged_in: str) -> None:
    secret = token()
    ref = f"{logged_in}/e2e/docker:{secret}"
    docker(daemon, "tag", "busybox", ref)
    out = docker(daemon, "push", ref).stdout
    found = re.search(rf"^{secret}: digest: (sha256:[0-9a-f]{{64}}) size: \d+$", out, re.M)
    assert found, out
    digest = found.group(1)
    assert manifest_digest(secure, "e2e/docker", secret) == digest
    docker(daemon, "rmi", ref)
    out = docker(daemon, "pull", ref).stdout
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {ref}" in out
    digests = docker(daemon, "image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    assert f"{logged_in}/e2e/docker@{digest}" in json.loads(digests)
    assert docker(daemon, "run", "--rm", ref, "echo", secret).stdout == f"{secret}\n"


@needs_docker_cli
def test_docker_pull_missing_tag_says_what_dockerd_says(daemon: Daemon, logged_in: str) -> None:
    ref = f"{logged_in}/e2e/docker:no-such-tag"
    proc = docker(daemon, "pull", ref, check=False)
    assert proc.returncode == 1
    expected = f"Error response from daemon: manifest for {ref} not found: manifest unknown: "
    assert proc.stderr.strip() == expected + "manifest unknown"


@needs_docker_cli
def test_docker_pull_without_credentials_fails_without_a_prompt(
    daemon: Daemon, secure: DockerRegistry, tmp_path: Path
) -> None:
    """dockerd answers a pull the registry refused with 404/500, never 401: on a 401
    the docker CLI asks for a login ("Login prior to pull:") and waits for it."""
    env = {**daemon.env(), "DOCKER_CONFIG": str(tmp_path)}  # no credentials at all
    ref = f"{secure.host}/e2e/docker:anything"
    try:
        proc = subprocess.run(
            ["docker", "pull", ref],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"docker pull waited for a login (the daemon answered 401?): {exc.stdout!r}")
    assert proc.returncode == 1
    assert "Login prior to pull" not in proc.stdout
    assert proc.stderr.startswith("Error response from daemon: ")
    assert secure.host in proc.stderr


@needs_docker_cli
def test_docker_logout(daemon: Daemon, secure: DockerRegistry) -> None:
    docker(daemon, "login", "-u", USER, "--password-stdin", secure.host, input=PASSWORD + "\n")
    out = docker(daemon, "logout", secure.host).stdout
    assert f"Removing login credentials for {secure.host}" in out
    assert secure.host not in docker_auths(daemon)


# --- docker-py -----------------------------------------------------------------------


def test_docker_py_login_push_pull(daemon: Daemon, secure: DockerRegistry) -> None:
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=daemon.host, timeout=60)
    auth = {"username": USER, "password": PASSWORD}
    try:
        with pytest.raises(docker_py.errors.APIError) as info:
            client.login(USER, "wrong", registry=secure.host, reauth=True)
        assert "unauthorized" in str(info.value).lower()
        assert client.login(USER, PASSWORD, registry=secure.host, reauth=True)["Status"] == (
            "Login Succeeded"
        )
        secret = token()
        repo = f"{secure.host}/e2e/py"
        image = client.images.get("busybox")
        assert image.tag(repo, tag=secret)
        lines = list(
            client.images.push(repo, tag=secret, auth_config=auth, stream=True, decode=True)
        )
        assert not [line for line in lines if "error" in line], lines
        (aux,) = [line["aux"] for line in lines if "aux" in line]
        assert aux["Tag"] == secret
        assert aux["Digest"] == manifest_digest(secure, "e2e/py", secret)
        client.images.remove(f"{repo}:{secret}")
        pulled = client.images.pull(repo, tag=secret, auth_config=auth)
        assert pulled.id == image.id
        assert f"{repo}@{aux['Digest']}" in pulled.attrs["RepoDigests"]
    finally:
        client.close()
