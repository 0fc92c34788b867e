"""portside.image.content: the content-addressed blob store, in temporary directories."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portside.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from portside.image import content_writer
from portside.image.content import (
    BlobExists,
    BlobNotFound,
    ContentStore,
    DigestMismatch,
    IngestLocked,
    IngestNotFound,
    InvalidDigest,
    LeaseExists,
    LeaseNotFound,
    NoSpace,
    WriterClosed,
    parse_digest,
)
from portside.image.content_gc import GC_REF_PREFIX


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(str(tmp_path / "content"))


def blob_files(store: ContentStore) -> list[str]:
    return sorted(
        f"{alg}/{name}"
        for alg in os.listdir(os.path.join(store.root, "blobs"))
        for name in os.listdir(os.path.join(store.root, "blobs", alg))
    )


# --- digests --------------------------------------------------------------------------------

HEX = "0123456789abcdef"


@given(st.sampled_from([("sha256", 64), ("sha512", 128)]), st.data())
def test_parse_digest_accepts_exact_lowercase_hex(
    alg_len: tuple[str, int], data: st.DataObject
) -> None:
    alg, length = alg_len
    hexpart = data.draw(st.text(HEX, min_size=length, max_size=length))
    assert parse_digest(f"{alg}:{hexpart}") == (alg, hexpart)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256",
        "sha256:",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "SHA256:" + "a" * 64,
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha384:" + "a" * 96,
        " sha256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_parse_digest_rejects(bad: str) -> None:
    with pytest.raises(InvalidDigest, match="invalid digest"):
        parse_digest(bad)


@given(st.text(max_size=140))
def test_parse_digest_any_text_is_valid_or_invalid_digest(text: str) -> None:
    alg, sep, hexpart = text.partition(":")
    want = {"sha256": 64, "sha512": 128}.get(alg)
    valid = bool(sep) and want == len(hexpart) and all(c in HEX for c in hexpart)
    if valid:
        assert parse_digest(text) == (alg, hexpart)
    else:
        with pytest.raises(InvalidDigest):
            parse_digest(text)


def test_parse_digest_error_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match=r"invalid digest 'sha256:x'"):
        parse_digest("sha256:x")
    with pytest.raises(InvalidDigest, match="not a string"):
        parse_digest(b"sha256:x")  # type: ignore[arg-type]


# --- reading ----------------------------------------------------------------------------------


def test_write_blob_and_read_it_back(store: ContentStore) -> None:
    data = b"hello, blob"
    digest = store.write_blob(data)
    assert digest == sha256(data)
    path = os.path.join(store.root, "blobs", "sha256", digest.split(":")[1])
    assert store.path(digest) == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert store.exists(digest)
    assert store.read(digest) == data
    with store.open(digest) as f:
        assert f.read() == data
    info = store.info(digest)
    assert (info.digest, info.size, info.labels) == (digest, len(data), {})
    assert abs(info.created - time.time()) < 60
    assert store.read_range(digest, 7, 4) == b"blob"
    assert store.read_range(digest, 7, 100) == b"blob"
    assert store.read_range(digest, len(data), 10) == b""
    with store.reader_at(digest) as r:
        assert r.size == len(data)
        assert r.read_at(0, 5) == b"hello"
        with pytest.raises(InvalidArgument, match="past its size"):
            r.read_at(len(data) + 1, 1)
        with pytest.raises(InvalidArgument, match="invalid range"):
            r.read_at(-1, 1)


def test_write_blob_is_idempotent_and_checks_expected(store: ContentStore) -> None:
    digest = store.write_blob(b"x")
    assert store.write_blob(b"x", expected=digest) == digest
    with pytest.raises(DigestMismatch, match=f"blob {sha256(b'y')}: digest mismatch, got {digest}"):
        store.write_blob(b"x", expected=sha256(b"y"))
    assert store.write_blob(b"x", expected=sha512(b"x")) == sha512(b"x")
    assert store.read(sha512(b"x")) == b"x"
    assert store.ingests() == []


def test_missing_blob_is_blob_not_found(store: ContentStore) -> None:
    missing = sha256(b"nope")
    assert not store.exists(missing)
    for call in (store.info, store.open, store.read, store.reader_at, store.delete):
        with pytest.raises(BlobNotFound, match=f"blob {missing} not found at .*blobs/sha256/"):
            call(missing)
    with pytest.raises(NotFound):
        store.read_range(missing, 0, 1)
    with pytest.raises(InvalidDigest):
        store.exists("sha256:../../etc/passwd")


def test_read_max_size(store: ContentStore) -> None:
    digest = store.write_blob(b"x" * 100)
    assert len(store.read(digest, max_size=100)) == 100
    with pytest.raises(InvalidArgument, match=f"blob {digest} is 100 bytes, more than 99"):
        store.read(digest, max_size=99)


# --- writing ----------------------------------------------------------------------------------


def test_commit_verifies_and_publishes(store: ContentStore) -> None:
    data = os.urandom(3 << 20)
    digest = sha256(data)
    with store.writer("layer-1", expected=digest, size=len(data)) as w:
        w.write(data[:100])
        w.write(memoryview(data)[100:])
        assert w.offset == len(data)
        assert w.digest() == digest
        assert not store.exists(digest)  # invisible until committed
        assert w.commit() == digest
        assert w.closed
    assert store.read(digest) == data
    assert store.ingests() == []
    assert os.listdir(os.path.join(store.root, "ingest")) == []
    with pytest.raises(WriterClosed, match="writer of ingest 'layer-1' is closed"):
        w.write(b"more")


def test_commit_size_mismatch_discards(store: ContentStore) -> None:
    digest = sha256(b"abc")
    w = store.writer("r", expected=digest)
    w.write(b"ab")
    with pytest.raises(DigestMismatch, match=rf"^blob {digest}: expected size 3, got 2$"):
        w.commit(size=3)
    assert w.closed
    assert store.ingests() == []
    assert blob_files(store) == []


def test_commit_digest_mismatch_discards(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"abd")
    with pytest.raises(
        DigestMismatch, match=f"blob {sha256(b'abc')}: digest mismatch, got {sha256(b'abd')}"
    ):
        w.commit(sha256(b"abc"), 3)
    assert store.ingests() == []
    assert blob_files(store) == []
    assert not store.exists(sha256(b"abd"))


def test_write_past_declared_size_fails_early(store: ContentStore) -> None:
    w = store.writer("r", size=4)
    w.write(b"abc")
    with pytest.raises(DigestMismatch, match="expected size 4, got at least 6"):
        w.write(b"def")
    assert w.closed
    assert store.ingests() == []


def test_commit_without_expectations_takes_what_was_written(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"free")
    assert w.commit() == sha256(b"free")


def test_commit_of_existing_blob(store: ContentStore) -> None:
    digest = store.write_blob(b"dup")
    with pytest.raises(BlobExists, match=f"blob {digest} already exists"):
        store.writer("early", expected=digest)
    assert store.ingests() == []
    w = store.writer("late")
    w.write(b"dup")
    with pytest.raises(AlreadyExists, match=f"blob {digest} already exists at "):
        w.commit(digest, 3)
    assert store.ingests() == []
    w = store.writer("late")
    w.write(b"dup")
    assert w.commit(digest, 3, ok_if_exists=True) == digest
    assert store.ingests() == []
    assert store.read(digest) == b"dup"


def test_sha512_needs_the_algorithm_at_open(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"z")
    with pytest.raises(InvalidArgument, match="hashed with sha256"):
        w.commit(sha512(b"z"))
    w.abort()
    w = store.writer("r", expected=sha512(b"z"))
    w.write(b"z")
    assert w.digest() == sha512(b"z")
    assert w.commit() == sha512(b"z")
    assert blob_files(store) == ["sha512/" + sha512(b"z").split(":")[1]]


def test_invalid_writer_arguments(store: ContentStore) -> None:
    with pytest.raises(InvalidArgument, match="invalid ingest ref ''"):
        store.writer("")
    with pytest.raises(InvalidArgument, match="invalid size -1"):
        store.writer("r", size=-1)
    with pytest.raises(InvalidDigest):
        store.writer("r", expected="sha256:abc")


def test_close_keeps_and_resume_continues(store: ContentStore) -> None:
    data = os.urandom(2_500_000)
    digest = sha256(data)
    w = store.writer("pull", expected=digest, size=len(data))
    w.write(data[:1_234_567])
    w.close()
    w.close()  # idempotent
    [status] = store.ingests()
    assert (status.ref, status.offset, status.total, status.expected) == (
        "pull",
        1_234_567,
        len(data),
        digest,
    )
    assert not status.active
    with store.writer("pull") as w2:  # size and expected come from the ingest
        assert w2.offset == 1_234_567
        assert w2.digest() == sha256(data[:1_234_567])
        assert (w2.size, w2.expected) == (len(data), digest)
        w2.write(data[1_234_567:])
        assert w2.commit() == digest
    assert store.read(digest) == data


def test_resume_with_other_expectations_is_refused(store: ContentStore) -> None:
    w = store.writer("r", size=10)
    w.write(b"12345")
    w.close()
    with pytest.raises(InvalidArgument, match="started for size 10, not 11; abort it first"):
        store.writer("r", size=11)
    store.abort("r")
    assert store.writer("r", size=11).offset == 0
    # an ingest begun without expectations records them when a resume gives them
    w = store.writer("loose")
    w.write(b"ab")
    w.close()
    store.writer("loose", size=3, expected=sha256(b"abc")).close()
    [status] = [s for s in store.ingests() if s.ref == "loose"]
    assert (status.total, status.expected) == (3, sha256(b"abc"))
    with pytest.raises(InvalidArgument, match=r"started for sha256:\w+, not sha256:"):
        store.writer("loose", expected=sha256(b"abd"))


def test_malformed_ingest_is_restarted(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"12345")
    w.close()
    os.unlink(os.path.join(w.path, "startedat"))
    assert store.ingests() == []
    with store.writer("r") as w2:
        assert w2.offset == 0
        w2.write(b"x")
        assert w2.commit() == sha256(b"x")


def test_truncate(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"hello world")
    w.truncate(5)
    assert (w.offset, w.digest()) == (5, sha256(b"hello"))
    w.write(b"!")
    w.truncate()
    w.write(b"again")
    assert w.commit() == sha256(b"again")
    with pytest.raises(WriterClosed):
        w.truncate()


def test_truncate_beyond_offset_is_invalid(store: ContentStore) -> None:
    with store.writer("r") as w:
        w.write(b"ab")
        with pytest.raises(InvalidArgument, match="it has 2 bytes"):
            w.truncate(3)


def test_copy_from_fd(store: ContentStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    data = os.urandom(2_600_000)
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        with store.writer("copy") as w:
            assert w.copy_from(fd, 1000) == 1000
            assert w.copy_from(fd) == len(data) - 1000
            assert w.commit(sha256(data), len(data)) == sha256(data)
    finally:
        os.close(fd)


def test_abort(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"x")
    w.abort()
    assert w.closed
    assert store.ingests() == []
    with pytest.raises(WriterClosed):
        w.abort()
    with pytest.raises(IngestNotFound, match="no ingest for ref 'r'"):
        store.abort("r")
    store.writer("r").close()
    store.abort("r")
    assert store.ingests() == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=12))
def test_any_chunking_gives_the_same_digest(
    store: ContentStore, data: bytes, cuts: list[int]
) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    ref = f"chunks-{os.urandom(4).hex()}"
    w = store.writer(ref)
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        if i % 3 == 2:  # close and resume part-way: the re-hash must agree too
            w.close()
            w = store.writer(ref)
        w.write(data[a:b])
    assert w.digest() == sha256(data)
    assert w.commit(sha256(data), len(data), ok_if_exists=True) == sha256(data)
    assert store.read(sha256(data)) == data


def test_enospc_while_writing_removes_the_ingest(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = store.writer("big", expected=sha256(b"x" * 10), size=10)
    w.write(b"x" * 4)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(content_writer.os, "write", full)
    with pytest.raises(
        Unavailable, match=rf"no space left on device writing blob {sha256(b'x' * 10)}"
    ) as excinfo:
        w.write(b"x" * 6)
    monkeypatch.undo()
    assert isinstance(excinfo.value, NoSpace)
    assert w.closed
    assert store.ingests() == []
    assert blob_files(store) == []
    assert store.check() == []


# --- concurrent writers ---------------------------------------------------------------------


def test_second_writer_of_a_ref_is_refused(store: ContentStore) -> None:
    w = store.writer("same")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            store.writer("same")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], IngestLocked)
    assert isinstance(errors[0], Unavailable)
    assert "is locked by another writer" in str(errors[0])
    with pytest.raises(IngestLocked):
        store.abort("same")
    [status] = store.ingests()
    assert status.active
    w.close()
    store.writer("same").abort()  # free again


def test_two_refs_writing_the_same_blob_from_threads(store: ContentStore) -> None:
    data = os.urandom(1 << 20)
    digest = sha256(data)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def write(i: int) -> None:
        w = store.writer(f"ref-{i}")
        barrier.wait()
        for off in range(0, len(data), 65536):
            w.write(data[off : off + 65536])
        try:
            results.append(w.commit(digest, len(data)))
        except BlobExists:
            results.append("exists")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted([digest, "exists", "exists", "exists"])
    assert store.read(digest) == data
    assert store.ingests() == []
    assert store.check() == []


def _child(fn: object) -> int:
    """Run ``fn`` in a forked child; returns its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = fn()  # type: ignore[operator]
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_writer_lock_holds_across_processes(store: ContentStore) -> None:
    w = store.writer("shared-ref")
    w.write(b"parent")

    def child() -> int:
        try:
            ContentStore(store.root).writer("shared-ref")
        except IngestLocked:
            return 7
        return 0

    assert _child(child) == 7
    w.close()

    def child_resumes() -> int:
        with ContentStore(store.root).writer("shared-ref") as w2:
            w2.write(b" child")
            return 0 if w2.commit() == sha256(b"parent child") else 1

    assert _child(child_resumes) == 0
    assert store.read(sha256(b"parent child")) == b"parent child"


