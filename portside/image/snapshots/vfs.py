"""The vfs snapshotter: plain directory copies, for hosts without overlayfs.

Every active snapshot is a full copy of its parent (``cp -a --reflink=auto``:
hardlinks, xattrs, devices, owners and times kept; shared extents where the file
system can), and its mount is a ``bind`` of the copy. A committed snapshot is the
whole tree, not a layer: layers are applied with their whiteouts *removing* files
(``apply_layer(..., whiteouts="remove")``), and the diff of an active snapshot is a
directory compare (``portside.image.diff.changes(..., mode="tree")``). A view is a
read-only bind of its parent, which being committed never changes.
"""

from __future__ import annotations

import os

from portside.errors import Internal
from portside.image.snapshots import ACTIVE, Mount, SnapshotterBase

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.snapshots.meta import Snapshot

__all__ = ["VfsSnapshotter", "copy_tree"]


def copy_tree(src: str, dst: str) -> None:
    """Copy the contents of directory ``src`` into the existing directory ``dst``,
    keeping everything a layer can hold (``dst`` takes ``src``'s own metadata)."""
    import subprocess

    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--", f"{src}/.", f"{dst}/"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise Internal(f"copying {src} to {dst}: {(detail or ['cp failed'])[-1].lower()}")


class VfsSnapshotter(SnapshotterBase):
    """Snapshots as full copies; see the module docstring."""

    driver = "vfs"

    def _populate(self, path: str, snap: Snapshot) -> None:
        fs = os.path.join(path, "fs")
        os.mkdir(fs, 0o755)
        if snap.kind == ACTIVE and snap.parent_ids:
            copy_tree(self.fs_dir(snap.parent_ids[0]), fs)

    def _mounts(self, snap: Snapshot, *, volatile: bool = False) -> list[Mount]:
        # plain directories: nothing to make volatile
        if snap.kind == ACTIVE:
            return [Mount("bind", self.fs_dir(snap.id), ["rw", "rbind"])]
        source = self.fs_dir(snap.parent_ids[0] if snap.parent_ids else snap.id)
        return [Mount("bind", source, ["ro", "rbind"])]
