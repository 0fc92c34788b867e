"""Pull and push between a registry and a real content store, image store and overlay
snapshotter in temporary directories.

``MemRegistry`` stands in for ``portside.distribution.client.Registry`` (same methods,
blobs and manifests in dicts, knobs to cut, corrupt, slow down or fail a transfer), so
these tests pin the pull/push logic without HTTP.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytest
import zstandard
from mount_helpers import scratch_root

from portside.distribution.errors import (
    BadContent,
    RegistryNotFound,
    RegistryUnavailable,
    UnsupportedContent,
)
from portside.distribution.progress import Throttle, noop
from portside.distribution.pull import SOURCE_LABEL, pull, pull_all_tags
from portside.distribution.pull_layers import (
    MEMORY_BUDGET,
    Layer,
    Puller,
    _Follower,
    _Transfer,
)
from portside.distribution.push import COMPRESSED_LABEL, UNCOMPRESSED_LABEL, push
from portside.errors import InvalidArgument, NotFound
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
from portside.image.store import ImageStore, chain_ids
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor, Manifest, parse_manifest
from portside.oci.platform import Platform, host_platform
from portside.oci.reference import parse_reference

HOST = "127.0.0.1:5000"


# --- a registry in memory ---------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    data: bytes
    media_type: str
    digest: str


class MemRegistry:
    """The ``Registry`` methods pull and push use, over dicts, with knobs."""

    def __init__(self) -> None:
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.lock = threading.Lock()
        self.chunk = 64 << 10
        self.delay = 0.0  #: seconds per chunk sent or received
        self.serve: dict[str, bytes] = {}  #: bytes served for a digest instead of its own
        self.restart: set[str] = set()  #: downloads that start over once, halfway
        self.fail: dict[str, BaseException] = {}  #: raised after the first chunk
        self.fail_upload: dict[str, BaseException] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.uploaded: list[str] = []

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = str(Digest.of(data))
        with self.lock:
            self.blobs.setdefault(repo, {})[digest] = data
        return digest

    def _log(self, *call: str) -> None:
        with self.lock:
            self.calls.append(call)  # type: ignore[arg-type]

    def get_manifest(self, repo: str, ref: str, accept: Any = ()) -> Fetched:
        self._log("get_manifest", repo, ref)
        try:
            data, media_type = self.manifests[(repo, ref)]
        except KeyError:
            raise RegistryNotFound(
                f"manifest for {HOST}/{repo}:{ref} not found: manifest unknown",
                code="MANIFEST_UNKNOWN",
                status=404,
            ) from None
        return Fetched(data, media_type, "")

    def fetch_blob(
        self, repo: str, desc: Descriptor, sink: Any, progress: Callable[[int], None]
    ) -> None:
        digest = str(desc.digest)
        self._log("fetch_blob", repo, digest)
        data = self.serve.get(digest) or self.blobs.get(repo, {}).get(digest)
        if data is None:
            raise RegistryNotFound(f"blob {digest} not found", code="BLOB_UNKNOWN", status=404)
        restart = digest in self.restart
        self.restart.discard(digest)
        pos = sink.offset
        while pos < len(data):
            if self.delay:
                time.sleep(self.delay)
            chunk = data[pos : pos + self.chunk]
            sink.write(chunk)
            pos += len(chunk)
            progress(pos)
            if digest in self.fail:
                raise self.fail[digest]
            if restart and pos >= len(data) // 2:  # the server ignored a Range: 200, again
                restart = False
                sink.truncate()
                pos = 0
        if pos != desc.size:
            raise BadContent(f"blob {digest}: got {pos} bytes, expected {desc.size}")

    def blob_exists(self, repo: str, digest: str) -> int | None:
        self._log("blob_exists", repo, digest)
        data = self.blobs.get(repo, {}).get(digest)
        return None if data is None else len(data)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        self._log("mount_blob", repo, f"{digest} {from_repo}")
        data = self.blobs.get(from_repo, {}).get(digest)
        if data is None:
            return False
        self.put_blob(repo, data)
        return True

    def upload_blob(
        self,
        repo: str,
        desc: Descriptor,
        open_: Callable[[], BinaryIO],
        progress: Callable[[int], None],
        *,
        chunk_size: int | None = None,
    ) -> None:
        digest = str(desc.digest)
        self._log("upload_blob", repo, digest)
        parts = []
        with open_() as f:
            while chunk := f.read(self.chunk):
                if self.delay:
                    time.sleep(self.delay)
                parts.append(chunk)
                if digest in self.fail_upload:
                    raise self.fail_upload[digest]
        data = b"".join(parts)
        if str(Digest.of(data)) != digest or len(data) != desc.size:
            raise BadContent(f"upload of {digest}: digest or size mismatch")
        self.put_blob(repo, data)
        with self.lock:
            self.uploaded.append(digest)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = str(Digest.of(data))
        with self.lock:
            self.manifests[(repo, ref)] = (data, media_type)
            self.manifests[(repo, digest)] = (data, media_type)
        return digest

    def tags(self, repo: str) -> list[str]:
        return sorted(r for (rp, r) in self.manifests if rp == repo and ":" not in r)


# --- images ---------------------------------------------------------------------------


def tar_layer(files: dict[str, bytes]) -> bytes:
    """A layer tar: ``name: content``; a name ending in ``/`` is a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(tar: bytes, how: str) -> tuple[bytes, str]:
    if how == "gzip":
        return gzip.compress(tar, mtime=0), mt.OCI_LAYER_GZIP
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(tar), mt.OCI_LAYER_ZSTD
    return tar, mt.OCI_LAYER


