"""cgroup limits of linux.resources, enforced on a real container (cgroup v1 host)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portside.runtime.container import Runtime
from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import CGROUP_ROOT, RuntimeCLI, wait_for

pytestmark = pytest.mark.root

MiB = 1024 * 1024
#: the shell itself (PID 1) holds 60 MB: a limit below that kills the container
HOG = 'x=$(head -c 60000000 /dev/zero | tr "\\0" a); echo survived ${#x}'


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def resources(**res: Any) -> Any:
    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"].update(res)

    return mutate


def stats(rt: RuntimeCLI, cid: str) -> dict[str, Any]:
    """``events --stats``: exactly one JSON line of type "stats"."""
    lines = rt("events", "--stats", cid).stdout.splitlines()
    assert len(lines) == 1, lines
    event: dict[str, Any] = json.loads(lines[0])
    assert (event["type"], event["id"]) == ("stats", cid)
    return event["data"]


def read_cgroup(controller: str, cid: str, name: str) -> str:
    with open(f"{CGROUP_ROOT}/{controller}/portside/{cid}/{name}") as f:
        return f.read().strip()


@pytest.mark.parametrize("limit_mib", [32, None])
def test_memory_limit_kills_the_container(
    rt: RuntimeCLI, bundle: BundleFactory, limit_mib: int | None
) -> None:
    mutate = resources(memory={"limit": limit_mib * MiB}) if limit_mib else None
    proc = rt.run(bundle(args=["sh", "-c", HOG], mutate=mutate))
    if limit_mib:
        assert proc.returncode == 137, (proc.stdout, proc.stderr)
        assert "survived" not in proc.stdout
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["survived", "60000000"]


def test_oom_kill_shows_in_stats(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """A child killed by the OOM killer: the running container's memory stats
    show the limit was hit (failcnt) and the kernel counted an OOM kill."""
    # the hog waits for the first stats call to have seen failcnt 0 (no race)
    script = f"while [ ! -e /tmp/go ]; do sleep 0.05; done; sh -c '{HOG}'; exec sleep 10"
    path = bundle(args=["sh", "-c", script], mutate=resources(memory={"limit": 32 * MiB}))
    cid, pid = rt.start_new(path)
    assert stats(rt, cid)["memory"]["usage"]["failcnt"] == 0
    rt("exec", cid, "touch", "/tmp/go")
    wait_for(
        "the hog to be OOM-killed",
        lambda: "oom_kill 1" in read_cgroup("memory", cid, "memory.oom_control"),
    )
    data = stats(rt, cid)["memory"]
    assert data["usage"]["limit"] == 32 * MiB
    assert data["usage"]["failcnt"] > 0
    assert rt.status(cid) == "running"
    assert rt.pid(cid) == pid


@pytest.mark.parametrize("limit", [10, 100])
def test_pids_limit(rt: RuntimeCLI, bundle: BundleFactory, limit: int) -> None:
    script = "for i in $(seq 20); do sleep 0.3 & done; wait; echo done"
    proc = rt.run(bundle(args=["sh", "-c", script], mutate=resources(pids={"limit": limit})))
    if limit == 10:
        assert "can't fork" in proc.stderr or "temporarily unavailable" in proc.stderr
    else:
        assert proc.returncode == 0
        assert proc.stderr == ""
        assert proc.stdout == "done\n"


def test_cpu_quota_throttles_a_busy_loop(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    mutate = resources(cpu={"quota": 10000, "period": 100000})
    cid, _ = rt.start_new(bundle(args=["sh", "-c", "while :; do :; done"], mutate=mutate))
    time.sleep(1.0)
    cpu = stats(rt, cid)["cpu"]
    used = cpu["usage"]["total"] / 1e9
    assert 0.01 < used < 0.4, f"{used:.3f}s of CPU in 1s of wall time"
    assert cpu["throttling"]["throttledPeriods"] > 0
    assert read_cgroup("cpu", cid, "cpu.cfs_quota_us") == "10000"


def test_update_memory_of_a_running_container(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid, _ = rt.start_new(
        bundle(args=["sleep", "10"], mutate=resources(memory={"limit": 64 * MiB}))
    )
    assert int(read_cgroup("memory", cid, "memory.limit_in_bytes")) == 64 * MiB
    rt("update", "--memory", "50m", cid)
    assert int(read_cgroup("memory", cid, "memory.limit_in_bytes")) == 50 * MiB
    assert stats(rt, cid)["memory"]["usage"]["limit"] == 50 * MiB


def test_update_pids_limit(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid, _ = rt.start_new(bundle(args=["sleep", "10"]))
    rt("update", "--pids-limit", "7", cid)
    assert read_cgroup("pids", cid, "pids.max") == "7"
    assert stats(rt, cid)["pids"] == {"current": 1, "limit": 7}


def test_an_oom_kill_is_reported_after_the_container_died(
    rt: RuntimeCLI, bundle: BundleFactory
) -> None:
    mutate = resources(memory={"limit": 32 * MiB})
    cid = rt.create(bundle(args=["sh", "-c", HOG], mutate=mutate))
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    # stopped, not deleted: its cgroup still tells what happened
    assert stats(rt, cid)["memory"]["oom_kill"] >= 1
    assert Runtime(rt.root).oom_kill_count(cid) == stats(rt, cid)["memory"]["oom_kill"]
    rt("delete", cid)
    proc = rt("events", "--stats", cid, check=False)
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr


def test_stats_of_a_container_without_oom_say_zero(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid = rt.create(bundle(args=["true"]))
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    assert stats(rt, cid)["memory"]["oom_kill"] == 0
    assert Runtime(rt.root).oom_kill_count(cid) == 0
