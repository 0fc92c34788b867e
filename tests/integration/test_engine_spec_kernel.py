"""The spec the engine builds, run for real: busybox under Portside's default security.

Each check has a control (the same container privileged, or unconfined) so that a
setting the spec or the runtime silently drops fails the test.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import platform
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portside.engine.model import Container, Paths
from portside.engine.seccomp_profile import default_profile
from portside.engine.spec import build_spec
from portside.runtime.seccomp import load_seccomp
from portside.runtime.specgen import write_spec
from portside.testing import clone_rootfs
from tests.integration.runtime_helpers import RuntimeCLI

pytestmark = pytest.mark.root

CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def run(
    rt: RuntimeCLI,
    busybox_rootfs: str,
    tmp_path: Path,
    cmd: list[str],
    host_config: dict[str, Any] | None = None,
    **config: Any,
) -> subprocess.CompletedProcess[str]:
    """Build the spec of a container running ``cmd`` and run it to completion."""
    cid = rt.new_id("spec")
    paths = Paths(str(tmp_path / "data"), str(tmp_path / "exec"))
    cdir = paths.container_dir(cid)
    rootfs = clone_rootfs(busybox_rootfs, os.path.join(cdir, "rootfs"))
    for name, text in (
        ("hostname", "spec-test\n"),
        ("hosts", "127.0.0.1 localhost spec-test\n"),
        ("resolv.conf", "nameserver 192.0.2.53\n"),
    ):
        Path(cdir, name).write_text(text)
    container = Container(
        id=cid,
        name=cid,
        image="busybox",
        image_id="sha256:" + "0" * 64,
        created="0001-01-01T00:00:00Z",
        config={"Cmd": cmd, "Hostname": "spec-test", **config},
        host_config=host_config or {},
    )
    spec = build_spec(container, {"Env": ["PATH=/bin"]}, rootfs, [], paths=paths)
    write_spec(cdir, spec.to_json())
    rt.bundles.append(cdir)
    return rt("run", "-b", cdir, cid, check=False)


def status_caps(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.strip(), 16)
    raise AssertionError(f"no {name} in {text!r}")


def test_ordinary_commands_work(rt: RuntimeCLI, busybox_rootfs: str, tmp_path: Path) -> None:
    script = "ls / >/dev/null && echo $HOSTNAME $HOME $(id -u) && cat /etc/resolv.conf && pwd"
    proc = run(rt, busybox_rootfs, tmp_path, ["sh", "-c", script], WorkingDir="/work")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["spec-test /root 0", "nameserver 192.0.2.53", "/work"]


@pytest.mark.parametrize("privileged", [False, True])
def test_namespaces_and_mounts_blocked(
    rt: RuntimeCLI, busybox_rootfs: str, tmp_path: Path, privileged: bool
) -> None:
    script = (
        "unshare -n true; echo unshare=$?; "
        "mkdir -p /m; mount -t tmpfs none /m; echo mount=$?; "
        "grep -E '^Cap(Bnd|Eff)' /proc/self/status"
    )
    proc = run(rt, busybox_rootfs, tmp_path, ["sh", "-c", script], {"Privileged": privileged})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if privileged:
        assert lines[:2] == ["unshare=0", "mount=0"], proc.stderr
        assert status_caps(proc.stdout, "CapEff") & (1 << CAP_SYS_ADMIN)
    else:
        assert lines[:2] == ["unshare=1", "mount=1"], proc.stdout
        assert "Operation not permitted" in proc.stderr
        eff = status_caps(proc.stdout, "CapEff")
        assert status_caps(proc.stdout, "CapBnd") == eff
        assert eff & (1 << CAP_NET_RAW)
        assert not eff & (1 << CAP_SYS_ADMIN)
        assert bin(eff).count("1") == 14


@pytest.mark.parametrize("seccomp", ["default", "unconfined"])
def test_seccomp_profile_is_loaded(
    rt: RuntimeCLI, busybox_rootfs: str, tmp_path: Path, seccomp: str
) -> None:
    opts = [] if seccomp == "default" else ["seccomp=unconfined"]
    # with CAP_SYS_ADMIN only seccomp stands between the container and unshare/mount
    hc = {"CapAdd": ["SYS_ADMIN"], "SecurityOpt": opts}
    script = "grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?"
    proc = run(rt, busybox_rootfs, tmp_path, ["sh", "-c", script], hc)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    if seccomp == "default":
        assert lines == ["Seccomp:", "2", "unshare=1"], proc.stdout
    else:
        assert lines == ["Seccomp:", "0", "unshare=0"], (proc.stdout, proc.stderr)


@pytest.mark.parametrize("privileged", [False, True])
def test_masked_and_readonly_paths(
    rt: RuntimeCLI, busybox_rootfs: str, tmp_path: Path, privileged: bool
) -> None:
    script = (
        "echo interrupts=$(wc -c </proc/interrupts); "
        "echo 1 >/proc/sys/kernel/ns_last_pid 2>/dev/null; echo procsys=$?; "
        "echo 1 >/sys/kernel/uevent_helper 2>/dev/null; echo sys=$?"
    )
    proc = run(rt, busybox_rootfs, tmp_path, ["sh", "-c", script], {"Privileged": privileged})
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split("=", 1) for line in proc.stdout.split())
    if privileged:
        assert int(got["interrupts"]) > 0
        assert got["procsys"] == "0"
    else:
        assert got == {"interrupts": "0", "procsys": "1", "sys": "1"}, proc.stdout


def test_no_new_privileges_and_rlimits(rt: RuntimeCLI, busybox_rootfs: str, tmp_path: Path) -> None:
    hc = {
        "SecurityOpt": ["no-new-privileges"],
        "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
    }
    script = "grep NoNewPrivs: /proc/self/status; ulimit -n; ulimit -Hn"
    proc = run(rt, busybox_rootfs, tmp_path, ["sh", "-c", script], hc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["NoNewPrivs:", "1", "100", "200"]


# --- the default profile, syscall by syscall, in a forked child -----------------------------

X86_64 = platform.machine() == "x86_64"
AF_INET, AF_ALG, AF_VSOCK = 2, 38, 40
CLONE_FILES, CLONE_NEWUSER = 0x400, 0x10000000
#: x86_64 syscall numbers
NR = {
    "clone3": 435,
    "io_uring_setup": 425,
    "keyctl": 250,
    "unshare": 272,
    "personality": 135,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "getpid": 39,
}
#: i386 syscall numbers, for the int 0x80 ABI
NR32 = {"getpid": 20, "unshare": 310, "socketcall": 102, "socket": 359}
SYS_SOCKET = 1


def in_child(fn: Callable[[], Any]) -> Any:
    """``fn``'s JSON-able result, run in a forked child that exits with ``os._exit``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                payload = {"ok": fn()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child died: status {status:#x}"
    result = json.loads(data)
    if "error" in result:
        pytest.fail(f"child: {result['error']}")
    return result["ok"]


