"""``docker save`` / ``docker load`` archives and OCI image layouts: round trips of a real
busybox image, hand-made old Docker archives, and refusal of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from portside.errors import InvalidArgument
from portside.image.archive import InvalidArchive, load, save
from portside.image.base import make_busybox_image
from portside.image.content import ContentStore
from portside.image.store import Image, ImageNotFound, ImageStore
from portside.oci import mediatypes as mt
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

needs_busybox = pytest.mark.skipif(
    not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"
)
Stores = tuple[ContentStore, ImageStore]


def _stores(root: Path) -> Stores:
    content = ContentStore(str(root / "content"))
    return content, ImageStore(str(root / "images"), content)


@pytest.fixture
def src(tmp_path: Path) -> Stores:
    return _stores(tmp_path / "src")


@pytest.fixture
def dst(tmp_path: Path) -> Iterator[Stores]:
    stores = _stores(tmp_path / "dst")
    yield stores
    assert stores[0].leases() == []  # load always drops its lease


@pytest.fixture
def busybox(src: Stores) -> Image:
    if not busybox_available():
        pytest.skip(f"needs a static busybox: {INSTALL_HINT}")
    return make_busybox_image(*src)


def _save(stores: Stores, refs: list[str], fmt: str) -> bytes:
    buf = io.BytesIO()
    save(stores[1], stores[0], refs, buf, format=fmt)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar of ``files`` in the order given, plus symlinks ``links`` (name: target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def _members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_keeps_id_tags_and_digests(
    busybox: Image, src: Stores, dst: Stores, fmt: str
) -> None:
    data = _save(src, ["busybox"], fmt)
    assert load(dst[1], dst[0], io.BytesIO(data)) == ["busybox:latest"]
    got = dst[1].get("busybox:latest")
    assert got.id == busybox.id
    assert got.tags == busybox.tags == ["docker.io/library/busybox:latest"]
    assert [la.digest for la in got.layers] == [la.digest for la in busybox.layers]
    assert got.diff_ids == busybox.diff_ids
    assert got.manifest_digest == busybox.manifest_digest  # the manifest's bytes survive
    assert dst[0].check() == []


def test_save_is_deterministic(busybox: Image, src: Stores) -> None:
    assert _save(src, ["busybox"], "docker") == _save(src, ["busybox"], "docker")


def test_docker_archive_members_are_dockers(busybox: Image, src: Stores) -> None:
    data = _save(src, ["busybox:latest"], "docker")
    blobs = {busybox.id, busybox.manifest_digest, *(la.digest for la in busybox.layers)}
    want = ["blobs", "blobs/sha256", "index.json", "manifest.json", "oci-layout", "repositories"]
    want += [f"blobs/sha256/{d.partition(':')[2]}" for d in blobs]
    assert _members(data) == sorted(want)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        info = tf.getmember("manifest.json")
        assert (info.mtime, info.uid, info.gid) == (0, 0, 0)
        manifest = json.load(tf.extractfile(info))  # type: ignore[arg-type]
        repos = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        layout = json.load(tf.extractfile("oci-layout"))  # type: ignore[arg-type]
    hexid = busybox.id.partition(":")[2]
    assert manifest == [
        {
            "Config": f"blobs/sha256/{hexid}",
            "RepoTags": ["busybox:latest"],
            "Layers": [f"blobs/sha256/{la.digest.partition(':')[2]}" for la in busybox.layers],
        }
    ]
    assert repos == {"busybox": {"latest": busybox.layers[-1].diff_id.partition(":")[2]}}
    assert layout == {"imageLayoutVersion": "1.0.0"}
    [entry] = index["manifests"]
    assert entry["digest"] == busybox.manifest_digest
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest",
    }


def test_oci_layout_has_no_docker_files(busybox: Image, src: Stores) -> None:
    names = _members(_save(src, ["busybox"], "oci"))
    assert "manifest.json" not in names and "repositories" not in names
    assert {"index.json", "oci-layout"} <= set(names)


def test_save_by_id_loads_untagged(busybox: Image, src: Stores, dst: Stores) -> None:
    data = _save(src, [busybox.id], "docker")
    assert load(dst[1], dst[0], io.BytesIO(data)) == [busybox.id]
    assert dst[1].get(busybox.id).tags == []


def test_compressed_archive_loads(busybox: Image, src: Stores, dst: Stores) -> None:
    import gzip

    data = gzip.compress(_save(src, ["busybox"], "docker"))
    assert load(dst[1], dst[0], io.BytesIO(data)) == ["busybox:latest"]


# --- old Docker archives ---------------------------------------------------------------


def _old_archive(*, manifest_first: bool, symlink: bool = False) -> tuple[bytes, str, str]:
    """An archive as Docker < 25 wrote it; (tar, image ID, layer diffID)."""
    layer = _tar({"hello.txt": b"hello\n"})
    diff_id = _sha(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]},
            "config": {"Cmd": ["sh"]},
        }
    ).encode()
    hexid = _sha(config).partition(":")[2]
    layer_id, other = "a" * 64, "b" * 64
    manifest = json.dumps(
        [
            {
                "Config": f"{hexid}.json",
                "RepoTags": ["old:1", "example.com/x/old:2"],
                "Layers": [f"{layer_id}/layer.tar", f"{other}/layer.tar"],
            }
        ]
    ).encode()
    files = {
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": b"{}",
        f"{layer_id}/layer.tar": layer,
        f"{hexid}.json": config,
        "repositories": json.dumps({"old": {"1": layer_id}}).encode(),
    }
    links = {f"{other}/layer.tar": f"../{layer_id}/layer.tar"} if symlink else None
    if not symlink:
        files[f"{other}/layer.tar"] = layer
    if manifest_first:
        files = {"manifest.json": manifest, **files}
    else:
        files["manifest.json"] = manifest
    return _tar(files, links), f"sha256:{hexid}", diff_id


@pytest.mark.parametrize("manifest_first", [True, False])
@pytest.mark.parametrize("symlink", [True, False])
def test_load_old_docker_archive(dst: Stores, manifest_first: bool, symlink: bool) -> None:
    data, image_id, diff_id = _old_archive(manifest_first=manifest_first, symlink=symlink)
    loaded = load(dst[1], dst[0], io.BytesIO(data))
    assert loaded == ["old:1", "example.com/x/old:2"]
    image = dst[1].get("old:1")
    assert image.id == image_id
    assert dst[1].get("example.com/x/old:2").id == image_id
    assert [(la.digest, la.diff_id) for la in image.layers] == [(diff_id, diff_id)] * 2
    assert {la.media_type for la in image.layers} == {mt.OCI_LAYER}


# --- bad input -------------------------------------------------------------------------


def _docker_parts() -> dict[str, bytes]:
    """A valid Docker 25-style archive's files: one uncompressed layer."""
    layer = _tar({"f": b"x"})
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
        }
    ).encode()
    blobs = {f"blobs/sha256/{_sha(b).partition(':')[2]}": b for b in (layer, config)}
    lpath, cpath = list(blobs)
    manifest = [{"Config": cpath, "RepoTags": ["bad:1"], "Layers": [lpath]}]
    return {**blobs, "manifest.json": json.dumps(manifest).encode()}


