"""Questions about other processes."""

from __future__ import annotations

import errno
import os

__all__ = ["pid_exists"]


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal does)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
