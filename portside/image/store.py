"""Images and tags over the content store, with Docker's semantics.

An image is what Docker calls one: a config blob (its digest is the image ID), a
manifest (made here, or the one pulled), layers (compressed blobs, with their
diffIDs from the config), tags and RepoDigests. The blobs live in the
:class:`~portside.image.content.ContentStore`; the metadata in SQLite
(``store_db``); Docker's response shapes are built by ``store_docker``.

Deleting an image drops metadata only; its blobs go at the next :meth:`ImageStore.gc`,
which keeps everything reachable from the images (:meth:`~ImageStore.gc_roots`,
:meth:`~ImageStore.gc_refs`) or held by a lease. :meth:`ImageStore.create` writes
under a lease, so a concurrent collection cannot take blobs it is about to record.
"""

from __future__ import annotations

import os
import time

from portside.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from portside.image import store_docker
from portside.image.content_common import BlobNotFound
from portside.image.store_db import Image, ImageDB, Layer, db_path
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest, InvalidDigest
from portside.oci.image_spec import (
    Descriptor,
    Manifest,
    ParsedManifest,
    parse_image_config,
    parse_manifest,
)
from portside.oci.reference import Reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

    from portside.image.content import ContentStore
    from portside.image.content_gc import GCResult
    from portside.oci.image_spec import ImageConfig

    #: given an image ID, the containers using it: (container ID, running)
    InUse = Callable[[str], Iterable[tuple[str, bool]]]

__all__ = [
    "AmbiguousImage",
    "Image",
    "ImageConflict",
    "ImageNotFound",
    "ImageStore",
    "InvalidImage",
    "Layer",
    "MissingContent",
    "chain_ids",
]

#: how long a create's lease lives if the process dies before dropping it
LEASE_SECONDS = 3600
#: manifests and indexes bigger than this are not read by gc or check
MAX_MANIFEST = 4 << 20
_HEX = frozenset("0123456789abcdef")
_CONFIG_TYPE = {mt.OCI_MANIFEST: mt.OCI_CONFIG, mt.DOCKER_MANIFEST: mt.DOCKER_CONFIG}
_TO_DOCKER = {
    mt.OCI_LAYER: mt.DOCKER_LAYER,
    mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP,
    mt.OCI_LAYER_ZSTD: mt.DOCKER_LAYER_ZSTD,
    mt.OCI_LAYER_NONDIST_GZIP: mt.DOCKER_FOREIGN_LAYER,
}
_TO_OCI = {v: k for k, v in _TO_DOCKER.items()}


class ImageNotFound(NotFound):
    """No image by that reference or ID; the message is Docker's."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such image: {name}")
        self.name = name


class AmbiguousImage(InvalidArgument):
    """A short image ID matches more than one image."""


class ImageConflict(Conflict):
    """Docker's image delete conflict (HTTP 409): ``hard`` ones cannot be forced;
    ``used`` when a container is the reason."""

    def __init__(self, message: str, *, hard: bool = False, used: bool = False) -> None:
        super().__init__(message)
        self.hard = hard
        self.used = used


class InvalidImage(InvalidArgument):
    """The config, manifest or layers given to ``create`` do not fit together."""


class MissingContent(FailedPrecondition):
    """A blob the image needs is not in the content store."""


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chainID of each layer (image-spec ``config.md``)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else str(Digest.of(f"{out[-1]} {diff_id}".encode())))
    return out


def _hex(text: str) -> bool:
    return bool(text) and _HEX.issuperset(text)


def _is_id_prefix(image_id: str, text: str) -> bool:
    """Docker's ``isImageIDPrefix``: was the image named by (a prefix of) its ID?"""
    return image_id.startswith(text) or image_id.partition(":")[2].startswith(text)


def _tag_ref(text: str) -> Reference:
    """A reference to tag with: no digest, ``:latest`` by default."""
    ref = parse_reference(text)
    if ref.digest is not None:
        raise InvalidArgument(f"refusing to create a tag with a digest reference: {text}")
    if ref.familiar_name == "sha256":
        raise InvalidArgument(
            f"refusing to create an ambiguous tag using digest algorithm as name: {text}"
        )
    return ref.with_default_tag()


def _digest_ref(text: str) -> Reference:
    """A RepoDigest, ``name@digest`` (a tag in it is dropped)."""
    ref = parse_reference(text)
    if ref.digest is None:
        raise InvalidArgument(f"repo digest {text!r} has no digest: want name@sha256:...")
    return Reference(ref.domain, ref.path, None, ref.digest)


