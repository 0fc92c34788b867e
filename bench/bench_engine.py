"""The daemon end to end: `run --rm busybox true`, containers per second, memory per container.

Three benchmarks (run as root; each starts its own daemon on temporary roots, the
peers on temporary storage). Every engine runs its containers with ``--net=none``,
as the issue's figures for docker and podman were taken:

- ``engine_run_rm``: ``portside run --rm --net=none busybox true`` through our CLI,
  and through the docker CLI against our daemon, vs ``podman run --rm --net=none``
  and ``docker run --rm --net=none`` (a Docker engine, where one runs).
- ``engine_throughput``: 100 ``run --rm busybox true`` one after another and 8 at a
  time; containers per second for each engine, and the engine's CPU time per container
  (daemon + monitor + the processes they reaped, from /proc/<pid>/stat) for ours.
  Ours is measured twice: through the CLI (a Python interpreter per container), and
  through the API from one client process making docker-py's calls (create, start,
  wait, remove), which is the engine's own rate. Also ours with the default bridge
  network, through the CLI, for what a veth costs.
- ``engine_memory``: 100 detached ``sleep`` containers: the monitor's and the daemon's
  PSS/RSS growth per container and the drop in MemAvailable, vs podman's conmon.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import BenchmarkError, Command, compare, emit, machine

__all__ = ["bench_engine_memory", "bench_engine_run_rm", "bench_engine_throughput"]

COUNT = 100
PARALLEL = 8
PODMAN_GOAL_RATIO = 0.5  # run --rm: <= 0.5x podman
DOCKER_GOAL_RATIO = 0.25  # run --rm: <= 0.25x docker
RATE_GOAL = 10.0  # containers/s: >= 10x podman's
CPU_GOAL_MS = 25.0  # engine CPU per container
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=32768:32768")
NONE = "--net=none"


def portside_cli() -> list[str]:
    beside = os.path.join(sys.prefix, "bin", "portside")
    return [beside] if os.path.exists(beside) else [sys.executable, "-m", "portside.cli.main"]


@contextlib.contextmanager
def _daemon() -> Iterator[Any]:
    from portside.testing.daemon import running_daemon

    with running_daemon() as d:
        yield d


class _Podman:
    """podman on its own storage with the same busybox image loaded."""

    def __init__(self, archive: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-podman-", dir="/var/tmp")
        self.base = ["podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/run"]
        self.ok = shutil.which("podman") is not None
        if self.ok:
            proc = subprocess.run(
                [*self.base, "load", "-i", archive], capture_output=True, check=False
            )
            self.ok = proc.returncode == 0

    def argv(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def run_argv(self, *args: str) -> list[str]:
        """``podman run`` as this host allows: runc (crun refuses hybrid cgroups) and
        explicit ulimits (the NOFILE hard limit is below podman's default)."""
        return self.argv("--runtime", "runc", "run", "--net=none", *PODMAN_ULIMITS, *args)

    def close(self) -> None:
        if shutil.which("podman"):
            subprocess.run([*self.base, "rm", "-af", "-t", "0"], capture_output=True, check=False)
            subprocess.run([*self.base, "system", "reset", "-f"], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class _Docker:
    """The host's Docker engine (its default socket), where one runs, with the same
    busybox image loaded (and removed afterwards when it was not there before); the
    containers made here carry a label of this run and are removed by :meth:`close`."""

    def __init__(self, archive: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        self.label = f"portside-bench={os.getpid()}-{time.monotonic_ns()}"
        self.ok = shutil.which("docker") is not None and self._call("info") == 0
        self.loaded = False
        if self.ok and self._call("image", "inspect", "busybox") != 0:
            self.loaded = self.ok = self._call("load", "-i", archive) == 0

    def _call(self, *args: str) -> int:
        return subprocess.run(
            ["docker", *args], capture_output=True, env=self.env, check=False
        ).returncode

    def run_argv(self, *args: str) -> list[str]:
        return ["docker", "run", "--label", self.label, NONE, *args]

    def close(self) -> None:
        if not self.ok:
            return
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={self.label}"],
            capture_output=True, env=self.env, text=True, check=False,
        )  # fmt: skip
        if ids := listed.stdout.split():
            self._call("rm", "-f", *ids)
        if self.loaded:
            self._call("rmi", "busybox")


@contextlib.contextmanager
def _peers(d: Any) -> Iterator[tuple[_Podman, _Docker]]:
    """podman and docker with daemon ``d``'s busybox loaded (``ok`` False where absent);
    their containers and storage removed afterwards."""
    podman, docker = _Podman(_archive(d)), _Docker(_archive(d))
    try:
        yield podman, docker
    finally:
        podman.close()
        docker.close()


def _archive(d: Any) -> str:
    path = os.path.join(d.dir, "busybox.tar")
    if not os.path.exists(path):
        from portside.testing.baseimage import write_busybox_archive

        write_busybox_archive(path)
    return path


def _env_command(name: str, argv: list[str], env: dict[str, str]) -> Command:
    def run() -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise BenchmarkError(f"{name}: exited {proc.returncode}: {proc.stderr[-300:]!r}")

    return Command(name, run)


def bench_engine_run_rm(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """`run --rm busybox true` end to end: our CLI, the docker CLI on our daemon, podman, docker."""
    with _daemon() as d, _peers(d) as (podman, docker):
        ours = _env_command(
            "portside", [*portside_cli(), "run", "--rm", NONE, "busybox", "true"], d.env()
        )
        peers = [
            _env_command(
                "docker-cli->portside",
                ["docker", "run", "--rm", NONE, "busybox", "true"],
                d.env(),
            ),
        ]
        if podman.ok:
            peers.append(Command("podman", podman.run_argv("--rm", "busybox", "true")))
        if docker.ok:
            peers.append(
                _env_command("docker", docker.run_argv("--rm", "busybox", "true"), docker.env)
            )
        return compare(
            "engine_run_rm",
            ours,
            peers,
            runs=runs,
            warmup=warmup,
            out=out,
            extra=lambda: {"goals": {"podman": PODMAN_GOAL_RATIO, "docker": DOCKER_GOAL_RATIO}},
        )


def _cpu_ms(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total * 1000 / ticks


def _engine_pids(d: Any) -> list[int]:
    pids = []
    for name in ("daemon.pid", "run/monitor.pid"):
        with contextlib.suppress(OSError, ValueError), open(os.path.join(d.dir, name)) as f:
            pids.append(int(f.read().strip()))
    return pids


def _rate(run_one: Callable[[], None], count: int, parallel: int) -> float:
    start = time.perf_counter()
    if parallel <= 1:
        for _ in range(count):
            run_one()
    else:
        with ThreadPoolExecutor(parallel) as pool:
            for future in [pool.submit(run_one) for _ in range(count)]:
                future.result()
    return count / (time.perf_counter() - start)


def _runner(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    def run() -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise BenchmarkError(f"{argv}: exited {proc.returncode}: {proc.stderr[-300:]!r}")

    return run


def _api_runner(host: str) -> Callable[[], None]:
    """docker-py's ``containers.run(..., remove=True)`` from this process: create,
    start, wait, remove (one connection per call, as the CLI's client makes)."""
    from portside.client import Client, read_wait

    client = Client(host)
    body = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}

    def run() -> None:
        cid = client.container_create(body)["Id"]
        client.container_start(cid)
        code, message = read_wait(client.container_wait_request(cid, "not-running"))
        client.container_remove(cid)
        if code != 0:
            raise BenchmarkError(f"api: container {cid[:12]} exited {code}: {message}")

    return run


def bench_engine_throughput(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """100 `run --rm busybox true`, sequential and 8 in parallel: containers per second."""
    count = max(COUNT if runs >= 10 else runs * 10, 10)
    result: dict[str, Any] = {
        "benchmark": "engine_throughput",
        "count": count,
        "parallel": PARALLEL,
        "machine": machine(),
    }
    with _daemon() as d:
        measured: dict[str, dict[str, float]] = {}
        for name, run_one in (
            ("cli", _runner([*portside_cli(), "run", "--rm", NONE, "busybox", "true"], d.env())),
            ("api", _api_runner(d.host)),
            ("cli_bridge", _runner([*portside_cli(), "run", "--rm", "busybox", "true"], d.env())),
        ):
            for _ in range(max(warmup, 1)):
                run_one()
            pids = _engine_pids(d)
            cpu0 = _cpu_ms(pids)
            seq = _rate(run_one, count, 1)
            par = _rate(run_one, count, PARALLEL)
            measured[name] = {
                "sequential_per_s": round(seq, 2),
                "parallel_per_s": round(par, 2),
                "engine_cpu_ms_per_container": round((_cpu_ms(pids) - cpu0) / (2 * count), 2),
            }
        result["ours"] = measured
        peers: dict[str, Any] = {}
        with _peers(d) as (podman, docker):
            for name, argv, env in (
                ("podman", podman.run_argv("--rm", "busybox", "true") if podman.ok else None, None),
                ("docker", docker.run_argv("--rm", "busybox", "true") if docker.ok else None,
                 docker.env),
            ):  # fmt: skip
                if argv is None:
                    continue
                run = _runner(argv, env)
                run()
                peers[name] = {
                    "sequential_per_s": round(_rate(run, count, 1), 2),
                    "parallel_per_s": round(_rate(run, count, PARALLEL), 2),
                }
    for peer in peers.values():
        for name in ("cli", "api"):
            for mode in ("sequential", "parallel"):
                ratio = measured[name][f"{mode}_per_s"] / peer[f"{mode}_per_s"]
                peer[f"ratio_{mode}_{name}"] = round(ratio, 2)
    result["peers"] = peers
    result["goals"] = {"rate_vs_podman": RATE_GOAL, "engine_cpu_ms": CPU_GOAL_MS}
    return emit(result, out)


def _smaps(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of ``pid`` in KiB."""
    pss = rss = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss, rss


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _pids_named(comm: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == comm:
                    out.append(int(entry))
    return out


def _per_container(before: tuple[int, int], after: tuple[int, int], n: int) -> dict[str, float]:
    return {
        "pss_mib": round((after[0] - before[0]) / 1024 / n, 3),
        "rss_mib": round((after[1] - before[1]) / 1024 / n, 3),
    }


def _sum(pids: list[int]) -> tuple[int, int]:
    pss = rss = 0
    for pid in pids:
        p, r = _smaps(pid)
        pss, rss = pss + p, rss + r
    return pss, rss


def _peer_memory(run: Callable[[], None], count: int, comm: str) -> dict[str, float]:
    """Start ``count`` containers with ``run``: PSS/RSS of each new ``comm`` process
    (the per-container monitor) and the drop in MemAvailable, per container."""
    before = set(_pids_named(comm))
    avail0 = _mem_available()
    for _ in range(count):
        run()
    time.sleep(1)
    new = [p for p in _pids_named(comm) if p not in before]
    pss, rss = _sum(new)
    return {
        "processes": len(new),
        "pss_mib": round(pss / 1024 / max(len(new), 1), 3),
        "rss_mib": round(rss / 1024 / max(len(new), 1), 3),
        "mem_available_drop_mib": round((avail0 - _mem_available()) / 1024 / count, 3),
    }


def bench_engine_memory(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """100 detached `sleep` containers: engine memory per container vs podman's conmon and
    docker's containerd-shim."""
    count = COUNT if runs >= 10 else max(runs * 10, 10)
    result: dict[str, Any] = {"benchmark": "engine_memory", "count": count, "machine": machine()}
    with _daemon() as d:
        run = _runner([*portside_cli(), "run", "-d", NONE, "busybox", "sleep", "600"], d.env())
        run()  # the monitor exists from here on
        pids = _engine_pids(d)
        before, avail0 = [_smaps(p) for p in pids], _mem_available()
        for _ in range(count - 1):
            run()
        time.sleep(1)
        after, avail1 = [_smaps(p) for p in pids], _mem_available()
        names = ("daemon", "monitor")
        result["ours"] = {
            name: _per_container(b, a, count - 1)
            for name, b, a in zip(names, before, after, strict=False)
        }
        result["ours"]["monitor_total_mib"] = round(after[-1][0] / 1024, 2) if after else None
        result["ours"]["mem_available_drop_mib"] = round((avail0 - avail1) / 1024 / (count - 1), 3)
        with _peers(d) as (podman, docker):
            peers = {}
            if podman.ok:
                argv = podman.run_argv("-d", "busybox", "sleep", "600")
                peers["podman-conmon"] = _peer_memory(_runner(argv), count, "conmon")
            if docker.ok:
                argv = docker.run_argv("-d", "busybox", "sleep", "600")
                shim = "containerd-shim"  # containerd-shim-runc-v2, as /proc/PID/comm cuts it
                peers["docker-shim"] = _peer_memory(_runner(argv, docker.env), count, shim)
            result["peers"] = peers
    return emit(result, out)
