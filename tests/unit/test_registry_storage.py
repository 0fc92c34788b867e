"""The registry's blob store and ``content_*`` tables (SQLite in a temporary root)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.registry.db import Database, sqlite_url
from portside.registry.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    RangeInvalid,
)
from portside.registry.names import fallback_tag
from portside.registry.storage import Storage, blobs, manifests, repo_blobs, uploads


def open_storage(root: str) -> Storage:
    return Storage(root, Database(sqlite_url(root)))


@pytest.fixture
def storage(tmp_path: Any) -> Storage:
    s = open_storage(str(tmp_path))
    yield s
    s.close()


def upload(storage: Storage, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    uuid = storage.start_upload(repo)
    writer = storage.open_writer(repo, uuid, 0)
    writer.write(data)
    digest = str(Digest.of(data, algorithm))
    assert writer.finish(digest) == len(data)
    return digest


def image(
    storage: Storage,
    repo: str,
    tag: str | None = "v1",
    *,
    layers: int = 2,
    extra: dict[str, Any] | None = None,
) -> tuple[str, bytes, list[str]]:
    """An OCI image pushed to ``repo``: (manifest digest, bytes, blob digests)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(4).hex()})
    cfg = upload(storage, repo, config.encode())
    descs = []
    for _ in range(layers):
        data = os.urandom(1000)
        descs.append(
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": upload(storage, repo, data),
                "size": len(data),
            }
        )
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": cfg, "size": len(config)},
        "layers": descs,
        **(extra or {}),
    }
    data = json.dumps(doc).encode()
    ref = tag or str(Digest.of(data))
    result = storage.put_manifest(repo, ref, data, mt.OCI_MANIFEST)
    return result.digest, data, [cfg, *(d["digest"] for d in descs)]


def rows(storage: Storage, table: sa.Table) -> list[Any]:
    with storage.db.connect() as conn:
        return conn.execute(sa.select(table)).all()


# --- blobs and uploads -----------------------------------------------------------------


def test_upload_in_chunks_then_finish(storage: Storage) -> None:
    data = os.urandom(300_000)
    uuid = storage.start_upload("team/app")
    assert storage.upload_offset("team/app", uuid) == 0
    for start in range(0, len(data), 100_000):
        writer = storage.open_writer("team/app", uuid, start)
        writer.write(data[start : start + 100_000])
        assert writer.commit() == start + 100_000
    assert storage.upload_offset("team/app", uuid) == len(data)
    writer = storage.open_writer("team/app", uuid, None)
    digest = str(Digest.of(data))
    assert writer.finish(digest) == len(data)
    assert storage.stat_blob("team/app", digest) == len(data)
    with open(storage.blob_path(digest), "rb") as f:
        assert f.read() == data
    assert storage.blob_path(digest).endswith(f"/blobs/sha256/{digest[7:9]}/{digest[7:]}")
    assert os.listdir(storage.upload_dir) == [] and rows(storage, uploads) == []
    with pytest.raises(BlobUploadUnknown):
        storage.upload_offset("team/app", uuid)


def test_digest_mismatch_stores_nothing(storage: Storage) -> None:
    uuid = storage.start_upload("app")
    writer = storage.open_writer("app", uuid)
    writer.write(b"some bytes")
    wrong = str(Digest.of(b"other bytes"))
    with pytest.raises(DigestInvalid, match="digest mismatch"):
        writer.finish(wrong)
    assert rows(storage, blobs) == [] and rows(storage, repo_blobs) == []
    assert not os.path.exists(storage.blob_path(wrong))
    assert os.listdir(storage.upload_dir) == []
    with pytest.raises(BlobUnknown):
        storage.stat_blob("app", str(Digest.of(b"some bytes")))


def test_out_of_order_and_concurrent_chunks_are_refused(storage: Storage) -> None:
    uuid = storage.start_upload("app")
    writer = storage.open_writer("app", uuid, 0)
    writer.write(b"x" * 10)
    with pytest.raises(RangeInvalid, match="another request") as busy:
        storage.open_writer("app", uuid, 10)
    assert busy.value.status == 416
    writer.commit()
    for start in (0, 5, 11):
        with pytest.raises(RangeInvalid) as info:
            storage.open_writer("app", uuid, start)
        assert info.value.offset == 10
    storage.open_writer("app", uuid, 10).abort()


def test_abort_leaves_the_upload_where_it_was(storage: Storage) -> None:
    uuid = storage.start_upload("app")
    w = storage.open_writer("app", uuid, 0)
    w.write(b"good")
    w.commit()
    w = storage.open_writer("app", uuid, 4)
    w.write(b"truncated chun")
    w.abort()
    assert storage.upload_offset("app", uuid) == 4
    w = storage.open_writer("app", uuid, 4)
    w.write(b"more")
    assert w.finish(str(Digest.of(b"goodmore"))) == 8


