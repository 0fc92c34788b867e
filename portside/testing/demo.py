"""The main job: start ``portside daemon``, load the busybox image made from
Debian's busybox-static, and run a container from it with the ``portside`` CLI.

The daemon gets its own temporary data root, exec root and socket, so the demo
neither needs nor disturbs a daemon already running on this host; everything it
started is removed at the end. The container prints its hostname (its short ID),
that it is PID 1, and its network interfaces (``eth0`` on the default bridge, ``lo``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from portside.testing.baseimage import write_busybox_archive
from portside.testing.daemon import Daemon

SCRIPT = (
    'echo "hostname: $(hostname)"; echo "pid: $$"; '
    'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"'
)


def cli_command() -> list[str]:
    exe = shutil.which("portside", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "portside.cli.main"]


def _run(daemon: Daemon, *args: str) -> int:
    print("$ portside", shlex.join(args), flush=True)
    return subprocess.run([*cli_command(), *args], env=daemon.env(), check=False).returncode


def main() -> int:
    daemon = Daemon(prefix="portside-demo-")
    try:
        print("$", shlex.join(["portside", *daemon.argv()[3:]]), "&", flush=True)
        daemon.start()
        archive = write_busybox_archive(os.path.join(daemon.dir, "busybox.tar"))
        code = _run(daemon, "load", "-i", archive)
        if code == 0:
            code = _run(daemon, "run", "--rm", "busybox", "sh", "-c", SCRIPT)
        return code
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    sys.exit(main())
