"""One real daemon per e2e module (its own roots, socket and cgroup parent)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from portside.testing.daemon import Daemon, running_daemon


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with running_daemon() as d:
        yield d
