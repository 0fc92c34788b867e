"""Pulling an image from a registry into the content store, the image store and the
snapshotter, with Docker's progress stream.

The steps: resolve the reference to an image manifest (an index gives the entry for
the wanted platform), fetch and check the config, then fetch the layers and unpack
them, then record the image. Manifests and config are verified against their digests
before anything is stored; layers are verified by the content store's writer.

Layers are fetched ``concurrency`` at a time into ingests of the content store (a
dropped connection resumes at the ingest's offset), while one applier — the calling
thread — unpacks them in order. The applier does not wait for a layer to finish
downloading: it reads the ingest's data file as it grows (:class:`_Follower`, woken by
every write), so each byte is fetched once, written once and read once from the page
cache, and extraction overlaps the downloads. A layer's snapshot is committed only
once its tar has checked out against the diffID *and* its blob has been committed
under its digest. If the download starts over (the registry ignored a Range), the
applier starts that layer over too.

The first failure stops everything: downloads stop at their next chunk and abort
their ingests, the applier's uncommitted snapshot is removed, and the pull's lease
goes, so nothing of the pull stays but blobs that checked out (content-addressed, and
left for gc). Blobs fetched get the label ``portside.distribution.source.<host>``
naming the repositories they came from, so that a push can mount them
cross-repository (containerd's ``containerd.io/distribution.source``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from portside.distribution.errors import BadContent, UnsupportedContent
from portside.distribution.progress import Throttle, noop, short_id
from portside.errors import Internal, InvalidArgument, PortsideError
from portside.image.content_common import BlobExists, DigestMismatch, IngestLocked
from portside.image.snapshots import COMMITTED, SnapshotNotFound
from portside.image.store import chain_ids
from portside.image.tarstream import CHUNK, LayerSource
from portside.image.unpack import CorruptLayer, unpack_layer_from
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import (
    Descriptor,
    Index,
    Manifest,
    ParsedManifest,
    parse_image_config,
)
from portside.oci.platform import Platform, best_match, host_platform, matches
from portside.oci.reference import Reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portside.distribution.client import Registry
    from portside.distribution.progress import Progress
    from portside.image.content import ContentStore
    from portside.image.content_writer import Writer
    from portside.image.snapshots import Snapshotter
    from portside.image.store import ImageStore
    from portside.image.store_db import Image

__all__ = [
    "SOURCE_LABEL",
    "PullResult",
    "add_source",
    "pull",
    "pull_all_tags",
    "sources",
]

#: label of a blob: ``<prefix><registry host>`` = comma-separated repositories
SOURCE_LABEL = "portside.distribution.source."
#: longest value of a source label; the oldest repositories go first
MAX_SOURCE = 1024
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 8 << 20
#: a pull's lease outlives a crashed daemon by this long at most
LEASE_SECONDS = 24 * 3600
_INGEST_POLL = 0.2


@dataclass
class PullResult:
    image: Image
    reference: Reference
    #: what the reference resolved to: the index, or the manifest
    digest: str
    #: the reference did not name this image before (Docker's "Downloaded newer image")
    fresh: bool


class _Cancelled(Exception):
    """The pull is stopping (its first error is elsewhere)."""


class _Restart(Exception):
    """The download of the layer being read started over."""


# --- source labels ------------------------------------------------------------------


def sources(labels: dict[str, str], host: str) -> list[str]:
    """The repositories of ``host`` a blob is known to be in, most recent last."""
    value = labels.get(SOURCE_LABEL + host, "")
    return [r for r in value.split(",") if r]


def add_source(content: ContentStore, digests: Iterable[str], host: str, repo: str) -> None:
    """Record that the blobs ``digests`` are in ``repo`` on ``host`` (missing blobs
    are skipped)."""
    key = SOURCE_LABEL + host
    for digest in dict.fromkeys(digests):
        try:
            repos = sources(content.info(digest).labels, host)
        except PortsideError:
            continue
        if repos and repos[-1] == repo:
            continue
        repos = [r for r in repos if r != repo]
        repos.append(repo)
        while len(",".join(repos)) > MAX_SOURCE and len(repos) > 1:
            repos.pop(0)
        try:
            content.update_labels(digest, {key: ",".join(repos)})
        except PortsideError:  # gone meanwhile, or an odd repository name: not worth failing
            continue


# --- manifests and config -----------------------------------------------------------


@dataclass
class _Target:
    digest: str  #: what the reference names (an index or the manifest)
    raw: bytes  #: the image manifest's bytes
    manifest: Manifest
    index_raw: bytes | None  #: the index, when there was one
    from_index: bool


def _is_schema1(raw: bytes, media_type: str) -> bool:
    if mt.is_schema1(media_type):
        return True
    import json

    try:
        return json.loads(raw).get("schemaVersion") == 1
    except (ValueError, AttributeError, RecursionError):
        return False


def _parse(raw: bytes, media_type: str, what: str) -> ParsedManifest:
    known = mt.is_manifest(media_type) or mt.is_index(media_type)
    try:
        return ParsedManifest.parse(raw, media_type if known else None)
    except InvalidArgument as exc:
        if _is_schema1(raw, media_type):
            raise UnsupportedContent(
                f"{what}: docker image manifest schema 1 is not supported (deprecated format);"
                " the image must be pushed again as an OCI or Docker schema 2 image"
            ) from exc
        raise BadContent(f"{what}: invalid manifest: {exc}") from exc


def _check_digest(raw: bytes, expected: str, what: str, size: int | None = None) -> None:
    want = Digest(expected)
    got = Digest.of(raw, want.algorithm)
    if got != want:
        raise BadContent(f"{what}: digest mismatch: expected {want}, got {got}")
    if size is not None and len(raw) != size:
        raise BadContent(f"{what}: {len(raw)} bytes, the descriptor says {size}")


def _fetch_manifest(
    registry: Registry, ref: Reference, name: str, expected: Descriptor | None = None
) -> ParsedManifest:
    """The manifest ``name`` (a tag or digest) of ``ref``'s repository, checked against
    ``expected``, the digest it was asked by, or the digest the registry gave."""
    what = f"manifest {name} of {ref.name}"
    fetched = registry.get_manifest(ref.path, name)
    raw = bytes(fetched.data)
    if len(raw) > MAX_MANIFEST:
        raise BadContent(f"{what}: {len(raw)} bytes, more than {MAX_MANIFEST}")
    if expected is not None:
        _check_digest(raw, str(expected.digest), what, expected.size)
    elif ref.digest is not None:
        _check_digest(raw, str(ref.digest), what)
    elif fetched.digest:
        _check_digest(raw, fetched.digest, what)
    return _parse(raw, fetched.media_type, what)


def _platforms(descs: Iterable[Descriptor]) -> str:
    found = sorted({str(d.platform) for d in descs if d.platform is not None})
    return ", ".join(found) or "none"


def _resolve(
    registry: Registry, ref: Reference, platform: Platform | None, out: Throttle
) -> _Target:
    """The image manifest ``ref`` names, for ``platform`` (default: the host's).
    "Pulling from" is said once the registry has answered, as moby does: a missing
    tag is an error before any progress message."""
    name = str(ref.digest) if ref.digest is not None else str(ref.tag)
    top = _fetch_manifest(registry, ref, name)
    out.status(f"Pulling from {ref.path}", id=name)
    index_raw = None
    if isinstance(top.obj, Index):
        wanted = platform or host_platform()
        candidates = [d for d in top.obj.manifests if mt.is_manifest(d.media_type)]
        desc = best_match(wanted, candidates, key=lambda d: d.platform)
        if desc is None:
            raise UnsupportedContent(
                f"no matching manifest for {wanted} in the manifest list entries of {ref}:"
                f" it has {_platforms(top.obj.manifests)}"
            )
        index_raw = top.raw
        parsed = _fetch_manifest(registry, ref, str(desc.digest), desc)
        if parsed.is_index:
            raise UnsupportedContent(f"manifest {desc.digest} of {ref}: a nested index")
    else:
        parsed = top
    manifest = parsed.obj
    assert isinstance(manifest, Manifest)
    if manifest.is_artifact:
        kind = manifest.artifact_type or manifest.config.media_type
        raise UnsupportedContent(f"{ref} is not a container image: its type is {kind!r}")
    for i, layer in enumerate(manifest.layers):
        if layer.urls:
            raise UnsupportedContent(f"{ref}: layer {i} is a foreign layer ({layer.urls[0]})")
    return _Target(str(top.digest), parsed.raw, manifest, index_raw, top.is_index)


class _MemorySink:
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


def _fetch_config(
    registry: Registry, ref: Reference, content: ContentStore, lease: str, desc: Descriptor
) -> bytes:
    digest = str(desc.digest)
    what = f"image config {digest} of {ref}"
    if desc.size > MAX_CONFIG:
        raise BadContent(f"{what}: {desc.size} bytes, more than {MAX_CONFIG}")
    if _hold(content, lease, digest):
        return content.read(digest, max_size=MAX_CONFIG)
    sink = _MemorySink(desc.size, what)
    registry.fetch_blob(ref.path, desc, sink, _ignore)
    raw = bytes(sink.data)
    _check_digest(raw, digest, what, desc.size)
    labels = {SOURCE_LABEL + ref.domain: ref.path}
    content.write_blob(raw, digest, labels=labels, lease=lease)
    return raw


def _hold(content: ContentStore, lease: str, digest: str) -> bool:
    """Whether the store has the blob; if it does, the lease holds it from now on."""
    if not content.exists(digest):
        return False
    content.lease(lease).add(digest)
    return content.exists(digest)  # not collected before the lease took it


def _ignore(_n: int) -> None:
    pass


def _check_config(
    raw: bytes, target: _Target, ref: Reference, platform: Platform | None
) -> list[str]:
    """The config's diffIDs, once the config fits the manifest (and the platform asked
    for, when the manifest did not come from an index)."""
    what = f"image config {target.manifest.config.digest} of {ref}"
    try:
        config = parse_image_config(raw)
    except InvalidArgument as exc:
        raise BadContent(f"{what}: {exc}") from exc
    diff_ids = [str(d) for d in config.rootfs.diff_ids]
    if len(diff_ids) != len(target.manifest.layers):
        raise BadContent(
            f"{what}: {len(diff_ids)} rootfs.diff_ids for {len(target.manifest.layers)} layers"
        )
    if platform is not None and not target.from_index and not matches(platform, config.platform):
        raise UnsupportedContent(
            f"image with reference {ref} was found but its platform ({config.platform})"
            f" does not match the specified platform ({platform})"
        )
    return diff_ids


# --- layers -------------------------------------------------------------------------


class _Transfer:
    """One blob on its way into the content store, shared (under the pull's
    condition) by the thread downloading it and the applier reading it."""

    __slots__ = ("desc", "done", "fd", "generation", "id", "written")

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self.id = short_id(str(desc.digest))
        self.fd = -1  #: a read-only fd of the ingest's data, while downloading
        self.written = 0  #: bytes in the data file
        self.generation = 0  #: bumped when the download starts over
        self.done = False  #: committed: the blob is in the store, verified


class _Layer:
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

    def __init__(self, puller: _Puller, t: _Transfer, writer: Writer) -> None:
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


class _Follower:
    """A file over a transfer's bytes for the applier: ``read`` returns what is there
    past its position, waits (on the pull's condition) for more, returns ``b""`` at
    the blob's size, raises _Restart if the download started over and _Cancelled if
    the pull is stopping. A blob the store had already is hashed as it is read."""

    def __init__(self, puller: _Puller, layer: _Layer) -> None:
        self._p = puller
        self._t = t = layer.transfer
        assert t is not None
        self._size = t.desc.size
        self._id = layer.id
        self.pos = 0
        self.waits = 0  #: times read() had to wait: the applier does not spin
        self._hash: hashlib._Hash | None = None
        with puller.cond:
            while t.fd < 0 and not t.done:
                self._check_stop()
                puller.cond.wait()
            self._check_stop()
            self._gen = t.generation
            if t.fd >= 0:
                self._fd = os.dup(t.fd)
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
        data = os.pread(self._fd, min(n, avail), self.pos)
        with cond:
            self._check()  # cut back during the pread: what we read may be stale
        if not data:
            raise Internal(f"blob {t.desc.digest}: data ends at {self.pos}, expected more")
        if self._hash is not None:
            self._hash.update(data)
        self.pos += len(data)
        if t.done:
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


class _Puller:
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

    def plan(self, layers: list[_Layer], *, quiet: bool) -> list[_Transfer]:
        """Decide each layer's work and report it (``quiet``: not the layers that
        exist, when the image does); returns the downloads, in order."""
        transfers: dict[str, _Transfer] = {}
        for layer in layers:
            digest = str(layer.desc.digest)
            layer.unpack = not _committed(self.snapshotter, layer.chain_id)
            have = digest in self._existing or _hold(self.content, self.lease, digest)
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
            self.out.event("Pulling fs layer", layer.id)
        return [t for t in transfers.values() if not t.done]

    def run(self, layers: list[_Layer], concurrency: int, *, quiet: bool = False) -> None:
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
            if _hold(self.content, self.lease, digest):
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
                self.registry.fetch_blob(self.ref.path, t.desc, _Sink(self, t, w), _ignore)
            if self.stop.is_set():
                raise _Cancelled()
            self.out.update("Downloading", t.id, t.desc.size, t.desc.size, final=True)
            self.out.event("Verifying Checksum", t.id)
            w.commit(labels=self._labels, ok_if_exists=True)
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

    def _apply(self, layer: _Layer, parent: str | None) -> None:
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


# --- the pull -----------------------------------------------------------------------


def _current_id(images: ImageStore, ref: Reference) -> str | None:
    from portside.image.store import ImageNotFound

    try:
        return images.get(str(ref)).id
    except ImageNotFound:
        return None


def pull(
    ref: Reference,
    *,
    registry: Registry,
    content: ContentStore,
    images: ImageStore,
    snapshotter: Snapshotter,
    platform: Platform | None = None,
    progress: Progress = noop,
    concurrency: int = 3,
) -> PullResult:
    """Pull ``ref`` (``:latest`` without tag or digest) from ``registry`` (the client
    of ``ref.domain``), for ``platform`` (default: the host's), reporting Docker's
    progress messages to ``progress``. The image is tagged ``ref`` (when it has a tag
    and no digest) and gets the RepoDigest ``name@digest``."""
    ref = ref.with_default_tag()
    out = Throttle(progress)
    lease = content.create_lease(
        f"pull-{os.getpid()}-{os.urandom(8).hex()}", time.time() + LEASE_SECONDS
    )
    try:
        target = _resolve(registry, ref, platform, out)
        config = _fetch_config(registry, ref, content, lease.id, target.manifest.config)
        diff_ids = _check_config(config, target, ref, platform)
        layers = [
            _Layer(desc, diff_id, chain_id)
            for desc, diff_id, chain_id in zip(
                target.manifest.layers, diff_ids, chain_ids(diff_ids), strict=True
            )
        ]
        puller = _Puller(
            ref,
            registry=registry,
            content=content,
            snapshotter=snapshotter,
            lease=lease.id,
            out=out,
        )
        quiet = images.exists(str(target.manifest.config.digest))  # as Docker: no news
        puller.run(layers, concurrency, quiet=quiet)
        if target.index_raw is not None:
            content.write_blob(target.index_raw, target.digest, lease=lease.id)
        before = _current_id(images, ref)
        image = images.create(
            config,
            [(layer.desc, layer.diff_id) for layer in layers],
            manifest=target.raw,
            tags=[str(ref)] if ref.digest is None else [],
            repo_digest=f"{ref.name}@{target.digest}",
        )
        had = [str(la.desc.digest) for la in layers if puller.existing(str(la.desc.digest))]
        add_source(content, [str(target.manifest.config.digest), *had], ref.domain, ref.path)
    finally:
        lease.delete()
    fresh = before != image.id
    out.status(f"Digest: {target.digest}")
    news = "Downloaded newer image" if fresh else "Image is up to date"
    out.status(f"Status: {news} for {ref.familiar()}")
    return PullResult(image, ref, target.digest, fresh)


def pull_all_tags(name: Reference, *, registry: Registry, **kwargs: Any) -> list[PullResult]:
    """``docker pull --all-tags``: every tag of the repository ``name``, in the
    registry's order; ``kwargs`` as :func:`pull`'s."""
    if name.tag is not None or name.digest is not None:
        raise InvalidArgument(f"tag can't be used with --all-tags/-a: {name.familiar()}")
    return [
        pull(name.with_tag(tag), registry=registry, **kwargs) for tag in registry.tags(name.path)
    ]
