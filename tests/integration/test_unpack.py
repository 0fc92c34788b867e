"""Unpacking images into snapshots and mounting a container's rootfs from them, with
the overlay and vfs snapshotters, on the real kernel."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator

import pytest
from mount_helpers import scratch_root

from portside.image.base import BUSYBOX_HISTORY, make_busybox_image
from portside.image.content import ContentStore
from portside.image.snapshots import (
    ACTIVE,
    COMMITTED,
    UNSYNCED_LABEL,
    SnapshotterBase,
    mount_all,
    open_snapshotter,
    unmount_all,
)
from portside.image.store import Image, ImageStore
from portside.image.unpack import CorruptLayer, prepare_container_rootfs, unpack
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor, parse_image_config
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]


@pytest.fixture
def tmp_root() -> Iterator[str]:
    with scratch_root("ps-unpack-") as path:
        yield path


@pytest.fixture
def stores(tmp_root: str) -> tuple[ContentStore, ImageStore]:
    content = ContentStore(os.path.join(tmp_root, "content"))
    return content, ImageStore(os.path.join(tmp_root, "images"), content)


@pytest.fixture(params=["overlay", "vfs"])
def sn(request: pytest.FixtureRequest, tmp_root: str) -> SnapshotterBase:
    return open_snapshotter(os.path.join(tmp_root, "snapshots"), kind=request.param)


def _mount(mounts: list, tmp_root: str, name: str = "rootfs") -> str:  # type: ignore[type-arg]
    target = os.path.join(tmp_root, name)
    os.mkdir(target)
    mount_all(mounts, target)
    return target


def _tar_layer() -> bytes:
    """A layer adding /hello, deleting /etc/hostname (a whiteout) and hardlinking
    /bin/bb2 to /bin/busybox, a file of the layer below (uncompressed tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        hello = tarfile.TarInfo("hello")
        hello.size, hello.mode = 6, 0o644
        tar.addfile(hello, io.BytesIO(b"hello\n"))
        tar.addfile(tarfile.TarInfo("etc/.wh.hostname"), io.BytesIO(b""))
        link = tarfile.TarInfo("bin/bb2")
        link.type, link.linkname = tarfile.LNKTYPE, "bin/busybox"
        tar.addfile(link)
    return buf.getvalue()


def _layered_image(content: ContentStore, store: ImageStore, base: Image) -> Image:
    """``base`` plus the layer of :func:`_tar_layer`, gzipped."""
    raw = _tar_layer()
    blob = gzip.compress(raw, mtime=0)
    diff_id = str(Digest.of(raw))
    desc = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest.of(blob), size=len(blob))
    content.write_blob(blob)
    config = parse_image_config(base.config)
    config.rootfs.diff_ids.append(Digest(diff_id))
    layers = [
        (Descriptor(media_type=la.media_type, digest=Digest(la.digest), size=la.size), la.diff_id)
        for la in base.layers
    ]
    return store.create(config.to_bytes(), [*layers, (desc, diff_id)], tags=["layered:latest"])


def test_busybox_image_is_deterministic(stores: tuple[ContentStore, ImageStore]) -> None:
    content, store = stores
    first = make_busybox_image(content, store)
    second = make_busybox_image(content, store, tag="other:1")
    assert first.id == second.id
    assert len(first.layers) == 1
    assert first.layers[0].media_type == mt.OCI_LAYER_GZIP
    assert store.get("busybox").id == first.id == store.get("other:1").id
    config = parse_image_config(first.config)
    assert config.os == "linux"
    assert config.config is not None and config.config.cmd == ["sh"]
    assert any(e.startswith("PATH=") for e in config.config.env)
    assert [h.created_by for h in config.history] == [BUSYBOX_HISTORY]
    assert [str(d) for d in config.rootfs.diff_ids] == [first.layers[0].diff_id]
    assert store.check(verify_layers=True) == []


def test_unpack_and_mount_container_rootfs(
    stores: tuple[ContentStore, ImageStore], sn: SnapshotterBase, tmp_root: str
) -> None:
    content, store = stores
    image = make_busybox_image(content, store)
    top = unpack(image, content, sn)
    assert top == image.layers[0].chain_id
    assert [(i.name, i.kind) for i in sn.walk()] == [(top, COMMITTED)]

    mounts = prepare_container_rootfs(image, sn, "ctr-1")
    assert sn.stat("ctr-1").kind == ACTIVE and sn.stat("ctr-1").parent == top
    rootfs = _mount(mounts, tmp_root)
    try:
        assert os.access(os.path.join(rootfs, "bin", "busybox"), os.X_OK)
        with open(os.path.join(rootfs, "etc", "passwd")) as f:
            assert f.read().startswith("root:x:0:0:")
        with open(os.path.join(rootfs, "tmp", "written"), "w") as f:
            f.write("mine\n")
    finally:
        unmount_all(rootfs)
    # the write landed in the active snapshot only: a view of the layer has no trace of it
    view = _mount(sn.view("look", parent=top), tmp_root, "view")
    try:
        assert os.path.exists(os.path.join(view, "bin", "busybox"))
        assert not os.path.exists(os.path.join(view, "tmp", "written"))
    finally:
        unmount_all(view)
    again = _mount(sn.mounts("ctr-1"), tmp_root, "again")
    try:
        with open(os.path.join(again, "tmp", "written")) as f:
            assert f.read() == "mine\n"
    finally:
        unmount_all(again)