def test_two_processes_commit_the_same_blob(store: ContentStore) -> None:
    data = os.urandom(300_000)
    digest = sha256(data)

    def child() -> int:
        w = ContentStore(store.root).writer(f"child-{os.getpid()}")
        w.write(data)
        return 0 if w.commit(digest, len(data), ok_if_exists=True) == digest else 1

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = child()
        finally:
            os._exit(code)
    assert child() == 0  # the parent writes at the same time
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert store.read(digest) == data
    assert store.ingests() == []


# --- managing -------------------------------------------------------------------------------


def test_delete_list_usage(store: ContentStore) -> None:
    assert store.usage() == (0, 0)
    assert list(store.list()) == []
    a = store.write_blob(b"a" * 10)
    b = store.write_blob(b"b" * 20, expected=sha512(b"b" * 20))
    assert store.usage() == (2, 30)
    assert sorted((i.digest, i.size) for i in store.list()) == sorted([(a, 10), (b, 20)])
    # temporary or foreign files in blobs/ are not blobs
    Path(store.root, "blobs", "sha256", "tmp-123").write_bytes(b"junk")
    assert store.usage() == (2, 30)
    store.delete(a)
    assert not store.exists(a)
    assert [i.digest for i in store.list()] == [b]
    with pytest.raises(BlobNotFound):
        store.delete(a)