BIG = os.urandom(1_500_000)
LAYERS = [
    (
        tar_layer({"etc/": b"", "etc/hello": b"hello\n", "bin/": b"", "bin/tool": b"x" * 5000}),
        "gzip",
    ),
    (tar_layer({"data/": b"", "data/big": BIG, "etc/.wh.hello": b""}), "zstd"),
    (tar_layer({"top": b"top layer\n"}), "none"),
]


def image_config(diff_ids: list[str], platform: Platform | None = None) -> bytes:
    p = platform or host_platform()
    doc: dict[str, Any] = {
        "architecture": p.architecture,
        "os": p.os,
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if p.variant:
        doc["variant"] = p.variant
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Remote:
    manifest: bytes
    digest: str
    config: bytes
    blobs: list[str]


def publish(
    reg: MemRegistry,
    repo: str,
    tag: str | None,
    layers: list[tuple[bytes, str]] = LAYERS,
    *,
    platform: Platform | None = None,
    diff_ids: list[str] | None = None,
    docker: bool = False,
) -> Remote:
    """An OCI (or Docker schema 2) image in ``reg`` (tagged ``tag`` unless None)."""
    to_docker = {
        mt.OCI_LAYER: mt.DOCKER_LAYER,
        mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP,
        mt.OCI_LAYER_ZSTD: mt.DOCKER_LAYER_ZSTD,
    }
    descs = []
    for tar, how in layers:
        blob, media_type = compress(tar, how)
        reg.put_blob(repo, blob)
        descs.append(Descriptor.of(to_docker[media_type] if docker else media_type, blob))
    ids = diff_ids or [str(Digest.of(tar)) for tar, _ in layers]
    config = image_config(ids, platform)
    reg.put_blob(repo, config)
    manifest_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    manifest = Manifest(
        schema_version=2,
        media_type=manifest_type,
        config=Descriptor.of(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config),
        layers=descs,
    ).to_bytes()
    digest = str(Digest.of(manifest))
    reg.manifests[(repo, digest)] = (manifest, manifest_type)
    if tag is not None:
        reg.manifests[(repo, tag)] = (manifest, manifest_type)
    return Remote(manifest, digest, config, [str(d.digest) for d in descs])


class Env:
    def __init__(self, root: str) -> None:
        self.root = root
        self.content = ContentStore(os.path.join(root, "content"))
        self.images = ImageStore(os.path.join(root, "images"), self.content)
        self._sn: SnapshotterBase | None = None

    @property
    def sn(self) -> SnapshotterBase:
        if self._sn is None:
            self._sn = open_snapshotter(os.path.join(self.root, "snapshots"), kind="overlay")
        return self._sn

    def pull(self, reg: MemRegistry, ref: str, **kw: Any) -> Any:
        return pull(
            parse_reference(ref),
            registry=reg,  # type: ignore[arg-type]
            content=self.content,
            images=self.images,
            snapshotter=self.sn,
            **kw,
        )

    def push(self, reg: MemRegistry, ref: str, **kw: Any) -> Any:
        return push(
            parse_reference(ref),
            registry=reg,  # type: ignore[arg-type]
            content=self.content,
            images=self.images,
            **kw,
        )

    def clean(self) -> None:
        """Nothing half-done is left: no ingest, no lease, no active snapshot."""
        assert self.content.ingests() == []
        assert self.content.leases() == []
        if self._sn is not None:
            assert [i.name for i in self._sn.walk(kind=ACTIVE)] == []
        assert self.images.check(verify_layers=True) == []
        assert self.content.check() == []

    def close(self) -> None:
        if self._sn is not None:
            self._sn.close()


@pytest.fixture
def env() -> Iterator[Env]:
    with scratch_root("ps-dist-") as root:
        e = Env(root)
        try:
            yield e
        finally:
            e.close()


@pytest.fixture
def env2() -> Iterator[Env]:
    with scratch_root("ps-dist2-") as root:
        e = Env(root)
        try:
            yield e
        finally:
            e.close()


def statuses(msgs: list[dict[str, Any]], id: str | None = None) -> list[str]:
    return [m["status"] for m in msgs if "status" in m and (id is None or m.get("id") == id)]


def read_rootfs(env: Env, top: str, paths: list[str]) -> dict[str, bytes | None]:
    """What the files ``paths`` hold in the snapshot ``top`` (None: missing)."""
    target = os.path.join(env.root, f"view-{os.urandom(3).hex()}")
    os.mkdir(target)
    key = f"view-{os.urandom(3).hex()}"
    mount_all(env.sn.view(key, parent=top), target)
    try:
        out: dict[str, bytes | None] = {}
        for p in paths:
            try:
                with open(os.path.join(target, p), "rb") as f:
                    out[p] = f.read()
            except FileNotFoundError:
                out[p] = None
        return out
    finally:
        unmount_all(target)
        env.sn.remove(key)


# --- the follower -----------------------------------------------------------------------


def test_follower_reads_a_growing_ingest_without_spinning(tmp_path: Any) -> None:
    """The applier's reads wait on the download's writes: one wake-up per chunk at
    most, and next to no CPU while the bytes trickle in."""
    content = ContentStore(str(tmp_path / "content"))
    reg = MemRegistry()
    data = os.urandom(20 * reg.chunk)
    reg.put_blob("app", data)
    reg.delay = 0.02  # 20 chunks: ~0.4 s
    lease = content.create_lease("test-follower")
    puller = Puller(
        parse_reference(f"{HOST}/app"),
        registry=reg,  # type: ignore[arg-type]
        content=content,
        snapshotter=None,  # type: ignore[arg-type]
        lease=lease.id,
        out=Throttle(noop),
    )
    desc = Descriptor.of(mt.OCI_LAYER, data)
    layer = Layer(desc, str(desc.digest), str(desc.digest))
    layer.transfer = _Transfer(desc)
    thread = threading.Thread(target=puller._download, args=(layer.transfer,))
    start, cpu = time.monotonic(), time.thread_time()
    thread.start()
    try:
        with _Follower(puller, layer) as follower:
            got = b"".join(iter(lambda: follower.read(1 << 20), b""))
            follower.verify()
    finally:
        thread.join()
    wall, cpu = time.monotonic() - start, time.thread_time() - cpu
    assert got == data and puller.error is None
    assert wall > 0.3
    assert follower.waits <= 20 + 2
    assert cpu < 0.1 * wall
    assert content.exists(str(desc.digest)) and content.ingests() == []
    lease.delete()


# --- pull ---------------------------------------------------------------------------------


@pytest.mark.root
def test_pull_unpacks_records_and_labels(env: Env) -> None:
    reg = MemRegistry()
    remote = publish(reg, "app", "v1")
    msgs: list[dict[str, Any]] = []
    result = env.pull(reg, f"{HOST}/app:v1", progress=msgs.append)

    image = result.image
    assert result.fresh and result.digest == remote.digest
    assert image.id == str(Digest.of(remote.config))
    assert image.manifest_digest == remote.digest
    assert image.tags == [f"{HOST}/app:v1"]
    assert image.repo_digests == [f"{HOST}/app@{remote.digest}"]
    assert env.content.read(remote.digest) == remote.manifest
    chains = chain_ids(image.diff_ids)
    assert [(i.name, i.kind) for i in env.sn.walk()] == [(c, COMMITTED) for c in chains]
    files = read_rootfs(env, chains[-1], ["etc/hello", "bin/tool", "data/big", "top"])
    assert files == {
        "etc/hello": None,
        "bin/tool": b"x" * 5000,
        "data/big": BIG,
        "top": b"top layer\n",
    }
    for digest in [*remote.blobs, image.id]:
        assert env.content.info(digest).labels[SOURCE_LABEL + HOST] == "app"

    assert msgs[0] == {"status": "Pulling from app", "id": "v1"}
    for digest in remote.blobs:
        seen = statuses(msgs, digest[7:19])
        assert seen[0] == "Pulling fs layer"
        assert seen[-3:] == ["Download complete", "Extracting", "Pull complete"] or seen[-2:] == [
            "Extracting",
            "Pull complete",
        ]
        assert {"Downloading", "Verifying Checksum", "Download complete"} <= set(seen)
    assert statuses(msgs)[-2:] == [
        f"Digest: {remote.digest}",
        f"Status: Downloaded newer image for {HOST}/app:v1",
    ]
    env.clean()

    # again: up to date, nothing fetched but the manifest, nothing said of the layers
    reg.calls.clear()
    msgs.clear()
    again = env.pull(reg, f"{HOST}/app:v1", progress=msgs.append)
    assert not again.fresh and again.image.id == image.id
    assert [c[0] for c in reg.calls] == ["get_manifest"]
    assert statuses(msgs) == [
        "Pulling from app",
        f"Digest: {remote.digest}",
        f"Status: Image is up to date for {HOST}/app:v1",
    ]


@pytest.mark.root
def test_a_missing_tag_fails_before_any_progress(env: Env) -> None:
    reg = MemRegistry()
    publish(reg, "app", "v1")
    msgs: list[dict[str, Any]] = []
    with pytest.raises(RegistryNotFound, match="manifest unknown"):
        env.pull(reg, f"{HOST}/app:nope", progress=msgs.append)
    assert msgs == []
    env.clean()


@pytest.mark.root
def test_pull_index_for_the_platform_and_by_digest(env: Env) -> None:
    reg = MemRegistry()
    host = host_platform()
    other = Platform(
        os="linux", architecture="s390x" if host.architecture != "s390x" else "ppc64le"
    )
    mine = publish(reg, "multi", None, LAYERS[:1], platform=host)
    theirs = publish(reg, "multi", None, LAYERS[2:], platform=other)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": r.digest,
                    "size": len(r.manifest),
                    "platform": {"os": p.os, "architecture": p.architecture},
                }
                for r, p in [(theirs, other), (mine, host)]
            ],
        }
    ).encode()
    index_digest = str(Digest.of(index))
    reg.manifests[("multi", "latest")] = (index, mt.OCI_INDEX)

    result = env.pull(reg, f"{HOST}/multi")
    assert result.digest == index_digest
    assert result.image.manifest_digest == mine.digest
    assert result.image.repo_digests == [f"{HOST}/multi@{index_digest}"]
    assert env.content.read(index_digest) == index  # kept: the RepoDigest names it

    other_result = env.pull(reg, f"{HOST}/multi", platform=other)
    assert other_result.image.id == str(Digest.of(theirs.config))

    with pytest.raises(UnsupportedContent) as info:
        env.pull(reg, f"{HOST}/multi", platform=Platform(os="windows", architecture="amd64"))
    assert "no matching manifest for windows/amd64" in str(info.value)
    assert str(other) in str(info.value) and str(host).split("/")[1] in str(info.value)

    by_digest = env.pull(reg, f"{HOST}/multi@{mine.digest}")
    assert by_digest.image.id == result.image.id and by_digest.digest == mine.digest
    assert f"{HOST}/multi@{mine.digest}" in env.images.get(result.image.id).repo_digests
    env.clean()