def raw(name: str, *args: int) -> int:
    """errno of a raw x86_64 syscall (0 on success)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(NR[name]), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if ret == -1 else 0


def int80() -> Callable[[int, int, int], int]:
    """A function making an i386 syscall (int 0x80) with two arguments: returns -errno or
    the result."""
    # push rbx; mov ebx, esi; mov ecx, edx; mov eax, edi; int 0x80; pop rbx; ret
    code = bytes([0x53, 0x89, 0xF3, 0x89, 0xD1, 0x89, 0xF8, 0xCD, 0x80, 0x5B, 0xC3])
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)(addr)
    fn._page = page  # type: ignore[attr-defined]  # keep the code mapped
    return fn


def socketcall_socket(sys32: Callable[[int, int, int], int], family: int) -> int:
    """i386 socketcall(SYS_SOCKET, {family, SOCK_STREAM, 0}): the fd or -errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    # the argument block must sit below 4 GiB: MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT
    block = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, 0x62, -1, 0)
    args = (ctypes.c_uint32 * 3).from_address(block)
    args[0], args[1], args[2] = family, socket.SOCK_STREAM, 0
    return int(sys32(NR32["socketcall"], SYS_SOCKET, block))


def probe() -> dict[str, int]:
    def sock(family: int) -> int:
        try:
            socket.socket(family, socket.SOCK_SEQPACKET if family == AF_ALG else 1).close()
        except OSError as exc:
            return exc.errno or -1
        return 0

    sys32 = int80()
    i386 = {  # first: after the native unshare(CLONE_NEWUSER) a second one gets EPERM
        "i386_getpid": sys32(NR32["getpid"], 0, 0) == os.getpid(),
        "i386_unshare": sys32(NR32["unshare"], CLONE_NEWUSER, 0),
        "i386_socket_vsock": sys32(NR32["socket"], AF_VSOCK, socket.SOCK_STREAM),
        "i386_socketcall_vsock": socketcall_socket(sys32, AF_VSOCK),
    }
    return {
        **i386,
        "clone3": raw("clone3", 0, 0),
        "io_uring_setup": raw("io_uring_setup", 1, 0),
        "keyctl": raw("keyctl", 0, 0),
        "bpf": raw("bpf", 0, 0, 0),
        "perf_event_open": raw("perf_event_open", 0, 0, -1, -1, 0),
        "userfaultfd": raw("userfaultfd", 0),
        "unshare_newuser": raw("unshare", CLONE_NEWUSER),
        "unshare_files": raw("unshare", CLONE_FILES),
        "personality_linux": raw("personality", 0xFFFFFFFF),
        "personality_odd": raw("personality", 0x0400000),
        "socket_inet": sock(AF_INET),
        "socket_alg": sock(AF_ALG),
        "socket_vsock": sock(AF_VSOCK),
        "fork": 0 if in_grandchild() else 1,
    }


