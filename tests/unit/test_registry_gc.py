"""Garbage collection: mark from tags, sweep the rest, spare the young and whatever a
concurrent push touches, dry run, leftovers."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import sqlalchemy as sa

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.registry import gc
from portside.registry.errors import BlobUnknown, ManifestUnknown
from portside.registry.storage import Storage, blobs, manifests, repo_blobs, uploads
from tests.unit.test_registry_storage import image, open_storage, upload

OLD = 1_000.0  # "long ago": every clock is set back to here before collecting


@pytest.fixture
def storage(tmp_path: Any) -> Storage:
    s = open_storage(str(tmp_path))
    yield s
    s.close()


def age(storage: Storage) -> None:
    """Make everything stored so far older than any grace period."""
    with storage.db.begin() as conn:
        conn.execute(blobs.update().values(touched=OLD, created=OLD))
        conn.execute(manifests.update().values(created=OLD))
    for dirpath, _, files in os.walk(storage.root):
        for name in files:
            os.utime(os.path.join(dirpath, name), (OLD, OLD))


def index_of(storage: Storage, repo: str, children: list[tuple[str, bytes]], tag: str) -> str:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": len(b)} for d, b in children
        ],
    }
    return storage.put_manifest(repo, tag, json.dumps(doc).encode(), mt.OCI_INDEX).digest


def alive(storage: Storage, repo: str, digest: str) -> bool:
    try:
        storage.stat_blob(repo, digest)
    except BlobUnknown:
        return False
    return True


def test_mark_and_sweep(storage: Storage) -> None:
    kept, kept_data, kept_blobs = image(storage, "app", "v1")
    gone, _, gone_blobs = image(storage, "app", None)
    child, child_data, child_blobs = image(storage, "app", None)
    index_of(storage, "app", [(child, child_data)], "multi")
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": kept, "size": len(kept_data)}
    sig, _, sig_blobs = image(storage, "app", None, layers=1, extra={"subject": subject})
    orphan_sig, _, _ = image(
        storage, "app", None, layers=1, extra={"subject": {**subject, "digest": gone}}
    )
    loose = upload(storage, "app", b"uploaded, never referenced")
    shared = kept_blobs[1]
    storage.mount_blob("other", shared, "app")  # linked elsewhere, referenced here
    age(storage)

    report = gc.collect(storage, grace=60)
    assert sorted(d for _, d in report.manifests) == sorted([gone, orphan_sig])
    removed = {d for d, _ in report.blobs}
    assert set(gone_blobs) <= removed and loose in removed and gone in removed
    assert not removed & {*kept_blobs, *child_blobs, *sig_blobs, kept, child, sig}
    for digest in (*kept_blobs, *child_blobs, *sig_blobs):
        assert alive(storage, "app", digest)
    for digest in (*gone_blobs, loose):
        assert not alive(storage, "app", digest)
        assert not os.path.exists(storage.blob_path(digest))
    assert alive(storage, "other", shared)
    with pytest.raises(ManifestUnknown):
        storage.manifest("app", gone)
    assert storage.manifest("app", sig).digest == sig  # a referrer of a tagged manifest
    assert report.freed == sum(size for _, size in report.blobs) > 0
    assert report.lines()[-1].startswith("removed: 2 manifests")
    # nothing more to do
    again = gc.collect(storage, grace=60)
    assert again.manifests == [] and again.blobs == []


def test_dry_run_removes_nothing(storage: Storage) -> None:
    image(storage, "app", None)
    age(storage)
    before = sorted(os.walk(storage.blob_dir))
    report = gc.collect(storage, grace=60, dry_run=True)
    assert len(report.manifests) == 1 and len(report.blobs) == 4  # config, 2 layers, manifest
    assert all(line.startswith("would remove") for line in report.lines())
    assert sorted(os.walk(storage.blob_dir)) == before
    with storage.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(manifests)).scalar() == 1


def test_keep_untagged(storage: Storage) -> None:
    _digest, _, refs = image(storage, "app", None)
    age(storage)
    report = gc.collect(storage, grace=60, untagged=False)
    assert report.manifests == [] and report.blobs == []
    assert all(alive(storage, "app", d) for d in refs)


def test_young_content_is_spared(storage: Storage) -> None:
    """A push in progress: blobs just uploaded, an untagged manifest just pushed."""
    digest, _, _refs = image(storage, "app", None)
    loose = upload(storage, "app", b"a layer of a push in progress")
    report = gc.collect(storage, grace=3600)
    assert report.manifests == [] and report.blobs == []
    assert alive(storage, "app", loose) and storage.manifest("app", digest)


def test_a_blob_touched_during_the_sweep_is_put_back(storage: Storage) -> None:
    digest = upload(storage, "app", b"found by a HEAD, about to be referenced")
    age(storage)
    cutoff = time.time() - 60
    with storage.db.begin() as conn:  # a push resets its clock after gc listed it
        conn.execute(blobs.update().values(touched=time.time()))
    assert gc._remove_blob(storage, digest, cutoff) is False
    assert alive(storage, "app", digest)
    with open(storage.blob_path(digest), "rb") as f:
        assert f.read() == b"found by a HEAD, about to be referenced"
    assert os.listdir(os.path.join(storage.root, "trash")) == []


def test_a_manifest_referenced_during_the_sweep_is_kept(storage: Storage) -> None:
    child, data, _ = image(storage, "app", None)
    age(storage)
    cutoff = time.time() - 60
    index_of(storage, "app", [(child, data)], "multi")  # touches the child's blob first
    assert gc._drop_manifest(storage, "app", child, cutoff) is False
    assert storage.manifest("app", child)


def test_leftovers(storage: Storage) -> None:
    # a blob file with no row (a crash between the rename and the row)
    stray = storage.blob_path(str(Digest.of(b"stray")))
    os.makedirs(os.path.dirname(stray), exist_ok=True)
    with open(stray, "wb") as f:
        f.write(b"stray")
    # an idle upload session, an active one, a stray temporary file, a lost session row
    idle = storage.start_upload("app")
    active = storage.start_upload("app")
    tmp = os.path.join(storage.upload_dir, "tmp-abc")
    with open(tmp, "wb") as f:
        f.write(b"x")
    with storage.db.begin() as conn:
        conn.execute(
            uploads.insert().values(
                uuid="00000000-0000-0000-0000-000000000000", repository="app", started=OLD
            )
        )
    # a file a crashed collection had moved aside, its row still there
    kept = upload(storage, "app", b"moved aside by a crashed gc")
    trash = os.path.join(storage.root, "trash")
    os.makedirs(trash)
    os.rename(storage.blob_path(kept), os.path.join(trash, kept.replace(":", "-") + ".dead"))
    for path in (stray, os.path.join(storage.upload_dir, idle, "data"), tmp):
        os.utime(path, (OLD, OLD))

    report = gc.collect(storage, grace=3600, upload_ttl=3600)
    assert report.orphans == [stray] and not os.path.exists(stray)
    assert sorted(report.uploads) == sorted([idle, "tmp-abc"])
    assert os.listdir(storage.upload_dir) == [active]
    with storage.db.connect() as conn:
        assert [r.uuid for r in conn.execute(sa.select(uploads))] == [active]
    assert alive(storage, "app", kept) and os.listdir(trash) == []


def test_swept_blobs_lose_their_links_everywhere(storage: Storage) -> None:
    digest = upload(storage, "a", b"linked twice")
    storage.mount_blob("b", digest, "a")
    age(storage)
    gc.collect(storage, grace=60)
    with storage.db.connect() as conn:
        assert conn.execute(sa.select(repo_blobs)).all() == []