def _tamper(reg: MemRegistry, remote: Remote, how: str) -> str:
    """Make ``reg`` serve something wrong; returns the reference to pull."""
    if how == "manifest":  # by digest: other bytes than the digest asked for
        reg.manifests[("app", remote.digest)] = (remote.manifest + b" ", mt.OCI_MANIFEST)
        return f"{HOST}/app@{remote.digest}"
    if how == "config":
        reg.serve[str(Digest.of(remote.config))] = remote.config.replace(b"sh", b"xx")
    elif how == "blob":  # the big layer, one bit flipped near the end
        blob = bytearray(reg.blobs["app"][remote.blobs[1]])
        blob[-100] ^= 1
        reg.serve[remote.blobs[1]] = bytes(blob)
    elif how == "longer":
        reg.serve[remote.blobs[1]] = reg.blobs["app"][remote.blobs[1]] + b"\0" * 10
    elif how == "schema1":
        reg.manifests[("app", "v1")] = (
            json.dumps({"schemaVersion": 1, "name": "app", "tag": "v1", "fsLayers": []}).encode(),
            mt.DOCKER_SCHEMA1_SIGNED_MANIFEST,
        )
    return f"{HOST}/app:v1"


@pytest.mark.root
@pytest.mark.parametrize(
    ("how", "error", "words"),
    [
        ("manifest", BadContent, "digest mismatch"),
        ("config", BadContent, "digest mismatch"),
        ("blob", BadContent, "verification failed"),
        ("longer", BadContent, "verification failed"),
        ("schema1", UnsupportedContent, "schema 1"),
    ],
)
def test_pull_refuses_content_that_does_not_check_out(
    env: Env, how: str, error: type[Exception], words: str
) -> None:
    reg = MemRegistry()
    remote = publish(reg, "app", "v1")
    ref = _tamper(reg, remote, how)
    with pytest.raises(error, match=words):
        env.pull(reg, ref)
    assert env.images.images() == []
    assert remote.blobs[1] not in {b.digest for b in env.content.list()}
    assert env.sn.walk(kind=ACTIVE) == []
    if how == "blob":  # the layers below it were fine, and may stay; never the bad one
        bad_chain = chain_ids([str(Digest.of(t)) for t, _ in LAYERS])[1]
        assert bad_chain not in {i.name for i in env.sn.walk()}
    env.clean()