def test_labels(store: ContentStore) -> None:
    digest = store.write_blob(b"cfg", labels={"a": "1"})
    assert store.info(digest).labels == {"a": "1"}
    assert store.update_labels(digest, {"b": "2", "a": "3"}) == {"a": "3", "b": "2"}
    assert store.update_labels(digest, {"a": None}) == {"b": "2"}
    assert [i.labels for i in store.list()] == [{"b": "2"}]
    with pytest.raises(InvalidArgument, match="longer than 4096"):
        store.update_labels(digest, {"k": "v" * 4096})
    with pytest.raises(InvalidArgument, match="invalid label key"):
        store.update_labels(digest, {"": "v"})
    with pytest.raises(BlobNotFound):
        store.update_labels(sha256(b"missing"), {"a": "b"})
    store.delete(digest)
    store.write_blob(b"cfg")
    assert store.info(digest).labels == {}  # labels went with the blob


def test_commit_labels(store: ContentStore) -> None:
    w = store.writer("r")
    w.write(b"m")
    with pytest.raises(InvalidArgument):
        w.commit(labels={"": "x"})
    assert w.commit(labels={"kind": "manifest"}) == sha256(b"m")
    assert store.info(sha256(b"m")).labels == {"kind": "manifest"}


def test_blob_reads_and_writes_never_open_the_database(store: ContentStore) -> None:
    digest = store.write_blob(b"x")
    store.info(digest)
    list(store.list())
    store.gc([digest])
    store.check()
    assert not os.path.exists(os.path.join(store.root, "meta.db"))


