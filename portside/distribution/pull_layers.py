"""The layers of a pull: fetched ``concurrency`` at a time, unpacked in order by one
applier, the calling thread (see :mod:`portside.distribution.pull`).

Layers are fetched into ingests of the content store (a dropped connection resumes
at the ingest's offset). The applier does not wait for a layer to finish
downloading: it reads the ingest's data file as it grows (:class:`_Follower`, woken
by every write), so each byte is fetched once, written once and read once from the
page cache, and extraction overlaps the downloads. A small layer (up to
:data:`SMALL_BLOB`, within :data:`MEMORY_BUDGET`) is fetched into memory instead,
checked, stored in one write (``ContentStore.write_blob``: no ingest, whose files
cost more than such a layer) and unpacked from memory. A layer's snapshot is
committed only once its tar has checked out against the diffID *and* its blob has
been committed under its digest. If the download starts over (the registry ignored
a Range), the applier starts that layer over too.

Blobs are committed and snapshots made with ``durable=False``: the pull syncs the
blobs once at the end (:attr:`Puller.unsynced` says whether it must). The first failure stops
everything: downloads stop at their next chunk and abort their ingests, and the
applier's uncommitted snapshot is removed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from portside.distribution.errors import BadContent
from portside.distribution.progress import short_id
from portside.errors import Internal, InvalidArgument, PortsideError
from portside.image.content_common import BlobExists, DigestMismatch, IngestLocked
from portside.image.snapshots import COMMITTED, SnapshotNotFound
from portside.image.tarstream import CHUNK, LayerSource
from portside.image.unpack import CorruptLayer, unpack_layer_from
from portside.oci.digest import Digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.distribution.client import Registry
    from portside.distribution.progress import Throttle
    from portside.image.content import ContentStore
    from portside.image.content_writer import Writer
    from portside.image.snapshots import Snapshotter
    from portside.oci.image_spec import Descriptor
    from portside.oci.reference import Reference

__all__ = [
    "MEMORY_BUDGET",
    "SMALL_BLOB",
    "SOURCE_LABEL",
    "Layer",
    "MemorySink",
    "Puller",
    "hold",
    "no_progress",
]

#: label of a blob: ``<prefix><registry host>`` = comma-separated repositories
SOURCE_LABEL = "portside.distribution.source."
_INGEST_POLL = 0.2
#: layers up to this size are fetched into memory (no ingest)
SMALL_BLOB = 1 << 20
#: at most this many bytes of such layers held at once, fetched but not yet unpacked
MEMORY_BUDGET = 32 << 20


class _Cancelled(Exception):
    """The pull is stopping (its first error is elsewhere)."""


class _Restart(Exception):
    """The download of the layer being read started over."""


class MemorySink:
    """A BlobSink for small blobs (configs)."""

    def __init__(self, limit: int, what: str) -> None:
        self.data = bytearray()
        self._limit = limit
        self._what = what

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        if len(self.data) + len(data) > self._limit:
            raise BadContent(f"{self._what}: more than the {self._limit} bytes expected")
        self.data += data

    def truncate(self) -> None:
        self.data.clear()


def hold(content: ContentStore, lease: str, digest: str) -> bool:
    """Whether the store has the blob; if it does, the lease holds it from now on."""
    if not content.exists(digest):
        return False
    content.lease(lease).add(digest)
    return content.exists(digest)  # not collected before the lease took it


def no_progress(_n: int) -> None:
    pass


class _Transfer:
    """One blob on its way into the content store, shared (under the pull's
    condition) by the thread downloading it and the applier reading it."""

    __slots__ = ("data", "desc", "done", "fd", "generation", "id", "uses", "written")

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self.id = short_id(str(desc.digest))
        self.fd = -1  #: a read-only fd of the ingest's data, while downloading
        self.written = 0  #: bytes in the data file
        self.generation = 0  #: bumped when the download starts over
        self.done = False  #: committed: the blob is in the store, verified
        self.data: bytes | None = None  #: a small blob's bytes, until unpacked
        self.uses = 0  #: layers still to unpack from it


class Layer:
    __slots__ = ("chain_id", "desc", "diff_id", "id", "transfer", "unpack")

    def __init__(self, desc: Descriptor, diff_id: str, chain_id: str) -> None:
        self.desc = desc
        self.diff_id = diff_id
        self.chain_id = chain_id
        self.id = short_id(str(desc.digest))
        self.unpack = False  #: no snapshot yet
        self.transfer: _Transfer | None = None  #: None: nothing to do, "Already exists"


class _Sink:
    """What the registry client writes a layer into: the ingest, waking the applier
    at every write."""

    def __init__(self, puller: Puller, t: _Transfer, writer: Writer) -> None:
        self._puller = puller
        self._t = t
        self._writer = writer

    @property
    def offset(self) -> int:
        return self._writer.offset

    def write(self, data: bytes) -> None:
        p = self._puller
        if p.stop.is_set():
            raise _Cancelled()
        self._writer.write(data)
        offset = self._writer.offset
        with p.cond:
            self._t.written = offset
            p.cond.notify_all()
        p.out.update("Downloading", self._t.id, offset, self._t.desc.size)

    def truncate(self) -> None:
        with self._puller.cond:
            self._writer.truncate(0)
            self._t.written = 0
            self._t.generation += 1
            self._puller.cond.notify_all()


class _SmallSink(MemorySink):
    """A small layer's sink: memory, stopping with the pull, reporting progress."""

    def __init__(self, puller: Puller, t: _Transfer) -> None:
        super().__init__(t.desc.size, f"blob {t.desc.digest} of {puller.ref}")
        self._puller = puller
        self._t = t

    def write(self, data: bytes) -> None:
        p = self._puller
        if p.stop.is_set():
            raise _Cancelled()
        super().write(data)
        p.out.update("Downloading", self._t.id, len(self.data), self._t.desc.size)


