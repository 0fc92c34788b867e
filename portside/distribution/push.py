"""Pushing images from the image store to a registry, with Docker's progress stream.

For each tag: the layers (``concurrency`` at a time, top layer first as Docker shows
them), then the config, then the manifest. A blob the repository has already (HEAD)
is "Layer already exists"; one the store knows to be in another repository of the
same registry (the ``portside.distribution.source.<host>`` label a pull or a push
leaves) is mounted from there, "Mounted from other/repo"; anything else is uploaded.

The manifest pushed is the one the image was stored with, byte for byte, so a pulled
or loaded image keeps its digests. Layers stored uncompressed (``docker save``'s
``layer.tar``) are the exception: each is gzip-compressed once (zstd if the image's
other layers are zstd), the compressed blob is kept in the content store labelled
``portside.distribution.uncompressed=<diffID>`` and named from the uncompressed blob
(``portside.distribution.compressed.gzip=<digest>``) so the next push reuses it, and
a manifest listing the compressed layers is made and pushed instead (Docker does the
same). Either way the image gains the RepoDigest ``name@digest`` of what was pushed.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from portside.distribution.errors import (
    BadContent,
    RegistryDenied,
    RegistryNotFound,
    RegistryUnauthorized,
)
from portside.distribution.progress import Throttle, aux, noop, short_id
from portside.distribution.pull import LEASE_SECONDS, add_source, sources
from portside.errors import FailedPrecondition, InvalidArgument, NotFound
from portside.image.content_common import BlobNotFound, IngestLocked
from portside.image.store import MAX_MANIFEST, ImageNotFound, MissingContent
from portside.image.tarstream import CHUNK, LayerWriter
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import Descriptor, Manifest, parse_manifest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future
    from typing import BinaryIO

    from portside.distribution.client import Registry
    from portside.distribution.progress import Progress
    from portside.image.content import ContentStore
    from portside.image.content_writer import Writer
    from portside.image.store import ImageStore
    from portside.image.store_db import Image
    from portside.oci.reference import Reference

__all__ = ["COMPRESSED_LABEL", "UNCOMPRESSED_LABEL", "PushedTag", "push"]

#: on a compressed blob made for a push: the diffID (digest of the uncompressed layer)
UNCOMPRESSED_LABEL = "portside.distribution.uncompressed"
#: on an uncompressed layer blob, ``<prefix>gzip`` / ``<prefix>zstd``: its compressed blob
COMPRESSED_LABEL = "portside.distribution.compressed."
#: repositories a blob is tried to be mounted from, most recent first
MAX_MOUNT_TRIES = 3
_COMPRESSED = {
    (mt.DOCKER_LAYER, "gzip"): mt.DOCKER_LAYER_GZIP,
    (mt.DOCKER_LAYER, "zstd"): mt.DOCKER_LAYER_ZSTD,
    (mt.OCI_LAYER, "gzip"): mt.OCI_LAYER_GZIP,
    (mt.OCI_LAYER, "zstd"): mt.OCI_LAYER_ZSTD,
}
_INGEST_POLL = 0.2


@dataclass
class PushedTag:
    tag: str
    digest: str
    size: int


class _Cancelled(Exception):
    """The push is stopping (its first error is elsewhere)."""


class _Counting:
    """A blob's file for an upload: reports what has been read, and stops the upload
    at its next read once the push is stopping."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None], stop: threading.Event) -> None:
        self._f = f
        self._report = report
        self._stop = stop
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        if self._stop.is_set():
            raise _Cancelled()
        data = self._f.read(CHUNK if n is None or n < 0 else n)
        self.count += len(data)
        self._report(self.count)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self._f.seek(offset, whence)
        self.count = pos
        return pos

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return self._f.seekable()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore(_n: int) -> None:
    pass