def test_hash_state_is_recomputed_by_another_process(tmp_path: Any) -> None:
    """A session continued by another instance (or after a restart): the running hash
    is rebuilt from the file, and sha512 works as well."""
    first = open_storage(str(tmp_path))
    uuid = first.start_upload("app")
    w = first.open_writer("app", uuid, 0)
    w.write(b"hello ")
    w.commit()
    second = open_storage(str(tmp_path))
    w = second.open_writer("app", uuid, 6)
    w.write(b"world")
    assert w.finish(str(Digest.of(b"hello world", "sha512"))) == 11
    assert first.stat_blob("app", str(Digest.of(b"hello world", "sha512"))) == 11
    first.close()
    second.close()


def test_a_crash_mid_upload_leaves_nothing_visible(tmp_path: Any) -> None:
    s = open_storage(str(tmp_path))
    uuid = s.start_upload("app")
    w = s.open_writer("app", uuid, 0)
    w.write(b"partial")
    w.close()  # the process dies: no commit, no finish
    s.close()
    again = open_storage(str(tmp_path))
    with pytest.raises(BlobUnknown):
        again.stat_blob("app", str(Digest.of(b"partial")))
    assert rows(again, blobs) == []
    assert not os.listdir(again.blob_dir)
    again.close()


def test_concurrent_uploads_of_the_same_blob(storage: Storage) -> None:
    data = os.urandom(2_000_000)
    digest = str(Digest.of(data))
    errors: list[BaseException] = []

    def push(repo: str) -> None:
        try:
            uuid = storage.start_upload(repo)
            w = storage.open_writer(repo, uuid, 0)
            for i in range(0, len(data), 100_000):
                w.write(data[i : i + 100_000])
            w.finish(digest)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.digest for r in rows(storage, blobs)] == [digest]
    assert sorted(r.repository for r in rows(storage, repo_blobs)) == [f"r{i}" for i in range(6)]
    with open(storage.blob_path(digest), "rb") as f:
        assert f.read() == data
    assert os.listdir(storage.upload_dir) == []


def test_unknown_uploads(storage: Storage) -> None:
    uuid = storage.start_upload("app")
    for repo, ref in (("other", uuid), ("app", "not-a-uuid"), ("app", "../../etc")):
        with pytest.raises(BlobUploadUnknown):
            storage.open_writer(repo, ref)
    storage.cancel_upload("app", uuid)
    with pytest.raises(BlobUploadUnknown):
        storage.cancel_upload("app", uuid)
    assert os.listdir(storage.upload_dir) == []


def test_mount_and_delete(storage: Storage) -> None:
    digest = upload(storage, "src", b"shared layer")
    assert storage.mount_blob("dst", digest, "src") == len(b"shared layer")
    assert storage.stat_blob("dst", digest) == len(b"shared layer")
    assert storage.mount_blob("dst2", digest, "nowhere") is None
    with pytest.raises(BlobUnknown):
        storage.stat_blob("dst2", digest)
    storage.delete_blob("src", digest)
    with pytest.raises(BlobUnknown):
        storage.stat_blob("src", digest)
    assert storage.stat_blob("dst", digest) == 12  # other links and the bytes stay
    with pytest.raises(BlobUnknown):
        storage.delete_blob("src", digest)


def test_reading_an_old_blob_refreshes_its_clock(storage: Storage) -> None:
    digest = upload(storage, "app", b"old")
    with storage.db.begin() as conn:
        conn.execute(blobs.update().values(touched=100.0))
    storage.stat_blob("app", digest)
    assert rows(storage, blobs)[0].touched > time.time() - 60


# --- manifests --------------------------------------------------------------------------


def test_put_and_get_a_manifest(storage: Storage) -> None:
    digest, data, _refs = image(storage, "team/app", "v1")
    record = storage.manifest("team/app", "v1")
    assert record.digest == digest == str(Digest.of(data))
    assert record.media_type == mt.OCI_MANIFEST and record.size == len(data)
    assert storage.read_manifest(record) == data  # byte-exact
    assert storage.manifest("team/app", digest) == record
    assert storage.stat_blob("team/app", digest) == len(data)  # readable as a blob too
    assert storage.tags("team/app") == ["v1"]
    assert storage.repositories() == ["team/app"]
    with pytest.raises(ManifestUnknown):
        storage.manifest("team/app", "v2")
    with pytest.raises(NameUnknown):
        storage.manifest("other", "v1")


def test_manifest_checks_store_nothing_on_failure(storage: Storage) -> None:
    digest, data, _refs = image(storage, "app")
    before_files = sorted(os.listdir(os.path.join(storage.blob_dir, "sha256")))
    doc = json.loads(data)
    doc["layers"].append({"mediaType": mt.OCI_LAYER, "digest": "sha256:" + "9" * 64, "size": 1})
    bad = json.dumps(doc).encode()
    with pytest.raises(ManifestBlobUnknown, match="sha256:9999") as info:
        storage.put_manifest("app", "v2", bad, mt.OCI_MANIFEST)
    assert info.value.detail == {"digests": ["sha256:" + "9" * 64]}
    # another repository does not see this one's blobs
    with pytest.raises(ManifestBlobUnknown):
        storage.put_manifest("other", "v1", data, mt.OCI_MANIFEST)
    with pytest.raises(DigestInvalid, match="manifest digest mismatch"):
        storage.put_manifest("app", "sha256:" + "0" * 64, data, mt.OCI_MANIFEST)
    with pytest.raises(ManifestInvalid):
        storage.put_manifest("app", "v3", b"{not json", mt.OCI_MANIFEST)
    with pytest.raises(ManifestInvalid, match="does not match"):
        storage.put_manifest("app", "v3", data, mt.DOCKER_MANIFEST)
    assert [r.digest for r in rows(storage, manifests)] == [digest]
    assert storage.tags("app") == ["v1"]
    assert sorted(os.listdir(os.path.join(storage.blob_dir, "sha256"))) == before_files
    assert storage.repositories() == ["app"]


