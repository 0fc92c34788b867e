"""The OCI runtime: portside-runtime against runc and crun, and the daemon's in-process path.

Three benchmarks, all on one busybox bundle whose process is ``true`` (run as root):

- ``runtime_run_true``: ``PROG --root R run --bundle B ID``, a fresh ID per run.
- ``runtime_create_start``: ``create`` then ``start``, two CLI calls as engines make them,
  each timed on its own (``phases`` in the JSON line); the container is reaped and deleted
  untimed.
- ``runtime_inprocess``: ``Runtime.create`` + ``start`` + ``os.waitpid`` + ``delete`` in this
  warm process, the path the daemon will use; per-phase times in ``phases``, and
  ``runc run`` as a reference peer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bench.harness import BenchmarkError, Command, compare, summarize
from portside.testing import make_bundle, unique_id

__all__ = [
    "bench_runtime_create_start",
    "bench_runtime_inprocess",
    "bench_runtime_run_true",
    "create_argv",
    "delete_argv",
    "portside_runtime",
    "run_argv",
    "start_argv",
]

PEERS = ("runc", "crun")
RUN_GOAL_RATIO = 2.0  # the goal: our CLI within 2x of runc
INPROCESS_GOAL_MS = 15.0  # the goal for the daemon's path


def portside_runtime() -> str:
    """Our CLI: the one beside this interpreter (the virtualenv's), else the one on PATH."""
    beside = os.path.join(sys.prefix, "bin", "portside-runtime")
    return beside if os.path.exists(beside) else "portside-runtime"


def run_argv(prog: str, root: str, bundle: str, cid: str) -> list[str]:
    return [prog, "--root", root, "run", "--bundle", bundle, cid]


def create_argv(prog: str, root: str, bundle: str, cid: str, pid_file: str) -> list[str]:
    return [prog, "--root", root, "create", "--bundle", bundle, "--pid-file", pid_file, cid]


def start_argv(prog: str, root: str, cid: str) -> list[str]:
    return [prog, "--root", root, "start", cid]


def delete_argv(prog: str, root: str, cid: str) -> list[str]:
    return [prog, "--root", root, "delete", "--force", cid]


def _contenders() -> list[tuple[str, str]]:
    """``(name, program)``: ours first, then the peers."""
    return [("portside-runtime", portside_runtime()), *((p, p) for p in PEERS)]


def _force_delete(prog: str, root: str, cid: str) -> None:
    """Delete the container if it is still there (a failed or interrupted run)."""
    if cid and os.path.isdir(os.path.join(root, cid)):
        import subprocess

        subprocess.run(delete_argv(prog, root, cid), capture_output=True, check=False)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@contextlib.contextmanager
def _workdir() -> Iterator[tuple[str, str]]:
    """A temporary directory and a busybox ``true`` bundle in it; removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="bench-runtime-")
    try:
        yield tmp, make_bundle(os.path.join(tmp, "bundle"), args=["true"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """Adopt the containers' orphaned inits (to reap them) while the block runs."""
    from portside.linux.caps import set_child_subreaper

    set_child_subreaper(True)
    try:
        yield
    finally:
        set_child_subreaper(False)


def _timed_call(argv: list[str], err_file: str) -> int:
    """Run ``argv`` with every stdio on files, never a pipe: the container's init inherits
    them, and a pipe it holds would keep a pipe reader waiting until the container exits."""
    import subprocess

    with open(err_file, "w+b") as err:
        start = time.perf_counter_ns()
        devnull = subprocess.DEVNULL
        proc = subprocess.run(argv, check=False, stdin=devnull, stdout=devnull, stderr=err)
        elapsed = time.perf_counter_ns() - start
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()[-500:]
            raise BenchmarkError(f"{argv} exited {proc.returncode}: {msg}")
    return elapsed


def _tail(samples: list[int], runs: int) -> list[int]:
    """The measured samples: the last ``runs`` (before them: the probe and the warm-up)."""
    return samples[-runs:]


# --- runtime_run_true --------------------------------------------------------------


class _FreshRun:
    """``PROG run`` with a new container ID before each run (the argv list is edited in
    place: the harness reads it at each run)."""

    def __init__(self, name: str, prog: str, root: str, bundle: str) -> None:
        self.prog, self.root = prog, root
        self.command = Command(name, run_argv(prog, root, bundle, ""), self.setup, self.teardown)

    @property
    def cid(self) -> str:
        argv = self.command.argv
        assert isinstance(argv, list)
        return argv[-1]

    def setup(self) -> None:
        argv = self.command.argv
        assert isinstance(argv, list)
        argv[-1] = unique_id("b")

    def teardown(self) -> None:
        _force_delete(self.prog, self.root, self.cid)


def bench_runtime_run_true(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """`run` of a busybox `true` bundle: portside-runtime vs runc and crun (goal: <= 2x runc)."""
    with _workdir() as (tmp, bundle):
        commands = [
            _FreshRun(name, prog, os.path.join(tmp, f"state-{name}"), bundle).command
            for name, prog in _contenders()
        ]

        def goal() -> dict[str, Any]:
            return {"goal": f"ratio to runc <= {RUN_GOAL_RATIO}"}

        result = compare(
            "runtime_run_true",
            commands[0],
            commands[1:],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=goal,
        )
    return result


# --- runtime_create_start ------------------------------------------------------------


class _CreateStart:
    """``PROG create`` then ``PROG start``, each timed; reaped and deleted untimed."""

    def __init__(self, name: str, prog: str, root: str, bundle: str, tmp: str) -> None:
        self.name, self.prog, self.root, self.bundle = name, prog, root, bundle
        self.pid_file = os.path.join(tmp, f"{name}.pid")
        self.err_file = os.path.join(tmp, f"{name}.err")
        self.cid = ""
        self.started = False
        self.create_ns: list[int] = []
        self.start_ns: list[int] = []
        self.command = Command(name, self, self.setup, self.teardown)

    def setup(self) -> None:
        self.cid = unique_id("b")
        self.started = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)

    def __call__(self) -> None:
        argv = create_argv(self.prog, self.root, self.bundle, self.cid, self.pid_file)
        created = _timed_call(argv, self.err_file)
        started = _timed_call(start_argv(self.prog, self.root, self.cid), self.err_file)
        self.started = True
        self.create_ns.append(created)
        self.start_ns.append(started)

    def teardown(self) -> None:
        pid = 0
        with contextlib.suppress(FileNotFoundError, ValueError), open(self.pid_file) as f:
            pid = int(f.read().strip() or 0)
        if pid and self.started:
            _reap(pid)  # `true` exits at once; we are its subreaper
        _force_delete(self.prog, self.root, self.cid)
        if pid and not self.started:
            _reap(pid)

    def phases(self, runs: int) -> dict[str, Any]:
        return {
            "create": summarize("create", _tail(self.create_ns, runs)),
            "start": summarize("start", _tail(self.start_ns, runs)),
        }


def bench_runtime_create_start(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """`create` and `start` as two CLI calls (each timed in `phases`): vs runc and crun."""
    with _workdir() as (tmp, bundle), _subreaper():
        contenders = [
            _CreateStart(name, prog, os.path.join(tmp, f"state-{name}"), bundle, tmp)
            for name, prog in _contenders()
        ]

        def phases() -> dict[str, Any]:
            done = [c for c in contenders if len(c.create_ns) >= runs]
            return {"phases": {c.name: c.phases(runs) for c in done}}

        result = compare(
            "runtime_create_start",
            contenders[0].command,
            [c.command for c in contenders[1:]],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=phases,
        )
    return result


# --- runtime_inprocess -----------------------------------------------------------------


class _InProcess:
    """``Runtime.create`` + ``start`` + ``os.waitpid`` + ``delete``, each phase timed."""

    PHASES = ("create", "start", "wait", "delete")

    def __init__(self, root: str, bundle: str) -> None:
        from portside.runtime.container import Runtime

        self.runtime = Runtime(root)
        self.root, self.bundle = root, bundle
        self.cid = ""
        self.pid = 0
        self.samples: dict[str, list[int]] = {p: [] for p in self.PHASES}
        self.command = Command("portside in-process", self, self.setup, self.teardown)

    def setup(self) -> None:
        self.cid = unique_id("b")
        self.pid = 0

    def __call__(self) -> None:
        clock = time.perf_counter_ns
        t0 = clock()
        self.pid = self.runtime.create(self.cid, self.bundle).pid
        t1 = clock()
        self.runtime.start(self.cid)
        t2 = clock()
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        t3 = clock()
        self.runtime.delete(self.cid)
        t4 = clock()
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchmarkError(f"in-process: container {self.cid} exited with {status:#x}")
        for phase, ns in zip(self.PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.samples[phase].append(ns)

    def teardown(self) -> None:
        if os.path.isdir(os.path.join(self.root, self.cid)):
            self.runtime.delete(self.cid, force=True)
        if self.pid:
            _reap(self.pid)

    def phases(self, runs: int) -> dict[str, Any]:
        return {p: summarize(p, _tail(s, runs)) for p, s in self.samples.items()}


def bench_runtime_inprocess(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """The daemon's path: Runtime.create+start+waitpid+delete in a warm process (goal < 15 ms)."""
    with _workdir() as (tmp, bundle), _subreaper():
        ours = _InProcess(os.path.join(tmp, "state-inprocess"), bundle)
        runc = _FreshRun("runc run (reference)", "runc", os.path.join(tmp, "state-runc"), bundle)

        def phases() -> dict[str, Any]:
            return {"phases": ours.phases(runs), "goal": f"median < {INPROCESS_GOAL_MS} ms"}

        result = compare(
            "runtime_inprocess",
            ours.command,
            [runc.command],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=phases,
        )
    return result
