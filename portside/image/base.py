"""Base images made on the host, with no registry: busybox from ``busybox-static``
(here) and ``debian:bookworm`` with debootstrap (:mod:`portside.image.debian`).

:func:`make_busybox_image` turns :func:`portside.testing.busybox.make_busybox_rootfs`
into a one-layer OCI image in the content and image stores. It is deterministic: the
same busybox binary gives the same layer, config and so image ID (``created`` is the
binary's mtime, and :func:`~portside.image.layer_make.make_layer` is reproducible).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from portside.oci import mediatypes as mt
from portside.oci.digest import Digest
from portside.oci.image_spec import ContainerConfig, Descriptor, History, ImageConfig, RootFS
from portside.oci.platform import host_platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portside.image.content import ContentStore
    from portside.image.store import ImageStore
    from portside.image.store_db import Image

__all__ = [
    "BUSYBOX_HISTORY",
    "base_config",
    "make_busybox_image",
    "one_layer_image",
    "rfc3339",
    "store_rootfs_layer",
]

BUSYBOX_HISTORY = "portside: busybox from busybox-static"
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: a blob commit's lease outlives a crashed process by this long at most
_LEASE_SECONDS = 3600


def rfc3339(ts: float) -> str:
    """``ts`` (seconds) as an image config's ``created``: RFC 3339, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


def _pin_mtimes(root: str, mtime: float) -> None:
    """Give every entry below ``root`` the same mtime, so the layer does not depend on
    when it was built (directories last, as writing their entries changes theirs)."""
    times = (int(mtime), int(mtime))
    for top, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(top, name), times, follow_symlinks=False)


def store_rootfs_layer(
    content: ContentStore, rootfs: str, lease: str, *, prefix: str = "rootfs"
) -> tuple[str, str, int]:
    """Store the directory ``rootfs`` as one gzip layer blob (under ``lease``);
    returns (diffID, digest, size)."""
    from portside.image.layer_make import make_layer

    ref = f"{prefix}-layer-{os.getpid()}-{os.urandom(6).hex()}"
    writer = content.writer(ref, lease=lease)
    try:
        diff_id, digest, size = make_layer(rootfs, writer, compression="gzip")  # type: ignore[arg-type]
        writer.commit(digest, size, ok_if_exists=True)
    except BaseException:
        if not writer.closed:  # a failed commit discards the ingest itself
            writer.abort()
        raise
    return diff_id, digest, size


def _busybox_layer(
    content: ContentStore, busybox: str | None, mtime: float, lease: str
) -> tuple[str, str, int]:
    """Build the rootfs and store its gzip layer; (diffID, digest, size)."""
    from portside.testing.busybox import make_busybox_rootfs

    tmp = tempfile.mkdtemp(prefix="portside-busybox-")
    try:
        rootfs = make_busybox_rootfs(os.path.join(tmp, "rootfs"), busybox=busybox)
        _pin_mtimes(rootfs, mtime)
        return store_rootfs_layer(content, rootfs, lease, prefix="busybox")
    finally:
        shutil.rmtree(tmp)


def base_config(diff_id: str, created: str, cmd: list[str], created_by: str) -> bytes:
    """A one-layer image config as Docker's base images have: ``Env`` PATH, ``Cmd``,
    the host's platform and one history entry."""
    platform = host_platform()
    config = ImageConfig(
        created=created,
        architecture=platform.architecture,
        variant=platform.variant,
        os="linux",
        config=ContainerConfig(env=[_PATH], cmd=cmd),
        rootfs=RootFS(type="layers", diff_ids=[Digest(diff_id)]),
        history=[History(created=created, created_by=created_by)],
    )
    return config.to_bytes()


def one_layer_image(
    content: ContentStore,
    store: ImageStore,
    make: Callable[[str], tuple[str, str, int]],
    config: Callable[[str], bytes],
    tag: str,
) -> Image:
    """Create a one-layer image under a lease: ``make(lease_id)`` stores the layer
    and returns (diffID, digest, size); ``config(diff_id)`` gives the config bytes."""
    lease_id = f"base-image-{os.getpid()}-{os.urandom(6).hex()}"
    lease = content.create_lease(lease_id, time.time() + _LEASE_SECONDS)
    try:
        diff_id, digest, size = make(lease_id)
        layer = Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=Digest(digest), size=size)
        return store.create(config(diff_id), [(layer, diff_id)], tags=[tag])
    finally:
        lease.delete()


def make_busybox_image(
    content: ContentStore,
    store: ImageStore,
    *,
    tag: str = "busybox:latest",
    busybox: str | None = None,
) -> Image:
    """Make (or find again) the busybox image of ``busybox`` (default ``/bin/busybox``,
    statically linked) and tag it ``tag``. Raises ``BusyboxUnavailable`` without one."""
    from portside.testing.busybox import DEFAULT_BUSYBOX, INSTALL_HINT, BusyboxUnavailable

    path = busybox or DEFAULT_BUSYBOX
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise BusyboxUnavailable(
            f"{path}: {os.strerror(exc.errno or 0).lower()} ({INSTALL_HINT})"
        ) from exc
    created = rfc3339(mtime)
    return one_layer_image(
        content,
        store,
        lambda lease: _busybox_layer(content, busybox, mtime, lease),
        lambda diff_id: base_config(diff_id, created, ["sh"], BUSYBOX_HISTORY),
        tag,
    )