def _with_manifest(parts: dict[str, bytes], **change: object) -> dict[str, bytes]:
    doc = json.loads(parts["manifest.json"])
    doc[0].update(change)
    return {**parts, "manifest.json": json.dumps(doc).encode()}


def _oci_parts(layer_type: str) -> dict[str, bytes]:
    layer = _tar({"f": b"x"})
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": _sha(layer), "size": len(layer)}],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": _sha(manifest),
                "size": len(manifest),
                "annotations": {"io.containerd.image.name": "docker.io/library/bad:1"},
            }
        ],
    }
    files = {f"blobs/sha256/{_sha(b).partition(':')[2]}": b for b in (layer, config, manifest)}
    return {
        **files,
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index).encode(),
    }


def test_good_inputs_of_the_bad_input_tests_load(dst: Stores) -> None:
    """The baselines load, so each failure below is down to its one change."""
    assert load(dst[1], dst[0], io.BytesIO(_tar(_docker_parts()))) == ["bad:1"]
    assert load(dst[1], dst[0], io.BytesIO(_tar(_oci_parts(mt.OCI_LAYER)))) == ["bad:1"]


def _corrupt_blob(parts: dict[str, bytes]) -> dict[str, bytes]:
    name = next(n for n in parts if n.startswith("blobs/"))
    return {**parts, name: parts[name] + b"!"}


