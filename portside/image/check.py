"""One consistency check across the content store, the image store and the snapshots.

:func:`check_store` gathers what :meth:`ContentStore.check` and :meth:`ImageStore.check`
find and adds what neither can see: the snapshots. Each image's layers map to
committed snapshots keyed by chainID, each on the one below; an image need not be
unpacked at all, or only up to some layer, but never with a gap or a snapshot on the
wrong parent. For a snapshotter that keeps its metadata beside its directories
(overlay, vfs), rows whose parent or directory is gone and directories no row owns
are reported too, and so are the active ``extract-*`` snapshots of unpacks that died.

``repair=True`` removes only what nothing can be using: dead unpacks' snapshots
(:func:`~portside.image.unpack.sweep_extracts`) and directories no snapshot owns
(``Snapshotter.cleanup``). Everything else is reported and left for a person.
"""

from __future__ import annotations

import os

from portside.image.snapshots import ACTIVE, COMMITTED
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.content import ContentStore
    from portside.image.snapshots import Info, Snapshotter
    from portside.image.store import ImageStore

__all__ = ["check_snapshots", "check_store"]

REMOVED = " (removed)"


def check_store(
    content: ContentStore,
    images: ImageStore,
    snapshotter: Snapshotter | None,
    *,
    quick: bool = False,
    verify_layers: bool = False,
    repair: bool = False,
) -> list[str]:
    """Every problem found, one human-readable line each, prefixed ``content:``,
    ``images:`` or ``snapshots:``; empty when all is consistent. ``quick`` compares
    blob sizes instead of re-hashing them; ``verify_layers`` re-hashes each image's
    layer blobs (already done by the content check unless ``quick``). With
    ``repair``, what is safe to remove is removed and its line ends ``(removed)``."""
    problems = [f"content: {p}" for p in content.check(quick=quick)]
    problems += [f"images: {p}" for p in images.check(verify_layers=verify_layers)]
    if snapshotter is not None:
        problems += [f"snapshots: {p}" for p in check_snapshots(images, snapshotter, repair)]
    return problems


def check_snapshots(
    images: ImageStore, snapshotter: Snapshotter, repair: bool = False
) -> list[str]:
    """The snapshot part of :func:`check_store` (lines without its prefix)."""
    from portside.image.unpack import extract_alive, extract_owner, sweep_extracts

    problems: list[str] = []
    infos = {info.name: info for info in snapshotter.walk()}
    for image in sorted(images.images(), key=lambda i: i.id):
        _check_chain(image.id, [la.chain_id for la in image.layers], infos, problems)
    dead = {}
    for info in infos.values():
        pid = extract_owner(info.name)
        if info.kind == ACTIVE and pid is not None and not extract_alive(info.name, info.created):
            dead[info.name] = f"unpack snapshot {info.name!r} left by process {pid}, which is gone"
    swept = set(sweep_extracts(snapshotter)) if dead and repair else set()
    problems += [line + (REMOVED if key in swept else "") for key, line in dead.items()]
    problems += _check_storage(snapshotter, repair)
    return problems


def _check_chain(
    image_id: str, chain: list[str], infos: dict[str, Info], problems: list[str]
) -> None:
    """An image's chainIDs: each present one committed on the one below, none missing
    below a present one. A chain unpacked only up to some layer is normal (a shorter
    image sharing the lower layers was unpacked)."""
    present = [i for i, c in enumerate(chain) if c in infos]
    if not present:
        return  # not unpacked: nothing to check
    for i, chain_id in enumerate(chain[: present[-1] + 1]):
        where = f"image {image_id}: layer {i} snapshot {chain_id}"
        info = infos.get(chain_id)
        if info is None:
            problems.append(f"{where} is missing below layer {present[-1]}'s")
            continue
        if info.kind != COMMITTED:
            problems.append(f"{where} is {info.kind}, not committed")
        parent = chain[i - 1] if i else None
        if info.parent != parent:
            problems.append(f"{where} has parent {info.parent}, expected {parent}")


def _rows(path: str) -> list[tuple[int, str, int | None]]:
    """(id, key, parent id) of every snapshot row, read-only."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT id, key, parent FROM snapshots").fetchall()
    finally:
        conn.close()


def _check_storage(snapshotter: Snapshotter, repair: bool) -> list[str]:
    """Rows and directories of an overlay or vfs snapshotter: rows whose parent or
    directory is gone, directories no row owns. Nothing for other snapshotters."""
    import sqlite3

    from portside.image.snapshots.meta import db_path

    root = getattr(snapshotter, "root", None)
    fs_dir = getattr(snapshotter, "fs_dir", None)
    if root is None or fs_dir is None or not os.path.exists(db_path(root)):
        return []
    try:
        rows = _rows(db_path(root))
    except sqlite3.Error as exc:
        return [f"cannot read {db_path(root)}: {str(exc).lower()}"]
    problems = []
    ids = {int(sid) for sid, _, _ in rows}
    for sid, key, parent in rows:
        if parent is not None and int(parent) not in ids:
            problems.append(f"snapshot {key!r} has parent id {parent}, which does not exist")
        if not os.path.isdir(fs_dir(int(sid))):
            problems.append(f"snapshot {key!r}: its directory {fs_dir(int(sid))} is missing")
    top = os.path.join(root, "snapshots")
    strays = [
        os.path.join(top, name)
        for name in sorted(os.listdir(top) if os.path.isdir(top) else [])
        if not (is_number(name) and int(name) in ids) and not name.startswith("new-")
    ]
    removed = set(snapshotter.cleanup()) if strays and repair else set()
    problems += [
        f"directory {path} belongs to no snapshot" + (REMOVED if path in removed else "")
        for path in strays
    ]
    return problems
