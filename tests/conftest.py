"""Fixtures shared by every test: a busybox rootfs, bundle factory, runtime state root,
a real daemon for the end-to-end tests.

Tests marked ``@pytest.mark.root`` are skipped unless run as uid 0; tests using the
busybox fixtures are skipped when Debian's ``busybox-static`` is not installed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portside.testing import busybox_available, clone_rootfs, make_bundle, make_busybox_rootfs
from portside.testing.busybox import INSTALL_HINT

BundleFactory = Callable[..., str]

# bench/ is not an installed package: make ``import bench.harness`` work however pytest runs
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip(f"needs root (uid 0) and the real kernel; running as uid {os.geteuid()}")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A pristine busybox rootfs, built once per session. Do not modify it: copy it."""
    if not busybox_available():
        pytest.skip(f"needs a static busybox at /bin/busybox: {INSTALL_HINT}")
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


@pytest.fixture
def bundle(busybox_rootfs: str, tmp_path: Path) -> BundleFactory:
    """A factory: ``bundle(args=[...], mutate=None, terminal=False) -> bundle path``.

    Each call makes a fresh bundle with its own copy of the pristine rootfs.
    """
    counter = itertools.count()

    def make(
        *,
        args: list[str],
        terminal: bool = False,
        mutate: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        path = str(tmp_path / f"bundle{next(counter)}")
        rootfs = clone_rootfs(busybox_rootfs, os.path.join(path, "rootfs"))
        return make_bundle(path, rootfs, args=args, terminal=terminal, mutate=mutate)

    return make


@pytest.fixture(scope="module")
def daemon() -> Iterator[Any]:
    """A real ``portside daemon`` per test module (tests/e2e): its own roots, socket
    and cgroup parent, busybox loaded, everything it started removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from portside.testing.daemon import running_daemon

    with running_daemon() as d:
        yield d


@pytest.fixture
def runtime_root() -> Iterator[str]:
    """An empty state directory for the runtime (``--root``), removed afterwards.

    Short and under /tmp: unix socket paths inside it must stay under 108 bytes.
    """
    path = tempfile.mkdtemp(prefix="psr-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
