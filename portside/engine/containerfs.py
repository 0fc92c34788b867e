"""A container's files as Docker's API shows them: ``diff``, ``export`` and ``cp``
(``archive`` HEAD/GET/PUT), the part of :class:`~portside.engine.engine.Engine` that
reads and writes a container's root file system and the mounts ``cp`` reaches."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from portside.engine import views
from portside.errors import NotFound, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.engine.archive import Located
    from portside.engine.lifecycle import Lifecycle
    from portside.engine.model import Container, Paths

__all__ = ["ContainerFiles"]


class ContainerFiles:
    """Mixed into the Engine, whose containers (``_get``), lifecycle, paths and
    snapshotter it uses."""

    lc: Lifecycle
    paths: Paths
    snapshotter: Any

    if TYPE_CHECKING:

        def _get(self, ref: str) -> Container: ...

    def container_changes(self, ref: str) -> list[dict[str, Any]]:
        c = self._get(ref)
        hidden = [*views.ETC_FILES, *(str(m.get("Destination") or "") for m in c.mounts)]
        return views.changes(self.snapshotter, c.id, hidden)

    def container_export(self, ref: str) -> Iterator[bytes]:
        from portside.image.moves import export_container

        c = self._get(ref)
        self.lc.publish(c, "export")
        return views.pipe_stream(lambda out: export_container(self.snapshotter, c.id, out))

    @staticmethod
    @contextlib.contextmanager
    def _in_container(ref: str) -> Iterator[None]:
        """Docker's error for a missing path, naming the container as the user did."""
        from portside.engine import archive

        try:
            yield
        except archive.PathNotFound as exc:
            raise NotFound(f"Could not find the file {exc.path} in container {ref}") from exc

    def _locate(self, ref: str, path: str) -> tuple[Container, Located]:
        """Where ``docker cp`` finds ``path`` of ``ref``: its rootfs, or the host
        directory of the bind or volume the path is in (as Docker mounts them)."""
        from portside.engine import archive

        c = self._get(ref)
        with self.lc.lock(c.id):
            self.lc.mount_rootfs(c)
        with self._in_container(ref):
            return c, archive.locate(self.paths.rootfs(c.id), c.mounts, path)

    def _stat(self, at: Located, ref: str) -> dict[str, Any]:
        from portside.engine import archive

        with self._in_container(ref):
            return archive.stat_path(at.root, at.path, name=at.name)

    def archive_head(self, ref: str, path: str) -> dict[str, Any]:
        _, at = self._locate(ref, path)
        return self._stat(at, ref)

    def archive_get(self, ref: str, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        from portside.engine import archive

        c, at = self._locate(ref, path)
        stat = self._stat(at, ref)
        self.lc.publish(c, "archive-path")
        return stat, archive.tar_path(at.root, at.path, name=at.name)

    def archive_put(
        self,
        ref: str,
        path: str,
        stream: BinaryIO,
        *,
        no_overwrite_dir_non_dir: bool = False,
        copy_uid_gid: bool = False,
    ) -> None:
        from portside.engine import archive

        c, at = self._locate(ref, path)
        if at.read_only:
            raise PermissionDenied("mounted volume is marked read-only")
        if at.root == self.paths.rootfs(c.id) and c.host_config.get("ReadonlyRootfs"):
            raise PermissionDenied("container rootfs is marked read-only")
        with self._in_container(ref):
            archive.extract_into(
                at.root,
                at.path,
                stream,
                no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                copy_uid_gid=copy_uid_gid,
            )
        self.lc.publish(c, "extract-to-dir")
