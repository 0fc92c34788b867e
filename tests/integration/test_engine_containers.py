"""The Engine on the real kernel: the container lifecycle, stop timeouts, restart
policies, auto-remove, exec, attach before start, and an engine reopened (as after a
daemon kill -9) while containers run."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import add_busybox, demux, engine_roots, read_stream, until
from mount_helpers import VOLATILE, fs_options, mounts_under

from portside.engine.engine import Engine
from portside.engine.model import EngineConfig
from portside.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotModified,
)
from portside.testing import busybox_available
from portside.testing.busybox import INSTALL_HINT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not busybox_available(), reason=f"needs a static busybox: {INSTALL_HINT}"),
]


@pytest.fixture
def roots() -> Iterator[EngineConfig]:
    with engine_roots() as config:
        add_busybox(config)
        yield config


@pytest.fixture
def engine(roots: EngineConfig) -> Iterator[Engine]:
    eng = Engine(roots)
    try:
        yield eng
    finally:
        eng.close()


def _run(engine: Engine, cmd: list[str], name: str | None = None, **host: object) -> str:
    cid = engine.container_create(name, {"Image": "busybox", "Cmd": cmd}, dict(host))["Id"]
    engine.container_start(cid)
    return str(cid)


def _logs(engine: Engine, cid: str) -> dict[int, bytes]:
    _, chunks = engine.container_logs(cid, stdout=True, stderr=True)
    out: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in chunks:
        out[stream] += data
    return out


def test_lifecycle(engine: Engine, roots: EngineConfig) -> None:
    events = engine.events.subscribe(since=None, until=None, filters=None)
    cmd = ["sh", "-c", "echo hello; echo oops >&2; cat /etc/hostname; exit 3"]
    made = engine.container_create("life", {"Image": "busybox", "Cmd": cmd}, {})
    cid = made["Id"]
    assert len(cid) == 64 and made["Warnings"] == []
    with pytest.raises(Conflict, match='The container name "/life" is already in use'):
        engine.container_create("life", {"Image": "busybox", "Cmd": cmd}, {})
    with pytest.raises(NotFound, match="No such image: nope"):
        engine.container_create(None, {"Image": "nope"}, {})
    assert engine.container_inspect("life")["State"]["Status"] == "created"
    engine.container_start(cid[:12])
    assert engine.container_wait(cid) == {"StatusCode": 3, "Error": None}
    logs = _logs(engine, cid)
    assert logs[1] == f"hello\n{cid[:12]}\n".encode() and logs[2] == b"oops\n"
    doc = engine.container_inspect("life", size=True)
    assert doc["Id"] == cid and doc["Name"] == "/life"
    assert (doc["Path"], doc["Args"]) == ("sh", cmd[1:])
    state = doc["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 3, False)
    assert state["FinishedAt"] > state["StartedAt"] > "2000"
    assert doc["Config"]["Hostname"] == cid[:12]
    for key in ("HostnamePath", "HostsPath", "ResolvConfPath", "LogPath"):
        assert os.path.exists(doc[key]), key
    assert doc["SizeRw"] >= 0 and doc["SizeRootFs"] >= doc["SizeRw"]
    [row] = engine.container_list(all=True)
    assert row["Names"] == ["/life"] and row["State"] == "exited"
    assert row["Status"].startswith("Exited (3) ")
    assert engine.container_list() == []
    with pytest.raises(NotModified):
        engine.container_stop(cid)
    engine.container_remove("life")
    with pytest.raises(NotFound, match="No such container: life"):
        engine.container_inspect("life")
    assert not os.path.exists(roots.paths.container_dir(cid))
    assert mounts_under(roots.data_root) == []
    actions = []
    while (ev := events.get(timeout=0)) is not None:
        actions.append(ev["Action"])
    assert actions == ["create", "start", "die", "destroy"]


def test_rm_running_needs_force(engine: Engine) -> None:
    cid = _run(engine, ["sleep", "1000"], "busy")
    with pytest.raises(Conflict) as info:
        engine.container_remove(cid)
    assert str(info.value) == (
        'cannot remove container "/busy": container is running: stop the container'
        " before removing or force remove"
    )
    with pytest.raises(NotModified):
        engine.container_start(cid)
    top = engine.container_top(cid)
    assert any("sleep" in " ".join(row) for row in top["Processes"])
    engine.container_remove(cid, force=True)
    assert engine.container_list(all=True) == []


def test_stop_timeout_then_sigkill(engine: Engine) -> None:
    # sleep as PID 1 ignores SIGTERM: stop must SIGKILL it after the timeout
    cid = _run(engine, ["sleep", "1000"])
    began = time.monotonic()
    engine.container_stop(cid, timeout=1)
    took = time.monotonic() - began
    assert 1.0 <= took < 5.0
    assert engine.container_inspect(cid)["State"]["ExitCode"] == 137
    # a process that handles the stop signal exits with its own code, at once
    trap = ["sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"]
    cid = _run(engine, trap)
    time.sleep(0.3)
    began = time.monotonic()
    engine.container_stop(cid, timeout=10)
    assert time.monotonic() - began < 3.0
    assert engine.container_inspect(cid)["State"]["ExitCode"] == 7
    engine.container_start(cid)  # restart an exited container
    assert engine.container_inspect(cid)["State"]["Status"] == "running"
    engine.container_kill(cid, "SIGKILL")
    assert engine.container_wait(cid)["StatusCode"] == 137


def test_restart_policy_on_failure(engine: Engine) -> None:
    cid = _run(
        engine, ["sh", "-c", "exit 1"], RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 2}
    )

    def settled() -> bool:
        doc = engine.container_inspect(cid)
        return doc["RestartCount"] == 2 and doc["State"]["Status"] == "exited"

    until(settled, 10, "two restarts")
    time.sleep(0.5)  # no third restart comes
    doc = engine.container_inspect(cid)
    assert (doc["RestartCount"], doc["State"]["Status"], doc["State"]["ExitCode"]) == (
        2,
        "exited",
        1,
    )


def test_auto_remove(engine: Engine) -> None:
    config = {"Image": "busybox", "Cmd": ["true"], "Volumes": {"/data": {}}}
    cid = engine.container_create(None, config, {"AutoRemove": True})["Id"]
    [mount] = engine.container_inspect(cid)["Mounts"]
    assert engine.volume_list()["Volumes"][0]["Name"] == mount["Name"]
    engine.container_start(cid)
    assert engine.container_wait(cid, "removed", timeout=10)["StatusCode"] == 0
    with pytest.raises(NotFound):
        engine.container_inspect(cid)
    assert not engine.volume_list()["Volumes"]  # its anonymous volume went with it


def test_only_a_rm_container_gets_a_volatile_layer(engine: Engine, roots: EngineConfig) -> None:
    """--rm: its layer is thrown away, so overlayfs skips its syncs (as podman);
    any other container's layer keeps fsync working."""
    config = {"Image": "busybox", "Cmd": ["true"]}
    kept = engine.container_create(None, config, {})["Id"]
    thrown = engine.container_create(None, config, {"AutoRemove": True})["Id"]
    assert not VOLATILE & fs_options(roots.paths.rootfs(kept))
    assert VOLATILE & fs_options(roots.paths.rootfs(thrown))
    engine.container_start(thrown)
    assert engine.container_wait(thrown, "removed", timeout=10)["StatusCode"] == 0
    assert not os.path.exists(roots.paths.rootfs(thrown))
    engine.container_remove(kept)


