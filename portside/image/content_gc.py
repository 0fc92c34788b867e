"""Garbage collection of the content store, by reachability.

Mark: start from the caller's roots (the image store gives its tag targets) and
from every blob a live lease holds; follow each blob's children, given by the
caller's ``refs`` function (manifest → config and layers, index → manifests) and
by containerd-style labels ``containerd.io/gc.ref.content[.<anything>]`` whose
value is a digest. Sweep: remove every blob not marked, every ingest that no
writer has open and no live lease holds, and every expired lease.

The whole collection holds the store's gc lock exclusively; commits and lease
changes take it shared, so a blob is never committed (or leased) between the
mark and the sweep. A writer that wants its blob to survive until it is tagged
writes it under a lease.
"""

from __future__ import annotations

import fcntl
import os
import time

from portside.image.content_common import InvalidDigest, gc_lock, parse_digest
from portside.image.content_writer import read_status, remove_ingest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from portside.image.content import ContentStore

__all__ = ["GC_REF_PREFIX", "GCResult", "collect", "sweep_ingests"]

GC_REF_PREFIX = "containerd.io/gc.ref.content"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class GCResult:
    """What a collection removed (or, in a dry run, would remove)."""

    __slots__ = ("bytes", "expired_leases", "ingests", "removed")

    def __init__(
        self, removed: list[str], nbytes: int, ingests: list[str], expired_leases: list[str]
    ) -> None:
        self.removed = removed  #: digests of the blobs
        self.bytes = nbytes  #: their total size
        self.ingests = ingests  #: refs of the ingests
        self.expired_leases = expired_leases  #: ids of the leases

    def __repr__(self) -> str:
        return (
            f"GCResult(removed={len(self.removed)} blobs, bytes={self.bytes},"
            f" ingests={self.ingests!r}, expired_leases={self.expired_leases!r})"
        )


def label_children(labels: dict[str, str]) -> list[str]:
    """The digests a blob's gc labels point at; values that are not digests are ignored."""
    out = []
    for key, value in labels.items():
        if key == GC_REF_PREFIX or key.startswith(GC_REF_PREFIX + "."):
            try:
                parse_digest(value)
            except InvalidDigest:
                continue
            out.append(value)
    return out


def mark(
    store: ContentStore,
    roots: Iterable[str],
    refs: Callable[[str], Iterable[str]] | None,
    labels: dict[str, dict[str, str]],
) -> set[str]:
    """Every digest reachable from ``roots``. ``refs`` is asked only about blobs
    the store has; an error it raises aborts the collection before any sweep."""
    marked: set[str] = set()
    stack = list(roots)
    for digest in stack:
        parse_digest(digest)
    while stack:
        digest = stack.pop()
        if digest in marked:
            continue
        marked.add(digest)
        if not store.exists(digest):
            continue
        children = list(refs(digest)) if refs is not None else []
        for child in children:
            parse_digest(child)
        children.extend(label_children(labels.get(digest, {})))
        stack.extend(c for c in children if c not in marked)
    return marked


def collect(
    store: ContentStore,
    roots: Iterable[str],
    refs: Callable[[str], Iterable[str]] | None,
    *,
    dry_run: bool = False,
) -> GCResult:
    """Mark from ``roots`` and the live leases, sweep the rest (see the module doc)."""
    lock = gc_lock(store.root, exclusive=True)
    try:
        now = time.time()
        has_meta = store._has_meta()
        leased, leased_refs, expired = store.meta.protected(now) if has_meta else (set(), set(), [])
        labels = store.meta.all_labels() if has_meta else {}
        marked = mark(store, [*roots, *sorted(leased)], refs, labels)
        removed, nbytes = [], 0
        for digest, st in list(store._scan()):
            if digest in marked:
                continue
            if not dry_run:
                try:
                    os.unlink(store.path(digest))
                except FileNotFoundError:
                    continue
            removed.append(digest)
            nbytes += st.st_size
        ingests = _sweep(store, None, leased_refs, dry_run)
        if not dry_run:
            if removed and has_meta:
                store.meta.drop_labels(removed)
            for lease_id in expired:
                store.meta.delete_lease(lease_id)
        return GCResult(sorted(removed), nbytes, ingests, expired)
    finally:
        os.close(lock)


def sweep_ingests(store: ContentStore, before: float, *, dry_run: bool) -> list[str]:
    """Remove idle, unleased ingests last written to before ``before`` (unix time)."""
    leased_refs = store.meta.protected(time.time())[1] if store._has_meta() else set()
    return _sweep(store, before, leased_refs, dry_run)


def _sweep(
    store: ContentStore, before: float | None, leased_refs: set[str], dry_run: bool
) -> list[str]:
    """Remove ingests no writer has open and no lease holds (only those idle since
    ``before``, if given); malformed ones are named by their directory."""
    out = []
    base = os.path.join(store.root, "ingest")
    for name in store._ingest_names():
        path = os.path.join(base, name)
        try:
            dfd = os.open(path, _DIR_FLAGS)
        except OSError:
            continue  # gone, or a stray file: check() reports those
        try:
            try:
                fcntl.flock(dfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a writer has it open
            status = read_status(path, dfd, False)
            if status is not None and status.ref in leased_refs:
                continue
            updated = status.updated_at if status is not None else os.fstat(dfd).st_mtime
            if before is not None and updated >= before:
                continue
            if not dry_run:
                try:
                    remove_ingest(path, dfd)
                except OSError:
                    continue  # not an ingest we made: check() reports it
            out.append(status.ref if status is not None else name)
        finally:
            os.close(dfd)
    return sorted(out)
