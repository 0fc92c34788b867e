"""Helpers shared by the cgroup integration tests."""

from __future__ import annotations

import os
from collections.abc import Callable

from portside.runtime.cgroups import CgroupManager


def in_child(mgr: CgroupManager, body: Callable[[], int]) -> int:
    """Fork; the child joins ``mgr``, runs ``body`` and exits with its result."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 98
        try:
            mgr.apply(0)
            code = body()
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