def test_a_rm_layer_mounts_again_after_a_reboot_like_loss(
    engine: Engine, roots: EngineConfig
) -> None:
    """create --rm, then what a reboot leaves (no init, no mount, the volatile mark in
    the layer's work directory): start mounts the layer again and runs it."""
    from portside.image.snapshots import unmount_all

    cid = engine.container_create(
        None, {"Image": "busybox", "Cmd": ["true"]}, {"AutoRemove": True}
    )["Id"]
    engine.lc.runtime_delete(cid)
    unmount_all(roots.paths.rootfs(cid))
    marks = [
        os.path.join(dirpath, "volatile")
        for dirpath, dirs, _ in os.walk(roots.paths.snapshots)
        if dirpath.endswith(os.path.join("work", "incompat")) and "volatile" in dirs
    ]
    assert len(marks) == 1  # a second plain mount of this layer would be refused
    engine.container_start(cid)
    assert engine.container_wait(cid, "removed", timeout=10)["StatusCode"] == 0


def test_exec_with_output(engine: Engine) -> None:
    cid = _run(engine, ["sleep", "1000"])
    exec_id = engine.exec_create(cid, {"Cmd": ["sh", "-c", "echo out; echo err >&2; exit 5"]})["Id"]
    result = engine.exec_start(exec_id)
    assert result is not None
    tty, sock = result
    with sock:
        streams = demux(read_stream(sock))
    assert not tty and streams[1] == b"out\n" and streams[2] == b"err\n"
    until(lambda: engine.exec_inspect(exec_id)["ExitCode"] == 5, 5, "the exec's exit code")
    assert engine.container_inspect(cid)["ExecIDs"] == [exec_id]
    with pytest.raises(InvalidArgument):
        engine.exec_create(cid, {"Cmd": []})
    engine.container_remove(cid, force=True)