def test_newer_schema_is_refused(store: ContentStore) -> None:
    import sqlite3

    conn = sqlite3.connect(os.path.join(store.root, "meta.db"))
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(FailedPrecondition, match="schema version 99, newer than this portside"):
        store.create_lease("x")


def test_abort_stale(store: ContentStore) -> None:
    for ref in ("old", "new", "open", "leased"):
        store.writer(ref).close()
    store.create_lease("keep").add_ingest("leased")
    old = time.time() - 3600
    for ref in ("old", "open", "leased"):
        path = content_writer.ingest_dir(store.root, ref)
        os.utime(os.path.join(path, "data"), (old, old))
    w = store.writer("open")
    assert store.abort_stale(600) == ["old"]
    assert sorted(s.ref for s in store.ingests()) == ["leased", "new", "open"]
    w.close()
    assert store.abort_stale(600) == ["open"]


# --- leases and gc --------------------------------------------------------------------------


def test_leases_crud(store: ContentStore) -> None:
    lease = store.create_lease("pull-1", expires_at=time.time() + 60)
    with pytest.raises(LeaseExists, match="lease 'pull-1' already exists"):
        store.create_lease("pull-1")
    with pytest.raises(InvalidArgument, match="invalid lease id"):
        store.create_lease("")
    digest = sha256(b"later")
    lease.add(digest)
    lease.add(digest)
    assert lease.digests() == {digest}
    lease.remove(digest)
    assert lease.digests() == set()
    with pytest.raises(InvalidDigest):
        lease.add("sha256:nope")
    assert [x.id for x in store.leases()] == ["pull-1"]
    assert store.lease("pull-1").expires_at == lease.expires_at
    store.delete_lease("pull-1")
    with pytest.raises(LeaseNotFound, match="lease 'pull-1' does not exist"):
        store.lease("pull-1")
    with pytest.raises(LeaseNotFound):
        lease.add(digest)
    with pytest.raises(LeaseNotFound):
        store.writer("r", lease="pull-1")


