"""portside.runtime.init.install_stdio: a forked child keeps its stdio and what it was
told to keep, and no other fd of the server it was forked from."""

from __future__ import annotations

import json
import os

import pytest

from portside.runtime.init import install_stdio


def _in_child(opened: int, keep_picks: list[int]) -> tuple[list[int], list[int], bool]:
    """Fork; the child opens ``opened`` fds, installs a pipe as its stdio keeping the
    picked ones, and reports its open fds, the kept fds and whether stdout is the pipe."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(opened)]
            fds.append(os.dup2(report_w, 900, inheritable=False))  # far above the rest
            keep = {fds[i] for i in keep_picks if i < len(fds)} | {report_w}
            r, w = os.pipe()
            install_stdio((r, w, w), keep)
            os.write(1, b"x")
            is_pipe = os.read(0, 1) == b"x"
            left = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            os.write(report_w, json.dumps([left, sorted(keep), is_pipe]).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    data = b""
    while chunk := os.read(report_r, 65536):
        data += chunk
    os.close(report_r)
    os.waitpid(pid, 0)
    left, keep, is_pipe = json.loads(data)
    return left, keep, is_pipe


@pytest.mark.parametrize(
    ("opened", "keep_picks"),
    [(0, []), (5, []), (12, [0, 3, 4, 9]), (30, [29, 1]), (3, [3])],  # fds[-1]: 900
)
def test_only_stdio_and_the_kept_fds_stay_open(opened: int, keep_picks: list[int]) -> None:
    left, keep, is_pipe = _in_child(opened, keep_picks)
    assert is_pipe
    listing = [fd for fd in left if fd not in (0, 1, 2, *keep)]
    assert len(listing) <= 1  # at most the fd of the /proc/self/fd listing itself
    assert set(keep) <= set(left)