def test_attach_before_start_sees_output(engine: Engine) -> None:
    made = engine.container_create(
        None, {"Image": "busybox", "Cmd": ["sh", "-c", "echo hi; echo there >&2"]}, {}
    )
    tty, sock = engine.container_attach(made["Id"], stdout=True, stderr=True, stream=True)
    with sock:
        engine.container_start(made["Id"])
        streams = demux(read_stream(sock))
    assert not tty and streams == {1: b"hi\n", 2: b"there\n"}


def test_reopened_engine_keeps_containers(roots: EngineConfig) -> None:
    first = Engine(roots)
    try:
        runner = _run(first, ["sleep", "1000"], "runner")
        quitter = _run(first, ["sh", "-c", "sleep 1; exit 4"], "quitter")
    finally:
        first.close()  # as if the daemon died: the monitor and containers live on
    time.sleep(1.5)  # the quitter exits while no engine listens
    second = Engine(roots)
    try:
        assert second.container_inspect("runner")["State"]["Status"] == "running"
        state = second.container_inspect(quitter)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 4)
        second.container_stop(runner, timeout=1)
        assert second.container_inspect(runner)["State"]["Status"] == "exited"
    finally:
        second.close()


def test_health_checks(engine: Engine) -> None:
    events = engine.events.subscribe(since=None, until=None, filters=None)
    ms = 1_000_000
    good = {"Test": ["CMD-SHELL", "echo fine"], "Interval": 100 * ms, "Retries": 1}
    cid = engine.container_create(
        None, {"Image": "busybox", "Cmd": ["sleep", "1000"], "Healthcheck": good}, {}
    )["Id"]
    engine.container_start(cid)
    assert engine.container_inspect(cid)["State"]["Health"]["Status"] in ("starting", "healthy")
    health = until(
        lambda: (
            (h := engine.container_inspect(cid)["State"]["Health"])["Status"] == "healthy" and h
        ),
        10,
        "healthy",
    )
    assert health["FailingStreak"] == 0 and health["Log"][-1]["Output"] == "fine\n"
    assert health["Log"][-1]["ExitCode"] == 0
    assert engine.container_list()[0]["Status"].endswith("(healthy)")
    bad = {"Test": ["CMD", "false"], "Interval": 100 * ms, "Retries": 2}
    sick = engine.container_create(
        None, {"Image": "busybox", "Cmd": ["sleep", "1000"], "Healthcheck": bad}, {}
    )["Id"]
    engine.container_start(sick)
    until(
        lambda: engine.container_inspect(sick)["State"]["Health"]["Status"] == "unhealthy",
        10,
        "unhealthy",
    )
    assert engine.container_inspect(sick)["State"]["Health"]["FailingStreak"] >= 2
    actions = []
    while (ev := events.get(timeout=0)) is not None:
        actions.append((ev["Actor"]["ID"], ev["Action"]))
    assert (cid, "health_status: healthy") in actions
    assert (sick, "health_status: unhealthy") in actions
    for ref in (cid, sick):
        engine.container_remove(ref, force=True)