def _tree(store: ContentStore) -> tuple[dict[str, list[str]], dict[str, str]]:
    """An index → manifest → config + 2 layers, and a second manifest sharing a layer."""
    d = {
        name: store.write_blob(name.encode())
        for name in ("index", "m1", "m2", "cfg", "l1", "l2", "l3")
    }
    children = {
        d["index"]: [d["m1"]],
        d["m1"]: [d["cfg"], d["l1"], d["l2"]],
        d["m2"]: [d["cfg"], d["l2"], d["l3"]],
    }
    return children, d


def test_gc_marks_from_roots(store: ContentStore) -> None:
    children, d = _tree(store)
    asked: list[str] = []

    def refs(digest: str) -> list[str]:
        asked.append(digest)
        return children.get(digest, [])

    dry = store.gc([d["index"]], refs, dry_run=True)
    assert sorted(dry.removed) == sorted([d["m2"], d["l3"]])
    assert dry.bytes == len(b"m2") + len(b"l3")
    assert store.exists(d["m2"])
    result = store.gc([d["index"]], refs)
    assert sorted(result.removed) == sorted([d["m2"], d["l3"]])
    assert not store.exists(d["m2"])
    assert not store.exists(d["l3"])
    assert all(store.exists(d[k]) for k in ("index", "m1", "cfg", "l1", "l2"))
    assert store.gc([d["index"]], refs).removed == []
    # refs is asked only about reachable blobs the store has
    assert set(asked) == {d["index"], d["m1"], d["cfg"], d["l1"], d["l2"]}
    assert store.gc([]).bytes == sum(len(k) for k in ("index", "m1", "cfg", "l1", "l2"))
    assert store.usage() == (0, 0)


