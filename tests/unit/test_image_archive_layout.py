"""The docker-archive layout of ``save`` against what Docker 25+ writes (moby's
``image/tarexport/save.go``), and ``load`` of archives laid out as Docker writes them,
today's and the older ``<layer-id>/layer.tar`` one. Stores in a tmp dir; layers are
small real tars (plain and gzip) so loads can check their diffIDs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from portside.image.archive import IMAGE_NAME, REF_NAME, load, save
from portside.image.content import ContentStore
from portside.image.store import Image, ImageStore
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor

Stores = tuple[ContentStore, ImageStore]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    return digest.partition(":")[2]


def _tar(files: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stores(root: Path) -> Stores:
    content = ContentStore(str(root / "content"))
    return content, ImageStore(str(root / "images"), content)


@pytest.fixture
def src(tmp_path: Path) -> Stores:
    return _stores(tmp_path / "src")


@pytest.fixture
def dst(tmp_path: Path) -> Stores:
    return _stores(tmp_path / "dst")


def _image(stores: Stores, text: bytes, *, gz: bool, tags: list[str], base: bool = False) -> Image:
    """An image of one layer holding ``/f`` = ``text`` (two layers with ``base``)."""
    content, store = stores
    layers = []
    for name, data in ([("base", b"base")] if base else []) + [("f", text)]:
        raw = _tar({name: data})
        blob = gzip.compress(raw, mtime=0) if gz else raw
        media = mt.OCI_LAYER_GZIP if gz else mt.OCI_LAYER
        desc = Descriptor(media_type=media, digest=Digest(content.write_blob(blob)), size=len(blob))
        layers.append((desc, _sha(raw)))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
    }
    return store.create(json.dumps(config).encode(), layers, tags=tags)


def _save(stores: Stores, refs: list[str]) -> dict[str, bytes]:
    buf = io.BytesIO()
    save(stores[1], stores[0], refs, buf, format="docker")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        for member in tf:
            f = tf.extractfile(member)
            out[member.name + ("/" if member.isdir() else "")] = f.read() if f else b""
    return out


# --- save -------------------------------------------------------------------------------


def test_manifest_json_as_docker_writes_it(src: Stores) -> None:
    image = _image(src, b"x", gz=False, tags=["app:1"], base=True)
    files = _save(src, ["app:1"])
    assert files["manifest.json"].endswith(b"]\n")  # Go's json.Encoder adds a newline
    [entry] = json.loads(files["manifest.json"])
    assert entry["Config"] == f"blobs/sha256/{_hex(image.id)}"
    assert entry["RepoTags"] == ["app:1"]
    assert entry["Layers"] == [f"blobs/sha256/{_hex(la.digest)}" for la in image.layers]
    # uncompressed layers: the blob is named by its diffID, as Docker names its files
    assert [_hex(la.digest) for la in image.layers] == [_hex(d) for d in image.diff_ids]
    assert entry["LayerSources"] == {
        la.diff_id: {"mediaType": mt.OCI_LAYER, "size": la.size, "digest": la.digest}
        for la in image.layers
    }
    for path in entry["Layers"] + [entry["Config"]]:
        assert path in files


def test_compressed_layers_have_no_layer_sources(src: Stores) -> None:
    image = _image(src, b"x", gz=True, tags=["app:1"])
    [entry] = json.loads(_save(src, ["app:1"])["manifest.json"])
    assert "LayerSources" not in entry
    assert entry["Layers"] == [f"blobs/sha256/{_hex(image.layers[0].digest)}"]


def test_repositories_name_the_top_layer_diff_id(src: Stores) -> None:
    image = _image(src, b"x", gz=True, tags=["app:1", "app:2"], base=True)
    files = _save(src, ["app:1", "app:2"])
    assert files["repositories"].endswith(b"}\n")
    top = _hex(image.layers[-1].diff_id)
    assert top != _hex(image.id) and top != _hex(image.layers[-1].digest)
    assert json.loads(files["repositories"]) == {"app": {"1": top, "2": top}}


def test_untagged_save_has_no_repositories_and_an_unannotated_index_entry(src: Stores) -> None:
    image = _image(src, b"x", gz=True, tags=[])
    files = _save(src, [image.id])
    assert "repositories" not in files
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == []
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["digest"] == image.manifest_digest and "annotations" not in entry


def test_oci_side_index_layout_and_blob_paths(src: Stores) -> None:
    image = _image(src, b"x", gz=True, tags=["example.com/team/app:v1", "app:latest"])
    files = _save(src, ["example.com/team/app:v1", "app"])
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    annotations = [e["annotations"] for e in index["manifests"]]
    assert annotations == [
        {IMAGE_NAME: "example.com/team/app:v1", REF_NAME: "v1"},
        {IMAGE_NAME: "docker.io/library/app:latest", REF_NAME: "latest"},
    ]
    for entry in index["manifests"]:
        assert entry["mediaType"] == image.media_type
        manifest = files[f"blobs/sha256/{_hex(entry['digest'])}"]
        assert _sha(manifest) == entry["digest"] and len(manifest) == entry["size"]
        doc = json.loads(manifest)
        assert doc["config"]["digest"] == image.id
        for blob in [doc["config"], *doc["layers"]]:
            data = files[f"blobs/sha256/{_hex(blob['digest'])}"]
            assert _sha(data) == blob["digest"]
    blobs = {image.id, image.manifest_digest, *(la.digest for la in image.layers)}
    want = {"blobs/", "blobs/sha256/", "index.json", "manifest.json", "oci-layout", "repositories"}
    assert set(files) == want | {f"blobs/sha256/{_hex(d)}" for d in blobs}


def test_a_bare_name_saves_every_tag_of_it(src: Stores, dst: Stores) -> None:
    one = _image(src, b"1", gz=True, tags=["app:1", "app:latest"])
    two = _image(src, b"2", gz=True, tags=["app:2"])
    other = _image(src, b"3", gz=True, tags=["other:1", "appx:1"])
    files = _save(src, ["app"])
    entries = json.loads(files["manifest.json"])
    assert {e["Config"]: sorted(e["RepoTags"]) for e in entries} == {
        f"blobs/sha256/{_hex(one.id)}": ["app:1", "app:latest"],
        f"blobs/sha256/{_hex(two.id)}": ["app:2"],
    }
    assert set(json.loads(files["repositories"])) == {"app"}
    assert f"blobs/sha256/{_hex(other.id)}" not in files
    loaded = load(dst[1], dst[0], io.BytesIO(_tar(files)))
    assert sorted(loaded) == ["app:1", "app:2", "app:latest"]
    assert dst[1].get("app:2").id == two.id


def test_a_bare_name_without_tags_is_still_looked_up_as_an_id(src: Stores) -> None:
    image = _image(src, b"x", gz=True, tags=[])
    entries = json.loads(_save(src, [_hex(image.id)[:12]])["manifest.json"])
    assert [e["Config"] for e in entries] == [f"blobs/sha256/{_hex(image.id)}"]


# --- load: archives as Docker writes them -----------------------------------------------


def _docker25_archive() -> tuple[bytes, str, str]:
    """An archive laid out exactly as Docker 25+'s graphdriver store writes it: the
    layer uncompressed at blobs/sha256/<diffID>, LayerSources, the layer's legacy v1
    JSON as a stray blob, a fresh OCI manifest in index.json; (tar, image ID, diffID)."""
    layer = _tar({"etc/hello": b"hi\n"}, dirs=("etc",))
    diff_id = _sha(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    v1 = json.dumps({"id": "c" * 64, "created": "1970-01-01T00:00:00Z", "os": "linux"}).encode()
    ldesc = {"mediaType": mt.OCI_LAYER, "digest": diff_id, "size": len(layer)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [ldesc],
        }
    ).encode()
    ref = {IMAGE_NAME: "docker.io/library/hello:1", REF_NAME: "1"}
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": _sha(manifest),
                "size": len(manifest),
                "annotations": ref,
            }
        ],
    }
    items = [
        {
            "Config": f"blobs/sha256/{_hex(_sha(config))}",
            "RepoTags": ["hello:1"],
            "Layers": [f"blobs/sha256/{_hex(diff_id)}"],
            "LayerSources": {diff_id: ldesc},
        }
    ]
    files = {f"blobs/sha256/{_hex(_sha(b))}": b for b in (layer, config, v1, manifest)}
    files["index.json"] = json.dumps(index).encode()
    files["manifest.json"] = json.dumps(items).encode() + b"\n"
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["repositories"] = json.dumps({"hello": {"1": _hex(diff_id)}}).encode() + b"\n"
    return _tar(files, dirs=("blobs", "blobs/sha256")), _sha(config), diff_id


def test_load_docker25_archive(dst: Stores) -> None:
    data, image_id, diff_id = _docker25_archive()
    assert load(dst[1], dst[0], io.BytesIO(data)) == ["hello:1"]
    image = dst[1].get("hello:1")
    assert image.id == image_id
    assert [(la.digest, la.diff_id, la.media_type) for la in image.layers] == [
        (diff_id, diff_id, mt.OCI_LAYER)
    ]
    assert dst[0].check() == []


def _old_layout_archive() -> tuple[bytes, str, list[str]]:
    """Docker 1.10 to 24: ``<layer-id>/{VERSION,json,layer.tar}``, ``<id>.json``,
    ``manifest.json`` and ``repositories`` naming the top layer's directory; two
    layers, one gzip (docker load took either); (tar, image ID, diffIDs)."""
    raws = [_tar({"bin/sh": b"#!\n"}, dirs=("bin",)), _tar({"etc/motd": b"hello\n"})]
    diff_ids = [_sha(r) for r in raws]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "a"}, {"created_by": "b"}],
        }
    ).encode()
    image_hex = _hex(_sha(config))
    ids = ["1" * 64, "2" * 64]
    files: dict[str, bytes] = {}
    for i, (layer_id, raw) in enumerate(zip(ids, raws, strict=True)):
        parent = {"parent": ids[i - 1]} if i else {}
        files[f"{layer_id}/VERSION"] = b"1.0"
        files[f"{layer_id}/json"] = json.dumps({"id": layer_id, **parent}).encode()
        files[f"{layer_id}/layer.tar"] = gzip.compress(raw, mtime=0) if i else raw
    files[f"{image_hex}.json"] = config
    files["manifest.json"] = json.dumps(
        [
            {
                "Config": f"{image_hex}.json",
                "RepoTags": ["legacy:old"],
                "Layers": [f"{i}/layer.tar" for i in ids],
            }
        ]
    ).encode()
    files["repositories"] = json.dumps({"legacy": {"old": ids[-1]}}).encode()
    return _tar(files, dirs=tuple(ids)), f"sha256:{image_hex}", diff_ids


def test_load_old_layer_directory_layout(dst: Stores) -> None:
    data, image_id, diff_ids = _old_layout_archive()
    assert load(dst[1], dst[0], io.BytesIO(data)) == ["legacy:old"]
    image = dst[1].get("legacy:old")
    assert image.id == image_id
    assert image.diff_ids == diff_ids
    assert [la.media_type for la in image.layers] == [mt.OCI_LAYER, mt.OCI_LAYER_GZIP]
    assert image.layers[0].digest == diff_ids[0]  # the plain layer is its own blob
    assert dst[0].check() == [] and dst[1].check() == []