class _Pusher:
    """The blobs of one push into ``name``'s repository."""

    def __init__(
        self,
        name: Reference,
        *,
        registry: Registry,
        content: ContentStore,
        images: ImageStore,
        lease: str,
        out: Throttle,
        concurrency: int,
    ) -> None:
        self.name = name
        self.repo = name.path
        self.host = name.domain
        self.registry = registry
        self.content = content
        self.images = images
        self.lease = lease
        self.out = out
        self.concurrency = max(1, concurrency)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._known: set[str] = set()  #: blobs the repository has, seen by this push

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _Cancelled()

    # --- one tag ----------------------------------------------------------------------

    def push_tag(self, tag: str, image: Image) -> PushedTag:
        raw = self.content.read(image.manifest_digest, max_size=MAX_MANIFEST)
        manifest = parse_manifest(raw, image.media_type)
        if not isinstance(manifest, Manifest) or len(manifest.layers) != len(image.layers):
            raise FailedPrecondition(
                f"image {image.id}: manifest {image.manifest_digest} does not match its layers"
            )
        layers = self._push_layers(manifest, image.diff_ids)
        self._push_blob(manifest.config, None)
        media_type = manifest.media_type or image.media_type
        if [str(d.digest) for d in layers] != [str(d.digest) for d in manifest.layers]:
            raw = _with_layers(manifest, layers).to_bytes()
        digest = str(Digest.of(raw))
        answered = self.registry.put_manifest(self.repo, tag, raw, media_type)
        if answered and answered != digest:
            raise BadContent(
                f"manifest of {self.name.name}:{tag}: the registry stored it as {answered},"
                f" not {digest}"
            )
        self.out.status(f"{tag}: digest: {digest} size: {len(raw)}")
        self.out.send(aux({"Tag": tag, "Digest": digest, "Size": len(raw)}))
        self._record(image, layers, raw, digest)
        return PushedTag(tag, digest, len(raw))

    def _push_layers(self, manifest: Manifest, diff_ids: list[str]) -> list[Descriptor]:
        """Push the layers, top first; returns their descriptors as pushed, in order.
        The first failure stops the other uploads at their next read."""
        order = list(reversed(range(len(manifest.layers))))
        ids = [short_id(d) for d in diff_ids]
        for i in order:
            self.out.event("Preparing", ids[i])
        compression = _compression(manifest.layers)
        futures: dict[str, Future[Descriptor]] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="push")
        try:
            for n, i in enumerate(order):
                key = str(manifest.layers[i].digest)
                if key in futures:
                    continue
                if n >= self.concurrency:
                    self.out.event("Waiting", ids[i])
                futures[key] = pool.submit(
                    self._push_layer, manifest.layers[i], diff_ids[i], ids[i], compression
                )
            done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self.stop.set()
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [futures[str(d.digest)].result() for d in manifest.layers]

    def _push_layer(self, desc: Descriptor, diff_id: str, pid: str, compression: str) -> Descriptor:
        if desc.urls:  # a foreign layer: the registry does not get it
            return desc
        if (desc.media_type, compression) in _COMPRESSED:
            desc = self._compressed(desc, diff_id, compression)
        self._push_blob(desc, pid)
        return desc

    # --- one blob -----------------------------------------------------------------------

    def _push_blob(self, desc: Descriptor, pid: str | None) -> None:
        """HEAD, else mount, else upload; ``pid`` None: silently (the config)."""
        self._check_stop()
        digest = str(desc.digest)
        self.content.lease(self.lease).add(digest)
        with self._lock:
            known = digest in self._known
        if known or self.registry.blob_exists(self.repo, digest) is not None:
            self._event("Layer already exists", pid)
        else:
            source = self._mount(digest)
            if source is not None:
                self._event(f"Mounted from {source}", pid)
            else:
                self._upload(desc, pid)
                self._event("Pushed", pid)
        with self._lock:
            self._known.add(digest)
        add_source(self.content, [digest], self.host, self.repo)

    def _event(self, text: str, pid: str | None) -> None:
        if pid is not None:
            self.out.event(text, pid)

    def _mount(self, digest: str) -> str | None:
        """The repository the blob was mounted from, or None."""
        try:
            labels = self.content.info(digest).labels
        except BlobNotFound:
            return None
        candidates = [r for r in reversed(sources(labels, self.host)) if r != self.repo]
        for source in candidates[:MAX_MOUNT_TRIES]:
            self._check_stop()
            try:
                if self.registry.mount_blob(self.repo, digest, source):
                    return source
            except (RegistryNotFound, RegistryDenied, RegistryUnauthorized):
                continue  # not there any more, or not ours to read: upload instead
        return None

    def _upload(self, desc: Descriptor, pid: str | None) -> None:
        digest, size = str(desc.digest), desc.size

        def report(n: int) -> None:
            if pid is not None:
                self.out.update("Pushing", pid, min(n, size), size)

        def open_() -> BinaryIO:
            return _Counting(self.content.open(digest), report, self.stop)  # type: ignore[return-value]

        self.registry.upload_blob(self.repo, desc, open_, _ignore)
        if pid is not None:
            self.out.update("Pushing", pid, size, size, final=True)

    # --- compressing an uncompressed layer ----------------------------------------------

    def _compressed(self, desc: Descriptor, diff_id: str, compression: str) -> Descriptor:
        """The compressed blob of an uncompressed layer: the one made by an earlier
        push, or made now."""
        digest = str(desc.digest)
        media_type = _COMPRESSED[(desc.media_type, compression)]
        key = COMPRESSED_LABEL + compression
        while True:
            self._check_stop()
            made = self.content.info(digest).labels.get(key)
            if made:
                self.content.lease(self.lease).add(made)
                try:
                    size = self.content.info(made).size
                    return Descriptor(media_type=media_type, digest=Digest(made), size=size)
                except BlobNotFound:  # collected since: make it again
                    pass
            try:
                writer = self.content.writer(f"push-{compression}-{digest}", lease=self.lease)
            except IngestLocked:  # another push is making it: wait, and use it
                self.stop.wait(_INGEST_POLL)
                continue
            made, size = self._compress(writer, digest, diff_id, compression)
            self.content.update_labels(digest, {key: made})
            return Descriptor(media_type=media_type, digest=Digest(made), size=size)

    def _compress(
        self, writer: Writer, digest: str, diff_id: str, compression: str
    ) -> tuple[str, int]:
        with writer:
            try:
                writer.truncate(0)  # a leftover of a crashed push cannot be resumed
                out = LayerWriter(writer, compression)  # type: ignore[arg-type]
                with self.content.open(digest) as f:
                    while chunk := f.read(CHUNK):
                        self._check_stop()
                        out.write(chunk)
                got, made, size = out.close()
                if got != diff_id:
                    raise FailedPrecondition(
                        f"layer blob {digest} has diffID {got}, its image says {diff_id}"
                    )
                writer.commit(made, size, labels={UNCOMPRESSED_LABEL: diff_id}, ok_if_exists=True)
            except BaseException:
                if not writer.closed:
                    writer.abort()
                raise
        return made, size

    # --- the image's RepoDigest ---------------------------------------------------------

    def _record(self, image: Image, layers: list[Descriptor], raw: bytes, digest: str) -> None:
        """Give the image the RepoDigest of what was pushed (and keep that manifest)."""
        if not self.images.exists(image.id):  # removed meanwhile: do not bring it back
            return
        try:
            self.images.create(
                image.config,
                list(zip(layers, image.diff_ids, strict=True)),
                manifest=raw,
                repo_digest=f"{self.name.name}@{digest}",
            )
        except MissingContent:  # a foreign layer, not in the store
            pass


