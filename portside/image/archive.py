"""Moving images as files: ``docker save`` / ``docker load`` archives and OCI image layouts.

:func:`save` writes a deterministic tar (sorted members, mtime 0, uid/gid 0) of either

* ``"docker"``: what Docker 25+ writes — an OCI image layout (``oci-layout``,
  ``index.json``, ``blobs/<alg>/<hex>``) plus ``manifest.json`` and ``repositories``
  whose paths point into ``blobs/``, so both docker-archive and OCI readers take it; or
* ``"oci"``: the OCI image layout alone (image-spec ``image-layout.md``).

Blobs are copied as stored (no recompression), so digests survive a round trip.
Where that differs from Docker's graphdriver store, which writes every layer
uncompressed under its diffID: a compressed layer stays compressed under its blob
digest (as Docker's containerd image store writes it; ``docker load`` decompresses),
and so gets no ``LayerSources`` entry. ``repositories`` names each tag's top layer by
diffID, and a bare name (``busybox``) saves every tag of it, as Docker does.

:func:`load` streams an archive of either kind, older Docker ones too
(``<id>/layer.tar``, ``<id>.json``): each member is spooled into the content store as
it passes (under a lease, so a gc cannot take half-loaded blobs), and the images are
resolved once the whole tar is read — ``manifest.json`` may come last. Every image is
checked before any is recorded: bad input tags nothing.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
import time

from portside.errors import InvalidArgument
from portside.image.content_common import ALGORITHMS, BUFSIZE, BlobExists, DigestMismatch
from portside.oci import mediatypes as mt
from portside.oci.digest import Digest, InvalidDigest
from portside.oci.image_spec import Descriptor, Index, Manifest, parse_image_config
from portside.oci.reference import InvalidReference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, BinaryIO

    from portside.image.content import ContentStore
    from portside.image.store import Image, ImageStore
    from portside.oci.reference import Reference

__all__ = ["FORMATS", "InvalidArchive", "load", "save"]

FORMATS = ("docker", "oci")
#: annotation of an index entry: the tag alone (image-spec)
REF_NAME = "org.opencontainers.image.ref.name"
#: annotation of an index entry: the full image name (containerd, Docker 25+)
IMAGE_NAME = "io.containerd.image.name"
#: the small JSON files of an archive are read into memory up to this size
MAX_JSON = 8 << 20
#: the load lease outlives a crashed process by this long at most
LEASE_SECONDS = 3600
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class InvalidArchive(InvalidArgument):
    """The archive given to :func:`load` is malformed, incomplete or corrupt."""


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- save -----------------------------------------------------------------------------


def _resolve_refs(store: ImageStore, refs: Iterable[str]) -> list[tuple[Image, list[str]]]:
    """The images named by ``refs``, in order of first mention, each with the tags
    (normalised) it was named by; an image named by ID has none of its own. A bare
    name (``busybox``) names every tag of it, as ``docker save busybox`` does; only
    when it has none is it looked up as an image (``busybox:latest``, an ID prefix)."""
    out: dict[str, tuple[Image, list[str]]] = {}

    def add(image: Image, tag: str | None) -> None:
        _, tags = out.setdefault(image.id, (image, []))
        if tag is not None and tag in image.tags and tag not in tags:
            tags.append(tag)

    for text in refs:
        try:
            ref: Reference | None = parse_reference(text)
        except InvalidReference:
            ref = None
        if ref is not None and ref.tag is None and ref.digest is None:
            named = _tags_of_name(store, ref.name)
            for image, tag in named:
                add(image, tag)
            if named:
                continue
        image = store.get(text)
        add(image, None if ref is None else str(ref.with_default_tag()))
    return list(out.values())


def _tags_of_name(store: ImageStore, name: str) -> list[tuple[Image, str]]:
    """(image, tag) of every tag of repository ``name`` (normalised), by tag."""
    found = [
        (tag, image)
        for image in store.images()
        for tag in image.tags
        if tag.rpartition(":")[0] == name
    ]
    return [(image, tag) for tag, image in sorted(found, key=lambda f: f[0])]


def _index_entries(images: list[tuple[Image, list[str]]], content: ContentStore) -> list[Any]:
    entries = []
    for image, tags in images:
        raw = content.read(image.manifest_digest)
        base = {"mediaType": image.media_type, "digest": image.manifest_digest, "size": len(raw)}
        if not tags:
            entries.append(base)
        for tag in tags:
            ref = parse_reference(tag)
            entries.append({**base, "annotations": {IMAGE_NAME: tag, REF_NAME: ref.tag or ""}})
    return entries


def _blob_path(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"blobs/{alg}/{hexpart}"


def _layer_sources(image: Image) -> dict[str, Any]:
    """``LayerSources`` of a manifest.json entry, as Docker 25+ writes it: each layer's
    descriptor by diffID. Only for uncompressed layers: Docker keeps a source as the
    layer's own descriptor, and one naming a compressed blob would make its next
    ``docker save`` list a digest that is not in that archive."""
    out: dict[str, Any] = {}
    for layer in image.layers:
        if mt.is_layer(layer.media_type) and mt.layer_compression(layer.media_type) == "none":
            desc = {"mediaType": layer.media_type, "size": layer.size, "digest": layer.digest}
            out.setdefault(layer.diff_id, desc)
    return out


def _docker_files(images: list[tuple[Image, list[str]]]) -> dict[str, bytes]:
    """``manifest.json`` and ``repositories`` of a Docker 25+ archive (moby's
    ``image/tarexport/save.go``): ``repositories`` maps each tag to the hex of the
    image's top layer (its diffID, the name Docker's layer file has), and is left out
    when no image is tagged; both end in a newline, as Go's JSON encoder writes."""
    entries = []
    repositories: dict[str, dict[str, str]] = {}
    for image, tags in images:
        familiar = [parse_reference(t).familiar() for t in tags]
        entry: dict[str, Any] = {
            "Config": _blob_path(image.id),
            "RepoTags": familiar,
            "Layers": [_blob_path(layer.digest) for layer in image.layers],
        }
        sources = _layer_sources(image)
        if sources:
            entry["LayerSources"] = sources
        entries.append(entry)
        for tag in tags:
            ref = parse_reference(tag)
            top = Digest(image.layers[-1].diff_id).hex if image.layers else Digest(image.id).hex
            repositories.setdefault(ref.familiar_name, {})[ref.tag or ""] = top
    files = {"manifest.json": _dumps(entries) + b"\n"}
    if repositories:
        files["repositories"] = _dumps(repositories) + b"\n"
    return files