class _Follower:
    """A file over a transfer's bytes for the applier: ``read`` returns what is there
    past its position, waits (on the pull's condition) for more, returns ``b""`` at
    the blob's size, raises _Restart if the download started over and _Cancelled if
    the pull is stopping. A blob the store had already is hashed as it is read."""

    def __init__(self, puller: Puller, layer: Layer) -> None:
        self._p = puller
        self._t = t = layer.transfer
        assert t is not None
        self._size = t.desc.size
        self._id = layer.id
        self._extracting = layer.unpack  #: else only the diffID is checked: no "Extracting"
        self.pos = 0
        self.waits = 0  #: times read() had to wait: the applier does not spin
        self._hash: hashlib._Hash | None = None
        self._mem: bytes | None = None
        self._fd = -1
        with puller.cond:
            while t.fd < 0 and not t.done:
                self._check_stop()
                puller.cond.wait()
            self._check_stop()
            self._gen = t.generation
            if t.fd >= 0:
                self._fd = os.dup(t.fd)
                return
            self._mem = t.data
        if self._mem is not None:  # a small blob, verified, in memory
            return
        digest = Digest(str(t.desc.digest))
        if puller.existing(digest):  # not verified by this pull: check it as it is read
            self._hash = hashlib.new(digest.algorithm)
        self._fd = os.open(puller.content.path(digest), os.O_RDONLY | os.O_CLOEXEC)

    def _check_stop(self) -> None:
        if self._p.stop.is_set():
            raise _Cancelled()

    def _check(self) -> None:
        self._check_stop()
        if self._t.generation != self._gen:
            raise _Restart()

    @property
    def stale(self) -> bool:
        """The download started over since this follower began."""
        return self._t.generation != self._gen

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        t, cond = self._t, self._p.cond
        with cond:
            while True:
                self._check()
                avail = (self._size if t.done else t.written) - self.pos
                if avail > 0 or self.pos >= self._size:
                    break
                self.waits += 1
                cond.wait()
        if self.pos >= self._size:
            return b""
        if self._mem is not None:
            data = self._mem[self.pos : self.pos + min(n, avail)]
        else:
            data = os.pread(self._fd, min(n, avail), self.pos)
            with cond:
                self._check()  # cut back during the pread: what we read may be stale
        if not data:
            raise Internal(f"blob {t.desc.digest}: data ends at {self.pos}, expected more")
        if self._hash is not None:
            self._hash.update(data)
        self.pos += len(data)
        if t.done and self._extracting:
            self._p.out.update("Extracting", self._id, self.pos, self._size)
        return data

    def verify(self) -> None:
        """After the layer checked out: wait until the blob is committed (its digest
        verified), or check the hash of a blob the store had."""
        while self.read(CHUNK):
            pass
        if self._hash is not None:
            digest = f"{self._hash.name}:{self._hash.hexdigest()}"
            if digest != self._t.desc.digest:
                raise CorruptLayer(f"blob digest is {digest}")
            return
        with self._p.cond:
            while not self._t.done:
                self._check()
                self._p.cond.wait()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> _Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_diff_id(stream: _Follower, diff_id: str) -> None:
    """Decompress and hash a layer whose snapshot exists, to check its blob."""
    source = LayerSource(stream, prefetch=False)  # type: ignore[arg-type]
    try:
        while source.read():
            pass
    finally:
        source.close()
    if source.diff_id() != diff_id:
        raise CorruptLayer(f"layer diffID {source.diff_id()} does not match {diff_id}")