def _compression(layers: list[Descriptor]) -> str:
    """How to compress the uncompressed layers of an image: zstd if its other layers
    are, else gzip."""
    for desc in layers:
        if mt.is_layer(desc.media_type) and mt.layer_compression(desc.media_type) == "zstd":
            return "zstd"
    return "gzip"


def _with_layers(manifest: Manifest, layers: list[Descriptor]) -> Manifest:
    return Manifest(
        schema_version=manifest.schema_version,
        media_type=manifest.media_type,
        artifact_type=manifest.artifact_type,
        config=manifest.config,
        layers=layers,
        subject=manifest.subject,
        annotations=manifest.annotations,
    )


def _targets(ref: Reference, images: ImageStore, all_tags: bool) -> list[tuple[str, Image]]:
    """(tag, image) of each tag to push."""
    if ref.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference: {ref.familiar()}")
    if not all_tags:
        tagged = ref.with_default_tag()
        try:
            return [(str(tagged.tag), images.get(str(tagged)))]
        except ImageNotFound:
            raise NotFound(f"tag does not exist: {tagged.familiar()}") from None
    if ref.tag is not None:
        raise InvalidArgument(f"tag can't be used with --all-tags/-a: {ref.familiar()}")
    from portside.oci.reference import parse_reference

    found = []
    for image in images.images():
        for name in image.tags:
            tagged = parse_reference(name)
            if tagged.name == ref.name and tagged.tag is not None:
                found.append((tagged.tag, image))
    if not found:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return sorted(found, key=lambda item: item[0])


def push(
    ref: Reference,
    *,
    registry: Registry,
    content: ContentStore,
    images: ImageStore,
    progress: Progress = noop,
    concurrency: int = 5,
    all_tags: bool = False,
) -> list[PushedTag]:
    """Push ``ref`` (``:latest`` without a tag), or with ``all_tags`` every tag of its
    repository, to ``registry`` (the client of ``ref.domain``), reporting Docker's
    progress messages to ``progress``."""
    out = Throttle(progress)
    out.status(f"The push refers to repository [{ref.name}]")
    targets = _targets(ref, images, all_tags)
    lease = content.create_lease(
        f"push-{os.getpid()}-{os.urandom(8).hex()}", time.time() + LEASE_SECONDS
    )
    try:
        pusher = _Pusher(
            ref.name_only(),
            registry=registry,
            content=content,
            images=images,
            lease=lease.id,
            out=out,
            concurrency=concurrency,
        )
        return [pusher.push_tag(tag, image) for tag, image in targets]
    finally:
        lease.delete()