def _tarinfo(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def save(
    store: ImageStore,
    content: ContentStore,
    refs: list[str],
    out: BinaryIO,
    *,
    format: str = "docker",
) -> None:
    """Write the images named by ``refs`` (tags or IDs) to ``out`` as a tar of
    ``format``: ``"docker"`` (``docker save``'s, readable as an OCI layout too) or
    ``"oci"`` (an OCI image layout)."""
    if format not in FORMATS:
        raise InvalidArgument(f"unknown archive format {format!r}: want one of {FORMATS}")
    if not refs:
        raise InvalidArgument("no images to save: want at least one reference")
    images = _resolve_refs(store, refs)
    blobs: set[str] = set()
    for image, _ in images:
        blobs.update([image.id, image.manifest_digest, *(la.digest for la in image.layers)])
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX}
    index["manifests"] = _index_entries(images, content)  # type: ignore[assignment]
    files = {"index.json": _dumps(index), "oci-layout": _LAYOUT}
    if format == "docker":
        files.update(_docker_files(images))
    members: dict[str, str | bytes | None] = {"blobs/": None}
    for digest in blobs:
        members[posixpath.dirname(_blob_path(digest)) + "/"] = None
        members[_blob_path(digest)] = digest
    members.update(files)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(members):
            what = members[name]
            if what is None:
                tf.addfile(_tarinfo(name.rstrip("/"), directory=True))
            elif isinstance(what, bytes):
                tf.addfile(_tarinfo(name, len(what)), io.BytesIO(what))
            else:
                with content.open(what) as blob:
                    size = os.fstat(blob.fileno()).st_size
                    tf.addfile(_tarinfo(name, size), blob)


# --- load: reading the tar ------------------------------------------------------------


