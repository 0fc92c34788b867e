"""Scratch directories for tests that mount: nothing stays mounted afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from portside.image.snapshots import unmount_all


def mounts_under(root: str) -> list[str]:
    """Mount points at or below ``root`` in this mount namespace."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == root or p.startswith(root + "/")]


def fs_options(target: str) -> set[str]:
    """The file system options (mountinfo's last field) of the mount on ``target``."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return set(fields[-1].split(","))
    raise AssertionError(f"nothing mounted on {target}")


#: how a volatile overlay shows in its options (``fsync=volatile`` since Linux 6.x)
VOLATILE = frozenset({"volatile", "fsync=volatile"})


@contextmanager
def scratch_root(prefix: str) -> Iterator[str]:
    """A unique directory; whatever is still mounted below it is unmounted afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        for point in sorted(mounts_under(path), key=len, reverse=True):
            unmount_all(point, detach=True)
        shutil.rmtree(path)