def test_index_needs_its_manifests(storage: Storage) -> None:
    child, child_data, _ = image(storage, "app", None)
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": child, "size": len(child_data)}
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]})
    storage.put_manifest("app", "multi", index.encode(), "")
    assert storage.manifest("app", "multi").media_type == mt.OCI_INDEX
    missing = dict(entry, digest="sha256:" + "1" * 64)
    bad = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [missing]})
    with pytest.raises(ManifestBlobUnknown):
        storage.put_manifest("app", "bad", bad.encode(), mt.OCI_INDEX)


def test_put_by_sha512_digest(storage: Storage) -> None:
    _, data, _ = image(storage, "app")
    digest = str(Digest.of(data, "sha512"))
    result = storage.put_manifest("app", digest, data, mt.OCI_MANIFEST)
    assert result.digest == digest and result.tag is None
    assert storage.read_manifest(storage.manifest("app", digest)) == data


def test_tag_moves_and_deletes(storage: Storage) -> None:
    first, _, _ = image(storage, "app", "latest")
    second, data, _ = image(storage, "app", "latest")
    assert storage.manifest("app", "latest").digest == second
    again = storage.put_manifest("app", "latest", data, mt.OCI_MANIFEST)
    assert again.previous == second  # unchanged
    storage.put_manifest("app", "stable", data, mt.OCI_MANIFEST)
    record, gone = storage.delete_manifest("app", "stable")
    assert record.digest == second and gone == ["stable"]
    assert storage.manifest("app", second).digest == second  # a tag delete keeps it
    record, gone = storage.delete_manifest("app", second)
    assert gone == ["latest"] and storage.tags("app") == []
    with pytest.raises(ManifestUnknown):
        storage.manifest("app", second)
    assert storage.manifest("app", first).digest == first


def test_tags_in_byte_order_with_paging(storage: Storage) -> None:
    _, data, _ = image(storage, "app", "v1")
    names = ["B", "a", "_z", "1.0", "Z9", "b", "v1"]
    for name in names:
        storage.put_manifest("app", name, data, mt.OCI_MANIFEST)
    ordered = sorted(set(names))
    assert storage.tags("app") == ordered
    assert storage.tags("app", limit=3) == ordered[:3]
    assert storage.tags("app", last=ordered[2], limit=3) == ordered[3:6]
    assert storage.tags("app", last=ordered[-1]) == []
    with pytest.raises(NameUnknown):
        storage.tags("nothing")


def test_referrers(storage: Storage) -> None:
    subject, subject_data, _ = image(storage, "app", "v1")
    subject_desc = {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": len(subject_data)}
    sig, _, _ = image(
        storage,
        "app",
        None,
        layers=1,
        extra={
            "artifactType": "application/vnd.example.sig",
            "subject": subject_desc,
            "annotations": {"org.example": "yes"},
        },
    )
    sbom, _, _ = image(storage, "app", None, layers=1, extra={"subject": subject_desc})
    found = storage.referrers("app", subject)
    assert {d["digest"] for d in found} == {sig, sbom}
    by_digest = {d["digest"]: d for d in found}
    assert by_digest[sig]["artifactType"] == "application/vnd.example.sig"
    assert by_digest[sig]["annotations"] == {"org.example": "yes"}
    assert by_digest[sbom]["artifactType"] == mt.OCI_CONFIG  # the config's media type
    only = storage.referrers("app", subject, "application/vnd.example.sig")
    assert [d["digest"] for d in only] == [sig]
    assert storage.referrers("other", subject) == []
    assert (
        storage.put_manifest(
            "app", sig, storage.read_manifest(storage.manifest("app", sig)), mt.OCI_MANIFEST
        ).subject
        == subject
    )


def test_referrers_include_the_tag_schema_fallback(storage: Storage) -> None:
    subject, _, _ = image(storage, "app", "v1")
    other, other_data, _ = image(storage, "app", None, layers=1)
    entry = {
        "mediaType": mt.OCI_MANIFEST,
        "digest": other,
        "size": len(other_data),
        "artifactType": "application/vnd.example.sbom",
    }
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]})
    storage.put_manifest("app", fallback_tag(subject), index.encode(), mt.OCI_INDEX)
    assert storage.referrers("app", subject) == [entry]
    assert storage.referrers("app", subject, "application/other") == []