@pytest.mark.root
def test_pull_refuses_a_layer_whose_diff_id_is_wrong(env: Env) -> None:
    reg = MemRegistry()
    ids = [str(Digest.of(t)) for t, _ in LAYERS]
    ids[1] = str(Digest.of(b"another layer"))
    publish(reg, "app", "v1", diff_ids=ids)
    with pytest.raises(BadContent, match="does not match"):
        env.pull(reg, f"{HOST}/app:v1")
    assert env.images.images() == []
    committed = {i.name for i in env.sn.walk()}
    assert chain_ids(ids)[1] not in committed and chain_ids(ids)[0] in committed
    env.clean()


@pytest.mark.root
def test_a_hostile_layer_stops_the_pull_while_it_downloads(env: Env) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        evil = tarfile.TarInfo("../evil")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
        rest = tarfile.TarInfo("rest")
        rest.size = 3_000_000
        tar.addfile(rest, io.BytesIO(os.urandom(rest.size)))
    reg = MemRegistry()
    reg.delay = 0.01  # ~46 chunks, ~0.5 s
    remote = publish(reg, "app", "v1", [(buf.getvalue(), "none")])
    start = time.monotonic()
    with pytest.raises(BadContent, match=r"\.\./evil"):
        env.pull(reg, f"{HOST}/app:v1")
    assert time.monotonic() - start < 0.3
    assert env.images.images() == [] and env.sn.walk() == []
    assert not env.content.exists(remote.blobs[0])
    assert not os.path.exists(os.path.join(env.root, "evil"))
    env.clean()


