"""The container lifecycle through the runc-compatible CLI: create, start, state,
kill, delete, pause, resume, ps, exec, list, run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import RuntimeCLI, cgroup_dirs, start_time, wait_for

pytestmark = pytest.mark.root

#: PID 1 ignores a signal it has no handler for: trap TERM to be stoppable by it
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 10 & wait"]


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def fails(rt: RuntimeCLI, *args: str) -> str:
    """Run a command that must fail; return its stderr."""
    proc = rt(*args, check=False)
    assert proc.returncode != 0, f"{args} succeeded: {proc.stdout}"
    assert proc.stderr
    return proc.stderr


def test_full_lifecycle(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    path = bundle(args=STOPPABLE)
    cid = rt.create(path)
    state = rt.state(cid)
    assert state["status"] == "created"
    assert state["pid"] > 0
    assert (state["id"], state["bundle"]) == (cid, path)
    pid = state["pid"]
    rt("start", cid)
    assert rt.state(cid) | {"status": "running", "pid": pid} == rt.state(cid)
    rt("kill", cid, "TERM")
    rt.wait_status(cid, "stopped")
    assert rt.state(cid)["pid"] == 0
    rt("delete", cid)
    assert "does not exist" in fails(rt, "state", cid)
    assert json.loads(rt("list", "--format", "json").stdout) is None
    assert rt.leftovers(cid) == []
    wait_for("init to be gone", lambda: start_time(pid) is None)
    assert rt.host_mounts_under(path) == []


def test_start_twice_fails(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid = rt.create(bundle(args=["sleep", "10"]))
    rt("start", cid)
    assert "running" in fails(rt, "start", cid)
    assert rt.status(cid) == "running"


def test_delete_running_needs_force(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    path = bundle(args=["sleep", "10"])
    cid, pid = rt.start_new(path)
    assert "force" in fails(rt, "delete", cid)
    assert rt.status(cid) == "running"
    rt("delete", "--force", cid)
    assert "does not exist" in fails(rt, "state", cid)
    assert cgroup_dirs(cid) == []
    wait_for("init to be gone", lambda: start_time(pid) is None)


def test_delete_created_container(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """A created container can be deleted: its waiting init goes too."""
    cid = rt.create(bundle(args=["true"]))
    pid = rt.pid(cid)
    rt("delete", cid)
    assert rt.leftovers(cid) == []
    wait_for("init to be gone", lambda: start_time(pid) is None)


def _without_pid_namespace(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]


@pytest.mark.parametrize("own_pid_ns", [True, False])
def test_delete_of_a_stopped_container_kills_what_is_left_in_its_cgroup(
    rt: RuntimeCLI, bundle: BundleFactory, own_pid_ns: bool
) -> None:
    """A process left in the cgroup of a dead init is killed and the cgroup removed:
    whether the container shared the host's PID namespace (its orphans outlive init)
    or had its own (only a process put there from outside can be left)."""
    import subprocess

    if own_pid_ns:
        cid = rt.create(bundle(args=["true"]))
        stray = subprocess.Popen(["sleep", "60"])
    else:
        cid = rt.create(
            bundle(args=["sh", "-c", "sleep 60 & exit 0"], mutate=_without_pid_namespace)
        )
        stray = None
    try:
        rt("start", cid)
        rt.wait_status(cid, "stopped")
        if stray is not None:
            for directory in cgroup_dirs(cid):
                with open(f"{directory}/cgroup.procs", "w") as f:
                    f.write(str(stray.pid))
        else:
            pids = []
            for directory in cgroup_dirs(cid):
                with open(f"{directory}/cgroup.procs") as f:
                    pids += f.read().split()
            assert pids, "the orphaned sleep should be in the container's cgroup"
        rt("delete", cid)
        assert cgroup_dirs(cid) == []
        if stray is not None:
            assert stray.wait(timeout=5) == -9
    finally:
        if stray is not None and stray.poll() is None:
            stray.kill()
            stray.wait()


def _counter(rootfs: str) -> int:
    with open(os.path.join(rootfs, "tmp", "count")) as f:
        text = f.read().strip()
    return int(text) if text else 0


def test_pause_and_resume(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done"
    path = bundle(args=["sh", "-c", script])
    rootfs = os.path.join(path, "rootfs")
    cid, _ = rt.start_new(path)
    wait_for("the counter to run", lambda: os.path.exists(f"{rootfs}/tmp/count"))
    rt("pause", cid)
    assert rt.status(cid) == "paused"
    frozen = _counter(rootfs)
    time.sleep(0.3)
    assert _counter(rootfs) == frozen
    assert "paused" in fails(rt, "pause", cid)
    rt("resume", cid)
    assert rt.status(cid) == "running"
    wait_for("the counter to move again", lambda: _counter(rootfs) > frozen + 3)


def test_ps_lists_the_init(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid, pid = rt.start_new(bundle(args=["sh", "-c", "sleep 10 & sleep 10"]))
    wait_for(
        "two processes", lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout)) == 2
    )
    pids = json.loads(rt("ps", "--format", "json", cid).stdout)
    assert pid in pids
    table = rt("ps", cid).stdout.splitlines()
    assert "PID" in table[0].split()
    assert len(table) == 3


def test_exec_joins_the_container(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid, pid = rt.start_new(bundle(args=["sleep", "10"]))
    script = "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt"
    proc = rt("exec", cid, "sh", "-c", script)
    inner_pid, pidns, mntns = proc.stdout.split()
    assert 1 < int(inner_pid) < 20
    assert pidns == os.readlink(f"/proc/{pid}/ns/pid")
    assert mntns == os.readlink(f"/proc/{pid}/ns/mnt")
    assert pidns != os.readlink("/proc/self/ns/pid")


def test_exec_exit_code(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid, _ = rt.start_new(bundle(args=["sleep", "10"]))
    assert rt("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    assert rt("exec", cid, "true").returncode == 0


def test_exec_process_file(rt: RuntimeCLI, bundle: BundleFactory, tmp_path: Any) -> None:
    cid, _ = rt.start_new(bundle(args=["sleep", "10"]))
    process = {
        "args": ["sh", "-c", "id -u; pwd; echo $GREETING"],
        "env": ["PATH=/bin:/usr/bin", "GREETING=hello-exec"],
        "cwd": "/tmp",
        "user": {"uid": 65534, "gid": 65534},
    }
    spec = tmp_path / "process.json"
    spec.write_text(json.dumps(process))
    proc = rt("exec", "--process", str(spec), cid)
    assert proc.stdout.split() == ["65534", "/tmp", "hello-exec"]


def test_exec_in_a_stopped_container_fails(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid = rt.create(bundle(args=["true"]))
    rt("start", cid)
    rt.wait_status(cid, "stopped")
    assert "stopped" in fails(rt, "exec", cid, "true")


def test_kill_all(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """kill --all reaches every process, not only init (which ignores TERM here)."""
    cid, _ = rt.start_new(bundle(args=["sh", "-c", "sleep 10 & sleep 10 & sleep 10"]))
    wait_for("three processes", lambda: len(rt("ps", "-f", "json", cid).stdout.split(",")) == 3)
    pids = json.loads(rt("ps", "-f", "json", cid).stdout)
    starts = {p: start_time(p) for p in pids}
    rt("kill", "--all", cid, "9")
    rt.wait_status(cid, "stopped")
    wait_for("every process to die", lambda: all(start_time(p) != s for p, s in starts.items()))


def test_list_table(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    path = bundle(args=["sleep", "10"])
    running, pid = rt.start_new(path)
    created = rt.create(bundle(args=["true"]))
    lines = rt("list").stdout.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {running, created}
    assert rows[running][1:4] == [str(pid), "running", path]
    assert rows[created][2] == "created"
    assert sorted(rt("list", "-q").stdout.split()) == sorted([running, created])


@pytest.mark.parametrize("code", [0, 3])
def test_run_returns_the_exit_code(rt: RuntimeCLI, bundle: BundleFactory, code: int) -> None:
    proc = rt.run(bundle(args=["sh", "-c", f"echo out; echo err >&2; exit {code}"]))
    assert (proc.returncode, proc.stdout) == (code, "out\n")
    assert "err" in proc.stderr
    assert rt.leftovers(rt.ids[-1]) == []


def test_exec_killed_by_signal(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """128 + the signal, as runc (init itself cannot be SIGKILLed from inside)."""
    cid, _ = rt.start_new(bundle(args=["sleep", "10"]))
    assert rt("exec", cid, "sh", "-c", "kill -9 $$", check=False).returncode == 137


def test_pid_file(rt: RuntimeCLI, bundle: BundleFactory, tmp_path: Any) -> None:
    pid_file = tmp_path / "init.pid"
    cid = rt.create(bundle(args=["true"]), "--pid-file", str(pid_file))
    assert pid_file.read_text().strip() == str(rt.pid(cid))


def test_create_with_a_taken_id_fails(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    path = bundle(args=["true"])
    cid = rt.create(path)
    pid = rt.pid(cid)
    assert "exist" in fails(rt, "create", "-b", path, cid)
    assert rt.state(cid)["pid"] == pid


def test_unknown_container(rt: RuntimeCLI) -> None:
    for command in ("state", "start", "kill", "delete", "pause", "ps"):
        assert "does not exist" in fails(rt, command, "nosuchcontainer"), command
    rt("delete", "--force", "nosuchcontainer")
