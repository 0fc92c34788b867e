"""Images moving between Portside and a real Docker Engine, through the docker CLI:
Portside's ``save`` → ``docker load`` (and a container runs from it), and Docker's
``docker save`` of an image Docker made (``docker commit``) → Portside's ``load`` →
unpacked. Skipped with the reason when no Docker Engine answers ``docker info``; the
skopeo path (``skopeo copy docker-archive:… oci:…``) runs wherever skopeo is.

Everything made in Docker is named ``portside-interop-<random>`` and removed at the end,
failing or not.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import scratch_root

from portside.image.archive import load, save
from portside.image.base import make_busybox_image
from portside.image.content import ContentStore
from portside.image.snapshots import mount_all, open_snapshotter, unmount_all
from portside.image.store import Image, ImageStore
from portside.image.unpack import unpack
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]
Stores = tuple[ContentStore, ImageStore]
_TIMEOUT = 120


def _docker(*args: str, check: bool = True, stdin: bytes | None = None) -> str:
    run = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, timeout=_TIMEOUT, check=False
    )
    if check and run.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {run.stderr.decode().strip()}")
    return run.stdout.decode()


def _no_docker_engine() -> str | None:
    """Why the Docker interop tests cannot run here; None when they can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        run = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Platform.Name}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker version: no answer from the engine in 30 s"
    if run.returncode != 0:
        lines = (run.stderr.strip() or "no output").splitlines()
        return f"no Docker Engine answers the docker CLI: {lines[-1]}"
    if "portside" in run.stdout.lower():
        return "the docker CLI reaches Portside's own daemon, not Docker Engine"
    return None


_WHY_NOT = _no_docker_engine()
needs_docker = pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT))


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    content = ContentStore(str(tmp_path / "content"))
    return content, ImageStore(str(tmp_path / "images"), content)


@pytest.fixture
def busybox(stores: Stores) -> Image:
    return make_busybox_image(*stores)


@pytest.fixture
def docker_names() -> Iterator[list[str]]:
    """Names (images, containers) to remove from Docker afterwards; yields a list to
    append to, with a unique repository name as its first item."""
    repo = f"portside-interop-{uuid.uuid4().hex[:12]}"
    names = [repo]
    yield names
    for name in reversed(names[1:]):
        _docker("rm", "-f", name, check=False)
        _docker("rmi", "-f", name, check=False)
    for ref in _docker("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).split():
        _docker("rmi", "-f", ref, check=False)


def _inspect(ref: str) -> dict[str, Any]:
    doc: list[dict[str, Any]] = json.loads(_docker("image", "inspect", ref))
    return doc[0]


@needs_docker
def test_docker_loads_our_archive_and_runs_it(
    stores: Stores, busybox: Image, tmp_path: Path, docker_names: list[str]
) -> None:
    content, store = stores
    repo = docker_names[0]
    store.tag(busybox.id, f"{repo}:ours")
    docker_names.append(f"{repo}:ours")
    archive = tmp_path / "ours.tar"
    with open(archive, "wb") as f:
        save(store, content, [f"{repo}:ours"], f, format="docker")
    out = _docker("load", "-i", str(archive))
    assert f"Loaded image: {repo}:ours" in out
    got = _inspect(f"{repo}:ours")
    # the graphdriver store names an image by its config, the containerd one by its manifest
    assert got["Id"] in (busybox.id, busybox.manifest_digest)
    assert got["RootFS"]["Layers"] == busybox.diff_ids
    assert got["Config"]["Cmd"] == ["sh"]
    name = f"{repo}-run"
    docker_names.append(name)
    said = _docker("run", "--name", name, "--network", "none", f"{repo}:ours", "echo", "hi")
    assert said.strip() == "hi"


@needs_docker
def test_we_load_what_docker_saves(
    stores: Stores, busybox: Image, tmp_path: Path, docker_names: list[str]
) -> None:
    content, store = stores
    repo = docker_names[0]
    store.tag(busybox.id, f"{repo}:base")
    docker_names.append(f"{repo}:base")
    buf = io.BytesIO()
    save(store, content, [f"{repo}:base"], buf, format="docker")
    _docker("load", stdin=buf.getvalue())
    # an image Docker makes itself: a container's change committed as a second layer
    name = f"{repo}-commit"
    docker_names.append(name)
    _docker(
        "run", "--name", name, "--network", "none", f"{repo}:base", "sh", "-c", "echo made > /f"
    )
    _docker("commit", "-c", 'CMD ["cat", "/f"]', name, f"{repo}:made")
    _docker("tag", f"{repo}:made", f"{repo}:also")
    docker_names += [f"{repo}:made", f"{repo}:also"]
    made = _inspect(f"{repo}:made")
    archive = tmp_path / "docker.tar"
    _docker("save", "-o", str(archive), repo)  # a bare name: every tag of it
    dst_content = ContentStore(str(tmp_path / "dst" / "content"))
    dst = ImageStore(str(tmp_path / "dst" / "images"), dst_content)
    with open(archive, "rb") as f:
        loaded = load(dst, dst_content, f)
    assert sorted(loaded) == sorted([f"{repo}:base", f"{repo}:made", f"{repo}:also"])
    image = dst.get(f"{repo}:made")
    assert dst.get(f"{repo}:also").id == image.id
    assert image.diff_ids == made["RootFS"]["Layers"]
    assert image.diff_ids[0] == busybox.diff_ids[0]
    assert dst_content.check(quick=True) == [] and dst.check() == []
    with scratch_root("ps-interop-") as root:
        sn = open_snapshotter(os.path.join(root, "snap"))
        target = os.path.join(root, "rootfs")
        os.mkdir(target)
        mount_all(sn.view("v", parent=unpack(image, dst_content, sn)), target)
        try:
            with open(os.path.join(target, "f")) as f:
                assert f.read() == "made\n"
            assert os.path.exists(os.path.join(target, "bin", "busybox"))
        finally:
            unmount_all(target)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_copies_our_archive_to_an_oci_layout_we_load(
    stores: Stores, busybox: Image, tmp_path: Path
) -> None:
    content, store = stores
    archive = tmp_path / "ours.tar"
    with open(archive, "wb") as f:
        save(store, content, ["busybox"], f, format="docker")
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", f"docker-archive:{archive}", f"oci:{layout}:copied"],
        check=True,
        capture_output=True,
        timeout=_TIMEOUT,
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(layout, arcname=".")
    dst_content = ContentStore(str(tmp_path / "dst" / "content"))
    dst = ImageStore(str(tmp_path / "dst" / "images"), dst_content)
    loaded = load(dst, dst_content, io.BytesIO(buf.getvalue()))
    # an OCI layout's ref.name "copied" is a tag alone, not an image name: loaded by ID
    assert loaded == [busybox.id]
    assert dst.get(busybox.id).diff_ids == busybox.diff_ids