@pytest.mark.root
def test_pull_docker_schema2(env: Env) -> None:
    reg = MemRegistry()
    remote = publish(reg, "app", "v1", LAYERS[:2], docker=True)
    result = env.pull(reg, f"{HOST}/app:v1")
    assert result.image.media_type == mt.DOCKER_MANIFEST
    assert result.image.manifest_digest == remote.digest
    assert [la.media_type for la in result.image.layers] == [
        mt.DOCKER_LAYER_GZIP,
        mt.DOCKER_LAYER_ZSTD,
    ]
    env.clean()


@pytest.mark.root
def test_pull_starts_a_layer_over_when_its_download_does(env: Env) -> None:
    reg = MemRegistry()
    reg.delay = 0.002
    remote = publish(reg, "app", "v1")
    reg.restart = {remote.blobs[1]}
    result = env.pull(reg, f"{HOST}/app:v1")
    assert not reg.restart  # it did start over
    files = read_rootfs(env, result.image.layers[-1].chain_id, ["data/big"])
    assert files["data/big"] == BIG
    env.clean()


@pytest.mark.root
def test_first_failure_stops_the_pull_promptly(env: Env) -> None:
    reg = MemRegistry()
    big = [(tar_layer({f"f{i}": os.urandom(3_000_000)}), "none") for i in range(3)]
    remote = publish(reg, "app", "v1", big)
    reg.delay = 0.01  # each layer: ~46 chunks, ~0.5 s
    reg.fail[remote.blobs[2]] = RegistryUnavailable("connection reset by peer (registry test)")
    start = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="connection reset"):
        env.pull(reg, f"{HOST}/app:v1")
    assert time.monotonic() - start < 0.3
    assert not [t for t in threading.enumerate() if t.name.startswith("pull")]
    assert env.images.images() == [] and env.sn.walk() == []
    assert not set(remote.blobs) & {b.digest for b in env.content.list()}
    env.clean()


@pytest.mark.root
def test_pull_fetches_a_missing_blob_of_an_unpacked_layer(env: Env) -> None:
    reg = MemRegistry()
    remote = publish(reg, "app", "v1")
    image = env.pull(reg, f"{HOST}/app:v1").image
    env.images.remove(image.id, force=True)
    env.images.gc()
    assert not env.content.exists(remote.blobs[0])
    msgs: list[dict[str, Any]] = []
    again = env.pull(reg, f"{HOST}/app:v1", progress=msgs.append)
    assert again.image.id == image.id and again.fresh
    first = remote.blobs[0][7:19]
    assert "Download complete" in statuses(msgs, first) and "Extracting" not in statuses(
        msgs, first
    )
    assert statuses(msgs, first)[-1] == "Pull complete"
    env.clean()


@pytest.mark.root
def test_pull_all_tags(env: Env) -> None:
    reg = MemRegistry()
    a = publish(reg, "app", "a", LAYERS[:1])
    b = publish(reg, "app", "b", LAYERS[:2])
    results = pull_all_tags(
        parse_reference(f"{HOST}/app"),
        registry=reg,  # type: ignore[arg-type]
        content=env.content,
        images=env.images,
        snapshotter=env.sn,
    )
    assert [r.digest for r in results] == [a.digest, b.digest]
    assert sorted(t for i in env.images.images() for t in i.tags) == [
        f"{HOST}/app:a",
        f"{HOST}/app:b",
    ]
    with pytest.raises(InvalidArgument, match="all-tags"):
        pull_all_tags(
            parse_reference(f"{HOST}/app:a"),
            registry=reg,  # type: ignore[arg-type]
            content=env.content,
            images=env.images,
            snapshotter=env.sn,
        )


