"""The store-wide check (content, images, snapshots) and the startup sweep of crashed
unpacks, on a real busybox image unpacked with the overlay and vfs snapshotters."""

from __future__ import annotations

import gzip
import io
import os
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator

import pytest
from mount_helpers import scratch_root

from portside.image.base import make_busybox_image
from portside.image.check import check_store
from portside.image.content import ContentStore
from portside.image.snapshots import ACTIVE, SnapshotterBase, open_snapshotter
from portside.image.snapshots.meta import db_path
from portside.image.store import Image, ImageStore
from portside.image.unpack import extract_alive, sweep_extracts, unpack
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor, parse_image_config
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]
Env = tuple[ContentStore, ImageStore, SnapshotterBase]


@pytest.fixture(params=["overlay", "vfs"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with scratch_root("ps-check-") as root:
        content = ContentStore(os.path.join(root, "content"))
        store = ImageStore(os.path.join(root, "images"), content)
        yield content, store, open_snapshotter(os.path.join(root, "snap"), kind=request.param)


def _two_layers(env: Env) -> Image:
    """busybox plus a small gzip layer, unpacked."""
    content, store, sn = env
    base = make_busybox_image(content, store)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"hi\n"))
    raw = buf.getvalue()
    blob = gzip.compress(raw, mtime=0)
    content.write_blob(blob)
    config = parse_image_config(base.config)
    config.rootfs.diff_ids.append(Digest.of(raw))
    layers = [
        (Descriptor(media_type=la.media_type, digest=Digest(la.digest), size=la.size), la.diff_id)
        for la in base.layers
    ]
    top = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest.of(blob), size=len(blob))
    image = store.create(config.to_bytes(), [*layers, (top, str(Digest.of(raw)))], tags=["two:1"])
    unpack(image, content, sn)
    return image


def _snapshot_id(sn: SnapshotterBase, key: str) -> int:
    conn = sqlite3.connect(db_path(sn.root))
    try:
        return int(conn.execute("SELECT id FROM snapshots WHERE key = ?", (key,)).fetchone()[0])
    finally:
        conn.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_consistent_store_has_no_problems(env: Env) -> None:
    _two_layers(env)
    env[2].prepare("container-1", parent=env[1].get("two:1").layers[-1].chain_id)
    assert check_store(*env, verify_layers=True) == []


def test_a_shorter_image_unpacked_alone_is_not_a_problem(env: Env) -> None:
    sn = env[2]
    image = _two_layers(env)
    sn.remove(image.layers[-1].chain_id)  # as if only busybox had been unpacked
    assert check_store(*env) == []


def test_corrupt_blob_is_reported(env: Env) -> None:
    content = env[0]
    image = _two_layers(env)
    path = content.path(image.layers[-1].digest)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[-1] ^= 0xFF
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)
    problems = check_store(*env, verify_layers=True)
    digest = image.layers[-1].digest
    assert any(p.startswith("content: ") and digest in p for p in problems), problems
    assert any(p.startswith("images: ") and digest in p for p in problems), problems
    assert check_store(*env, quick=True) == []  # same size: only a re-hash sees it


def test_deleted_snapshot_directory_is_reported(env: Env) -> None:
    _, _, sn = env
    image = _two_layers(env)
    key = image.layers[-1].chain_id
    fs = sn.fs_dir(_snapshot_id(sn, key))
    subprocess.run(["rm", "-rf", fs], check=True)
    assert check_store(*env, repair=True) == [
        f"snapshots: snapshot {key!r}: its directory {fs} is missing"
    ]


def test_deleted_snapshot_row_is_reported(env: Env) -> None:
    _, _, sn = env
    image = _two_layers(env)
    lower, upper = (la.chain_id for la in image.layers)
    lower_id = _snapshot_id(sn, lower)
    conn = sqlite3.connect(db_path(sn.root))  # foreign keys are off by default
    with conn:
        conn.execute("DELETE FROM snapshots WHERE key = ?", (lower,))
    conn.close()
    problems = check_store(*env)
    assert f"snapshots: image {image.id}: layer 0 snapshot {lower} is missing below layer 1's" in (
        problems
    )
    assert f"snapshots: snapshot {upper!r} has parent id {lower_id}, which does not exist" in (
        problems
    )
    assert f"snapshots: directory {sn.snapshot_dir(lower_id)} belongs to no snapshot" in problems


def test_leftover_extract_snapshot_is_reported_and_repaired(env: Env) -> None:
    sn = env[2]
    image = _two_layers(env)
    chain = image.layers[-1].chain_id
    pid = _dead_pid()
    dead = f"extract-{pid}-0123456789ab {chain}"
    live = f"extract-{os.getpid()}-0123456789ab {chain}"
    for key in (dead, live):
        sn.prepare(key, parent=image.layers[0].chain_id)
    line = f"snapshots: unpack snapshot {dead!r} left by process {pid}"
    assert check_store(*env) == [f"{line}, which is gone"]
    assert check_store(*env, repair=True) == [f"{line}, which is gone (removed)"]
    assert check_store(*env) == []
    assert [i.name for i in sn.walk(kind=ACTIVE)] == [live]


def test_stray_directory_is_removed_by_repair(env: Env) -> None:
    _, _, sn = env
    _two_layers(env)
    stray = os.path.join(sn.root, "snapshots", "999999")
    os.makedirs(os.path.join(stray, "fs"))
    line = f"snapshots: directory {stray} belongs to no snapshot"
    assert check_store(*env) == [line]
    assert check_store(*env, repair=True) == [f"{line} (removed)"]
    assert not os.path.exists(stray)


# --- the startup sweep ------------------------------------------------------------------


def test_sweep_removes_what_a_crashed_unpack_left(env: Env) -> None:
    """A real crash: a child unpacks and dies inside the layer apply."""
    content, store, sn = env
    image = make_busybox_image(content, store)
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            import portside.image.unpack as unpack_module

            unpack_module.apply_layer_in_place = lambda *a, **k: os._exit(3)  # type: ignore[assignment]
            unpack_module.unpack(image, content, sn)
        finally:
            os._exit(4)
    assert os.waitpid(pid, 0)[1] >> 8 == 3
    [left] = [i.name for i in sn.walk(kind=ACTIVE)]
    assert left.startswith(f"extract-{pid}-") and left.endswith(image.layers[0].chain_id)
    sn.prepare("container-x")  # another active snapshot: not an unpack's
    sn.prepare(f"extract-{os.getpid()}-0123456789ab {image.layers[0].chain_id}")  # alive
    assert sweep_extracts(sn) == [left]
    assert sweep_extracts(sn) == []
    assert sorted(i.name for i in sn.walk(kind=ACTIVE)) == sorted(
        ["container-x", f"extract-{os.getpid()}-0123456789ab {image.layers[0].chain_id}"]
    )
    unpack(image, content, sn)  # and the image unpacks again
    assert check_store(content, store, sn) == []


def test_a_reused_pid_does_not_keep_a_snapshot_alive() -> None:
    key = f"extract-{os.getpid()}-0123456789ab sha256:{'0' * 64}"
    assert extract_alive(key, created=os.stat(f"/proc/{os.getpid()}").st_mtime + 60)
    assert not extract_alive(key, created=1.0)  # made long before this process started
    assert extract_alive("container-1", created=1.0)  # not an unpack's: never swept
