"""Garbage collection: mark what is reachable, sweep the rest, while the registry serves.

1. **Manifests** (unless ``untagged=False``), per repository: the roots are the tagged
   manifests; from them the mark follows an index to its manifests and a manifest to
   its referrers (manifests whose ``subject`` it is: signatures, SBOMs…). Every other
   manifest is removed, with its references.
2. **Blobs**: a blob is kept when any remaining manifest of any repository references
   it (config, layers, an index's manifests) or is it. The rest is removed from the
   store and unlinked from every repository.
3. **Leftovers**: files in ``blobs/`` the database does not know (a crash between the
   rename and the row), files a crashed collection had moved aside, and upload
   sessions idle longer than ``upload_ttl`` (their data file's mtime).

Safe while serving, without a read-only window:

- nothing created or used within ``grace`` seconds (default an hour) is removed: a blob
  counts as used when uploaded, mounted, referenced by a manifest being pushed, or read
  when its clock is older than half the grace; so a push whose blobs exist or were just
  uploaded finds them still there when its manifest arrives (or, after a pause longer
  than the grace, gets ``MANIFEST_BLOB_UNKNOWN`` and pushes them again — never a
  manifest with a missing blob);
- upload sessions idle less than ``upload_ttl`` are not touched;
- a blob's file is moved aside, then its row deleted only if still unused and old;
  if a push touched it meanwhile, the file is put back. A manifest push resets the
  clocks of what it references *before* checking they exist, in its own transaction.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import sqlalchemy as sa

from portside.registry.storage import (
    Storage,
    blobs,
    manifest_refs,
    manifests,
    repo_blobs,
    tags,
    uploads,
)

__all__ = ["Report", "collect"]


@dataclass
class Report:
    """What a collection removed (or, in a dry run, would remove)."""

    dry_run: bool = False
    manifests: list[tuple[str, str]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    #: blobs spared because a push used them while the collection ran
    spared: int = 0

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.blobs)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} manifest {repo}@{digest}" for repo, digest in self.manifests]
        out += [f"{verb} blob {digest} ({size} bytes)" for digest, size in self.blobs]
        out += [f"{verb} upload {uuid}" for uuid in self.uploads]
        out += [f"{verb} unknown file {path}" for path in self.orphans]
        out.append(
            f"{verb}: {len(self.manifests)} manifests, {len(self.blobs)} blobs "
            f"({self.freed} bytes), {len(self.uploads)} uploads, {len(self.orphans)} files"
        )
        return out


def collect(
    storage: Storage,
    *,
    dry_run: bool = False,
    grace: float = 3600,
    untagged: bool = True,
    upload_ttl: float = 86400,
    now: float | None = None,
) -> Report:
    """Collect garbage in ``storage``; see the module's docstring."""
    now = time.time() if now is None else now
    cutoff = now - grace
    report = Report(dry_run=dry_run)
    _recover_trash(storage, dry_run)
    if untagged:
        for repository in _repositories_with_manifests(storage):
            _sweep_manifests(storage, repository, cutoff, report)
    _sweep_blobs(storage, cutoff, report)
    _sweep_orphans(storage, cutoff, report)
    _sweep_uploads(storage, now - upload_ttl, report)
    return report


# --- manifests --------------------------------------------------------------------------


def _repositories_with_manifests(storage: Storage) -> list[str]:
    with storage.db.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(manifests.c.repository).distinct())]


def _sweep_manifests(storage: Storage, repository: str, cutoff: float, report: Report) -> None:
    with storage.db.connect() as conn:
        rows = conn.execute(
            sa.select(manifests.c.digest, manifests.c.subject, manifests.c.created).where(
                manifests.c.repository == repository
            )
        ).all()
        children: dict[str, list[str]] = {}
        q = sa.select(manifest_refs.c.digest, manifest_refs.c.target).where(
            manifest_refs.c.repository == repository, manifest_refs.c.kind == "manifest"
        )
        for parent, child in conn.execute(q):
            children.setdefault(parent, []).append(child)
        tagged = {
            r[0]
            for r in conn.execute(sa.select(tags.c.digest).where(tags.c.repository == repository))
        }
    referrers: dict[str, list[str]] = {}
    for digest, subject, _ in rows:
        if subject:
            referrers.setdefault(subject, []).append(digest)
    young = {digest for digest, _, created in rows if created >= cutoff}
    marked = _mark(tagged | young, children, referrers)
    doomed = [digest for digest, _, _ in rows if digest not in marked]
    for digest in doomed:
        if report.dry_run or _drop_manifest(storage, repository, digest, cutoff):
            report.manifests.append((repository, digest))


def _mark(
    roots: set[str], children: dict[str, list[str]], referrers: dict[str, list[str]]
) -> set[str]:
    marked: set[str] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in marked:
            continue
        marked.add(digest)
        todo += children.get(digest, [])
        todo += referrers.get(digest, [])
    return marked


def _drop_manifest(storage: Storage, repository: str, digest: str, cutoff: float) -> bool:
    """Remove an unreachable manifest unless, meanwhile, it was tagged or an index
    being pushed referenced it (that push reset its blob's clock first)."""
    with storage.db.begin() as conn:
        fresh = conn.execute(
            blobs.update()
            .where(blobs.c.digest == digest, blobs.c.touched >= cutoff)
            .values(touched=blobs.c.touched)
        ).rowcount
        q = sa.select(tags.c.name).where(tags.c.repository == repository, tags.c.digest == digest)
        if fresh or conn.execute(q).first() is not None:
            return False
        storage.drop_manifest(conn, repository, digest)
    return True


# --- blobs ------------------------------------------------------------------------------