def _committed(snapshotter: Snapshotter, key: str) -> bool:
    try:
        return snapshotter.stat(key).kind == COMMITTED
    except SnapshotNotFound:
        return False


class Puller:
    """The layers of one pull: downloads in a pool, one applier (the caller)."""

    def __init__(
        self,
        ref: Reference,
        *,
        registry: Registry,
        content: ContentStore,
        snapshotter: Snapshotter,
        lease: str,
        out: Throttle,
    ) -> None:
        self.ref = ref
        self.registry = registry
        self.content = content
        self.snapshotter = snapshotter
        self.lease = lease
        self.out = out
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        #: a blob committed by this pull waits for ContentStore.sync
        self.unsynced = False
        self._held = 0  #: bytes of small blobs in memory (MEMORY_BUDGET)
        self._existing: set[str] = set()
        self._labels = {SOURCE_LABEL + ref.domain: ref.path}

    def existing(self, digest: str) -> bool:
        """Whether the store had the blob before this pull fetched anything."""
        return digest in self._existing

    def fail(self, exc: BaseException) -> None:
        """Record the pull's first error and stop everything."""
        with self.cond:
            if self.error is None:
                self.error = exc
            self.stop.set()
            self.cond.notify_all()

    def plan(self, layers: list[Layer], *, quiet: bool) -> list[_Transfer]:
        """Decide each layer's work and report it (``quiet``: not the layers that
        exist, when the image does); returns the downloads, in order."""
        transfers: dict[str, _Transfer] = {}
        gap = False  # a chain is missing: so are all above it (a parent cannot go first)
        for layer in layers:
            digest = str(layer.desc.digest)
            layer.unpack = gap or not _committed(self.snapshotter, layer.chain_id)
            gap = layer.unpack
            have = digest in self._existing or hold(self.content, self.lease, digest)
            if have:
                self._existing.add(digest)
            if have and not layer.unpack:
                if not quiet:
                    self.out.event("Already exists", layer.id)
                continue
            if digest not in transfers:
                t = transfers[digest] = _Transfer(layer.desc)
                t.done = have
                t.written = layer.desc.size if have else 0
            layer.transfer = transfers[digest]
            layer.transfer.uses += 1
            self.out.event("Pulling fs layer", layer.id)
        return [t for t in transfers.values() if not t.done]

    def run(self, layers: list[Layer], concurrency: int, *, quiet: bool = False) -> None:
        """Fetch and unpack ``layers``; raises the first error, once every thread
        has stopped and cleaned up."""
        downloads = self.plan(layers, quiet=quiet)
        for t in downloads[concurrency:]:
            self.out.event("Waiting", t.id)
        pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="pull")
        try:
            for t in downloads:
                pool.submit(self._download, t)
            parent: str | None = None
            for layer in layers:
                if layer.transfer is not None:
                    self._apply(layer, parent)
                    self._release(layer.transfer)
                parent = layer.chain_id
        except _Cancelled:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.stop.set()
            with self.cond:
                self.cond.notify_all()
            pool.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            raise self.error

    # --- the downloads (pool threads) -----------------------------------------------

    def _download(self, t: _Transfer) -> None:
        try:
            if self._reserve(t.desc.size):
                self._fetch_small(t)
                return
            writer = self._writer(t)
            if writer is not None:
                self._fetch(t, writer)
        except BaseException as exc:
            with self.cond:
                if t.fd >= 0:
                    os.close(t.fd)
                    t.fd = -1
                self.cond.notify_all()
            if not self.stop.is_set():
                self.fail(self._translate(exc, t))

    def _reserve(self, size: int) -> bool:
        """Whether a blob of ``size`` bytes is fetched into memory (small, and within
        the budget; else through an ingest: never a wait)."""
        if size > SMALL_BLOB:
            return False
        with self.cond:
            if self._held + size > MEMORY_BUDGET:
                return False
            self._held += size
            return True

    def _fetch_small(self, t: _Transfer) -> None:
        """Fetch a small blob into memory, check it and store it in one write."""
        size, digest = t.desc.size, str(t.desc.digest)
        sink = _SmallSink(self, t)
        self.registry.fetch_blob(self.ref.path, t.desc, sink, no_progress)
        if self.stop.is_set():
            raise _Cancelled()
        self.out.update("Downloading", t.id, size, size, final=True)
        self.out.event("Verifying Checksum", t.id)
        data = bytes(sink.data)
        self.unsynced = True
        self.content.write_blob(data, digest, labels=self._labels, lease=self.lease, durable=False)
        self.out.event("Download complete", t.id)
        with self.cond:
            t.data, t.written, t.done = data, size, True
            self.cond.notify_all()

    def _release(self, t: _Transfer) -> None:
        """The applier is done with one layer of ``t``: drop a small blob's bytes
        after its last."""
        with self.cond:
            t.uses -= 1
            if t.uses <= 0 and t.data is not None:
                self._held -= len(t.data)
                t.data = None

    def _writer(self, t: _Transfer) -> Writer | None:
        """An open writer of the blob's ingest; None once the store has the blob
        (another pull committed it meanwhile)."""
        digest = str(t.desc.digest)
        ref = f"pull-{digest}"
        waited = restarted = False
        while True:
            if self.stop.is_set():
                raise _Cancelled()
            try:
                return self.content.writer(ref, expected=digest, size=t.desc.size, lease=self.lease)
            except BlobExists:
                pass
            except IngestLocked:  # another pull is fetching it: wait for its commit
                if not waited:
                    self.out.event("Waiting", t.id)
                    waited = True
                self.stop.wait(_INGEST_POLL)
                continue
            except InvalidArgument:
                if restarted or not self._leftover(ref):
                    raise
                restarted = True  # a leftover ingest of another size: start afresh
                continue
            if hold(self.content, self.lease, digest):
                self._finish(t)
                return None

    def _leftover(self, ref: str) -> bool:
        """Abort the ingest of ``ref`` left by an earlier pull; False if there is none."""
        from portside.image.content_common import IngestNotFound

        try:
            self.content.abort(ref)
        except (IngestNotFound, IngestLocked):
            return False
        return True

    def _fetch(self, t: _Transfer, writer: Writer) -> None:
        w = writer
        try:
            fd = os.open(os.path.join(w.path, "data"), os.O_RDONLY | os.O_CLOEXEC)
            with self.cond:
                t.fd, t.written = fd, w.offset
                self.cond.notify_all()
            if w.offset < t.desc.size:
                self.registry.fetch_blob(self.ref.path, t.desc, _Sink(self, t, w), no_progress)
            if self.stop.is_set():
                raise _Cancelled()
            self.out.update("Downloading", t.id, t.desc.size, t.desc.size, final=True)
            self.out.event("Verifying Checksum", t.id)
            self.unsynced = True
            w.commit(labels=self._labels, ok_if_exists=True, durable=False)
        except BaseException:
            if not w.closed:
                w.abort()
            raise
        self.out.event("Download complete", t.id)
        self._finish(t)

    def _finish(self, t: _Transfer) -> None:
        with self.cond:
            if t.fd >= 0:
                os.close(t.fd)
                t.fd = -1
            t.written = t.desc.size
            t.done = True
            self.cond.notify_all()

    def _translate(self, exc: BaseException, t: _Transfer) -> BaseException:
        if isinstance(exc, DigestMismatch):
            return BadContent(
                f"filesystem layer verification failed for digest {t.desc.digest}"
                f" of {self.ref}: {exc}"
            )
        return exc

    # --- the applier (the caller's thread) ------------------------------------------

    def _apply(self, layer: Layer, parent: str | None) -> None:
        while True:
            follower = _Follower(self, layer)
            try:
                with follower:
                    if layer.unpack:
                        unpack_layer_from(
                            follower,
                            self.snapshotter,
                            parent,
                            layer.chain_id,
                            layer.diff_id,
                            verify=follower.verify,
                            durable=False,
                        )
                    else:
                        _check_diff_id(follower, layer.diff_id)
                        follower.verify()
            except _Restart:
                continue
            except PortsideError as exc:
                if follower.stale:
                    continue
                if isinstance(exc, InvalidArgument):  # CorruptLayer, HostileLayer
                    raise BadContent(
                        f"layer {layer.desc.digest} of {self.ref}: {exc}", code="BLOB_INVALID"
                    ) from exc
                raise
            break
        if layer.unpack:
            size = layer.desc.size
            self.out.update("Extracting", layer.id, size, size, final=True)
        self.out.event("Pull complete", layer.id)
