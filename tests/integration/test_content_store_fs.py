"""The content store on a real, tiny tmpfs: a full disk is a clear error and leaves
nothing behind."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from portside.errors import Unavailable
from portside.image.content import ContentStore, NoSpace

pytestmark = pytest.mark.root

MIB = 1 << 20


@pytest.fixture
def tiny_root() -> Iterator[str]:
    """A 1 MiB tmpfs, unmounted and removed afterwards whatever happens."""
    path = tempfile.mkdtemp(prefix="ps-content-")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "ps-content-test", path],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", path], check=True)
    finally:
        os.rmdir(path)


def _assert_clean(store: ContentStore) -> None:
    assert store.usage() == (0, 0)
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
    assert os.listdir(os.path.join(store.root, "ingest")) == []
    assert store.ingests() == []
    assert store.check() == []


def test_disk_full_while_streaming(tiny_root: str) -> None:
    store = ContentStore(os.path.join(tiny_root, "content"))
    chunk = os.urandom(64 * 1024)
    w = store.writer("big-layer", size=2 * MIB)
    with pytest.raises(NoSpace) as excinfo:
        for _ in range(2 * MIB // len(chunk)):
            w.write(chunk)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, Unavailable)
    assert message.startswith("no space left on device writing blob (ref 'big-layer')")
    assert w.path in message
    assert w.closed
    _assert_clean(store)
    # the space came back: a small blob fits
    digest = store.write_blob(b"small" * 1000)
    assert store.read(digest) == b"small" * 1000
    assert store.check() == []


def test_disk_full_in_write_blob(tiny_root: str) -> None:
    store = ContentStore(os.path.join(tiny_root, "content"))
    data = os.urandom(2 * MIB)
    with pytest.raises(NoSpace, match="no space left on device writing blob sha256:"):
        store.write_blob(data)
    _assert_clean(store)


def test_disk_full_does_not_touch_committed_blobs(tiny_root: str) -> None:
    store = ContentStore(os.path.join(tiny_root, "content"))
    kept = store.write_blob(b"k" * 300_000)
    with pytest.raises(NoSpace):
        store.write_blob(os.urandom(MIB))
    assert [i.digest for i in store.list()] == [kept]
    assert store.ingests() == []
    assert store.check() == []
