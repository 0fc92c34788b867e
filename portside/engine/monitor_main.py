"""The monitor process: ``python -m portside.engine.monitor_main --exec-root E
--runtime-root R`` forks, and the child detaches, takes the lock on ``E``, becomes a
child subreaper and serves (:class:`portside.engine.monitor.Monitor`); the parent
exits once the child answers ``ok`` (serving), ``busy`` (another monitor holds ``E``)
or an error. ``--foreground`` serves in the calling process (debugging).
"""

from __future__ import annotations

import os
import sys
import traceback

from portside.engine.monitor import Monitor, log
from portside.engine.monitor_spawn import daemonize, lock_exec_root
from portside.errors import PortsideError

__all__ = ["main", "serve"]


def serve(exec_root: str, runtime_root: str, ready: int) -> int:
    """The monitor process proper (after the fork): returns its exit code."""
    from portside.linux.caps import set_child_subreaper

    daemonize(exec_root)
    lock = lock_exec_root(exec_root)
    if lock is None:
        os.write(ready, b"busy")
        os.close(ready)
        return 0
    try:
        set_child_subreaper(True)
        monitor = Monitor(exec_root, runtime_root)
        monitor.install_signals()
        monitor.listen()
        with open(os.path.join(exec_root, "monitor.pid"), "w") as f:
            f.write(str(os.getpid()))
    except (OSError, PortsideError) as exc:
        os.write(ready, f"error: {exc}".encode())
        os.close(ready)
        return 1
    os.write(ready, b"ok")
    os.close(ready)
    monitor.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="portside.engine.monitor_main")
    parser.add_argument("--exec-root", required=True)
    parser.add_argument("--runtime-root", required=True)
    parser.add_argument("--foreground", action="store_true", help="do not fork (debugging)")
    args = parser.parse_args(argv)
    exec_root = os.path.abspath(args.exec_root)
    os.makedirs(exec_root, mode=0o700, exist_ok=True)
    r, w = os.pipe()
    if not args.foreground:
        pid = os.fork()
        if pid:
            os.close(w)
            answer = b""
            while chunk := os.read(r, 4096):
                answer += chunk
            if answer in (b"ok", b"busy"):
                return 0
            sys.stderr.write(f"portside monitor: {answer.decode(errors='replace') or 'died'}\n")
            return 1
    os.close(r)
    code = 1
    try:
        code = serve(exec_root, os.path.abspath(args.runtime_root), w)
    except BaseException:
        log(f"monitor failed:\n{traceback.format_exc()}")
    finally:
        if not args.foreground:
            os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
