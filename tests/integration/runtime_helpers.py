"""Driving ``portside-runtime`` as an engine does: one CLI process per command.

:class:`RuntimeCLI` runs the real command line with ``--root`` set, hands out
unique container ids, remembers every id, bundle and container PID it saw, and
on :meth:`RuntimeCLI.close` force-deletes every container and reports anything
left behind: a state directory, a cgroup directory, a live process, a mount.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from portside.testing import unique_id

__all__ = [
    "CGROUP_ROOT",
    "RuntimeCLI",
    "cgroup_dirs",
    "runtime_command",
    "start_time",
    "status_field",
    "wait_for",
]

CGROUP_ROOT = "/sys/fs/cgroup"
#: how long one CLI call may take before the test fails (a hang is a failure)
CALL_TIMEOUT = 20.0


def runtime_command() -> list[str]:
    """The lean venv launcher if there is one, else ``python -m portside.runtime.cli``."""
    launcher = shutil.which("portside-runtime", path=os.path.dirname(sys.executable))
    if launcher:
        return [launcher]
    return [sys.executable, "-m", "portside.runtime.cli"]


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` (field 22 of /proc/PID/stat), None once it is gone
    or a zombie (this host's init reaps orphans late).

    A PID with the same start time is the same process (PIDs are reused)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def cgroup_dirs(container_id: str) -> list[str]:
    """Every cgroup directory named for ``container_id`` under the runtime's parent."""
    return glob.glob(f"{CGROUP_ROOT}/*/portside/{container_id}")


def status_field(pid: int, name: str) -> str:
    """One field of /proc/PID/status, e.g. ``Uid``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise AssertionError(f"/proc/{pid}/status has no {name} field")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``check`` until it is true; fail the test naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class RuntimeCLI:
    """The runtime's command line bound to one state root; cleans up on close."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.command = runtime_command()
        self.ids: list[str] = []
        self.bundles: list[str] = []
        self.pids: dict[int, int | None] = {}  # pid -> start time when first seen

    def new_id(self, prefix: str = "rt") -> str:
        cid = unique_id(prefix)
        self.ids.append(cid)
        return cid

    def argv(self, *args: str) -> list[str]:
        return [*self.command, "--root", self.root, *args]

    def __call__(
        self, *args: str, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run one CLI command; ``check`` fails the test (with stderr) on a non-zero exit."""
        kwargs.setdefault("timeout", CALL_TIMEOUT)
        kwargs.setdefault("umask", 0o022)  # what an engine usually runs with
        # files, not pipes: a created container keeps its stdio open after create returns
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            argv = self.argv(*args)
            code = subprocess.run(argv, check=False, stdout=out, stderr=err, **kwargs).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(argv, code, out.read().decode(), err.read().decode())
        if check and proc.returncode != 0:
            raise AssertionError(
                f"portside-runtime {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    # --- lifecycle shortcuts ---------------------------------------------------

    def run(self, bundle: str, *extra: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Foreground ``run`` of a new container; returns the finished CLI process
        (its exit code is the container's). Never checks the exit code."""
        cid = self.new_id()
        self.bundles.append(bundle)
        return self("run", "-b", bundle, *extra, cid, check=False, **kwargs)

    def create(self, bundle: str, *extra: str, **kwargs: Any) -> str:
        """``create`` a new container (must succeed); returns its id."""
        cid = self.new_id()
        self.bundles.append(bundle)
        self("create", "-b", bundle, *extra, cid, **kwargs)
        self.pid(cid)
        return cid

    def start_new(self, bundle: str, *extra: str, **kwargs: Any) -> tuple[str, int]:
        """``create`` + ``start``; returns (id, init's host PID)."""
        cid = self.create(bundle, *extra, **kwargs)
        self("start", cid)
        return cid, self.pid(cid)

    def state(self, cid: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self("state", cid).stdout)
        if state.get("pid"):
            self.pids.setdefault(state["pid"], start_time(state["pid"]))
        return state

    def pid(self, cid: str) -> int:
        pid = int(self.state(cid)["pid"])
        assert pid > 0, f"container {cid} has no pid"
        return pid

    def status(self, cid: str) -> str:
        return str(self.state(cid)["status"])

    def wait_status(self, cid: str, status: str, timeout: float = 5.0) -> None:
        wait_for(f"{cid} to be {status}", lambda: self.status(cid) == status, timeout)

    # --- cleanup ----------------------------------------------------------------

    def leftovers(self, cid: str) -> list[str]:
        """What ``cid`` left behind: state dir, cgroup dirs."""
        found = [f"cgroup {d}" for d in cgroup_dirs(cid)]
        if os.path.exists(os.path.join(self.root, cid)):
            found.append(f"state dir {self.root}/{cid}")
        return found

    def live_pids(self) -> list[int]:
        return [pid for pid, start in self.pids.items() if start and start_time(pid) == start]

    def host_mounts_under(self, *paths: str) -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return [line.strip() for line in f if any(p in line for p in paths)]

    def close(self) -> None:
        """Force-delete every container this object created, then fail if anything
        is left: a state or cgroup directory, a process, a mount of a bundle."""
        for cid in self.ids:
            self("delete", "--force", cid, check=False)
        problems = [item for cid in self.ids for item in self.leftovers(cid)]
        try:
            wait_for("container processes to exit", lambda: not self.live_pids(), 5.0)
        except AssertionError:
            problems += [f"process {pid}" for pid in self.live_pids()]
        if self.bundles:
            problems += [f"mount {m}" for m in self.host_mounts_under(*self.bundles)]
        assert not problems, "left behind: " + "; ".join(problems)
