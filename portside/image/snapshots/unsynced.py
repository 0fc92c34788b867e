"""Snapshots committed with ``durable=False``, labelled :data:`UNSYNCED_LABEL` until a
sync covers them: the boot they were made in, and what a snapshotter does with those
it finds when it opens its root (see :mod:`portside.image.snapshots`, "Durability").
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.snapshots import SnapshotterBase
    from portside.image.snapshots.meta import MetaStore

__all__ = ["boot_id", "recover"]

#: the key prefix of an unpack's active snapshot (``portside.image.unpack``)
EXTRACT_PREFIX = "extract-"
_BOOT_ID: list[str] = []


def boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), read once."""
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID.append(f.read().strip())
        except OSError:  # no /proc: every boot looks the same, so labels are synced
            _BOOT_ID.append("unknown")
    return _BOOT_ID[0]


def recover(sn: SnapshotterBase, meta: MetaStore) -> None:
    """Deal with the snapshots of ``sn`` still labelled: those of this boot are
    synced (their files are in the page cache; they were committed before the
    ``syncfs`` started, so it covers them), those of an earlier boot removed."""
    from portside.image.snapshots import UNSYNCED_LABEL

    with meta.transaction(write=False) as tx:
        marked = tx.labelled(UNSYNCED_LABEL)
    if not marked:
        return
    boot = boot_id()
    current = [sid for sid, _key, _kind, value in marked if value == boot]
    if current:
        sn.syncfs()
        with meta.transaction() as tx:
            tx.clear_label(UNSYNCED_LABEL, ids=current)
    if len(current) < len(marked):
        _remove_stale(sn, meta, boot)


def _remove_stale(sn: SnapshotterBase, meta: MetaStore, boot: str) -> None:
    """Remove the snapshots labelled in an earlier boot (a power loss may have cut
    their files short) and those above them; a chain under a container's snapshot or
    a view is left as it is (it cannot be labelled: ``unpack`` syncs first)."""
    from portside.image.snapshots import COMMITTED, UNSYNCED_LABEL

    doomed: dict[int, str] = {}
    with meta.transaction() as tx:
        for sid, _key, _kind, value in tx.labelled(UNSYNCED_LABEL):
            if value == boot or sid in doomed:
                continue
            tree = tx.descendants([sid])
            if all(kind == COMMITTED or key.startswith(EXTRACT_PREFIX) for _, key, kind in tree):
                doomed.update((i, key) for i, key, _ in tree)
        tx.delete_rows(list(doomed))
    # the rows are gone: from here a crash leaves only directories, for cleanup()
    for sid, key in doomed.items():
        sn._discard(sid, key)