def _named(text: str) -> Reference:
    """What ``text`` names in the tag or RepoDigest tables."""
    ref = parse_reference(text)
    if ref.digest is not None:
        return Reference(ref.domain, ref.path, None, ref.digest)
    return ref.with_default_tag()


def _layer_descriptor(desc: Descriptor, manifest_type: str, index: int) -> Descriptor:
    """``desc`` with the layer media type of ``manifest_type``'s family."""
    if not mt.is_layer(desc.media_type):
        raise InvalidImage(f"layer {index}: not a layer media type: {desc.media_type!r}")
    table = _TO_DOCKER if manifest_type == mt.DOCKER_MANIFEST else _TO_OCI
    family = set(table.values())
    if desc.media_type in family:
        return desc
    converted = table.get(desc.media_type)
    if converted is None:
        raise InvalidImage(
            f"layer {index}: media type {desc.media_type!r} has no equivalent in a"
            f" {manifest_type} manifest"
        )
    doc = desc.to_json()
    doc["mediaType"] = converted
    return Descriptor.from_json(doc)


class ImageStore:
    """Images, tags and RepoDigests under ``root``, blobs in ``content``."""

    def __init__(self, root: str, content: ContentStore) -> None:
        self.root = root
        self.content = content
        try:
            os.makedirs(root, 0o700, exist_ok=True)
        except OSError as exc:
            raise FailedPrecondition(f"creating image store {root}: {exc.strerror}") from exc
        self.db = ImageDB(db_path(root))

    def __repr__(self) -> str:
        return f"ImageStore({self.root!r})"

    # --- create -------------------------------------------------------------------------

    def create(
        self,
        config: bytes,
        layers: Sequence[tuple[Descriptor, str]],
        *,
        manifest_media_type: str = mt.OCI_MANIFEST,
        manifest: bytes | None = None,
        tags: Iterable[str] = (),
        repo_digest: str | None = None,
    ) -> Image:
        """Record an image made of ``config`` and ``layers`` (each the descriptor of
        a compressed blob already in the content store, with its diffID).

        The config and a manifest of ``manifest_media_type`` (OCI or Docker schema 2)
        are written to the content store; or ``manifest``, the exact bytes of a
        pulled one, is checked against the config and layers and stored instead.
        An image that exists already only gains ``tags`` and ``repo_digest``."""
        parsed = self._parse_config(config)
        tag_refs = [_tag_ref(t) for t in tags]
        digest_ref = _digest_ref(repo_digest) if repo_digest is not None else None
        image_id = str(Digest.of(config))
        descs = self._check_layers(parsed, layers)
        if manifest is None:
            raw, media_type, descs = self._make_manifest(config, descs, manifest_media_type)
        else:
            raw, media_type, descs = self._check_manifest(manifest, image_id, descs)
        diff_ids = [str(d) for _, d in layers]
        rows = [
            Layer(diff_id, chain_id, str(d.digest), d.media_type, d.size)
            for diff_id, chain_id, d in zip(diff_ids, chain_ids(diff_ids), descs, strict=True)
        ]
        lease_id = f"image-create-{os.getpid()}-{os.urandom(8).hex()}"
        lease = self.content.create_lease(lease_id, time.time() + LEASE_SECONDS)
        try:
            # held before looking, so gc cannot take them after
            lease.add_all(str(desc.digest) for desc in descs)
            self._check_blobs(descs)
            self.content.write_blob(config, lease=lease_id)
            manifest_digest = self.content.write_blob(raw, lease=lease_id)
            return self._record(
                image_id=image_id,
                manifest_digest=manifest_digest,
                media_type=media_type,
                config=config,
                parsed=parsed,
                layers=rows,
                tags=tag_refs,
                repo_digest=digest_ref,
            )
        finally:
            lease.delete()

    @staticmethod
    def _parse_config(config: bytes) -> ImageConfig:
        try:
            return parse_image_config(config)
        except InvalidArgument as exc:
            raise InvalidImage(f"invalid image config: {exc}") from exc

    @staticmethod
    def _check_layers(
        config: ImageConfig, layers: Sequence[tuple[Descriptor, str]]
    ) -> list[Descriptor]:
        """The layer descriptors, once the diffIDs are those of the config."""
        want = [str(d) for d in config.rootfs.diff_ids]
        if len(want) != len(layers):
            raise InvalidImage(
                f"the image config has {len(want)} rootfs.diff_ids but {len(layers)} layers"
                " were given"
            )
        for i, ((_, diff_id), expected) in enumerate(zip(layers, want, strict=True)):
            try:
                Digest(diff_id)
            except InvalidDigest as exc:
                raise InvalidImage(f"layer {i}: {exc}") from exc
            if diff_id != expected:
                raise InvalidImage(
                    f"layer {i}: diffID {diff_id} does not match the config's"
                    f" rootfs.diff_ids[{i}] {expected}"
                )
        return [desc for desc, _ in layers]

    def _check_blobs(self, descs: Sequence[Descriptor]) -> None:
        for i, desc in enumerate(descs):
            try:  # a stat, not info(): the labels are not needed
                size = os.stat(self.content.path(str(desc.digest))).st_size
            except FileNotFoundError:
                raise MissingContent(
                    f"layer {i}: blob {desc.digest} is not in the content store"
                ) from None
            if size != desc.size:
                raise InvalidImage(
                    f"layer {i}: blob {desc.digest} is {size} bytes, the descriptor says"
                    f" {desc.size}"
                )

    @staticmethod
    def _make_manifest(
        config: bytes, descs: Sequence[Descriptor], media_type: str
    ) -> tuple[bytes, str, list[Descriptor]]:
        """The manifest's bytes, its media type, and the layers as it lists them."""
        config_type = _CONFIG_TYPE.get(media_type)
        if config_type is None:
            raise InvalidArgument(
                f"unsupported manifest media type {media_type!r}: want {mt.OCI_MANIFEST}"
                f" or {mt.DOCKER_MANIFEST}"
            )
        manifest = Manifest(
            schema_version=2,
            media_type=media_type,
            config=Descriptor.of(config_type, config),
            layers=[_layer_descriptor(d, media_type, i) for i, d in enumerate(descs)],
        )
        return manifest.to_bytes(), media_type, manifest.layers

    @staticmethod
    def _check_manifest(
        raw: bytes, image_id: str, descs: Sequence[Descriptor]
    ) -> tuple[bytes, str, list[Descriptor]]:
        try:
            parsed = ParsedManifest.parse(raw)
        except InvalidArgument as exc:
            raise InvalidImage(f"invalid manifest: {exc}") from exc
        obj = parsed.obj
        if not isinstance(obj, Manifest):
            raise InvalidImage(f"manifest {parsed.digest} is an index, not an image manifest")
        if obj.config.digest != image_id:
            raise InvalidImage(
                f"manifest {parsed.digest} names config {obj.config.digest}, not {image_id}"
            )
        got = [str(d.digest) for d in obj.layers]
        want = [str(d.digest) for d in descs]
        if got != want:
            raise InvalidImage(
                f"manifest {parsed.digest} has layers {got}, but the layers given are {want}"
            )
        for i, (mine, given) in enumerate(zip(obj.layers, descs, strict=True)):
            if mine.size != given.size:
                raise InvalidImage(
                    f"manifest {parsed.digest}: layer {i} is {mine.size} bytes, the descriptor"
                    f" given says {given.size}"
                )
        return bytes(raw), parsed.media_type, obj.layers

    def _record(
        self,
        *,
        image_id: str,
        manifest_digest: str,
        media_type: str,
        config: bytes,
        parsed: ImageConfig,
        layers: list[Layer],
        tags: list[Reference],
        repo_digest: Reference | None,
    ) -> Image:
        def body(conn: sqlite3.Connection) -> Image:
            now = time.time()
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                conn.execute(
                    "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        image_id,
                        manifest_digest,
                        media_type,
                        config,
                        parsed.created,
                        store_docker.parse_time(parsed.created),
                        sum(layer.size for layer in layers),
                        now,
                    ),
                )
                conn.executemany(
                    "INSERT INTO layers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (image_id, i, la.diff_id, la.chain_id, la.digest, la.media_type, la.size)
                        for i, la in enumerate(layers)
                    ],
                )
            for ref in tags:
                _set_tag(conn, ref, image_id, now)
            if repo_digest is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO repo_digests VALUES (?, ?, ?)",
                    (str(repo_digest), image_id, now),
                )
            return self.db.load(conn, [image_id])[0]

        return self.db.transaction(body)  # type: ignore[return-value]

    # --- lookups ------------------------------------------------------------------------

    def get(self, ref_or_id: str | Image) -> Image:
        """The image named by a full or ``sha256:`` ID, a unique short ID prefix (4 or
        more hex digits), a tag (``busybox`` is ``docker.io/library/busybox:latest``)
        or a ``name@digest``, resolved in Docker's order."""
        conn, cached = self.db.cached()
        failed = True
        try:
            image = self.db.load(conn, [self._resolve(conn, ref_or_id)])[0]
            failed = False
            return image
        except ImageNotFound:
            failed = False
            raise
        finally:
            self.db.release(conn, cached, failed=failed)

    def _resolve(self, conn: sqlite3.Connection, ref_or_id: str | Image) -> str:
        """The ID of the image ``ref_or_id`` names (see :meth:`get`)."""
        if isinstance(ref_or_id, Image):
            ref_or_id = ref_or_id.id
        text = ref_or_id
        full = None
        if len(text) == 64 and _hex(text):
            full = "sha256:" + text
        elif text.startswith("sha256:") and len(text) == 71 and _hex(text[7:]):
            full = text
        if full is not None:
            if conn.execute("SELECT 1 FROM images WHERE id = ?", (full,)).fetchone():
                return full
            raise ImageNotFound(full)
        ref = _named(text)
        table = "tags" if ref.digest is None else "repo_digests"
        row = conn.execute(f"SELECT image_id FROM {table} WHERE name = ?", (str(ref),)).fetchone()
        if row is not None:
            return str(row[0])
        prefix = text[7:] if text.startswith("sha256:") else text
        if len(prefix) >= 4 and _hex(prefix):
            rows = conn.execute(
                "SELECT id FROM images WHERE id LIKE ? LIMIT 2", (f"sha256:{prefix}%",)
            ).fetchall()
            if len(rows) > 1:
                raise AmbiguousImage(f"image id prefix {prefix} is ambiguous: it names several")
            if rows:
                return str(rows[0][0])
        raise ImageNotFound(ref.familiar())

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.get(ref_or_id)
        except ImageNotFound:
            return False
        return True

    def images(self) -> list[Image]:
        """Every image, in no particular order."""
        conn, cached = self.db.cached()
        failed = True
        try:
            images = self.db.load(conn)
            failed = False
            return images
        finally:
            self.db.release(conn, cached, failed=failed)

    def inspect(self, image: str | Image) -> dict[str, Any]:
        """Docker's ``ImageInspect`` of ``image`` (an Image, or a name to :meth:`get`)."""
        return store_docker.inspect(image if isinstance(image, Image) else self.get(image))

    def history(self, image: str | Image) -> list[dict[str, Any]]:
        """Docker's ``/images/{name}/history`` of ``image``."""
        return store_docker.history(image if isinstance(image, Image) else self.get(image))

    def list(
        self, all: bool = False, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Docker's ``ImageSummary`` list, newest first. ``filters``: dangling,
        label (``key`` or ``key=value``), reference (glob), before, since. There
        are no intermediate images here, so ``all`` changes nothing."""
        wanted = store_docker.normalize_filters(filters)
        images = self.images()
        chain_users: dict[str, int] = {}
        for image in images:
            for layer in image.layers:
                chain_users[layer.chain_id] = chain_users.get(layer.chain_id, 0) + 1
        chosen = store_docker.select(images, wanted, self.get)
        chosen.sort(key=lambda i: (-i.created_unix, i.id))
        return [store_docker.summary(image, chain_users) for image in chosen]

    # --- tags ---------------------------------------------------------------------------

    def tag(self, image: str | Image, ref: str) -> Reference:
        """Point the tag ``ref`` (``:latest`` by default) at ``image``, moving it
        from any other image; returns the normalised tag."""
        target = _tag_ref(ref)

        def body(conn: sqlite3.Connection) -> None:
            _set_tag(conn, target, self._resolve(conn, image), time.time())

        self.db.transaction(body)
        return target

    def untag(self, ref: str) -> str:
        """Remove the tag or RepoDigest ``ref`` (the image stays, maybe dangling);
        returns it in Docker's short form."""
        named = _named(ref)
        table = "tags" if named.digest is None else "repo_digests"

        def body(conn: sqlite3.Connection) -> int:
            return conn.execute(f"DELETE FROM {table} WHERE name = ?", (str(named),)).rowcount

        if not self.db.transaction(body):
            raise ImageNotFound(named.familiar())
        return named.familiar()

    # --- remove and prune ---------------------------------------------------------------

    def remove(
        self, ref_or_id: str, *, force: bool = False, in_use: InUse | None = None
    ) -> list[dict[str, str]]:
        """``docker rmi``: untag, and delete the image when nothing names it any more.

        ``in_use(image_id)`` gives the containers using an image, as (container ID,
        running) pairs. Returns ``{"Untagged": …}`` and ``{"Deleted": …}`` items, as
        the API does; raises :class:`ImageConflict` with Docker's message when a
        container or other references stand in the way (see ``store_remove``)."""
        from portside.image.store_remove import remove

        return self.db.transaction(lambda conn: remove(self, conn, ref_or_id, force, in_use))  # type: ignore[return-value]

    def prune(
        self,
        dangling_only: bool = True,
        *,
        in_use: InUse | None = None,
        collect: bool = True,
    ) -> dict[str, Any]:
        """Remove unused images: untagged ones, or with ``dangling_only=False`` every
        image no container uses. ``SpaceReclaimed`` is the size of the blobs that no
        other image needs; with ``collect`` they are removed by a :meth:`gc` now."""
        deleted: list[dict[str, str]] = []
        blobs: dict[str, set[str]] = {}
        for image in self.images():
            if dangling_only and image.tags:
                continue
            if in_use is not None and any(True for _ in in_use(image.id)):
                continue
            blobs[image.id] = {image.id, image.manifest_digest, *(la.digest for la in image.layers)}
            for name in [*image.tags, *image.repo_digests] or [image.id]:
                try:
                    deleted.extend(self.remove(name, in_use=in_use))
                except (ImageConflict, ImageNotFound):
                    continue
        freed: set[str] = set()
        for item in deleted:
            freed |= blobs.get(item.get("Deleted", ""), set())
        reclaimed = 0
        if freed:
            for digest in freed - self.gc_roots():
                try:
                    reclaimed += self.content.info(digest).size
                except BlobNotFound:
                    continue
            if collect:
                self.gc()
        return {"ImagesDeleted": deleted, "SpaceReclaimed": reclaimed}

    # --- garbage collection and checks --------------------------------------------------

    def gc_roots(self) -> set[str]:
        """Every blob an image names: manifests, configs, layers, and the targets
        of RepoDigests (an index, for a pulled multi-platform image)."""
        rows = self.db.read(
            "SELECT manifest_digest FROM images UNION SELECT id FROM images"
            " UNION SELECT digest FROM layers UNION SELECT name FROM repo_digests"
        )
        return {str(r[0]).rpartition("@")[2] for r in rows}

    def gc_refs(self, digest: str) -> list[str]:
        """The blobs ``digest`` points at: an image's manifest → its config and
        layers (from the database); any other manifest → config and layers, an
        index → its manifests (read from the blob). Nothing for other blobs."""
        rows = self.db.read(
            "SELECT id FROM images WHERE manifest_digest = ?"
            " UNION ALL SELECT digest FROM layers WHERE image_id IN"
            " (SELECT id FROM images WHERE manifest_digest = ?)",
            (digest, digest),
        )
        if rows:
            return [str(r[0]) for r in rows]
        if self.db.read("SELECT 1 FROM images WHERE id = ? LIMIT 1", (digest,)):
            return []  # a config
        return _blob_children(self.content, digest)

    def gc(self, dry_run: bool = False) -> GCResult:
        """Collect the content store: remove blobs no image needs and no lease holds.
        The roots are read under the store's gc lock, after its leases, so an image
        recorded (and its lease dropped) during the collection is kept."""

        def roots() -> Iterator[str]:
            yield from self.gc_roots()

        return self.content.gc(roots(), self.gc_refs, dry_run=dry_run)

    def check(self, *, verify_layers: bool = False) -> list[str]:
        """Problems found, one sentence each; empty when consistent. Every image's
        manifest and config blobs must exist and match the metadata, its layer blobs
        exist with their size (and digest, with ``verify_layers``), and every tag
        and RepoDigest point at an image."""
        from portside.image.store_check import check

        return check(self, verify_layers=verify_layers)


def _set_tag(conn: sqlite3.Connection, ref: Reference, image_id: str, now: float) -> None:
    conn.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", (str(ref), image_id, now))
    conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (now, image_id))


def _blob_children(content: ContentStore, digest: str) -> list[str]:
    """Children of a manifest or index blob; nothing for a blob that is not one."""
    try:
        head = content.read_range(digest, 0, 64)
        if not head.lstrip().startswith(b"{"):
            return []
        raw = content.read(digest, max_size=MAX_MANIFEST)
        doc = parse_manifest(raw)
    except (InvalidArgument, BlobNotFound):
        return []
    if isinstance(doc, Manifest):
        return [str(doc.config.digest), *(str(d.digest) for d in doc.layers)]
    return [str(d.digest) for d in doc.manifests]