def test_gc_root_missing_and_refs_failure(store: ContentStore) -> None:
    children, d = _tree(store)

    def refs(digest: str) -> list[str]:
        if digest == d["m1"]:
            raise NotFound("manifest unreadable")
        return children.get(digest, [])

    with pytest.raises(NotFound, match="manifest unreadable"):
        store.gc([d["index"]], refs)
    assert store.usage()[0] == 7  # nothing swept
    with pytest.raises(InvalidDigest):
        store.gc(["sha256:bad"])
    assert len(store.gc([sha256(b"not here"), d["l1"]]).removed) == 6
    assert [i.digest for i in store.list()] == [d["l1"]]


def test_gc_follows_gc_ref_labels(store: ContentStore) -> None:
    _, d = _tree(store)
    store.update_labels(
        d["m1"], {f"{GC_REF_PREFIX}.config": d["cfg"], f"{GC_REF_PREFIX}.l.0": d["l1"]}
    )
    store.update_labels(d["cfg"], {GC_REF_PREFIX: "not-a-digest", "other": d["l3"]})
    store.gc([d["m1"]])
    assert sorted(i.digest for i in store.list()) == sorted([d["m1"], d["cfg"], d["l1"]])


def test_lease_protects_blobs_and_their_children(store: ContentStore) -> None:
    children, d = _tree(store)
    with store.create_lease("build") as lease:
        lease.add(d["m2"])
        store.gc([], lambda x: children.get(x, []))
        assert sorted(i.digest for i in store.list()) == sorted(
            [d["m2"], d["cfg"], d["l2"], d["l3"]]
        )
    assert store.leases() == []
    store.gc([])
    assert store.usage() == (0, 0)


def test_expired_lease_protects_nothing_and_is_dropped(store: ContentStore) -> None:
    digest = store.write_blob(b"x")
    store.create_lease("old", expires_at=time.time() - 1).add(digest)
    store.create_lease("live", expires_at=time.time() + 600)
    result = store.gc([])
    assert result.removed == [digest]
    assert result.expired_leases == ["old"]
    assert [x.id for x in store.leases()] == ["live"]


def test_writer_under_lease(store: ContentStore) -> None:
    store.create_lease("pull")
    w = store.writer("layer", lease="pull")
    w.write(b"part")
    w.close()
    store.writer("unleased").close()
    result = store.gc([])
    assert result.ingests == ["unleased"]
    assert [s.ref for s in store.ingests()] == ["layer"]  # the lease held it
    assert store.lease("pull").refs() == {"layer"}
    w = store.writer("layer", lease="pull")
    w.write(b"done")
    digest = w.commit()
    assert store.lease("pull").digests() == {digest}
    assert store.lease("pull").refs() == set()
    assert store.gc([]).removed == []
    assert store.write_blob(b"other", lease="pull") in store.lease("pull").digests()
    store.delete_lease("pull")
    assert len(store.gc([]).removed) == 2


def test_gc_keeps_open_ingests(store: ContentStore) -> None:
    w = store.writer("busy")
    w.write(b"x")
    assert store.gc([]).ingests == []
    assert w.commit() == sha256(b"x")


def test_lease_taken_on_existing_blob_by_write_blob(store: ContentStore) -> None:
    digest = store.write_blob(b"shared")
    store.create_lease("second")
    assert store.write_blob(b"shared", lease="second") == digest
    assert store.gc([]).removed == []


# --- check ----------------------------------------------------------------------------------


def test_check_clean_and_corrupted(store: ContentStore) -> None:
    good = store.write_blob(b"good")
    bad = store.write_blob(b"original")
    store.writer("pending").close()
    assert store.check() == []
    path = store.path(bad)
    os.chmod(path, 0o644)
    Path(path).write_bytes(b"tampered")  # same size
    assert store.check(quick=True) == []
    [problem] = store.check()
    assert problem == f"blob {bad}: content hashes to {sha256(b'tampered')} ({path})"
    Path(path).write_bytes(b"short")
    sizes = {good: 4, bad: 8, sha256(b"gone"): 4}
    problems = store.check(quick=True, sizes=sizes)
    assert problems == [
        f"blob {bad}: size 5, expected 8 ({path})",
        f"blob {sha256(b'gone')}: missing (expected 4 bytes at {store.path(sha256(b'gone'))})",
    ]