# --- push ---------------------------------------------------------------------------------


def local_image(env: Env, tag: str, layers: list[tuple[bytes, str]] = LAYERS) -> Any:
    descs = []
    for tar, how in layers:
        blob, media_type = compress(tar, how)
        env.content.write_blob(blob)
        descs.append((Descriptor.of(media_type, blob), str(Digest.of(tar))))
    config = image_config([d for _, d in descs])
    return env.images.create(config, descs, tags=[tag])


def test_push_then_pull_back_gives_the_same_digests(env: Env, env2: Env) -> None:
    image = local_image(env, f"{HOST}/app:v1")
    reg = MemRegistry()
    msgs: list[dict[str, Any]] = []
    pushed = env.push(reg, f"{HOST}/app:v1", progress=msgs.append)
    manifest = env.content.read(image.manifest_digest)
    # the layer "none" is stored uncompressed: compressed for the push (see below)
    assert len(pushed) == 1 and pushed[0].tag == "v1"
    sent = reg.manifests[("app", "v1")][0]
    assert pushed[0].digest == str(Digest.of(sent)) and pushed[0].size == len(sent)
    assert msgs[0] == {"status": f"The push refers to repository [{HOST}/app]"}
    ids = [d[7:19] for d in image.diff_ids]
    assert [m["id"] for m in msgs if m.get("status") == "Preparing"] == ids[::-1]
    for pid in ids:
        assert statuses(msgs, pid)[-1] == "Pushed"
    assert msgs[-2] == {"status": f"v1: digest: {pushed[0].digest} size: {len(sent)}"}
    assert msgs[-1] == {
        "progressDetail": {},
        "aux": {"Tag": "v1", "Digest": pushed[0].digest, "Size": len(sent)},
    }
    assert f"{HOST}/app@{pushed[0].digest}" in env.images.get(image.id).repo_digests
    assert sent != manifest
    env.clean()

    # a second push: everything is there
    msgs.clear()
    reg.uploaded.clear()
    again = env.push(reg, f"{HOST}/app:v1", progress=msgs.append)
    assert again == pushed and reg.uploaded == []
    assert {statuses(msgs, pid)[-1] for pid in ids} == {"Layer already exists"}

    # another repository of the same registry: mounted from the first
    msgs.clear()
    env.images.tag(image.id, f"{HOST}/other:v1")
    env.push(reg, f"{HOST}/other:v1", progress=msgs.append)
    assert reg.uploaded == []
    assert {statuses(msgs, pid)[-1] for pid in ids} == {"Mounted from app"}

    if os.geteuid() == 0:  # pulled back elsewhere: the same image, the same manifest
        back = env2.pull(reg, f"{HOST}/other:v1").image
        assert back.id == image.id
        assert back.manifest_digest == pushed[0].digest
        env2.clean()


def test_compressed_layers_are_pushed_byte_for_byte(env: Env) -> None:
    layers = [(t, how) for t, how in LAYERS if how != "none"]
    image = local_image(env, f"{HOST}/app:v1", layers)
    reg = MemRegistry()
    pushed = env.push(reg, f"{HOST}/app:v1")
    assert pushed[0].digest == image.manifest_digest
    assert reg.manifests[("app", "v1")][0] == env.content.read(image.manifest_digest)
    assert sorted(reg.blobs["app"]) == sorted([image.id, *(la.digest for la in image.layers)])
    env.clean()


def test_uncompressed_layers_are_compressed_once(env: Env) -> None:
    plain = [(t, "none") for t, _ in LAYERS]
    image = local_image(env, f"{HOST}/app:v1", plain)
    reg = MemRegistry()
    first = env.push(reg, f"{HOST}/app:v1")
    sent = parse_manifest(reg.manifests[("app", "v1")][0])
    assert isinstance(sent, Manifest)
    assert [d.media_type for d in sent.layers] == [mt.OCI_LAYER_GZIP] * 3
    for layer, desc in zip(image.layers, sent.layers, strict=True):
        made = str(desc.digest)
        assert env.content.info(made).labels[UNCOMPRESSED_LABEL] == layer.diff_id
        assert env.content.info(layer.digest).labels[COMPRESSED_LABEL + "gzip"] == made
        assert gzip.decompress(reg.blobs["app"][made]) == env.content.read(layer.digest)
    blobs = {b.digest for b in env.content.list()}

    # another registry: the same compressed blobs, so the same manifest; none made anew
    other = MemRegistry()
    second = env.push(other, f"{HOST}/app:v1")
    assert second == first
    assert {b.digest for b in env.content.list()} == blobs
    env.clean()
    # the pushed manifest is kept (the RepoDigest names it), with its layers, through gc
    env.images.gc()
    assert env.content.exists(first[0].digest)
    assert all(env.content.exists(str(d.digest)) for d in sent.layers)


