"""A real ``portside registry serve --auth none`` process on 127.0.0.1, driven by real
peers: skopeo copies to and from it, skopeo moves images between Debian's
``docker-registry`` (distribution 2.8) and ours in both directions with identical
digests, Portside's own pull and push go through it; a clean stop on SIGTERM, data
surviving a restart, and ``portside registry gc`` on a registry that is serving.

Needs no root except for Portside's pull (it unpacks into an overlay snapshotter).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from portside.testing.registry import (
    DockerRegistry,
    OCILayout,
    TestCA,
    layer_tar,
    registry_unavailable,
)
from portside.testing.registryserver import RegistryServer

needs_skopeo = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)"
)
TLS_OFF = ("--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture
def reg(tmp_path: Any) -> Iterator[RegistryServer]:
    with RegistryServer(str(tmp_path), auth="none") as server:
        yield server


def skopeo(*args: str) -> str:
    proc = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


class Images:
    """Two OCI layouts: ``app`` (``:1``, two layers, one ~1.5 MB) and ``multi`` (``:1``,
    an index of amd64 and arm64 images); their descriptors."""

    def __init__(self, path: str) -> None:
        self.app_layout = OCILayout(os.path.join(path, "app"))
        big = layer_tar({"data/big": os.urandom(1_500_000)})
        hello = layer_tar({"etc/hello": b"hello\n"})
        self.app = self.app_layout.image([hello, big], name="app:1", arch="amd64")
        self.multi_layout = OCILayout(os.path.join(path, "multi"))
        amd = self.multi_layout.image([layer_tar({"arch": b"amd64"})], arch="amd64")
        arm = self.multi_layout.image([layer_tar({"arch": b"arm64"})], arch="arm64")
        self.multi = self.multi_layout.index([amd, arm], name="multi:1")
        self.app_src = f"oci:{self.app_layout.path}:1"
        self.multi_src = f"oci:{self.multi_layout.path}:1"

    @property
    def app_digest(self) -> str:
        return str(self.app["digest"])

    @property
    def multi_digest(self) -> str:
        return str(self.multi["digest"])

    def app_layers(self) -> list[dict[str, Any]]:
        return list(json.loads(self.app_layout.read(self.app_digest))["layers"])


def manifest_digest(server: Any, repo: str, ref: str) -> str:
    accept = ", ".join(
        [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    status, headers, body = server.request(
        "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept}
    )
    assert status == 200, body
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert headers["docker-content-digest"] == digest
    return digest


@needs_skopeo
def test_skopeo_copies_to_and_from_ours(reg: RegistryServer, tmp_path: Any) -> None:
    images = Images(str(tmp_path / "oci"))
    skopeo("copy", *TLS_OFF, images.app_src, f"docker://{reg.host}/team/app:1")
    assert manifest_digest(reg, "team/app", "1") == images.app_digest
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/team/app:1")
    assert raw.encode() == images.app_layout.read(images.app_digest)  # byte for byte
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{reg.host}/team/app"))
    assert tags["Tags"] == ["1"]

    back = str(tmp_path / "back")
    skopeo("copy", *TLS_OFF, f"docker://{reg.host}/team/app:1", f"oci:{back}:1")
    with open(os.path.join(back, "index.json")) as f:
        assert json.load(f)["manifests"][0]["digest"] == images.app_digest
    for desc in images.app_layers():
        algorithm, _, hexpart = desc["digest"].partition(":")
        assert os.path.exists(os.path.join(back, "blobs", algorithm, hexpart))

    skopeo("delete", "--tls-verify=false", f"docker://{reg.host}/team/app:1")
    status, _, _ = reg.request("GET", "/v2/team/app/manifests/1")
    assert status == 404


@needs_skopeo
def test_skopeo_copies_an_index_with_all_its_images(reg: RegistryServer, tmp_path: Any) -> None:
    images = Images(str(tmp_path / "oci"))
    skopeo("copy", "--all", *TLS_OFF, images.multi_src, f"docker://{reg.host}/team/multi:1")
    assert manifest_digest(reg, "team/multi", "1") == images.multi_digest
    index = json.loads(images.multi_layout.read(images.multi_digest))
    for child in index["manifests"]:
        assert manifest_digest(reg, "team/multi", child["digest"]) == child["digest"]
    back = str(tmp_path / "back")
    skopeo("copy", "--all", *TLS_OFF, f"docker://{reg.host}/team/multi:1", f"oci:{back}:1")
    with open(os.path.join(back, "index.json")) as f:
        assert json.load(f)["manifests"][0]["digest"] == images.multi_digest


@needs_skopeo
@pytest.mark.skipif(registry_unavailable() is not None, reason=str(registry_unavailable()))
def test_images_move_between_docker_registry_and_ours(reg: RegistryServer, tmp_path: Any) -> None:
    images = Images(str(tmp_path / "oci"))
    with DockerRegistry(str(tmp_path / "dr")) as dr:
        skopeo("copy", *TLS_OFF, images.app_src, f"docker://{dr.host}/app:1")
        skopeo("copy", "--all", *TLS_OFF, images.multi_src, f"docker://{dr.host}/multi:1")
        # theirs → ours
        for repo in ("app", "multi"):
            skopeo(
                "copy",
                "--all",
                *TLS_OFF,
                f"docker://{dr.host}/{repo}:1",
                f"docker://{reg.host}/from-dr/{repo}:1",
            )
        assert manifest_digest(reg, "from-dr/app", "1") == images.app_digest
        assert manifest_digest(reg, "from-dr/multi", "1") == images.multi_digest
        # ours → theirs, into new repositories
        for repo in ("app", "multi"):
            skopeo(
                "copy",
                "--all",
                *TLS_OFF,
                f"docker://{reg.host}/from-dr/{repo}:1",
                f"docker://{dr.host}/back/{repo}:2",
            )
        assert manifest_digest(dr, "back/app", "2") == images.app_digest
        assert manifest_digest(dr, "back/multi", "2") == images.multi_digest
        for desc in images.app_layers():
            status, headers, _ = dr.request("HEAD", f"/v2/back/app/blobs/{desc['digest']}")
            assert status == 200 and int(headers["content-length"]) == desc["size"]


def test_sigterm_stops_cleanly_and_the_data_survives(tmp_path: Any) -> None:
    data = os.urandom(50_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    server = RegistryServer(str(tmp_path), auth="none")
    try:
        server.start()
        status, _, _ = server.request("POST", f"/v2/app/blobs/uploads/?digest={digest}", body=data)
        assert status == 201
        status, headers, _ = server.request("POST", "/v2/app/blobs/uploads/")
        session = headers["location"]
        server.request("PATCH", session, body=b"half", headers={"Content-Range": "0-3"})
        assert server.stop() == 0
        assert "shutting down" in server.log()
        server.start()  # the same root and port
        status, _, body = server.request("GET", f"/v2/app/blobs/{digest}")
        assert status == 200 and body == data
        status, headers, _ = server.request("GET", session)  # the session goes on
        assert status == 204 and headers["range"] == "0-3"
        finish = "sha256:" + hashlib.sha256(b"half and whole").hexdigest()
        status, _, _ = server.request(
            "PUT",
            f"{session}?digest={finish}",
            body=b" and whole",
            headers={"Content-Range": "4-13"},
        )
        assert status == 201
    finally:
        server.close()


@needs_skopeo
def test_gc_while_serving(reg: RegistryServer, tmp_path: Any) -> None:
    images = Images(str(tmp_path / "oci"))
    skopeo("copy", *TLS_OFF, images.app_src, f"docker://{reg.host}/a:1")
    skopeo("copy", "--all", *TLS_OFF, images.multi_src, f"docker://{reg.host}/b:1")
    status, _, _ = reg.request("DELETE", "/v2/b/manifests/1")  # untag the index
    assert status == 202
    dry = reg.admin("gc", "--dry-run", "--grace", "0").stdout
    assert f"would remove manifest b@{images.multi_digest}" in dry
    assert manifest_digest(reg, "b", images.multi_digest) == images.multi_digest  # still there
    done = reg.admin("gc", "--grace", "0").stdout
    assert f"removed manifest b@{images.multi_digest}" in done
    assert "removed: 3 manifests" in done  # the index and its two images
    status, _, _ = reg.request("GET", f"/v2/b/manifests/{images.multi_digest}")
    assert status == 404
    back = str(tmp_path / "back")
    skopeo("copy", *TLS_OFF, f"docker://{reg.host}/a:1", f"oci:{back}:1")  # a is whole
    again = reg.admin("gc", "--grace", "0").stdout
    assert again.strip().endswith("removed: 0 manifests, 0 blobs (0 bytes), 0 uploads, 0 files")


def test_tls_and_a_config_file(tmp_path: Any) -> None:
    ca = TestCA(str(tmp_path / "ca"))
    config = {"max_page": 2, "log-level": "warning"}
    with RegistryServer(str(tmp_path), auth="none", tls=ca, config=config) as server:
        assert server.url.startswith("https://")
        for i in range(3):
            data = f"blob {i}".encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            status, _, _ = server.request(
                "POST", f"/v2/repo{i}/blobs/uploads/?digest={digest}", body=data
            )
            assert status == 201
        status, headers, body = server.request("GET", "/v2/_catalog")
        assert json.loads(body) == {"repositories": ["repo0", "repo1"]}  # max_page
        assert headers["link"] == '</v2/_catalog?n=2&last=repo1>; rel="next"'


# --- Portside's own client ------------------------------------------------------------------


@pytest.mark.root
def test_portside_push_and_pull(reg: RegistryServer) -> None:
    from mount_helpers import scratch_root
    from test_distribution_pull_push import BIG, Env, client_of, local_image, read_rootfs

    from portside.distribution.pull import pull
    from portside.distribution.push import push
    from portside.oci.reference import parse_reference

    host = reg.host
    with scratch_root("ps-regserve-") as root:
        env, env2 = Env(os.path.join(root, "a")), Env(os.path.join(root, "b"))
        try:
            image = local_image(env, f"{host}/team/app:v1")
            pushed = push(
                parse_reference(f"{host}/team/app:v1"),
                registry=client_of(host, push=True),
                content=env.content,
                images=env.images,
            )
            assert manifest_digest(reg, "team/app", "v1") == pushed[0].digest
            result = pull(
                parse_reference(f"{host}/team/app:v1"),
                registry=client_of(host),
                content=env2.content,
                images=env2.images,
                snapshotter=env2.sn,
            )
            assert result.image.id == image.id and result.digest == pushed[0].digest
            files = read_rootfs(env2, result.image.layers[-1].chain_id, ["data/big", "top"])
            assert files == {"data/big": BIG, "top": b"top layer\n"}
            env2.clean()
            # another repository: the layers are mounted, not uploaded again
            msgs: list[dict[str, Any]] = []
            env.images.tag(image.id, f"{host}/other:v1")
            push(
                parse_reference(f"{host}/other:v1"),
                registry=client_of(host, push=True),
                content=env.content,
                images=env.images,
                progress=msgs.append,
            )
            done = {m["status"] for m in msgs if m.get("id") in {d[7:19] for d in image.diff_ids}}
            assert "Mounted from team/app" in done
        finally:
            env.close()
            env2.close()