def test_pause_rename_update_diff(engine: Engine) -> None:
    cid = _run(engine, ["sh", "-c", "echo x > /made; sleep 1000"])
    engine.container_pause(cid)
    row = engine.container_list(filters={"status": ["paused"]})[0]
    assert row["Id"] == cid and row["Status"].endswith("(Paused)")
    with pytest.raises(Conflict):
        engine.container_pause(cid)
    engine.container_unpause(cid)
    assert engine.container_inspect(cid)["State"]["Status"] == "running"
    engine.container_rename(cid, "renamed")
    assert engine.container_inspect("renamed")["Name"] == "/renamed"
    _run(engine, ["true"], "other")
    with pytest.raises(Conflict, match='"/other" is already in use'):
        engine.container_rename("renamed", "other")
    engine.container_update(cid, {"Memory": 64 << 20, "PidsLimit": 50})
    assert engine.container_inspect(cid)["HostConfig"]["Memory"] == 64 << 20
    until(lambda: {"Path": "/made", "Kind": 1} in engine.container_changes(cid), 5, "/made")
    shown = {ch["Path"] for ch in engine.container_changes(cid)}
    assert not shown & {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    data = b"".join(engine.container_export(cid))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert "made" in names and "bin/busybox" in names
    engine.container_remove(cid, force=True)


def test_reopen_cleans_half_made_and_applies_policies(roots: EngineConfig) -> None:
    from portside.engine.db import CREATING, Store
    from portside.engine.model import Container
    from portside.image.snapshots import Mount, mount_all

    first = Engine(roots)
    try:
        keeper = _run(first, ["sleep", "1000"], "keeper", RestartPolicy={"Name": "unless-stopped"})
        pid = first.container_inspect(keeper)["State"]["Pid"]
    finally:
        first.close()
    # a create killed half-way: a "creating" row with a mounted rootfs, and a bare directory
    half = "ab" * 32
    store = Store(roots.paths.db)
    store.insert_container(Container(half, "half", "busybox", "sha256:x", "t", {}, {}), CREATING)
    store.close()
    rootfs = roots.paths.rootfs(half)
    os.makedirs(rootfs)
    mount_all([Mount("tmpfs", "tmpfs", [])], rootfs)
    stray = roots.paths.container_dir("cd" * 32)
    os.makedirs(stray)
    os.kill(pid, 9)  # the keeper dies while no engine runs: its policy starts it again
    time.sleep(0.3)
    second = Engine(roots)
    try:
        assert [c["Names"] for c in second.container_list(all=True)] == [["/keeper"]]
        assert not os.path.exists(roots.paths.container_dir(half))
        assert not os.path.exists(stray)
        assert mounts_under(roots.paths.container_dir(half)) == []
        doc = second.container_inspect(keeper)
        assert doc["State"]["Status"] == "running" and doc["State"]["Pid"] != pid
        second.container_stop(keeper, timeout=0)
        assert second.container_inspect(keeper)["State"]["Status"] == "exited"
    finally:
        second.close()
    third = Engine(roots)  # stopped by hand: "unless-stopped" does not start it again
    try:
        assert third.container_inspect(keeper)["State"]["Status"] == "exited"
    finally:
        third.close()


def test_logs_replay_prune_and_log_driver_none(engine: Engine) -> None:
    cid = _run(engine, ["sh", "-c", "echo one; echo two >&2"], "chatty")
    assert engine.container_wait(cid, "not-running", timeout=10)["StatusCode"] == 0
    _, sock = engine.container_attach(cid, stdout=True, stderr=True, stream=False, logs=True)
    with sock:
        assert demux(read_stream(sock)) == {1: b"one\n", 2: b"two\n"}
    quiet = engine.container_create(
        None,
        {"Image": "busybox", "Cmd": ["true"]},
        {"LogConfig": {"Type": "none", "Config": {}}},
    )["Id"]
    with pytest.raises(FailedPrecondition, match="does not support reading"):
        engine.container_logs(quiet, stdout=True)
    with pytest.raises(InvalidArgument, match="at least one stream"):
        engine.container_logs(cid)
    runner = _run(engine, ["sleep", "1000"])
    pruned = engine.containers_prune()
    assert sorted(pruned["ContainersDeleted"]) == sorted([cid, quiet])
    assert [c["Id"] for c in engine.container_list(all=True)] == [runner]
    engine.container_remove(runner, force=True)


_CHURN = """
import sys
from portside.engine.engine import Engine
from portside.engine.model import EngineConfig, NetworkConfig
net = NetworkConfig(bridge=sys.argv[4], ip_forward=False)
eng = Engine(EngineConfig(data_root=sys.argv[1], exec_root=sys.argv[2], cgroup_parent=sys.argv[3],
                          network=net))
print("ready", flush=True)
while True:
    cid = eng.container_create(None, {"Image": "busybox", "Cmd": ["sleep", "1000"]}, {})["Id"]
    eng.container_start(cid)
    eng.container_remove(cid, force=True)
"""


def test_engine_killed_mid_work(roots: EngineConfig) -> None:
    """An engine process SIGKILLed at arbitrary points of create/start/remove leaves, after
    the next engine start, only whole containers: every one inspectable and removable,
    and then no mount, cgroup or process is left."""
    import signal
    import subprocess
    import sys

    from engine_helpers import _cgroup_dirs

    argv = [sys.executable, "-c", _CHURN, roots.data_root, roots.exec_root, roots.cgroup_parent,
            roots.network.bridge]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for delay in (0.05, 0.17, 0.31):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        eng = Engine(roots)
        try:
            for row in eng.container_list(all=True):
                assert eng.container_inspect(row["Id"])["State"]["Status"] in (
                    "created", "running", "exited",
                )  # fmt: skip
                eng.container_remove(row["Id"], force=True)
            assert eng.container_list(all=True) == []
        finally:
            eng.close()
        assert os.listdir(os.path.join(roots.data_root, "containers")) == []
        assert mounts_under(os.path.join(roots.data_root, "containers")) == []
        for top in _cgroup_dirs(roots.cgroup_parent):
            assert [d for d in os.listdir(top) if len(d) == 64] == [], top


def test_oom_kill_is_recorded(engine: Engine) -> None:
    events = engine.events.subscribe(since=None, until=None, filters=None)
    hog = ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' x); echo survived"]
    cid = _run(engine, hog, Memory=8 << 20, MemorySwap=8 << 20)
    assert engine.container_wait(cid, timeout=20)["StatusCode"] == 137
    assert engine.container_inspect(cid)["State"]["OOMKilled"] is True
    actions = []
    while (ev := events.get(timeout=0)) is not None:
        actions.append(ev["Action"])
    assert actions[-2:] == ["oom", "die"]