def test_push_all_tags_and_errors(env: Env) -> None:
    image = local_image(env, f"{HOST}/app:v1", LAYERS[:1])
    env.images.tag(image.id, f"{HOST}/app:v2")
    reg = MemRegistry()
    pushed = env.push(reg, f"{HOST}/app", all_tags=True)
    assert [p.tag for p in pushed] == ["v1", "v2"]
    assert reg.tags("app") == ["v1", "v2"]
    with pytest.raises(NotFound, match=re.escape(f"tag does not exist: {HOST}/app:nope")):
        env.push(reg, f"{HOST}/app:nope")
    with pytest.raises(NotFound, match="An image does not exist locally with the tag"):
        env.push(reg, f"{HOST}/none", all_tags=True)
    with pytest.raises(InvalidArgument, match="digest reference"):
        env.push(reg, f"{HOST}/app@{image.manifest_digest}")


def test_first_failure_stops_the_push_promptly(env: Env) -> None:
    big = [(tar_layer({f"f{i}": os.urandom(3_000_000)}), "gzip") for i in range(3)]
    image = local_image(env, f"{HOST}/app:v1", big)
    reg = MemRegistry()
    reg.delay = 0.01
    reg.fail_upload[image.layers[0].digest] = RegistryUnavailable("connection reset (test)")
    start = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        env.push(reg, f"{HOST}/app:v1")
    assert time.monotonic() - start < 0.3
    assert reg.uploaded == [] and ("app", "v1") not in reg.manifests
    assert not [t for t in threading.enumerate() if t.name.startswith("push")]
    env.clean()


# --- end to end in one process: the real client and FakeRegistry over HTTP ---------------


@pytest.fixture
def fake() -> Iterator[Any]:
    module = pytest.importorskip("portside.testing.fakeregistry")
    with module.FakeRegistry() as reg:
        yield reg


def client_of(host: str, *, push: bool = False) -> Any:
    client = pytest.importorskip("portside.distribution.client")
    from portside.distribution.config import AuthConfig, RegistryConfig

    return client.Registry(host, RegistryConfig(), AuthConfig(), push=push)


@pytest.mark.root
def test_e2e_push_pull_back_and_mount(env: Env, env2: Env, fake: Any) -> None:
    host = fake.host
    image = local_image(env, f"{host}/team/app:v1")  # gzip, zstd and an uncompressed layer
    msgs: list[dict[str, Any]] = []
    pushed = push(
        parse_reference(f"{host}/team/app:v1"),
        registry=client_of(host, push=True),
        content=env.content,
        images=env.images,
        progress=msgs.append,
    )
    assert msgs[-1]["aux"]["Digest"] == pushed[0].digest

    result = env2.pull(client_of(host), f"{host}/team/app:v1")
    assert result.image.id == image.id and result.digest == pushed[0].digest
    files = read_rootfs(env2, result.image.layers[-1].chain_id, ["data/big", "top", "etc/hello"])
    assert files == {"data/big": BIG, "top": b"top layer\n", "etc/hello": None}
    env2.clean()

    msgs.clear()
    env.images.tag(image.id, f"{host}/other:v1")
    push(
        parse_reference(f"{host}/other:v1"),
        registry=client_of(host, push=True),
        content=env.content,
        images=env.images,
        progress=msgs.append,
    )
    ids = [d[7:19] for d in image.diff_ids]
    assert {statuses(msgs, pid)[-1] for pid in ids} == {"Mounted from team/app"}
    env.clean()


@pytest.mark.root
@pytest.mark.parametrize("ignore_range", [False, True])
def test_e2e_pull_survives_a_cut_connection(
    env: Env, env2: Env, fake: Any, ignore_range: bool
) -> None:
    """Cut mid-layer: the client resumes with Range (or, when the registry ignores
    it, starts over and the applier with it); the image comes out whole."""
    host = fake.host
    image = local_image(env, f"{host}/app:v1")
    push(
        parse_reference(f"{host}/app:v1"),
        registry=client_of(host, push=True),
        content=env.content,
        images=env.images,
    )
    fake.ignore_range = ignore_range
    fake.cut_blob_after(700_000)
    big = image.layers[1].digest
    before = len(fake.requests("GET", big))
    result = env2.pull(client_of(host), f"{host}/app:v1")
    assert result.image.id == image.id
    gets = fake.requests("GET", big)[before:]
    assert len(gets) == 2 and "range" not in gets[0].headers
    assert gets[1].headers.get("range") == "bytes=700000-"
    assert gets[1].status == (200 if ignore_range else 206)
    files = read_rootfs(env2, result.image.layers[-1].chain_id, ["data/big"])
    assert files["data/big"] == BIG
    env2.clean()