def _unreferenced(conn: sa.Connection) -> sa.ColumnElement[bool]:
    used = sa.select(manifest_refs.c.target).where(
        manifest_refs.c.target == blobs.c.digest, manifest_refs.c.kind != "subject"
    )
    own = sa.select(manifests.c.digest).where(manifests.c.digest == blobs.c.digest)
    return ~sa.exists(used) & ~sa.exists(own)


def _sweep_blobs(storage: Storage, cutoff: float, report: Report) -> None:
    if report.dry_run:
        _list_blobs(storage, cutoff, report)
        return
    with storage.db.connect() as conn:
        q = sa.select(blobs.c.digest, blobs.c.size).where(
            blobs.c.touched < cutoff, _unreferenced(conn)
        )
        candidates = conn.execute(q).all()
    for digest, size in candidates:
        if report.dry_run or _remove_blob(storage, digest, cutoff):
            report.blobs.append((digest, int(size)))
        else:
            report.spared += 1


def _list_blobs(storage: Storage, cutoff: float, report: Report) -> None:
    """A dry run's blob sweep: as if the manifests listed were gone."""
    doomed = set(report.manifests)
    with storage.db.connect() as conn:
        q = sa.select(blobs.c.digest, blobs.c.size).where(blobs.c.touched < cutoff)
        candidates = conn.execute(q).all()
        used = {
            target
            for repo, digest, target in conn.execute(
                sa.select(
                    manifest_refs.c.repository, manifest_refs.c.digest, manifest_refs.c.target
                ).where(manifest_refs.c.kind != "subject")
            )
            if (repo, digest) not in doomed
        }
        q = sa.select(manifests.c.repository, manifests.c.digest)
        used |= {digest for repo, digest in conn.execute(q) if (repo, digest) not in doomed}
    report.blobs += [(digest, int(size)) for digest, size in candidates if digest not in used]


def _trash_dir(storage: Storage) -> str:
    return os.path.join(storage.root, "trash")


def _remove_blob(storage: Storage, digest: str, cutoff: float) -> bool:
    path = storage.blob_path(digest)
    trash = _trash_dir(storage)
    os.makedirs(trash, exist_ok=True)
    aside = os.path.join(trash, f"{digest.replace(':', '-')}.{uuidlib.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        aside = ""
    with storage.db.begin() as conn:
        gone = conn.execute(
            blobs.delete().where(
                blobs.c.digest == digest, blobs.c.touched < cutoff, _unreferenced(conn)
            )
        ).rowcount
        if gone:
            conn.execute(repo_blobs.delete().where(repo_blobs.c.digest == digest))
    if aside:
        if not gone:
            _put_back(aside, path)
        os.unlink(aside)
    return bool(gone)


def _put_back(aside: str, path: str) -> None:
    """Restore a blob moved aside (a hard link: a copy uploaded meanwhile stays)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.link(aside, path)
    except FileExistsError:
        pass


def _recover_trash(storage: Storage, dry_run: bool) -> None:
    """Files a crashed collection moved aside: back in place when their row is
    still there, else deleted."""
    trash = _trash_dir(storage)
    if dry_run or not os.path.isdir(trash):
        return
    for name in os.listdir(trash):
        digest = name.split(".", 1)[0].replace("-", ":", 1)
        aside = os.path.join(trash, name)
        with storage.db.connect() as conn:
            known = conn.execute(sa.select(blobs.c.digest).where(blobs.c.digest == digest)).first()
        if known is not None:
            _put_back(aside, storage.blob_path(digest))
        os.unlink(aside)


# --- leftovers ---------------------------------------------------------------------------


def _sweep_orphans(storage: Storage, cutoff: float, report: Report) -> None:
    """Blob files with no row, older than the grace period."""
    for algorithm in _listdir(storage.blob_dir):
        for prefix in _listdir(os.path.join(storage.blob_dir, algorithm)):
            directory = os.path.join(storage.blob_dir, algorithm, prefix)
            for name in _listdir(directory):
                path = os.path.join(directory, name)
                _sweep_orphan(storage, path, f"{algorithm}:{name}", cutoff, report)


def _sweep_orphan(storage: Storage, path: str, digest: str, cutoff: float, report: Report) -> None:
    try:
        if os.stat(path).st_mtime >= cutoff:
            return
    except FileNotFoundError:
        return
    with storage.db.connect() as conn:
        if conn.execute(sa.select(blobs.c.digest).where(blobs.c.digest == digest)).first():
            return
    report.orphans.append(path)
    if not report.dry_run:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _sweep_uploads(storage: Storage, stale: float, report: Report) -> None:
    """Upload sessions (and stray temporary files) idle since before ``stale``."""
    with storage.db.connect() as conn:
        known = {r[0] for r in conn.execute(sa.select(uploads.c.uuid))}
    for name in _listdir(storage.upload_dir):
        path = os.path.join(storage.upload_dir, name)
        data = os.path.join(path, "data") if os.path.isdir(path) else path
        try:
            idle = os.stat(data).st_mtime < stale
        except FileNotFoundError:
            idle = os.stat(path).st_mtime < stale if os.path.exists(path) else False
        if not idle:
            continue
        report.uploads.append(name)
        if report.dry_run:
            continue
        if name in known:
            with storage.db.begin() as conn:
                conn.execute(uploads.delete().where(uploads.c.uuid == name))
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    _drop_lost_sessions(storage, known, report)


def _drop_lost_sessions(storage: Storage, known: set[str], report: Report) -> None:
    """Session rows whose directory is gone (another instance's crash, a wiped disk)."""
    lost = [u for u in known if not os.path.isdir(os.path.join(storage.upload_dir, u))]
    if lost and not report.dry_run:
        with storage.db.begin() as conn:
            conn.execute(uploads.delete().where(uploads.c.uuid.in_(lost)))


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
