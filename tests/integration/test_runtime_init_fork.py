"""Who forks init: the runtime itself for most containers, stage 1 when a namespace
takes effect only for children (a joined PID namespace, a user namespace). Both give
init the same place; the runtime's own PID namespace for children is left alone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from portside.errors import PortsideError
from portside.runtime.container import Runtime
from tests.conftest import BundleFactory

pytestmark = pytest.mark.root


def _nspid(pid: int) -> list[int]:
    """The PID in each namespace, outermost first (NSpid of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("NSpid:"))
    return [int(n) for n in line.split()[1:]]


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _own_pid_ns_for_children() -> bool:
    return os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")


@pytest.fixture
def runtime(runtime_root: str) -> Iterator[Runtime]:
    rt = Runtime(runtime_root)
    yield rt
    for cid in rt.store.ids():
        pid = rt.load(cid).pid
        rt.delete(cid, force=True)
        try:  # an init forked by us is our child: no zombie left behind
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def test_init_forked_by_the_runtime_is_pid_1(runtime: Runtime, bundle: BundleFactory) -> None:
    st = runtime.create("direct", bundle(args=["sleep", "30"]))
    assert _ppid(st.pid) == os.getpid()  # no stage 1 in between
    assert len(_nspid(st.pid)) == 2 and _nspid(st.pid)[-1] == 1
    assert os.readlink(f"/proc/{st.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert _own_pid_ns_for_children()
    runtime.start("direct")
    os.kill(st.pid, signal.SIGKILL)
    _, status = os.waitpid(st.pid, 0)
    assert os.WIFSIGNALED(status)


def test_the_host_pid_namespace_needs_no_unshare(runtime: Runtime, bundle: BundleFactory) -> None:
    def host_pid(spec: dict) -> None:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"
        ]

    st = runtime.create("hostpid", bundle(args=["sleep", "30"], mutate=host_pid))
    assert _ppid(st.pid) == os.getpid()
    assert _nspid(st.pid) == [st.pid]
    assert _own_pid_ns_for_children()


def test_a_joined_pid_namespace_goes_through_stage_1(
    runtime: Runtime, bundle: BundleFactory
) -> None:
    first = runtime.create("first", bundle(args=["sleep", "30"]))

    def join_first(spec: dict) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{first.pid}/ns/pid"

    second = runtime.create("second", bundle(args=["sleep", "30"], mutate=join_first))
    assert _ppid(second.pid) != os.getpid()  # stage 1 forked it and is gone
    assert os.readlink(f"/proc/{second.pid}/ns/pid") == os.readlink(f"/proc/{first.pid}/ns/pid")
    assert _nspid(second.pid)[-1] != 1
    assert _own_pid_ns_for_children()


def test_a_failing_direct_init_leaves_no_process(runtime: Runtime, bundle: BundleFactory) -> None:
    def bad_mount(spec: dict) -> None:
        spec["mounts"].append(
            {"destination": "/nope", "type": "no-such-fs", "source": "x", "options": []}
        )

    children_before = _children()
    with pytest.raises(PortsideError, match="mount"):
        runtime.create("bad", bundle(args=["true"], mutate=bad_mount))
    assert _children() == children_before
    assert _own_pid_ns_for_children()


def _children() -> set[int]:
    """Our live and zombie children."""
    me = os.getpid()
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if _ppid(int(name)) == me:
                    out.add(int(name))
            except (OSError, ValueError):
                continue
    return out
