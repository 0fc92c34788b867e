"""A consistency check of the content store: ``ContentStore.check``.

It reports, one sentence per problem: a blob whose content does not hash to its
name (``quick`` skips the re-hash), a blob whose size differs from the size the
caller expects (``sizes``: the image store passes its descriptors' sizes, since
the store itself records none), a blob the caller expects that is missing,
files in blobs/ that are not blobs (leftover temporaries, foreign files), and
ingest directories that are not well formed. It changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat

from portside.image.content_common import ALGORITHMS, hash_fd, parse_digest
from portside.image.content_writer import read_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from portside.image.content import ContentStore

__all__ = ["check"]

_HEX = frozenset("0123456789abcdef")


def check(
    store: ContentStore, *, quick: bool = False, sizes: Mapping[str, int] | None = None
) -> list[str]:
    """The problems of ``store``; empty when it is consistent."""
    problems: list[str] = []
    seen: set[str] = set()
    blobs = os.path.join(store.root, "blobs")
    for entry in _listdir(blobs, problems):
        if entry not in ALGORITHMS or not os.path.isdir(os.path.join(blobs, entry)):
            problems.append(f"unexpected entry {os.path.join(blobs, entry)}")
            continue
        for name in _listdir(os.path.join(blobs, entry), problems):
            digest = _check_blob(
                store, entry, name, quick=quick, sizes=sizes or {}, problems=problems
            )
            if digest:
                seen.add(digest)
    for digest, size in (sizes or {}).items():
        parse_digest(digest)
        if digest not in seen:
            path = store.path(digest)
            problems.append(f"blob {digest}: missing (expected {size} bytes at {path})")
    _check_ingests(store, problems)
    return problems


def _listdir(path: str, problems: list[str]) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        problems.append(f"cannot list {path}: {(exc.strerror or str(exc)).lower()}")
        return []


def _check_blob(
    store: ContentStore,
    alg: str,
    name: str,
    *,
    quick: bool,
    sizes: Mapping[str, int],
    problems: list[str],
) -> str:
    """Check one file of blobs/<alg>/; returns its digest if it is named like one."""
    path = os.path.join(store.root, "blobs", alg, name)
    if len(name) != ALGORITHMS[alg] or not _HEX.issuperset(name):
        problems.append(f"unexpected file {path}: not named by a digest (a leftover temporary?)")
        return ""
    digest = f"{alg}:{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        problems.append(f"blob {digest}: cannot open {path}: {(exc.strerror or '').lower()}")
        return digest
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"blob {digest}: {path} is not a regular file")
            return digest
        want = sizes.get(digest)
        if want is not None and want != st.st_size:
            problems.append(f"blob {digest}: size {st.st_size}, expected {want} ({path})")
        if not quick:
            h = hashlib.new(alg)
            hash_fd(fd, h)
            actual = f"{alg}:{h.hexdigest()}"
            if actual != digest:
                problems.append(f"blob {digest}: content hashes to {actual} ({path})")
    except OSError as exc:
        problems.append(f"blob {digest}: cannot read {path}: {(exc.strerror or '').lower()}")
    finally:
        os.close(fd)
    return digest


def _check_ingests(store: ContentStore, problems: list[str]) -> None:
    base = os.path.join(store.root, "ingest")
    for name in _listdir(base, problems):
        path = os.path.join(base, name)
        if len(name) != 64 or not _HEX.issuperset(name) or not os.path.isdir(path):
            problems.append(f"unexpected entry {path}: not an ingest")
            continue
        try:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue  # removed while we looked
        try:
            status = read_status(path, dfd, False)
        finally:
            os.close(dfd)
        if status is None:
            problems.append(f"ingest {path}: malformed (bad or missing ref, startedat or data)")
        elif status.total is not None and status.offset > status.total:
            problems.append(
                f"ingest {path} (ref {status.ref!r}): {status.offset} bytes, more than its"
                f" expected size {status.total}"
            )