def test_check_reports_strays_and_malformed_ingests(store: ContentStore) -> None:
    store.write_blob(b"ok")
    Path(store.root, "blobs", "sha256", ".tmp-upload").write_bytes(b"")
    Path(store.root, "blobs", "md5").mkdir()
    stray_ingest = Path(store.root, "ingest", "not-an-ingest")
    stray_ingest.mkdir()
    w = store.writer("broken")
    w.close()
    os.unlink(os.path.join(w.path, "ref"))
    problems = store.check(quick=True)
    assert len(problems) == 4, problems
    assert any("unexpected file" in p and ".tmp-upload" in p for p in problems)
    assert any("unexpected entry" in p and p.endswith("/md5") for p in problems)
    assert any("not an ingest" in p for p in problems)
    assert any(f"ingest {w.path}: malformed" in p for p in problems)
    # gc removes the damaged ingest (by directory name), not the foreign entries
    assert store.gc([]).ingests == sorted([os.path.basename(w.path), "not-an-ingest"])


# --- durability and the cost of a commit -------------------------------------------------


def test_write_blob_needs_no_ingest(store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ingest(*_a: object, **_k: object) -> None:
        raise AssertionError("write_blob went through an ingest")

    monkeypatch.setattr(ContentStore, "writer", no_ingest)
    store.create_lease("hold")
    digest = store.write_blob(b"config", labels={"kind": "config"}, lease="hold")
    assert store.read(digest) == b"config"
    assert stat.S_IMODE(os.stat(store.path(digest)).st_mode) == 0o444
    assert store.info(digest).labels == {"kind": "config"}
    assert store.lease("hold").digests() == {digest}
    assert store.write_blob(b"config", digest) == digest  # there already: fine
    assert os.listdir(os.path.join(store.root, "ingest")) == []
    assert store.check() == []


def test_write_blob_without_o_tmpfile_uses_an_ingest(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_tmpfile(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "not supported", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    used = []
    real_writer = ContentStore.writer
    monkeypatch.setattr(
        ContentStore, "writer", lambda self, *a, **k: used.append(a) or real_writer(self, *a, **k)
    )
    digest = store.write_blob(b"old file system")
    assert used and store.read(digest) == b"old file system"
    assert store.ingests() == []


def _count_dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    synced: list[str] = []
    real = content_writer._fsync_dir
    monkeypatch.setattr(
        content_writer, "_fsync_dir", lambda path: synced.append(path) or real(path)
    )
    return synced


def test_lazy_commit_syncs_the_data_but_not_the_name(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _count_dir_syncs(monkeypatch)
    fsynced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(fd) or real_fsync(fd))
    w = store.writer("lazy")
    w.write(b"lazy")
    w.commit(durable=False)
    assert fsynced and synced == []  # the bytes before the name, always
    w = store.writer("durable")
    w.write(b"durable")
    w.commit()
    assert synced == [os.path.join(store.root, "blobs", "sha256")]


def test_sync_makes_the_names_durable(store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    store.sync()
    assert synced == [os.path.join(store.root, "blobs", alg) for alg in ("sha256", "sha512")]


def test_metadata_is_atomic_not_synced_and_batched(store: ContentStore) -> None:
    lease = store.create_lease("many")
    digests = [sha256(bytes([i])) for i in range(50)]
    lease.add_all(digests)
    assert lease.digests() == set(digests)
    conn = store.meta._conn()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.meta._conn() is conn  # one connection per thread, kept

    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(store.meta._conn()))
    thread.start()
    thread.join()
    assert other[0] is not conn


def test_writer_starts_write_back_as_it_goes(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that the fsync of a big blob's commit does not write it all at once."""
    ranges: list[tuple[int, int]] = []
    real = content_writer.start_writeback
    monkeypatch.setattr(content_writer, "WRITEBACK_STEP", 1000)
    monkeypatch.setattr(
        content_writer,
        "start_writeback",
        lambda fd, off, n: ranges.append((off, n)) or real(fd, off, n),
    )
    w = store.writer("big")
    for _ in range(5):
        w.write(b"x" * 600)
    w.truncate(1000)
    w.write(b"y" * 1000)
    w.commit()
    assert ranges == [(0, 1200), (1200, 1200), (1000, 1000)]
