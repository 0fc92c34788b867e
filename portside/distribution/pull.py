"""Pulling an image from a registry into the content store, the image store and the
snapshotter, with Docker's progress stream.

The steps: resolve the reference to an image manifest (an index gives the entry for
the wanted platform), fetch and check the config, then fetch the layers and unpack
them, then record the image. Manifests and config are verified against their digests
before anything is stored; layers are verified by the content store's writer.

Layers are fetched ``concurrency`` at a time, and unpacked in order as they arrive,
by :mod:`portside.distribution.pull_layers`.

Durability: a layer's bytes are synced when its blob is committed, its name in
the store is not (``durable=False``); once every layer is in, one
``ContentStore.sync`` (an ``fsync`` of the blobs' directory) makes the names
durable, and only then is the image recorded, durably. A crash before that
leaves no image, and blobs whole or absent. The snapshots are a cache of the
blobs: committed with ``durable=False`` (labelled unsynced, their files not
waited for), made durable by the ``unpack`` that comes before a container uses
them, and dropped — then unpacked again from the blobs — if a power loss may have
cut them short (see :mod:`portside.image.snapshots`). So a pull never waits for
the unpacked files to reach the disk.

The first failure stops everything: downloads stop at their next chunk and abort
their ingests, the applier's uncommitted snapshot is removed, and the pull's lease
goes, so nothing of the pull stays but blobs that checked out (content-addressed, and
left for gc). Blobs fetched get the label ``portside.distribution.source.<host>``
naming the repositories they came from, so that a push can mount them
cross-repository (containerd's ``containerd.io/distribution.source``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from portside.distribution.errors import BadContent, UnsupportedContent
from portside.distribution.progress import Throttle, noop
from portside.distribution.pull_layers import (
    SOURCE_LABEL,
    Layer,
    MemorySink,
    Puller,
    hold,
    no_progress,
)
from portside.errors import InvalidArgument, PortsideError
from portside.image.store import chain_ids
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

#: longest value of a source label; the oldest repositories go first
MAX_SOURCE = 1024
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 8 << 20
#: a pull's lease outlives a crashed daemon by this long at most
LEASE_SECONDS = 24 * 3600


@dataclass
class PullResult:
    image: Image
    reference: Reference
    #: what the reference resolved to: the index, or the manifest
    digest: str
    #: the reference did not name this image before (Docker's "Downloaded newer image")
    fresh: bool


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


def _fetch_config(
    registry: Registry, ref: Reference, content: ContentStore, lease: str, desc: Descriptor
) -> bytes:
    digest = str(desc.digest)
    what = f"image config {digest} of {ref}"
    if desc.size > MAX_CONFIG:
        raise BadContent(f"{what}: {desc.size} bytes, more than {MAX_CONFIG}")
    if hold(content, lease, digest):
        return content.read(digest, max_size=MAX_CONFIG)
    sink = MemorySink(desc.size, what)
    registry.fetch_blob(ref.path, desc, sink, no_progress)
    raw = bytes(sink.data)
    _check_digest(raw, digest, what, desc.size)
    labels = {SOURCE_LABEL + ref.domain: ref.path}
    content.write_blob(raw, digest, labels=labels, lease=lease)
    return raw


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
            Layer(desc, diff_id, chain_id)
            for desc, diff_id, chain_id in zip(
                target.manifest.layers, diff_ids, chain_ids(diff_ids), strict=True
            )
        ]
        puller = Puller(
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
        if puller.unsynced or not quiet:  # the blobs durable before the image is recorded
            content.sync()  # (a recorded image's were, when it was recorded)
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
