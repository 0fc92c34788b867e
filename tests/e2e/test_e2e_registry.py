"""Pull, push and login against real peers: Debian's ``docker-registry`` (distribution
2.8) started here, plain and with htpasswd + TLS from a test CA, and skopeo on the
other side of every exchange. Digests are compared, not just exit codes.

One registry of each kind and one daemon serve the whole module. The plain registry is
Debian's ``docker-registry`` and, in a second round, Portside's own (``portside registry
serve --auth none``): the same tests against both. The TLS registry listens on a
non-loopback address of this machine: a loopback registry is insecure by definition
(its certificate is never checked), as in dockerd.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portside.oci.platform import host_platform
from portside.testing.daemon import REPO, Daemon, running_daemon
from portside.testing.registry import (
    CuttingProxy,
    DockerRegistry,
    OCILayout,
    TestCA,
    busybox_layer,
    layer_tar,
    local_address,
    registry_unavailable,
    sha256_digest,
)
from portside.testing.registryserver import RegistryServer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(registry_unavailable() is not None, reason=str(registry_unavailable())),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo"),
]

CLI = [sys.executable, "-m", "portside.cli.main"]
USER, PASSWORD = "alice", "s3cret-pw"
#: the proxy cuts the first connection after this many response bytes: inside the layer
CUT_AFTER = 256 << 10
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_PUSHED = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: (\d+)$", re.M)


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module", params=["docker-registry", "portside-registry"])
def registry(request: pytest.FixtureRequest, work: Path) -> Iterator[DockerRegistry]:
    """A plain-HTTP registry on 127.0.0.1: distribution's, then Portside's own."""
    if request.param == "docker-registry":
        with DockerRegistry(str(work)) as reg:
            yield reg
    else:
        with RegistryServer(str(work), auth="none") as own:
            yield own  # type: ignore[misc]


@pytest.fixture(scope="module")
def proxy(registry: DockerRegistry) -> Iterator[CuttingProxy]:
    with CuttingProxy(registry.host, CUT_AFTER) as p:
        yield p


@pytest.fixture(scope="module")
def certs_dir(work: Path) -> str:
    path = work / "certs.d"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="module")
def client_config(work: Path) -> Iterator[str]:
    """The CLI's config.json directory ($PORTSIDE_CONFIG), this module's own."""
    path = work / "client"
    path.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PORTSIDE_CONFIG", str(path))
        yield str(path)


@pytest.fixture(scope="module")
def daemon(certs_dir: str, proxy: CuttingProxy, client_config: str) -> Iterator[Daemon]:
    """This module's daemon: registry CAs from ``certs_dir``, the proxy insecure."""
    args = ["--registry-certs-dir", certs_dir, "--insecure-registry", proxy.host]
    with running_daemon(extra_args=args) as d:
        yield d


@pytest.fixture(scope="module")
def address() -> str:
    found = local_address()
    if found is None:
        pytest.skip("needs a non-loopback IPv4 address (TLS is not checked on loopback)")
    return found


@pytest.fixture(scope="module")
def ca(work: Path, address: str) -> TestCA:
    return TestCA(str(work / "ca"), hosts=("127.0.0.1", "localhost", address))


@pytest.fixture(scope="module")
def secure(work: Path, ca: TestCA, address: str, certs_dir: str) -> Iterator[DockerRegistry]:
    """htpasswd + TLS, its CA in the daemon's certs.d."""
    with DockerRegistry(str(work), tls=ca, htpasswd={USER: PASSWORD}, address=address) as reg:
        ca.install(certs_dir, reg.host)
        yield reg


@pytest.fixture(scope="module")
def untrusted(work: Path, ca: TestCA, address: str) -> Iterator[DockerRegistry]:
    """TLS from the same CA, which certs.d does not hold for this host."""
    with DockerRegistry(str(work), tls=ca, address=address) as reg:
        yield reg


# --- helpers -------------------------------------------------------------------------