# --- durability: one sync per pull, before the image is recorded ---------------------------


class SimulatedCrash(Exception):
    """Stands for the daemon dying at that point."""


def _record(env: Env, monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    """Log the pull's syncs and the image's recording, in order."""
    for name, obj, attr in (
        ("content.sync", env.content, "sync"),
        ("snapshots.sync", env.sn, "sync"),
        ("images.create", env.images, "create"),
    ):
        real = getattr(obj, attr)

        def spy(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            events.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(obj, attr, spy)


@pytest.mark.root
def test_pull_syncs_the_blobs_once_before_it_records_the_image(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sync of the blobs' names, then the image; the snapshots wait, labelled,
    for the unpack that comes before a container (it syncs them)."""
    from portside.image import content_writer
    from portside.image.unpack import unpack

    reg = MemRegistry()
    publish(reg, "app", "v1")
    events: list[str] = []
    _record(env, monkeypatch, events)
    dir_syncs: list[str] = []
    monkeypatch.setattr(content_writer, "_fsync_dir", dir_syncs.append)
    result = env.pull(reg, f"{HOST}/app:v1")
    assert events == ["content.sync", "images.create"]
    assert dir_syncs == []  # no directory sync per blob
    chains = [la.chain_id for la in result.image.layers]
    assert [i.name for i in env.sn.walk() if UNSYNCED_LABEL in i.labels] == chains
    env.clean()
    events.clear()
    env.pull(reg, f"{HOST}/app:v1")  # up to date: nothing new, nothing to sync
    assert events == ["images.create"]
    assert unpack(result.image, env.content, env.sn) == chains[-1]
    assert events[1:] == ["snapshots.sync"]
    assert not [i.name for i in env.sn.walk() if UNSYNCED_LABEL in i.labels]


@pytest.mark.root
def test_a_crash_before_the_final_sync_records_no_image(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every layer in, the sync not done: no image; after a power loss (a new boot)
    the snapshots that waited for a sync are dropped; blobs are whole or absent."""
    from portside.image.snapshots import unsynced as unsynced_mod

    reg = MemRegistry()
    remote = publish(reg, "app", "v1")

    def crash() -> None:
        raise SimulatedCrash("power cut")

    monkeypatch.setattr(env.content, "sync", crash)
    with pytest.raises(SimulatedCrash):
        env.pull(reg, f"{HOST}/app:v1")
    assert env.images.images() == []
    waiting = [i.name for i in env.sn.walk() if UNSYNCED_LABEL in i.labels]
    assert len(waiting) == len(remote.blobs)
    assert env.content.check() == []  # every blob there is complete (synced before named)
    monkeypatch.undo()

    monkeypatch.setattr(unsynced_mod, "_BOOT_ID", ["the-next-boot"])
    env._sn = None  # the daemon starts again
    assert env.sn.walk() == []
    result = env.pull(reg, f"{HOST}/app:v1")
    assert result.image.layers[-1].chain_id in {i.name for i in env.sn.walk()}
    files = read_rootfs(env, result.image.layers[-1].chain_id, ["data/big", "top"])
    assert files == {"data/big": BIG, "top": b"top layer\n"}
    env.clean()


@pytest.mark.root
@pytest.mark.parametrize("budget", [MEMORY_BUDGET, 0])
def test_small_layers_skip_the_ingest(
    env: Env, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Layers up to SMALL_BLOB come through memory, within MEMORY_BUDGET; beyond it,
    or bigger, through an ingest. The image is the same either way."""
    import portside.distribution.pull_layers as layers_mod

    monkeypatch.setattr(layers_mod, "MEMORY_BUDGET", budget)
    reg = MemRegistry()
    remote = publish(reg, "app", "v1")
    refs: list[str] = []
    real = ContentStore.writer
    monkeypatch.setattr(
        ContentStore, "writer", lambda self, ref, **k: refs.append(ref) or real(self, ref, **k)
    )
    result = env.pull(reg, f"{HOST}/app:v1")
    layers = [r for r in refs if r.startswith("pull-")]
    if budget:
        assert layers == [f"pull-{remote.blobs[1]}"]  # the 1.5 MB one only
    else:
        assert sorted(layers) == sorted(f"pull-{d}" for d in remote.blobs)
    files = read_rootfs(env, result.image.layers[-1].chain_id, ["bin/tool", "top"])
    assert files == {"bin/tool": b"x" * 5000, "top": b"top layer\n"}
    env.clean()
