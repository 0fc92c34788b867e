"""The engine's image operations (``portside.engine.images.Images``) on real stores:
list, inspect, history, tag, rmi, prune, save → load, import and commit, with the
events dockerd publishes for them."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator

import pytest
from mount_helpers import scratch_root

from portside.engine.events import EventBus, Subscription
from portside.engine.images import Images, merge_commit_config, parse_until
from portside.errors import InvalidArgument, NotFound
from portside.image.base import make_busybox_image
from portside.image.content import ContentStore
from portside.image.snapshots import mount_all, open_snapshotter, unmount_all
from portside.image.store import Image, ImageConflict, ImageStore
from portside.image.unpack import prepare_container_rootfs, unpack
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]

BUSYBOX = "busybox:latest"


@pytest.fixture
def env() -> Iterator[tuple[Images, EventBus, Image]]:
    with scratch_root("ps-engine-images-") as root:
        content = ContentStore(os.path.join(root, "content"))
        store = ImageStore(os.path.join(root, "images"), content)
        sn = open_snapshotter(os.path.join(root, "snapshots"))
        bus = EventBus()
        image = make_busybox_image(content, store)
        try:
            yield Images(store, content, sn, bus), bus, image
        finally:
            sn.close()


def _drain(sub: Subscription) -> list[tuple[str, str, str]]:
    out = []
    while (event := sub.get(timeout=0.05)) is not None:
        out.append((event["Action"], event["Actor"]["ID"], event["Actor"]["Attributes"]["name"]))
    return out


def _rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_list_inspect_history(env: tuple[Images, EventBus, Image]) -> None:
    images, _, image = env
    [item] = images.list()
    assert item["Id"] == image.id and item["RepoTags"] == [BUSYBOX]
    assert item["Containers"] == -1
    assert images.list(containers_by_image={image.id: 2})[0]["Containers"] == 2
    assert images.list(filters={"dangling": ["true"]}) == []
    assert images.list(filters={"reference": ["busy*"]})[0]["Id"] == image.id
    doc = images.inspect("busybox")
    assert doc["Id"] == image.id and doc["RepoTags"] == [BUSYBOX]
    assert doc["GraphDriver"]["Name"] in ("overlay2", "vfs")
    assert doc["RootFS"]["Layers"] == image.diff_ids
    history = images.history(image.id[7:19])
    assert history[0]["Id"] == image.id and history[0]["Tags"] == [BUSYBOX]
    with pytest.raises(NotFound, match="No such image: nothere:latest"):
        images.inspect("nothere")


def test_tag_and_remove_events(env: tuple[Images, EventBus, Image]) -> None:
    images, bus, image = env
    sub = bus.subscribe(filters={"type": ["image"]})
    images.tag("busybox", "me/box", "v1")
    images.tag(image.id, "me/box", None)
    assert images.inspect(image.id)["RepoTags"] == [BUSYBOX, "me/box:latest", "me/box:v1"]
    assert _drain(sub) == [("tag", image.id, "me/box:v1"), ("tag", image.id, "me/box:latest")]
    with pytest.raises(InvalidArgument):
        images.tag("busybox", "", "x")

    assert images.remove("me/box:v1") == [{"Untagged": "me/box:v1"}]
    assert _drain(sub) == [("untag", image.id, image.id)]

    def running(image_id: str) -> list[tuple[str, bool]]:
        return [("c" * 64, True)]

    with pytest.raises(ImageConflict, match="cannot be forced"):
        images.remove(image.id, force=True, in_use=running)
    assert _drain(sub) == []
    got = images.remove(image.id, force=True, in_use=lambda _id: [])
    assert got == [{"Untagged": BUSYBOX}, {"Untagged": "me/box:latest"}, {"Deleted": image.id}]
    assert _drain(sub) == [
        ("untag", image.id, image.id),
        ("untag", image.id, image.id),
        ("delete", image.id, image.id),
    ]
    assert images.list() == []


def test_prune(env: tuple[Images, EventBus, Image]) -> None:
    images, bus, image = env
    dangling = images.import_(io.BytesIO(_rootfs_tar({"a": b"1"})), changes=["LABEL keep=no"])
    labelled = images.import_(
        io.BytesIO(_rootfs_tar({"b": b"2"})), repo="me/labelled", changes=["LABEL keep=yes"]
    )
    sub = bus.subscribe(filters={"event": ["delete"]})
    got = images.prune()
    assert got["ImagesDeleted"] == [{"Deleted": dangling}]
    assert got["SpaceReclaimed"] > 0
    assert [e[1] for e in _drain(sub)] == [dangling]
    # every unused image, but not those with keep=yes nor the one a container uses
    got = images.prune({"dangling": ["false"], "label!": ["keep=yes"]}, in_use=lambda _: [])
    assert {r.get("Deleted") for r in got["ImagesDeleted"]} == {None, image.id}
    assert images.get(labelled).id == labelled
    used = images.prune({"dangling": ["false"]}, in_use=lambda i: [("c" * 64, False)])
    assert used["ImagesDeleted"] == [] and used["SpaceReclaimed"] == 0
    assert (
        images.prune({"dangling": ["false"], "until": ["1970-01-02T00:00:00Z"]})["ImagesDeleted"]
        == []
    )
    with pytest.raises(InvalidArgument):
        images.prune({"colour": ["red"]})


def test_save_load_round_trip(env: tuple[Images, EventBus, Image]) -> None:
    images, bus, image = env
    with pytest.raises(NotFound):
        images.save(["nothere"])
    sub = bus.subscribe(filters={"type": ["image"]})
    data = b"".join(images.save(["busybox"]))
    assert ("save", image.id, image.id) in _drain(sub)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and "index.json" in names
    images.remove("busybox")
    assert images.load(io.BytesIO(data)) == [f"Loaded image: {BUSYBOX}"]
    assert images.inspect("busybox")["Id"] == image.id
    assert _drain(sub)[-1] == ("load", image.id, image.id)
    # a stream dropped early stops its producer
    stream = images.save([image.id])
    next(iter(stream))
    stream.close()
    assert not stream._worker.is_alive()  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument):
        images.load(io.BytesIO(b"not a tar"))


def test_import(env: tuple[Images, EventBus, Image]) -> None:
    images, bus, _ = env
    sub = bus.subscribe(filters={"event": ["import"]})
    tar = _rootfs_tar({"etc/motd": b"hi\n"})
    image_id = images.import_(
        io.BytesIO(tar), repo="me/imported", tag="v2", changes=['CMD ["cat", "/etc/motd"]'],
        message="from a test",
    )  # fmt: skip
    doc = images.inspect("me/imported:v2")
    assert doc["Id"] == image_id and doc["Config"]["Cmd"] == ["cat", "/etc/motd"]
    assert images.history(image_id)[0]["Comment"] == "from a test"
    assert _drain(sub) == [("import", image_id, image_id)]


def test_commit(env: tuple[Images, EventBus, Image]) -> None:
    images, bus, image = env
    sn = images.snapshotter
    assert sn is not None
    unpack(image, images.content, sn)
    mounts = prepare_container_rootfs(image, sn, "ctr1")
    with scratch_root("ps-engine-commit-") as rootfs:
        mount_all(mounts, rootfs)
        try:
            with open(os.path.join(rootfs, "hello"), "w") as f:
                f.write("hello\n")
        finally:
            unmount_all(rootfs)
    sub = bus.subscribe(filters={"type": ["container"]})
    container_config = {
        "Hostname": "ctr1",
        "Image": "busybox",
        "Env": ["PATH=/bin", "MODE=test"],
        "Cmd": ["sh"],
        "Labels": {"a": "1"},
        "Tty": True,
    }
    new_id = images.commit(
        "ctr1",
        image.id,
        container_config=container_config,
        config={"Env": ["MODE=override"]},
        repo="me/committed",
        tag="1",
        author="tester",
        comment="hello added",
        changes=["EXPOSE 8080"],
        event_attributes={"image": "busybox", "name": "web"},
    )
    doc = images.inspect("me/committed:1")
    assert doc["Id"] == new_id and len(doc["RootFS"]["Layers"]) == 2
    assert doc["Author"] == "tester"
    config = doc["Config"]
    assert config["Env"] == ["MODE=override", "PATH=/bin"]
    assert config["Cmd"] == ["sh"] and config["Labels"] == {"a": "1"}
    assert "8080/tcp" in config["ExposedPorts"] and "Hostname" not in config
    [event] = [bus_event for bus_event in iter(lambda: sub.get(timeout=0.05), None)]
    assert event["Action"] == "commit" and event["Actor"]["ID"] == "ctr1"
    assert event["Actor"]["Attributes"]["imageID"] == new_id
    assert event["Actor"]["Attributes"]["name"] == "web"
    # the parent image is unchanged
    assert json.loads(images.get(image.id).config)["config"].get("Labels") is None


def test_merge_commit_config_and_until() -> None:
    base = {"Entrypoint": ["/app"], "Cmd": ["-x"], "User": "u", "Volumes": {"/d": {}}}
    assert merge_commit_config({"Cmd": ["-y"]}, base) == {
        "Cmd": ["-y"], "User": "u", "Entrypoint": ["/app"], "Volumes": {"/d": {}},
    }  # fmt: skip
    assert merge_commit_config({"Entrypoint": ["/b"]}, base)["Entrypoint"] == ["/b"]
    assert "Cmd" not in merge_commit_config({"Entrypoint": ["/b"]}, base)
    assert parse_until("1h30m", now=10_000.0) == 10_000.0 - 5400
    assert parse_until("1700000000") == 1_700_000_000.0
    assert parse_until("2023-11-14T22:13:20Z") == 1_700_000_000.0
    with pytest.raises(InvalidArgument):
        parse_until("yesterday")
