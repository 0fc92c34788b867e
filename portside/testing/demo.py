"""The main job, until the daemon exists: a busybox container run by portside-runtime.

Builds a busybox root filesystem from Debian's busybox-static, makes an OCI bundle
of it, and runs ``portside-runtime run`` on it; the container prints its hostname,
that it is PID 1, and its network interfaces (lo only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from portside.testing.bundle import make_bundle, unique_id

SCRIPT = (
    'echo "hostname: $(hostname)"; echo "pid: $$"; '
    'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"'
)


def runtime_command() -> list[str]:
    exe = shutil.which("portside-runtime", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "portside.runtime.cli"]


def main() -> int:
    work = tempfile.mkdtemp(prefix="portside-demo-")
    try:
        cid = unique_id("demo")
        bundle = make_bundle(
            os.path.join(work, "bundle"),
            args=["sh", "-c", SCRIPT],
            mutate=lambda spec: spec.update(hostname=cid),
        )
        root = os.path.join(work, "state")
        cmd = [*runtime_command(), "--root", root, "run", "--bundle", bundle, cid]
        print("$", " ".join(cmd), flush=True)
        return subprocess.run(cmd, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