def portside(
    d: Daemon, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return d.run(CLI, *args, check=check, input=input, timeout=timeout, cwd=REPO)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["skopeo", *args]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc


def token() -> str:
    return uuid.uuid4().hex[:10]


def pushed(out: str) -> dict[str, str]:
    """``{tag: digest}`` from push output's ``TAG: digest: sha256:... size: N`` lines."""
    return {m.group(1): m.group(2) for m in _PUSHED.finditer(out)}


def registry_manifest(
    reg: DockerRegistry, repo: str, ref: str, auth: tuple[str, str] | None = None
) -> bytes:
    status, _, body = reg.request(
        "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES}, auth=auth
    )
    assert status == 200, body
    return body


def inspect(d: Daemon, ref: str) -> dict[str, Any]:
    return json.loads(portside(d, "image", "inspect", ref).stdout)[0]


def skopeo_push(layout: OCILayout, tag: str, dest: str, *extra: str) -> None:
    skopeo(
        "copy", "--dest-tls-verify=false", *extra, f"oci:{layout.path}:{tag}", f"docker://{dest}"
    )


def config_digest(layout: OCILayout, manifest_desc: dict[str, Any]) -> str:
    return json.loads(layout.read(manifest_desc["digest"]))["config"]["digest"]


# --- the fixtures themselves --------------------------------------------------------


def _upload(reg: DockerRegistry, repo: str, data: bytes) -> str:
    """A monolithic blob upload (POST, then PUT ?digest=); the blob's digest."""
    status, headers, body = reg.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, body
    location = headers["location"].split(reg.host, 1)[-1]
    digest = sha256_digest(data)
    sep = "&" if "?" in location else "?"
    status, _, body = reg.request("PUT", f"{location}{sep}digest={digest}", body=data)
    assert status == 201, body
    return digest


def test_cutting_proxy_cuts_once_then_passes_through(registry: DockerRegistry) -> None:
    import http.client

    data = os.urandom(300_000)
    path = f"/v2/e2e/proxy/blobs/{_upload(registry, 'e2e/proxy', data)}"
    with CuttingProxy(registry.host, 100_000) as cutter:

        def get(headers: dict[str, str]) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(cutter.host, timeout=10)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                try:
                    return resp.status, resp.read()
                except http.client.IncompleteRead as exc:
                    return resp.status, exc.partial
            finally:
                conn.close()

        status, partial = get({})
        assert status == 200
        assert 0 < len(partial) < 100_000
        assert data.startswith(partial)
        assert get({"Range": f"bytes={len(partial)}-"}) == (206, data[len(partial) :])
        assert get({}) == (200, data)
        assert (cutter.connections, cutter.cuts) == (3, 1)
        assert [(r.conn, r.range) for r in cutter.requests_for(path)] == [
            (1, ""),
            (2, f"bytes={len(partial)}-"),
            (3, ""),
        ]


# --- plain registry: Portside and skopeo, both ways ----------------------------------


@pytest.fixture(scope="module")
def app(daemon: Daemon, registry: DockerRegistry) -> dict[str, str]:
    """A two-layer image committed in Portside (busybox + /hello) and pushed."""
    secret, name = token(), f"reg-{token()}"
    ref = f"{registry.host}/e2e/app:{secret}"
    portside(daemon, "run", "--name", name, "busybox", "sh", "-c", f"echo {secret} > /hello")
    portside(daemon, "commit", name, ref)
    portside(daemon, "rm", name)
    out = portside(daemon, "push", ref).stdout
    digests = pushed(out)
    assert list(digests) == [secret], out
    return {"ref": ref, "tag": secret, "digest": digests[secret], "id": inspect(daemon, ref)["Id"]}


def test_push_then_pull_back_and_run(
    daemon: Daemon, registry: DockerRegistry, app: dict[str, str]
) -> None:
    raw = registry_manifest(registry, "e2e/app", app["tag"])
    assert sha256_digest(raw) == app["digest"]
    assert json.loads(raw)["config"]["digest"] == app["id"]
    # the same bytes by digest, and the stored image gone before the pull
    assert registry_manifest(registry, "e2e/app", app["digest"]) == raw
    portside(daemon, "rmi", app["ref"])
    assert portside(daemon, "image", "inspect", app["ref"], check=False).returncode == 1
    out = portside(daemon, "pull", app["ref"]).stdout
    assert f"Digest: {app['digest']}" in out
    assert f"Status: Downloaded newer image for {app['ref']}" in out
    image = inspect(daemon, app["ref"])
    assert image["Id"] == app["id"]
    assert f"{registry.host}/e2e/app@{app['digest']}" in image["RepoDigests"]
    assert portside(daemon, "run", "--rm", app["ref"], "cat", "/hello").stdout == f"{app['tag']}\n"
    again = portside(daemon, "pull", app["ref"]).stdout
    assert f"Status: Image is up to date for {app['ref']}" in again


def test_skopeo_pulls_what_portside_pushed(
    daemon: Daemon, registry: DockerRegistry, app: dict[str, str], work: Path
) -> None:
    dest = work / f"skopeo-{token()}"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests",
           f"docker://{app['ref']}", f"oci:{dest}:x")  # fmt: skip
    index = json.loads((dest / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [app["digest"]]

    def blob(digest: str) -> bytes:
        return (dest / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    manifest = json.loads(blob(app["digest"]))
    assert manifest["config"]["digest"] == app["id"]
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = [sha256_digest(gzip.decompress(blob(d["digest"]))) for d in manifest["layers"]]
    assert layers == config["rootfs"]["diff_ids"]
    assert layers == inspect(daemon, app["ref"])["RootFS"]["Layers"]


def test_pull_and_run_an_image_skopeo_pushed(
    daemon: Daemon, registry: DockerRegistry, work: Path
) -> None:
    """skopeo converts to Docker schema2 on the way: Portside pulls that kind too."""
    secret = token()
    layout = OCILayout(str(work / f"layout-{secret}"))
    layout.image([busybox_layer({"marker": f"{secret}\n".encode()})], name=f"e2e/sk:{secret}")
    ref = f"{registry.host}/e2e/skopeo:{secret}"
    skopeo_push(layout, secret, ref, "--format", "v2s2")
    raw = registry_manifest(registry, "e2e/skopeo", secret)
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    out = portside(daemon, "pull", ref).stdout
    assert f"Digest: {sha256_digest(raw)}" in out
    image = inspect(daemon, ref)
    assert image["Id"] == json.loads(raw)["config"]["digest"]
    assert image["RepoDigests"] == [f"{registry.host}/e2e/skopeo@{sha256_digest(raw)}"]
    assert image["Architecture"] == host_platform().architecture
    assert portside(daemon, "run", "--rm", ref, "cat", "/marker").stdout == f"{secret}\n"


def test_multi_platform_index(daemon: Daemon, registry: DockerRegistry, work: Path) -> None:
    """An OCI index of the host's image and another architecture's: the host's by
    default, the other with --platform (pulled and inspected; it cannot run here)."""
    here = host_platform().architecture
    other = "arm64" if here != "arm64" else "amd64"
    secret = token()
    layout = OCILayout(str(work / f"multi-{secret}"))
    native = layout.image([busybox_layer({"marker": f"{here} {secret}\n".encode()})], arch=here)
    foreign = layout.image([layer_tar({"marker": f"{other} {secret}\n".encode()})], arch=other)
    index = layout.index([native, foreign], name=f"e2e/multi:{secret}")
    ref = f"{registry.host}/e2e/multi:{secret}"
    skopeo_push(layout, secret, ref, "--all", "--preserve-digests")
    assert sha256_digest(registry_manifest(registry, "e2e/multi", secret)) == index["digest"]

    out = portside(daemon, "pull", ref).stdout
    assert f"Digest: {index['digest']}" in out
    image = inspect(daemon, ref)
    assert (image["Os"], image["Architecture"]) == ("linux", here)
    assert image["Id"] == config_digest(layout, native)
    assert f"{registry.host}/e2e/multi@{index['digest']}" in image["RepoDigests"]
    assert portside(daemon, "run", "--rm", ref, "cat", "/marker").stdout == f"{here} {secret}\n"

    portside(daemon, "pull", "--platform", f"linux/{other}", ref)
    image = inspect(daemon, ref)
    assert image["Architecture"] == other
    assert image["Id"] == config_digest(layout, foreign)


def test_pull_all_tags(daemon: Daemon, registry: DockerRegistry, work: Path) -> None:
    secret = token()
    layout = OCILayout(str(work / f"tags-{secret}"))
    one = layout.image([busybox_layer({"n": b"1"})], name="e2e/tags:one")
    two = layout.image([busybox_layer({"n": b"2"})], name="e2e/tags:two")
    repo = f"{registry.host}/e2e/tags-{secret}"
    for tag, src in (("a", "one"), ("b", "one"), ("c", "two")):
        skopeo_push(layout, src, f"{repo}:{tag}", "--preserve-digests")
    portside(daemon, "pull", "--all-tags", repo)
    listed = portside(daemon, "images", "--no-trunc", "--format",
                      "{{.Repository}}:{{.Tag}} {{.ID}}", repo).stdout.split("\n")  # fmt: skip
    found = dict(line.split() for line in listed if line)
    assert found == {
        f"{repo}:a": config_digest(layout, one),
        f"{repo}:b": config_digest(layout, one),
        f"{repo}:c": config_digest(layout, two),
    }


def test_pull_unknown_digest_fails_clearly(
    daemon: Daemon, registry: DockerRegistry, app: dict[str, str]
) -> None:
    ref = f"{registry.host}/e2e/app@sha256:{'0' * 64}"
    proc = portside(daemon, "pull", ref, check=False)
    assert proc.returncode == 1
    assert f"manifest for {ref} not found: manifest unknown" in proc.stderr
    assert portside(daemon, "image", "inspect", ref, check=False).returncode == 1


def test_loaded_archive_pushes_its_stored_manifest(
    daemon: Daemon, registry: DockerRegistry, work: Path
) -> None:
    """A ``docker save`` archive of Docker 25+ (OCI layout + manifest.json, gzip
    layers): the manifest pushed is the archive's, byte for byte."""
    secret = token()
    layout = OCILayout(str(work / f"saved-{secret}"))
    name = f"e2e/saved:{secret}"
    desc = layout.image([busybox_layer({"saved": secret.encode()})], name=name)
    archive = layout.archive(str(work / f"saved-{secret}.tar"))
    assert f"Loaded image: {name}" in portside(daemon, "load", "-i", archive).stdout
    ref = f"{registry.host}/{name}"
    portside(daemon, "tag", name, ref)
    assert pushed(portside(daemon, "push", ref).stdout) == {secret: desc["digest"]}
    assert registry_manifest(registry, "e2e/saved", secret) == layout.read(desc["digest"])


def _legacy_archive(path: Path, name: str, layer: bytes) -> str:
    """A ``docker save`` archive as Docker before 25 wrote it: ``<id>/layer.tar``
    uncompressed, ``<config>.json``, ``manifest.json``; returns the config digest."""
    import io

    config = json.dumps({
        "architecture": host_platform().architecture, "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }).encode()  # fmt: skip
    config_hex = sha256_digest(config)[7:]
    layer_dir = sha256_digest(layer)[7:]
    manifest = json.dumps(
        [{"Config": f"{config_hex}.json", "RepoTags": [name], "Layers": [f"{layer_dir}/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for member, data in (
            (f"{layer_dir}/layer.tar", layer),
            (f"{config_hex}.json", config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return "sha256:" + config_hex


def test_legacy_archive_pushes_the_same_digests_twice(
    daemon: Daemon, registry: DockerRegistry, work: Path
) -> None:
    """Uncompressed layers are compressed once at the first push and reused: a second
    push (another repository) gives the same manifest, and the layer's diffID holds."""
    secret = token()
    name = f"e2e/legacy:{secret}"
    layer = busybox_layer({"legacy": secret.encode()})
    image_id = _legacy_archive(work / f"legacy-{secret}.tar", name, layer)
    portside(daemon, "load", "-i", str(work / f"legacy-{secret}.tar"))
    digests = []
    for repo in ("e2e/legacy", "e2e/legacy-again"):
        ref = f"{registry.host}/{repo}:{secret}"
        portside(daemon, "tag", name, ref)
        digests += pushed(portside(daemon, "push", ref).stdout).values()
    assert len(digests) == 2
    assert digests[0] == digests[1]
    raw = registry_manifest(registry, "e2e/legacy-again", secret)
    assert sha256_digest(raw) == digests[0]
    manifest = json.loads(raw)
    assert manifest["config"]["digest"] == image_id
    (blob,) = manifest["layers"]
    status, _, data = registry.request("GET", f"/v2/e2e/legacy/blobs/{blob['digest']}")
    assert status == 200
    assert gzip.decompress(data) == layer


# --- htpasswd + TLS ------------------------------------------------------------------


def _stored_auths(config_dir: str) -> dict[str, Any]:
    path = os.path.join(config_dir, "config.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f).get("auths", {})


def test_login_push_pull_logout(daemon: Daemon, secure: DockerRegistry, client_config: str) -> None:
    host = secure.host
    bad = portside(daemon, "login", "-u", USER, "--password-stdin", host,
                   input="wrong\n", check=False)  # fmt: skip
    assert bad.returncode == 1
    assert "unauthorized" in bad.stderr.lower()
    assert host in bad.stderr
    assert host not in _stored_auths(client_config)

    good = portside(daemon, "login", "-u", USER, "--password-stdin", host, input=PASSWORD + "\n")
    assert "Login Succeeded" in good.stdout
    auth = _stored_auths(client_config)[host]["auth"]
    assert base64.b64decode(auth).decode() == f"{USER}:{PASSWORD}"

    secret = token()
    ref = f"{host}/e2e/secure:{secret}"
    portside(daemon, "tag", "busybox", ref)
    digest = pushed(portside(daemon, "push", ref).stdout)[secret]
    raw = registry_manifest(secure, "e2e/secure", secret, auth=(USER, PASSWORD))
    assert sha256_digest(raw) == digest
    portside(daemon, "rmi", ref)
    assert f"Digest: {digest}" in portside(daemon, "pull", ref).stdout
    assert f"{host}/e2e/secure@{digest}" in inspect(daemon, ref)["RepoDigests"]

    out = portside(daemon, "logout", host).stdout
    assert f"Removing login credentials for {host}" in out
    assert host not in _stored_auths(client_config)
    portside(daemon, "rmi", ref)
    anonymous = portside(daemon, "pull", ref, check=False)
    assert anonymous.returncode == 1
    assert host in anonymous.stderr
    assert re.search(r"unauthorized|authentication required|access denied", anonymous.stderr)


def test_tls_error_names_certs_dir(
    daemon: Daemon, untrusted: DockerRegistry, certs_dir: str
) -> None:
    ref = f"{untrusted.host}/e2e/none:1"
    proc = portside(daemon, "pull", ref, check=False)
    assert proc.returncode == 1
    assert os.path.join(certs_dir, untrusted.host) in proc.stderr
    assert "certificate" in proc.stderr.lower()


# --- a dropped connection ------------------------------------------------------------


def test_pull_resumes_after_a_dropped_connection(
    daemon: Daemon, registry: DockerRegistry, proxy: CuttingProxy, work: Path
) -> None:
    secret = token()
    layout = OCILayout(str(work / f"resume-{secret}"))
    files = {"marker": f"{secret}\n".encode(), "noise": os.urandom(1 << 20)}
    desc = layout.image([busybox_layer(files)], name=f"e2e/resume:{secret}")
    (layer,) = json.loads(layout.read(desc["digest"]))["layers"]
    assert layer["size"] > 2 * CUT_AFTER
    skopeo_push(layout, secret, f"{registry.host}/e2e/resume:{secret}", "--preserve-digests")

    ref = f"{proxy.host}/e2e/resume:{secret}"
    assert f"Digest: {desc['digest']}" in portside(daemon, "pull", ref).stdout
    assert proxy.cuts == 1
    fetches = proxy.requests_for(f"/blobs/{layer['digest']}")
    assert len({r.conn for r in fetches}) >= 2, fetches
    resumed = [r for r in fetches if r.range]
    assert resumed, fetches
    assert all(not r.range.startswith("bytes=0-") for r in resumed), fetches
    assert portside(daemon, "run", "--rm", ref, "cat", "/marker").stdout == f"{secret}\n"
