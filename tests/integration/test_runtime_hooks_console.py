"""OCI hooks (each writes the state JSON it got on stdin to a file) and the
console socket protocol (the pty master arrives by SCM_RIGHTS)."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import RuntimeCLI, cgroup_dirs, start_time, wait_for

pytestmark = pytest.mark.root

HOST_PHASES = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
#: the status each phase reports, as runc
STATUS = {
    "prestart": "creating",
    "createRuntime": "creating",
    "createContainer": "creating",
    "startContainer": "created",
    "poststart": "running",
    "poststop": "stopped",
}


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_every_hook_gets_the_state(rt: RuntimeCLI, bundle: BundleFactory, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = write_script(tmp_path / "hook.sh", f'/bin/cat > {out}/"$1".json')

    def mutate(spec: dict[str, Any]) -> None:
        hooks: dict[str, Any] = {p: [{"path": hook, "args": ["hook", p]}] for p in HOST_PHASES}
        # startContainer runs in the container, after pivot_root: a path of the rootfs
        hooks["startContainer"] = [{"path": "/hook.sh", "args": ["hook", "startContainer"]}]
        spec["hooks"] = hooks

    path = bundle(args=["sleep", "10"], mutate=mutate)
    rootfs = Path(path) / "rootfs"
    write_script(rootfs / "hook.sh", '/bin/cat > /"$1".json')
    cid = rt.create(path)
    pid = rt.pid(cid)
    created = {p.stem for p in out.iterdir()}
    assert created == {"prestart", "createRuntime", "createContainer"}
    rt("start", cid)
    rt("delete", "--force", cid)
    got = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    got["startContainer"] = json.loads((rootfs / "startContainer.json").read_text())
    assert set(got) == set(STATUS)
    for phase, state in got.items():
        assert (state["id"], state["bundle"]) == (cid, path), phase
        assert state["status"] == STATUS[phase], phase
        assert state["pid"] == (0 if phase == "poststop" else pid), phase


def test_failing_prestart_hook_fails_create(
    rt: RuntimeCLI, bundle: BundleFactory, tmp_path: Path
) -> None:
    hook = write_script(tmp_path / "fail.sh", "echo hook-said-no; exit 1")

    def mutate(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"prestart": [{"path": hook}]}

    cid = rt.new_id()
    proc = rt("create", "-b", bundle(args=["true"], mutate=mutate), cid, check=False)
    assert proc.returncode != 0
    assert "prestart" in proc.stderr
    assert "hook-said-no" in proc.stderr
    assert rt.leftovers(cid) == []
    assert rt("list", "-q").stdout == ""


def test_hook_timeout(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["hooks"] = {
            "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]
        }

    cid = rt.new_id()
    began = time.monotonic()
    proc = rt("create", "-b", bundle(args=["true"], mutate=mutate), cid, check=False)
    assert time.monotonic() - began < 4
    assert proc.returncode != 0
    assert "timed out" in proc.stderr
    assert rt.leftovers(cid) == []


def test_failing_poststop_hook_only_warns(
    rt: RuntimeCLI, bundle: BundleFactory, tmp_path: Path
) -> None:
    hook = write_script(tmp_path / "fail.sh", "exit 1")

    def mutate(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"poststop": [{"path": hook}]}

    cid = rt.create(bundle(args=["true"], mutate=mutate))
    proc = rt("delete", cid)
    assert "poststop" in proc.stderr
    assert rt.leftovers(cid) == []


# --- console --------------------------------------------------------------------


def read_until(fd: int, wanted: bytes, timeout: float = 5.0) -> bytes:
    """Read ``fd`` until ``wanted`` appears at the start of a line."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" + wanted not in data.replace(b"\r", b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {wanted!r} from the console; got {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"console closed before {wanted!r}; got {data!r}")
        data += chunk
    return data


def test_console_socket(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    sock_path = os.path.join(rt.root, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    master = -1
    try:
        # the runtime connects and sends during create: the backlog holds the connection
        cid = rt.create(bundle(args=["sh"], terminal=True), "--console-socket", sock_path)
        listener.settimeout(5)
        conn, _ = listener.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        assert msg == b"/dev/ptmx"
        assert len(fds) == 1
        master = fds[0]
        assert os.isatty(master)
        rt("start", cid)
        pid = rt.pid(cid)
        os.write(master, b"echo hi-$((1+1))\n")
        read_until(master, b"hi-2")
        os.write(master, b"tty\n")
        tty = read_until(master, b"/dev/")
        assert b"/dev/pts/0" in tty or b"/dev/console" in tty
        os.write(master, b"exit\n")
        wait_for("the shell to exit", lambda: start_time(pid) is None)
        rt.wait_status(cid, "stopped")
    finally:
        listener.close()
        if master >= 0:
            os.close(master)
    rt("delete", cid)
    assert cgroup_dirs(cid) == []


def test_terminal_without_console_socket_fails(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    cid = rt.new_id()
    proc = rt("create", "-b", bundle(args=["sh"], terminal=True), cid, check=False)
    assert proc.returncode != 0
    assert "console-socket" in proc.stderr
    assert rt.leftovers(cid) == []