def test_shared_base_layer_is_unpacked_once(
    stores: tuple[ContentStore, ImageStore], sn: SnapshotterBase, tmp_root: str
) -> None:
    content, store = stores
    base = make_busybox_image(content, store)
    layered = _layered_image(content, store, base)
    assert layered.layers[0].chain_id == base.layers[0].chain_id
    unpack(base, content, sn)
    base_info = sn.stat(base.layers[0].chain_id)
    top = unpack(layered, content, sn)
    assert top == layered.layers[1].chain_id != layered.layers[1].diff_id
    infos = sn.walk()
    assert [(i.name, i.parent) for i in infos] == [
        (base.layers[0].chain_id, None),
        (top, base.layers[0].chain_id),
    ]
    assert sn.stat(base.layers[0].chain_id) == base_info  # not made again
    assert unpack(layered, content, sn) == top and len(sn.walk()) == 2

    rootfs = _mount(prepare_container_rootfs(layered, sn, "ctr-2"), tmp_root)
    try:
        with open(os.path.join(rootfs, "hello")) as f:
            assert f.read() == "hello\n"
        assert not os.path.lexists(os.path.join(rootfs, "etc", "hostname"))  # whited out
        assert not os.path.lexists(os.path.join(rootfs, "etc", ".wh.hostname"))
        assert os.path.exists(os.path.join(rootfs, "etc", "passwd"))
        assert os.path.exists(os.path.join(rootfs, "bin", "sh"))
        bb2 = os.stat(os.path.join(rootfs, "bin", "bb2"))  # copied up from the layer below
        assert bb2.st_size == os.stat(os.path.join(rootfs, "bin", "busybox")).st_size > 0
    finally:
        unmount_all(rootfs)


@pytest.mark.parametrize("tamper", ["flip", "append"])
def test_corrupt_layer_fails_and_leaves_nothing(
    stores: tuple[ContentStore, ImageStore], sn: SnapshotterBase, tamper: str
) -> None:
    content, store = stores
    image = make_busybox_image(content, store)
    path = content.path(image.layers[0].digest)
    os.chmod(path, 0o644)
    if tamper == "flip":  # in the middle of the deflate stream: the data is wrong
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:  # after the gzip member: the tar is intact, only the blob digest is wrong
        with open(path, "ab") as f:
            f.write(b"\0" * 1024)
    with pytest.raises(CorruptLayer) as info:
        unpack(image, content, sn)
    message = str(info.value)
    assert image.layers[0].digest in message and "layer 0" in message
    assert sn.walk() == []
    assert not [n for n in os.listdir(os.path.join(sn.root, "snapshots")) if n.isdigit()]


def test_unpack_refuses_wrong_diff_id(
    stores: tuple[ContentStore, ImageStore], sn: SnapshotterBase
) -> None:
    """A config whose diffID is not the blob's (an image recorded wrongly)."""
    content, store = stores
    image = make_busybox_image(content, store)
    layer = image.layers[0]
    fake = str(Digest.of(b"not this layer"))
    config = parse_image_config(image.config)
    config.rootfs.diff_ids[0] = Digest(fake)
    desc = Descriptor(media_type=layer.media_type, digest=Digest(layer.digest), size=layer.size)
    bad = store.create(config.to_bytes(), [(desc, fake)])
    with pytest.raises(CorruptLayer, match="does not match"):
        unpack(bad, content, sn)
    assert sn.walk() == []


def test_unpack_syncs_once_and_only_when_it_must(
    stores: tuple[ContentStore, ImageStore], sn: SnapshotterBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers committed without a sync each, then one sync for the image; none when
    everything was there and synced; one when a layer still waits for another's."""
    content, store = stores
    base = make_busybox_image(content, store)
    layered = _layered_image(content, store, base)
    syncs: list[list[str]] = []
    real = sn.sync
    monkeypatch.setattr(sn, "sync", lambda names=(): syncs.append(list(names)) or real(names))
    top = unpack(layered, content, sn)
    assert syncs == [[top]]
    assert not [i.name for i in sn.walk() if UNSYNCED_LABEL in i.labels]
    assert unpack(layered, content, sn) == top and syncs == [[top]]  # nothing to do
    info = sn.stat(base.layers[0].chain_id)
    info.labels[UNSYNCED_LABEL] = "some-boot"  # as a pull not yet synced leaves it
    sn.update(info)
    unpack(layered, content, sn)
    assert syncs[1:] == [[top]]
    assert UNSYNCED_LABEL not in sn.stat(base.layers[0].chain_id).labels