def _drop_blob(parts: dict[str, bytes]) -> dict[str, bytes]:
    name = next(n for n in parts if n.startswith("blobs/"))
    return {n: b for n, b in parts.items() if n != name}


BAD = {
    "missing blob": (lambda: _drop_blob(_docker_parts()), "is not in the archive"),
    "digest mismatch": (lambda: _corrupt_blob(_docker_parts()), "does not match"),
    "dotdot path": (
        lambda: _with_manifest(_docker_parts(), Layers=["blobs/../../etc/passwd"]),
        "must stay inside the archive",
    ),
    "absolute path": (
        lambda: _with_manifest(_docker_parts(), Config="/etc/passwd"),
        "must stay inside the archive",
    ),
    "unknown layer media type": (
        lambda: _oci_parts("application/x-foo"),
        "not a layer media type: 'application/x-foo'",
    ),
    "unknown manifest media type": (
        lambda: {
            **_oci_parts(mt.OCI_LAYER),
            "index.json": _oci_parts(mt.OCI_LAYER)["index.json"].replace(
                mt.OCI_MANIFEST.encode(), b"application/x-bar"
            ),
        },
        "unknown media type 'application/x-bar'",
    ),
    "oci missing blob": (lambda: _drop_blob(_oci_parts(mt.OCI_LAYER)), "is not in the archive"),
    "diff id mismatch": (
        lambda: _with_manifest(_docker_parts(), Layers=[]),
        "rootfs.diff_ids",
    ),
    "neither index": (lambda: {"foo": b"bar"}, "neither manifest.json nor index.json"),
    "bad json": (lambda: {**_docker_parts(), "manifest.json": b"[{"}, "invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_tags_nothing(dst: Stores, case: str) -> None:
    make, message = BAD[case]
    with pytest.raises(InvalidArchive, match=message):
        load(dst[1], dst[0], io.BytesIO(_tar(make())))
    with pytest.raises(ImageNotFound):
        dst[1].get("bad:1")
    assert dst[1].images() == []
    assert dst[0].ingests() == []


def test_not_a_tar(dst: Stores) -> None:
    with pytest.raises(InvalidArchive, match="not a valid tar"):
        load(dst[1], dst[0], io.BytesIO(b"\x00garbage" * 100))


def test_save_refuses_unknown_format(busybox: Image, src: Stores) -> None:
    with pytest.raises(InvalidArgument, match="unknown archive format"):
        _save(src, ["busybox"], "zip")


# --- skopeo ----------------------------------------------------------------------------


@needs_busybox
@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_our_archives(busybox: Image, src: Stores, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(_save(src, ["busybox"], "docker"))
    layout = tmp_path / "layout"
    with tarfile.open(fileobj=io.BytesIO(_save(src, ["busybox"], "oci"))) as tf:
        tf.extractall(layout)  # our own archive (and 3.11.2 has no filter=)
    # skopeo names a docker-archive's layers by diffID (it reads them as
    # uncompressed tars), an OCI layout's by blob digest
    expected = {
        f"docker-archive:{archive}": [la.diff_id for la in busybox.layers],
        f"oci:{layout}:latest": [la.digest for la in busybox.layers],
    }
    for target, layers in expected.items():
        out = subprocess.run(
            ["skopeo", "inspect", target], check=True, capture_output=True, text=True
        )
        assert json.loads(out.stdout)["Layers"] == layers
    assert os.path.exists(layout / "index.json")