def in_grandchild() -> bool:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7


@pytest.mark.skipif(not X86_64, reason="syscall numbers and int 0x80 are x86_64's")
@pytest.mark.parametrize("filtered", [True, False])
def test_default_profile_syscalls(filtered: bool) -> None:
    def child() -> dict[str, int]:
        if filtered:
            load_seccomp(default_profile())
        return probe()

    got = in_child(child)
    blocked = ("io_uring_setup", "keyctl", "bpf", "perf_event_open", "userfaultfd")
    if not filtered:  # the control: the same calls reach the kernel
        assert got["clone3"] != errno.ENOSYS and got["i386_unshare"] == 0, got
        assert got["i386_socketcall_vsock"] >= 0 and got["i386_socket_vsock"] != -errno.EPERM
        others = ("io_uring_setup", "bpf", "socket_alg", "socket_vsock")
        assert all(got[name] != errno.EPERM for name in others), got
        return
    assert got["clone3"] == errno.ENOSYS
    assert {name: got[name] for name in blocked} == dict.fromkeys(blocked, errno.EPERM)
    assert got["unshare_newuser"] == errno.EPERM
    assert got["unshare_files"] == 0
    assert (got["personality_linux"], got["personality_odd"]) == (0, errno.EPERM)
    assert got["socket_inet"] == 0
    assert got["socket_alg"] == got["socket_vsock"] == errno.EPERM
    assert got["fork"] == 0
    assert got["i386_getpid"], "the i386 ABI's getpid must stay allowed"
    assert got["i386_unshare"] == -errno.EPERM, "the i386 ABI must be filtered too"
    assert got["i386_socket_vsock"] == -errno.EPERM
    assert got["i386_socketcall_vsock"] == -errno.ENOSYS