class _Spool:
    """What the tar held: each regular file's (digest, size) in the content store,
    the links between paths, and the small JSON files by name."""

    def __init__(self, content: ContentStore, lease_id: str) -> None:
        self.content = content
        self.lease_id = lease_id
        self.files: dict[str, tuple[str, int]] = {}
        self.links: dict[str, str] = {}
        self.json: dict[str, bytes] = {}

    def lookup(self, path: str, what: str) -> tuple[str, int]:
        """(digest, size) of the file at ``path`` (as written in ``what``), following links."""
        name = _clean_path(path, what)
        for _ in range(32):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise InvalidArchive(f"{what}: {path!r} is not in the archive")

    def blob(self, digest: str, what: str) -> tuple[str, int]:
        return self.lookup(_blob_path(str(digest)), what)

    def add(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _member_name(member.name)
        if name is None:
            return
        if member.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            self.links[name] = target
        elif member.islnk():
            self.links[name] = posixpath.normpath(member.linkname.removeprefix("./"))
        elif member.isreg():
            src = tf.extractfile(member)
            assert src is not None  # a regular file always has data
            if "/" not in name and name.endswith((".json", "repositories", "oci-layout")):
                if member.size > MAX_JSON:
                    raise InvalidArchive(f"{name}: {member.size} bytes, more than {MAX_JSON}")
                self.json[name] = src.read()
                self.files[name] = self._write(name, io.BytesIO(self.json[name]), member.size)
                return
            self.files[name] = self._write(name, src, member.size)

    def _write(self, name: str, src: BinaryIO, size: int) -> tuple[str, int]:
        expected = _digest_of_path(name)
        if expected is not None:
            self.content.lease(self.lease_id).add(expected)  # held before we look
            if self.content.exists(expected):
                return expected, size
        ref = f"load-{os.getpid()}-{os.urandom(8).hex()}"
        try:
            writer = self.content.writer(ref, expected=expected, size=size, lease=self.lease_id)
        except BlobExists:
            return str(expected), size
        try:
            while chunk := src.read(BUFSIZE):
                writer.write(chunk)
            return writer.commit(ok_if_exists=True), size
        except DigestMismatch as exc:
            raise InvalidArchive(f"{name}: content does not match its name: {exc}") from exc
        finally:
            if not writer.closed:
                writer.abort()


def _member_name(name: str) -> str | None:
    """A member's path, normalised; None for one outside the archive's root."""
    name = posixpath.normpath(name.lstrip("/"))
    if name == "." or name.startswith("../") or name == "..":
        return None
    return name


def _clean_path(path: object, what: str) -> str:
    """A path named in ``manifest.json`` or found by digest: relative, no ``..``."""
    if not isinstance(path, str) or not path:
        raise InvalidArchive(f"{what}: invalid path {path!r}: want a non-empty string")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts:
        raise InvalidArchive(f"{what}: invalid path {path!r}: must stay inside the archive")
    return posixpath.normpath(path)


def _digest_of_path(name: str) -> str | None:
    """``alg:hex`` for ``blobs/<alg>/<hex>``; None for any other path."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        return None
    if parts[1] not in ALGORITHMS:
        raise InvalidArchive(f"{name}: unsupported digest algorithm {parts[1]!r}")
    try:
        return str(Digest(f"{parts[1]}:{parts[2]}"))
    except InvalidDigest as exc:
        raise InvalidArchive(f"{name}: not named by a digest: {exc}") from exc


# --- load: resolving images -----------------------------------------------------------


class _Pending:
    """An image ready to record: config, layers with diffIDs, manifest bytes, tags."""

    def __init__(
        self,
        config: bytes,
        layers: list[tuple[Descriptor, str]],
        manifest: bytes | None,
        tags: list[str],
    ) -> None:
        self.config = config
        self.layers = layers
        self.manifest = manifest
        self.tags = tags


def _json(spool: _Spool, name: str) -> Any:
    try:
        return json.loads(spool.json[name])
    except ValueError as exc:
        raise InvalidArchive(f"{name}: invalid JSON: {exc}") from exc


def _read_blob(spool: _Spool, digest: str, what: str) -> bytes:
    """A small blob the archive holds at ``blobs/<alg>/<hex>``."""
    digest, size = spool.lookup(_blob_path(digest), what)
    return _read_small(spool, digest, size, what)


def _read_small(spool: _Spool, digest: str, size: int, what: str) -> bytes:
    if size > MAX_JSON:
        raise InvalidArchive(f"{what}: blob {digest} is {size} bytes, more than {MAX_JSON}")
    return spool.content.read(digest, max_size=MAX_JSON)


def _diff_ids(config: bytes, count: int, what: str) -> list[str]:
    try:
        parsed = parse_image_config(config)
    except InvalidArgument as exc:
        raise InvalidArchive(f"{what}: invalid image config: {exc}") from exc
    diff_ids = [str(d) for d in parsed.rootfs.diff_ids]
    if len(diff_ids) != count:
        raise InvalidArchive(
            f"{what}: the config has {len(diff_ids)} rootfs.diff_ids but there are {count} layers"
        )
    return diff_ids


def _sniff_layer(content: ContentStore, digest: str) -> str:
    """The OCI layer media type of a blob, from its first bytes."""
    head = content.read_range(digest, 0, 4)
    if head.startswith(_GZIP_MAGIC):
        return mt.OCI_LAYER_GZIP
    if head.startswith(_ZSTD_MAGIC):
        return mt.OCI_LAYER_ZSTD
    return mt.OCI_LAYER


def _verify_diff_id(content: ContentStore, desc: Descriptor, diff_id: str, what: str) -> None:
    """Check that the layer uncompresses (gzip, zstd or none) to ``diff_id``."""
    from portside.image.tarstream import LayerSource

    with content.open(str(desc.digest)) as f:
        source = LayerSource(f, prefetch=False)
        try:
            while source.read():
                pass
        except (InvalidArgument, OSError, EOFError) as exc:
            raise InvalidArchive(f"{what}: layer {desc.digest}: {exc}") from exc
        finally:
            source.close()
    got = source.diff_id()
    if got != diff_id:
        raise InvalidArchive(f"{what}: layer {desc.digest} has diffID {got}, config says {diff_id}")


def _layers(
    spool: _Spool, descs: list[Descriptor], diff_ids: list[str], what: str
) -> list[tuple[Descriptor, str]]:
    for i, desc in enumerate(descs):
        if not mt.is_layer(desc.media_type):
            raise InvalidArchive(f"{what}: layer {i}: unknown media type {desc.media_type!r}")
        _verify_diff_id(spool.content, desc, diff_ids[i], f"{what}: layer {i}")
    return list(zip(descs, diff_ids, strict=True))


def _oci_manifests(spool: _Spool, index: Index, what: str, depth: int = 0) -> list[Any]:
    """(descriptor, manifest) of each image of the index; nested indexes give the host's."""
    from portside.oci.platform import host_platform

    out = []
    for i, desc in enumerate(index.manifests):
        where = f"{what}: manifests[{i}]"
        if mt.is_index(desc.media_type) and depth < 4:
            child = _parse_doc(_read_blob(spool, str(desc.digest), where), desc.media_type, where)
            host = host_platform().normalized().architecture
            if not isinstance(child, Index):
                raise InvalidArchive(f"{where}: an index media type, but not an index")
            for sub, man in _oci_manifests(spool, child, where, depth + 1):
                plat = sub.platform
                if plat is None or plat.normalized().architecture == host:
                    out.append((desc, man))  # the outer entry carries the name
        elif mt.is_manifest(desc.media_type):
            raw = _read_blob(spool, str(desc.digest), where)
            out.append((desc, (raw, _parse_doc(raw, desc.media_type, where))))
        else:
            raise InvalidArchive(f"{where}: unknown media type {desc.media_type!r}")
    return out


def _parse_doc(raw: bytes, media_type: str | None, what: str) -> Manifest | Index:
    from portside.oci.image_spec import parse_manifest

    try:
        return parse_manifest(raw, media_type)
    except InvalidArgument as exc:
        raise InvalidArchive(f"{what}: {exc}") from exc


def _tag_of(desc: Descriptor) -> list[str]:
    """The tag an index entry names: containerd's full name, or a ref.name that is one."""
    for key in (IMAGE_NAME, REF_NAME):
        name = desc.annotations.get(key)
        if not name:
            continue
        try:
            ref = parse_reference(name)
        except InvalidReference:
            continue
        if ref.digest is None and (key == IMAGE_NAME or "/" in name or ":" in name):
            return [str(ref.with_default_tag())]
    return []


def _from_oci(spool: _Spool) -> list[_Pending]:
    index = _parse_doc(spool.json["index.json"], None, "index.json")
    if not isinstance(index, Index):
        raise InvalidArchive("index.json: not an image index")
    pending: list[_Pending] = []
    for desc, (raw, manifest) in _oci_manifests(spool, index, "index.json"):
        what = f"manifest {desc.digest}"
        if not isinstance(manifest, Manifest) or not mt.is_config(manifest.config.media_type):
            kind = manifest.config.media_type if isinstance(manifest, Manifest) else "index"
            raise InvalidArchive(f"{what}: unknown config media type {kind!r}")
        config = _read_blob(spool, str(manifest.config.digest), what)
        diff_ids = _diff_ids(config, len(manifest.layers), what)
        for layer in manifest.layers:
            spool.blob(layer.digest, what)
        layers = _layers(spool, manifest.layers, diff_ids, what)
        pending.append(_Pending(config, layers, raw, _tag_of(desc)))
    return pending


def _index_by_config(spool: _Spool) -> dict[str, bytes]:
    """Manifests of a Docker 25+ archive's OCI side, by config digest (best effort)."""
    if "index.json" not in spool.json:
        return {}
    try:
        index = _parse_doc(spool.json["index.json"], None, "index.json")
        if not isinstance(index, Index):
            return {}
        entries = _oci_manifests(spool, index, "index.json")
    except InvalidArgument:
        return {}
    return {str(man.config.digest): raw for _, (raw, man) in entries if isinstance(man, Manifest)}


def _docker_entry(spool: _Spool, entry: Any, i: int, manifests: dict[str, bytes]) -> _Pending:
    what = f"manifest.json[{i}]"
    if not isinstance(entry, dict):
        raise InvalidArchive(f"{what}: expected an object")
    config_digest, size = spool.lookup(entry.get("Config"), f"{what}.Config")
    config = _read_small(spool, config_digest, size, what)
    paths = entry.get("Layers") or []
    if not isinstance(paths, list):
        raise InvalidArchive(f"{what}.Layers: expected a list of paths")
    diff_ids = _diff_ids(config, len(paths), what)
    descs = []
    for j, path in enumerate(paths):
        digest, size = spool.lookup(path, f"{what}.Layers[{j}]")
        descs.append(
            Descriptor(
                media_type=_sniff_layer(spool.content, digest), digest=Digest(digest), size=size
            )
        )
    layers = _layers(spool, descs, diff_ids, what)
    tags = []
    for tag in entry.get("RepoTags") or []:
        try:
            tags.append(str(parse_reference(tag).with_default_tag()))
        except (InvalidReference, AttributeError) as exc:
            raise InvalidArchive(f"{what}.RepoTags: invalid tag {tag!r}") from exc
    manifest = manifests.get(config_digest)
    if manifest is not None:
        listed = Manifest.from_json(json.loads(manifest)).layers
        if [(str(d.digest), d.size) for d in listed] != [(str(d.digest), d.size) for d in descs]:
            manifest = None
    return _Pending(config, layers, manifest, tags)


def _from_docker(spool: _Spool) -> list[_Pending]:
    doc = _json(spool, "manifest.json")
    if not isinstance(doc, list):
        raise InvalidArchive("manifest.json: expected a list of images")
    manifests = _index_by_config(spool)
    return [_docker_entry(spool, entry, i, manifests) for i, entry in enumerate(doc)]


def load(store: ImageStore, content: ContentStore, stream: BinaryIO) -> list[str]:
    """Load every image of a docker-archive or OCI-layout tar (plain or compressed)
    from ``stream``; returns what was loaded, as Docker prints it: each image's tags
    (familiar form), or its ID when it has none. Bad input raises InvalidArchive and
    tags nothing."""
    lease_id = f"image-load-{os.getpid()}-{os.urandom(8).hex()}"
    lease = content.create_lease(lease_id, time.time() + LEASE_SECONDS)
    try:
        spool = _Spool(content, lease_id)
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tf:
                for member in tf:
                    spool.add(tf, member)
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidArchive(f"not a valid tar archive: {exc}") from exc
        if "manifest.json" in spool.json:
            pending = _from_docker(spool)
        elif "index.json" in spool.json:
            pending = _from_oci(spool)
        else:
            raise InvalidArchive("neither manifest.json nor index.json in the archive")
        loaded: list[str] = []
        for p in pending:
            image = store.create(p.config, p.layers, manifest=p.manifest, tags=p.tags)
            tags = [parse_reference(t).familiar() for t in p.tags]
            loaded.extend(tags or [image.id])
        return loaded
    finally:
        lease.delete()
