"""portside.image.store: images, tags and RepoDigests over a content store in a tmp dir.

Layers are random bytes standing in for gzip blobs: the store records metadata and
never decompresses them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from portside.image.content import ContentStore
from portside.image.store import (
    AmbiguousImage,
    Image,
    ImageConflict,
    ImageNotFound,
    ImageStore,
    InvalidImage,
    MissingContent,
    chain_ids,
)
from portside.image.store_db import SCHEMA_VERSION
from portside.image.store_docker import format_time, parse_time, path_match
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor, Index, Manifest, parse_manifest

CONTAINER = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
_counter = itertools.count()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_layer(content: ContentStore, size: int = 100) -> tuple[Descriptor, str]:
    """A made-up compressed layer blob in the store, and a made-up diffID."""
    data = os.urandom(size)
    digest = content.write_blob(data)
    desc = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest(digest), size=size)
    return desc, sha(b"uncompressed" + data)


def config_for(
    layers: list[tuple[Descriptor, str]],
    *,
    created: str = "2024-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    history: list[dict[str, object]] | None = None,
    **extra: object,
) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": ["PATH=/bin"], "Labels": labels or {}, "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": history
        if history is not None
        else [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
        # a nonce, so two images made with the same arguments differ
        "nonce": next(_counter),
        **extra,
    }
    return json.dumps(doc).encode()


@pytest.fixture
def content(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "content"))


@pytest.fixture
def store(tmp_path: Path, content: ContentStore) -> ImageStore:
    return ImageStore(str(tmp_path / "images"), content)


def make(
    store: ImageStore,
    *,
    layers: list[tuple[Descriptor, str]] | None = None,
    nlayers: int = 2,
    tags: tuple[str, ...] = (),
    **config: object,
) -> Image:
    if layers is None:
        layers = [add_layer(store.content) for _ in range(nlayers)]
    return store.create(config_for(layers, **config), layers, tags=tags)  # type: ignore[arg-type]


def users(*pairs: tuple[str, bool]):  # type: ignore[no-untyped-def]
    return lambda image_id: list(pairs)


# --- create --------------------------------------------------------------------------


def test_create_writes_config_and_manifest(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content), add_layer(content, 300)]
    config = config_for(layers)
    image = store.create(config, layers, tags=["busybox"])
    assert image.id == sha(config)
    assert image.tags == ["docker.io/library/busybox:latest"]
    assert image.size == 400
    assert content.read(image.id) == config
    manifest = parse_manifest(content.read(image.manifest_digest))
    assert isinstance(manifest, Manifest)
    assert manifest.media_type == mt.OCI_MANIFEST == image.media_type
    assert manifest.config.digest == image.id
    assert manifest.config.media_type == mt.OCI_CONFIG
    assert [d.digest for d in manifest.layers] == [d.digest for d, _ in layers]
    assert image.diff_ids == [d for _, d in layers]
    assert [la.chain_id for la in image.layers] == chain_ids(image.diff_ids)
    assert content.leases() == []  # the create's lease is gone


def test_create_docker_schema2_converts_layer_types(
    store: ImageStore, content: ContentStore
) -> None:
    layers = [add_layer(content)]
    image = store.create(config_for(layers), layers, manifest_media_type=mt.DOCKER_MANIFEST)
    manifest = parse_manifest(content.read(image.manifest_digest))
    assert isinstance(manifest, Manifest)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert manifest.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert image.layers[0].media_type == mt.DOCKER_LAYER_GZIP


def test_chain_ids() -> None:
    a, b = sha(b"a"), sha(b"b")
    assert chain_ids([]) == []
    assert chain_ids([a, b]) == [a, sha(f"{a} {b}".encode())]


def test_recreate_is_idempotent_and_adds_tags(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content)]
    config = config_for(layers)
    first = store.create(config, layers, tags=["a"])
    again = store.create(config, layers, tags=["b:1"], repo_digest=f"a@{first.manifest_digest}")
    assert again.id == first.id
    assert again.manifest_digest == first.manifest_digest
    assert again.tags == ["docker.io/library/a:latest", "docker.io/library/b:1"]
    assert again.repo_digests == [f"docker.io/library/a@{first.manifest_digest}"]
    assert len(store.images()) == 1


def test_create_with_pulled_manifest(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content)]
    config = config_for(layers)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": layers[0][0].digest, "size": 100}],
    }
    raw = json.dumps(doc, indent=3).encode()  # not our encoding: kept byte for byte
    image = store.create(config, layers, manifest=raw, repo_digest=f"quay.io/x/y@{sha(raw)}")
    assert image.manifest_digest == sha(raw)
    assert image.media_type == mt.DOCKER_MANIFEST
    assert content.read(sha(raw)) == raw
    assert store.get(f"quay.io/x/y@{sha(raw)}").id == image.id
    assert store.inspect(image)["RepoDigests"] == [f"quay.io/x/y@{sha(raw)}"]


def test_create_refuses_manifest_of_other_layers(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content)]
    config = config_for(layers)
    other = add_layer(content)[0]
    raw = Manifest(
        media_type=mt.OCI_MANIFEST, config=Descriptor.of(mt.OCI_CONFIG, config), layers=[other]
    ).to_bytes()
    with pytest.raises(InvalidImage, match="has layers"):
        store.create(config, layers, manifest=raw)
    raw = Manifest(
        media_type=mt.OCI_MANIFEST,
        config=Descriptor.of(mt.OCI_CONFIG, b"{}"),
        layers=[layers[0][0]],
    ).to_bytes()
    with pytest.raises(InvalidImage, match="names config"):
        store.create(config, layers, manifest=raw)


def test_create_errors_leave_nothing(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content), add_layer(content)]
    before = sorted(b.digest for b in content.list())
    with pytest.raises(InvalidImage, match=r"has 2 rootfs.diff_ids but 1 layers"):
        store.create(config_for(layers), layers[:1])
    wrong = [layers[0], (layers[1][0], sha(b"other"))]
    with pytest.raises(InvalidImage, match=r"layer 1: diffID sha256:\w+ does not match"):
        store.create(config_for(layers), wrong)
    missing = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest(sha(b"nope")), size=4)
    with pytest.raises(MissingContent, match=f"layer 0: blob {sha(b'nope')} is not in"):
        store.create(config_for([(missing, sha(b"d"))]), [(missing, sha(b"d"))])
    short = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=layers[0][0].digest, size=99)
    with pytest.raises(InvalidImage, match="is 100 bytes, the descriptor says 99"):
        store.create(config_for([(short, layers[0][1])]), [(short, layers[0][1])])
    with pytest.raises(InvalidArgument, match="unsupported manifest media type"):
        store.create(config_for(layers), layers, manifest_media_type=mt.OCI_INDEX)
    with pytest.raises(InvalidImage, match="invalid image config"):
        store.create(b'{"os": "linux"}', [])
    with pytest.raises(InvalidArgument, match="digest reference"):
        store.create(config_for(layers), layers, tags=[f"a@{sha(b'x')}"])
    with pytest.raises(InvalidArgument, match="has no digest"):
        store.create(config_for(layers), layers, repo_digest="a:1")
    not_layer = Descriptor(media_type=mt.OCI_CONFIG, digest=layers[0][0].digest, size=100)
    with pytest.raises(InvalidImage, match="not a layer media type"):
        store.create(config_for(layers[:1]), [(not_layer, layers[0][1])])
    assert store.images() == []
    assert content.leases() == []
    assert sorted(b.digest for b in content.list()) == before


# --- lookups -------------------------------------------------------------------------


def test_get_every_form(store: ImageStore, content: ContentStore) -> None:
    image = make(store, tags=("busybox", "quay.io/team/app:1.0"))
    store.create(
        image.config,
        [(d, d2) for d, d2 in _layers_of(image)],
        repo_digest=(f"busybox@{image.manifest_digest}"),
    )
    hexid = image.id.partition(":")[2]
    forms = [
        image.id,
        hexid,
        hexid[:4],
        hexid[:12],
        f"sha256:{hexid[:12]}",
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        "quay.io/team/app:1.0",
        f"busybox@{image.manifest_digest}",
        f"docker.io/library/busybox:latest@{image.manifest_digest}",
    ]
    for form in forms:
        assert store.get(form).id == image.id, form
    assert store.get(image).id == image.id


def _layers_of(image: Image) -> list[tuple[Descriptor, str]]:
    return [
        (Descriptor(media_type=la.media_type, digest=Digest(la.digest), size=la.size), la.diff_id)
        for la in image.layers
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("busybox", "No such image: busybox:latest"),
        ("quay.io/x/y:2", "No such image: quay.io/x/y:2"),
        ("abc", "No such image: abc:latest"),
        ("0" * 64, f"No such image: sha256:{'0' * 64}"),
        (f"sha256:{'0' * 64}", f"No such image: sha256:{'0' * 64}"),
        (f"busybox@sha256:{'0' * 64}", f"No such image: busybox@sha256:{'0' * 64}"),
    ],
)
def test_get_not_found(store: ImageStore, name: str, message: str) -> None:
    make(store, tags=("other",))
    with pytest.raises(ImageNotFound) as info:
        store.get(name)
    assert str(info.value) == message
    assert isinstance(info.value, NotFound)
    assert not store.exists(name)


def test_get_short_prefix_needs_four_digits(store: ImageStore) -> None:
    image = make(store)
    hexid = image.id.partition(":")[2]
    with pytest.raises(ImageNotFound):
        store.get(hexid[:3])
    with pytest.raises(InvalidArgument, match="invalid reference"):
        store.get("Not/Valid")


def test_get_ambiguous_prefix(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content)]
    seen: dict[str, bytes] = {}
    for n in itertools.count():  # two configs whose digests share 4 hex digits
        config = config_for(layers, labels={"n": str(n)})
        prefix = sha(config)[7:11]
        if prefix in seen:
            break
        seen[prefix] = config
    a = store.create(seen[prefix], layers)
    b = store.create(config, layers)
    with pytest.raises(AmbiguousImage, match=prefix):
        store.get(prefix)
    assert isinstance(AmbiguousImage("x"), InvalidArgument)
    assert store.get(a.id[7:30]).id == a.id
    assert store.get(b.id[7:30]).id == b.id


def test_tag_wins_over_id_prefix(store: ImageStore) -> None:
    a = make(store)
    b = make(store)
    prefix = a.id[7:15]
    store.tag(b, prefix)  # a repository named like a's ID prefix
    assert store.get(prefix).id == b.id
    assert store.get(a.id[7:16]).id == a.id


_component = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4})?", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
_domain = st.sampled_from(["", "docker.io/", "quay.io/", "localhost:5000/", "reg.example:443/"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageStore, Image]:
    """One store and image for the property test (each example cleans up its tag)."""
    root = tmp_path_factory.mktemp("refs")
    store = ImageStore(str(root / "images"), ContentStore(str(root / "content")))
    return store, make(store, nlayers=1)


@settings(max_examples=60, deadline=None)
@given(domain=_domain, path=st.lists(_component, min_size=1, max_size=3), tag=st.none() | _tag)
def test_reference_forms_resolve(
    shared: tuple[ImageStore, Image], domain: str, path: list[str], tag: str | None
) -> None:
    store, image = shared
    name = domain + "/".join(path) + (f":{tag}" if tag is not None else "")
    ref = store.tag(image.id, name)
    assert ref.tag == (tag or "latest")
    # the name as given, fully qualified, and in Docker's short form all resolve
    for form in (name, str(ref), ref.familiar()):
        assert store.get(form).id == image.id
    assert store.inspect(image.id)["RepoTags"] == [ref.familiar()]
    assert store.untag(name) == ref.familiar()
    with pytest.raises(ImageNotFound, match=f"No such image: {ref.familiar()}"):
        store.get(str(ref))


# --- tags ----------------------------------------------------------------------------


def test_tag_moves_and_untag(store: ImageStore) -> None:
    a = make(store, tags=("app:1",))
    b = make(store)
    assert store.inspect(b)["Metadata"]["LastTagTime"] == "0001-01-01T00:00:00Z"
    assert str(store.tag(b.id, "app:1")) == "docker.io/library/app:1"
    assert store.get("app:1").id == b.id
    assert store.get(a.id).tags == []  # a is dangling now, not gone
    assert store.inspect(b.id)["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    assert store.untag("app:1") == "app:1"
    with pytest.raises(ImageNotFound, match="No such image: app:1"):
        store.untag("app:1")
    with pytest.raises(InvalidArgument, match="digest reference"):
        store.tag(a, f"app@{a.manifest_digest}")
    with pytest.raises(InvalidArgument, match="ambiguous tag"):
        store.tag(a, "sha256:abc")
    with pytest.raises(ImageNotFound):
        store.tag("missing", "app:2")


# --- remove --------------------------------------------------------------------------


def _ids(records: list[dict[str, str]]) -> list[str]:
    return [f"{k}:{v}" for item in records for k, v in item.items()]


def test_remove_tag_of_image_with_other_tags_only_untags(store: ImageStore) -> None:
    image = make(store, tags=("a:1", "b:2"))
    assert store.remove("a:1") == [{"Untagged": "a:1"}]
    assert store.get(image.id).tags == ["docker.io/library/b:2"]


def test_remove_last_tag_deletes(store: ImageStore) -> None:
    image = make(store, tags=("a",))
    assert store.remove("a") == [{"Untagged": "a:latest"}, {"Deleted": image.id}]
    with pytest.raises(ImageNotFound):
        store.get(image.id)


@pytest.mark.parametrize("form", ["id", "hex", "short"])
def test_remove_by_id_with_single_reference(store: ImageStore, form: str) -> None:
    image = make(store, tags=("a:1",))
    store.create(image.config, _layers_of(image), repo_digest=f"a@{image.manifest_digest}")
    name = {"id": image.id, "hex": image.id[7:], "short": image.id[7:19]}[form]
    assert store.remove(name) == [
        {"Untagged": "a:1"},
        {"Untagged": f"a@{image.manifest_digest}"},
        {"Deleted": image.id},
    ]


@pytest.mark.parametrize("tags", [("a:1", "b:1"), ("a:1", "a:2")])
def test_remove_by_id_with_several_tags_needs_force(store: ImageStore, tags: tuple[str]) -> None:
    image = make(store, tags=tags)
    with pytest.raises(ImageConflict) as info:
        store.remove(image.id)
    assert str(info.value) == (
        f"conflict: unable to delete {image.short_id} (must be forced) - image is referenced"
        " in multiple repositories"
    )
    assert not info.value.hard
    assert isinstance(info.value, Conflict)  # HTTP 409 at the API
    assert len(store.get(image.id).tags) == 2
    assert store.remove(image.id, force=True) == [
        *({"Untagged": t} for t in tags),
        {"Deleted": image.id},
    ]


def test_remove_tag_used_by_container_needs_force(store: ImageStore) -> None:
    image = make(store, tags=("busybox",))
    with pytest.raises(ImageConflict) as info:
        store.remove("busybox", in_use=users((CONTAINER, False)))
    assert str(info.value) == (
        'conflict: unable to remove repository reference "busybox" (must force) - container'
        f" {CONTAINER[:12]} is using its referenced image {image.short_id}"
    )
    assert store.get("busybox").id == image.id
    assert store.remove("busybox", force=True, in_use=users((CONTAINER, False))) == [
        {"Untagged": "busybox:latest"},
        {"Deleted": image.id},
    ]


def test_remove_tag_of_running_container_image_force_only_untags(store: ImageStore) -> None:
    image = make(store, tags=("busybox",))
    running = users((CONTAINER, True))
    assert store.remove("busybox", force=True, in_use=running) == [{"Untagged": "busybox:latest"}]
    assert store.get(image.id).tags == []
    with pytest.raises(ImageConflict) as info:
        store.remove(image.id, force=True, in_use=running)
    assert str(info.value) == (
        f"conflict: unable to delete {image.short_id} (cannot be forced) - image is being used"
        f" by running container {CONTAINER[:12]}"
    )
    assert info.value.hard


def test_remove_by_id_used_by_stopped_container(store: ImageStore) -> None:
    image = make(store, tags=("a",))
    stopped = users((CONTAINER, False))
    with pytest.raises(ImageConflict) as info:
        store.remove(image.id, in_use=stopped)
    assert str(info.value) == (
        f"conflict: unable to delete {image.short_id} (must be forced) - image is being used"
        f" by stopped container {CONTAINER[:12]}"
    )
    assert store.get(image.id).tags == ["docker.io/library/a:latest"]  # nothing untagged
    assert _ids(store.remove(image.id, force=True, in_use=stopped)) == [
        "Untagged:a:latest",
        f"Deleted:{image.id}",
    ]


def test_remove_last_tag_of_repository_drops_its_digests(store: ImageStore) -> None:
    image = make(store, tags=("busybox", "mine:1"))
    store.create(image.config, _layers_of(image), repo_digest=f"busybox@{image.manifest_digest}")
    assert store.remove("busybox") == [
        {"Untagged": "busybox:latest"},
        {"Untagged": f"busybox@{image.manifest_digest}"},
    ]
    assert store.get(image.id).repo_digests == []
    assert store.remove("mine:1") == [{"Untagged": "mine:1"}, {"Deleted": image.id}]


def test_remove_by_digest_reference(store: ImageStore) -> None:
    image = make(store, tags=("busybox",))
    store.create(image.config, _layers_of(image), repo_digest=f"busybox@{image.manifest_digest}")
    ref = f"busybox@{image.manifest_digest}"
    assert store.remove(ref) == [{"Untagged": ref}]
    assert store.get("busybox").repo_digests == []


def test_remove_untagged_and_missing(store: ImageStore) -> None:
    image = make(store)
    assert store.remove(image.id[7:15]) == [{"Deleted": image.id}]
    with pytest.raises(ImageNotFound, match="No such image: busybox:latest"):
        store.remove("busybox")


# --- list ----------------------------------------------------------------------------


def test_list_sizes_and_shared_sizes(store: ImageStore, content: ContentStore) -> None:
    base = add_layer(content, 1000)
    a = make(
        store, layers=[base, add_layer(content, 10)], tags=("a",), created="2024-01-01T00:00:00Z"
    )
    b = make(
        store, layers=[base, add_layer(content, 20)], tags=("b",), created="2024-02-01T00:00:00Z"
    )
    # the same blob on top of another base is another layer (another chainID)
    c = make(store, layers=[add_layer(content, 5), base], created="2024-03-01T00:00:00.5Z")
    listed = store.list()
    assert [i["Id"] for i in listed] == [c.id, b.id, a.id]  # newest first
    by_id = {i["Id"]: i for i in listed}
    assert (by_id[a.id]["Size"], by_id[a.id]["SharedSize"]) == (1010, 1000)
    assert (by_id[b.id]["Size"], by_id[b.id]["SharedSize"]) == (1020, 1000)
    assert (by_id[c.id]["Size"], by_id[c.id]["SharedSize"]) == (1005, 0)
    assert by_id[c.id]["Created"] == 1709251200
    assert by_id[c.id]["RepoTags"] == [] == by_id[c.id]["RepoDigests"]
    assert by_id[a.id] == {
        "Id": a.id,
        "ParentId": "",
        "RepoTags": ["a:latest"],
        "RepoDigests": [],
        "Created": 1704067200,
        "Size": 1010,
        "SharedSize": 1000,
        "Labels": {},
        "Containers": -1,
    }


def test_list_filters(store: ImageStore) -> None:
    old = make(store, tags=("busybox:1", "quay.io/x/tool:2"), created="2023-01-01T00:00:00Z")
    mid = make(
        store, tags=("app/web:1",), labels={"tier": "web", "v": "1"}, created="2024-01-01T00:00:00Z"
    )
    new = make(store, labels={"tier": "db"}, created="2025-01-01T00:00:00Z")

    def ids(**filters: object) -> set[str]:
        return {i["Id"] for i in store.list(filters=filters)}

    assert ids() == {old.id, mid.id, new.id}
    assert ids(dangling=["true"]) == {new.id}
    assert ids(dangling={"false": True}) == {old.id, mid.id}
    assert ids(dangling=True) == {new.id}
    assert ids(label=["tier"]) == {mid.id, new.id}
    assert ids(label=["tier=web"]) == {mid.id}
    assert ids(label=["tier=web", "v=2"]) == set()
    assert ids(reference=["busybox"]) == {old.id}
    assert ids(reference=["busy*:1"]) == {old.id}
    assert ids(reference=["*"]) == {old.id}  # app/web has a "/"
    assert ids(reference=["*/*"]) == {mid.id}
    assert ids(reference=["quay.io/x/*"]) == {old.id}
    assert ids(reference=["nope", "app/*"]) == {mid.id}
    assert ids(before=["app/web:1"]) == {old.id}
    assert ids(since=[old.id]) == {mid.id, new.id}
    assert ids(since=["busybox:1"], before=[new.id]) == {mid.id}
    with pytest.raises(InvalidArgument, match="invalid filter 'until'"):
        store.list(filters={"until": ["1h"]})
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        store.list(filters={"dangling": ["maybe"]})
    with pytest.raises(InvalidArgument, match="invalid reference pattern"):
        store.list(filters={"reference": ["[a"]})
    with pytest.raises(ImageNotFound):
        store.list(filters={"before": ["missing"]})


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("busybox", "busybox", True),
        ("busy*", "busybox", True),
        ("*", "a/b", False),
        ("*/*", "a/b", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "dx", True),
        ("[^a-c]x", "ax", False),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a.b", "axb", False),
    ],
)
def test_path_match(pattern: str, name: str, matches: bool) -> None:
    assert path_match(pattern, name) is matches


@pytest.mark.parametrize("pattern", ["[", "[]", "a\\", "[z-a]", "[a-"])
def test_path_match_bad_pattern(pattern: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference pattern"):
        path_match(pattern, "x")


# --- inspect and history -------------------------------------------------------------


def test_inspect_shape(store: ImageStore) -> None:
    image = make(
        store,
        nlayers=1,
        tags=("quay.io/x/y:1", "busybox"),
        created="2024-05-06T07:08:09.123456789Z",
        comment="made by hand",
        author="me",
        variant="v8",
    )
    doc = store.inspect("busybox")
    assert doc == {
        "Id": image.id,
        "RepoTags": ["busybox:latest", "quay.io/x/y:1"],
        "RepoDigests": [],
        "Parent": "",
        "Comment": "made by hand",
        "Created": "2024-05-06T07:08:09.123456789Z",
        "DockerVersion": "",
        "Author": "me",
        "Config": {"Env": ["PATH=/bin"], "Labels": {}, "Cmd": ["sh"]},
        "Architecture": "amd64",
        "Variant": "v8",
        "Os": "linux",
        "Size": 100,
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"LastTagTime": format_time(image.last_tag_time)},
    }
    assert store.inspect(image) == doc  # a pure function of the stored row


def test_history(store: ImageStore, content: ContentStore) -> None:
    layers = [add_layer(content, 10), add_layer(content, 20)]
    history = [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs /"},
        {"created": "2024-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2024-01-03T00:00:00Z", "created_by": "RUN x", "comment": "c"},
        {"created": "2024-01-04T00:00:00Z", "created_by": "CMD [sh]", "empty_layer": True},
    ]
    image = store.create(config_for(layers, history=history), layers, tags=["h:1"])
    items = store.history(image)
    assert items == [
        {
            "Id": image.id,
            "Created": 1704326400,
            "CreatedBy": "CMD [sh]",
            "Tags": ["h:1"],
            "Size": 0,
            "Comment": "",
        },
        {
            "Id": "<missing>",
            "Created": 1704240000,
            "CreatedBy": "RUN x",
            "Tags": None,
            "Size": 20,
            "Comment": "c",
        },
        {
            "Id": "<missing>",
            "Created": 1704153600,
            "CreatedBy": "ENV A=1",
            "Tags": None,
            "Size": 0,
            "Comment": "",
        },
        {
            "Id": "<missing>",
            "Created": 1704067200,
            "CreatedBy": "ADD rootfs /",
            "Tags": None,
            "Size": 10,
            "Comment": "",
        },
    ]
    assert store.history(make(store, nlayers=0, history=[])) == []


def test_times() -> None:
    assert parse_time("2024-01-01T00:00:00.999999999Z") == pytest.approx(1704067200.999999)
    assert parse_time("2024-01-01T01:00:00+01:00") == 1704067200
    assert parse_time(None) == parse_time("garbage") == 0.0
    assert format_time(1704067200.5) == "2024-01-01T00:00:00.5Z"
    assert format_time(1704067200) == "2024-01-01T00:00:00Z"
    assert format_time(None) == "0001-01-01T00:00:00Z"


# --- prune, gc, check ----------------------------------------------------------------


def test_prune_dangling(store: ImageStore, content: ContentStore) -> None:
    base = add_layer(content, 1000)
    tagged = make(store, layers=[base], tags=("keep",))
    own = add_layer(content, 30)
    dangling = make(store, layers=[base, own])
    used = make(store, nlayers=1)
    in_use = lambda image_id: [(CONTAINER, False)] if image_id == used.id else []  # noqa: E731
    manifest_size = content.info(dangling.manifest_digest).size
    result = store.prune(in_use=in_use)
    assert result["ImagesDeleted"] == [{"Deleted": dangling.id}]
    # its own layer, config and manifest; not the base layer the tagged image shares
    assert result["SpaceReclaimed"] == 30 + len(dangling.config) + manifest_size
    assert not content.exists(own[0].digest)
    assert not content.exists(dangling.manifest_digest)
    assert content.exists(base[0].digest)
    assert {i.id for i in store.images()} == {tagged.id, used.id}
    assert store.prune(in_use=in_use) == {"ImagesDeleted": [], "SpaceReclaimed": 0}
    everything = store.prune(dangling_only=False, in_use=in_use)
    assert everything["ImagesDeleted"] == [{"Untagged": "keep:latest"}, {"Deleted": tagged.id}]
    assert [i.id for i in store.images()] == [used.id]


def test_prune_untags_repo_digests_of_untagged_image(store: ImageStore) -> None:
    image = make(store)
    ref = f"busybox@{image.manifest_digest}"
    store.create(image.config, _layers_of(image), repo_digest=ref)
    result = store.prune(collect=False)
    assert result["ImagesDeleted"] == [{"Untagged": ref}, {"Deleted": image.id}]
    assert result["SpaceReclaimed"] > 200
    assert store.content.exists(image.manifest_digest)  # collect=False: blobs stay


def test_gc_keeps_images_and_drops_removed(store: ImageStore, content: ContentStore) -> None:
    base = add_layer(content)
    kept = make(store, layers=[base, add_layer(content)], tags=("kept",))
    gone_layer = add_layer(content)
    gone = make(store, layers=[base, gone_layer], tags=("gone",))
    stray = content.write_blob(b"unreferenced")
    assert store.gc_refs(kept.manifest_digest) == [kept.id, *(la.digest for la in kept.layers)]
    assert store.gc_refs(kept.id) == []
    assert store.gc_refs(base[0].digest) == []
    assert store.gc(dry_run=True).removed == [stray]
    store.remove("gone")
    result = store.gc()
    assert sorted(result.removed) == sorted(
        [stray, gone.id, gone.manifest_digest, gone_layer[0].digest]
    )
    for digest in (kept.id, kept.manifest_digest, *(la.digest for la in kept.layers)):
        assert content.exists(digest)
    assert store.check() == []


def test_gc_follows_index_of_repo_digest(store: ImageStore, content: ContentStore) -> None:
    image = make(store, nlayers=1)
    other_layer = add_layer(content)
    other_config = content.write_blob(config_for([other_layer]))
    other = Manifest(
        media_type=mt.OCI_MANIFEST,
        config=Descriptor(
            media_type=mt.OCI_CONFIG,
            digest=Digest(other_config),
            size=content.info(other_config).size,
        ),
        layers=[other_layer[0]],
    ).to_bytes()
    other_digest = content.write_blob(other)
    index = Index(
        media_type=mt.OCI_INDEX,
        manifests=[
            Descriptor(media_type=mt.OCI_MANIFEST, digest=Digest(image.manifest_digest), size=1),
            Descriptor(media_type=mt.OCI_MANIFEST, digest=Digest(other_digest), size=len(other)),
        ],
    ).to_bytes()
    index_digest = content.write_blob(index)
    store.create(image.config, _layers_of(image), repo_digest=f"busybox@{index_digest}")
    assert store.gc_refs(index_digest) == [image.manifest_digest, other_digest]
    assert store.gc().removed == []  # the index keeps the other platform's blobs
    store.untag(f"busybox@{index_digest}")
    assert sorted(store.gc().removed) == sorted(
        [index_digest, other_digest, other_config, other_layer[0].digest]
    )


def test_gc_keeps_leased_blobs(store: ImageStore, content: ContentStore) -> None:
    with content.create_lease("pull-1") as lease:
        layer = content.write_blob(b"half a pull", lease=lease.id)
        assert store.gc().removed == []
    assert store.gc().removed == [layer]


def test_check_finds_problems(store: ImageStore, content: ContentStore) -> None:
    image = make(store, tags=("a",))
    assert store.check() == []
    assert store.check(verify_layers=True) == []
    # a layer blob with its size but other bytes: only a full verify sees it
    path = content.path(image.layers[0].digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\0" * 10)
    assert store.check() == []
    assert store.check(verify_layers=True) == [
        f"image {image.id}: layer 0 blob {image.layers[0].digest} does not match its digest"
    ]
    content.delete(image.layers[1].digest)
    content.delete(image.manifest_digest)
    problems = store.check()
    assert f"image {image.id}: manifest blob {image.manifest_digest} is missing" in problems
    assert f"image {image.id}: layer 1 blob {image.layers[1].digest} is missing" in problems
    assert len(problems) == 2


def test_check_finds_dangling_tag(store: ImageStore) -> None:
    image = make(store, tags=("a",))
    conn = sqlite3.connect(store.db.path)  # foreign keys off: what a broken file looks like
    conn.execute("DELETE FROM images WHERE id = ?", (image.id,))
    conn.commit()
    conn.close()
    assert store.check() == [
        f"docker.io/library/a:latest points at missing image {image.id}",
        f"layers recorded for missing image {image.id}",
    ]


# --- the database --------------------------------------------------------------------


def test_schema_version_and_cascade(store: ImageStore, tmp_path: Path) -> None:
    image = make(store, tags=("a", "b"))
    conn = sqlite3.connect(store.db.path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    store.remove(image.id, force=True)
    assert store.db.read("SELECT COUNT(*) FROM tags") == [(0,)]
    assert store.db.read("SELECT COUNT(*) FROM layers") == [(0,)]
    # a second store object on the same files sees the same data, no re-migration harm
    again = ImageStore(store.root, store.content)
    assert again.images() == []


def test_newer_schema_is_refused(store: ImageStore) -> None:
    make(store)
    conn = sqlite3.connect(store.db.path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer than this portside"):
        ImageStore(store.root, store.content).images()
