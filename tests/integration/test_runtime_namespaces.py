"""The container's namespaces, seen from inside (busybox) and from the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from portside.testing import clone_rootfs, make_bundle, unique_id
from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import RuntimeCLI, status_field, wait_for

pytestmark = pytest.mark.root

NS_NAMES = ("pid", "net", "ipc", "uts", "mnt")
UsernsBundle = Callable[[list[str]], str]
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """The container's stdout, after checking that it exited 0."""
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def test_process_is_pid_1(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    assert ok(rt.run(bundle(args=["sh", "-c", "echo $$"]))).strip() == "1"


def test_hostname_from_config(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    name = unique_id("host")

    def mutate(spec: dict[str, Any]) -> None:
        spec["hostname"] = name

    out = ok(rt.run(bundle(args=["hostname"], mutate=mutate)))
    assert out.strip() == name
    assert os.uname().nodename != name


def test_network_namespace_has_only_lo_up(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    script = "ls /sys/class/net; cat /sys/class/net/lo/flags"
    lines = ok(rt.run(bundle(args=["sh", "-c", script]))).split()
    assert lines[:-1] == ["lo"]
    assert int(lines[-1], 16) & 0x1, f"lo is down (flags {lines[-1]})"  # IFF_UP


@pytest.mark.parametrize("shared", [None, "network", "ipc", "uts"])
def test_namespaces_differ_from_the_host(
    rt: RuntimeCLI, bundle: BundleFactory, shared: str | None
) -> None:
    """Each namespace of the config is new; one left out is the host's."""
    proc_name = {"network": "net", "ipc": "ipc", "uts": "uts"}

    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != shared
        ]
        if shared == "uts":
            del spec["hostname"]  # a hostname needs a uts namespace

    script = "for n in " + " ".join(NS_NAMES) + "; do readlink /proc/self/ns/$n; done"
    inside = ok(rt.run(bundle(args=["sh", "-c", script], mutate=mutate))).split()
    host = [os.readlink(f"/proc/self/ns/{n}") for n in NS_NAMES]
    assert len(inside) == len(host)
    for name, mine, theirs in zip(NS_NAMES, inside, host, strict=True):
        if shared and name == proc_name[shared]:
            assert mine == theirs, f"{name} should be the host's"
        else:
            assert mine != theirs, f"{name} namespace is the host's"


def test_mount_inside_is_invisible_on_host(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    marker = unique_id("mark")

    def mutate(spec: dict[str, Any]) -> None:
        for kind in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][kind].append("CAP_SYS_ADMIN")

    script = f"mkdir -p /mnt/m && mount -t tmpfs {marker} /mnt/m && exec sleep 10"
    _, pid = rt.start_new(bundle(args=["sh", "-c", script], mutate=mutate))

    def mounted_inside() -> bool:
        with open(f"/proc/{pid}/mountinfo") as f:
            return marker in f.read()

    wait_for("the tmpfs inside the container", mounted_inside)
    with open("/proc/self/mountinfo") as f:
        assert marker not in f.read()


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)


@pytest.fixture
def userns_bundle(busybox_rootfs: str) -> Iterator[UsernsBundle]:
    """A factory of bundles for a user namespace mapping 0 -> 100000 (65536 ids).

    The bundle lives in a directory the mapped root can traverse (pytest's tmp_path
    is 0700), and its rootfs belongs to the mapped root."""
    top = tempfile.mkdtemp(prefix="psu-", dir="/tmp")
    os.chmod(top, 0o711)

    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = USERNS_MAP
        spec["linux"]["gidMappings"] = USERNS_MAP

    def make(args: list[str]) -> str:
        path = tempfile.mkdtemp(dir=top)
        os.chmod(path, 0o711)
        rootfs = clone_rootfs(busybox_rootfs, os.path.join(path, "rootfs"))
        _chown_tree(rootfs, 100000, 100000)
        return make_bundle(path, rootfs, args=args, mutate=mutate)

    yield make
    shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_maps_root(rt: RuntimeCLI, userns_bundle: UsernsBundle) -> None:
    path = userns_bundle(["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map"])
    lines = ok(rt.run(path)).splitlines()
    assert lines[0] == "0"
    assert [line.split() for line in lines[1:]] == [["0", "100000", "65536"]] * 2


def test_user_namespace_uid_on_host(rt: RuntimeCLI, userns_bundle: UsernsBundle) -> None:
    path = userns_bundle(["sleep", "10"])
    _, pid = rt.start_new(path)
    assert status_field(pid, "Uid").split() == ["100000"] * 4
    assert status_field(pid, "Gid").split() == ["100000"] * 4


def test_user_namespace_any_umask(rt: RuntimeCLI, userns_bundle: UsernsBundle) -> None:
    """The exec fifo must not depend on the caller's umask (init is not host root)."""
    proc = rt.run(userns_bundle(["id", "-u"]), umask=0o077)
    assert (proc.returncode, proc.stdout.strip()) == (0, "0"), proc.stderr


@pytest.mark.parametrize("cgroupns", [True, False])
def test_cgroup_namespace(rt: RuntimeCLI, bundle: BundleFactory, cgroupns: bool) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        if cgroupns:
            spec["linux"]["namespaces"].append({"type": "cgroup"})

    lines = ok(rt.run(bundle(args=["cat", "/proc/self/cgroup"], mutate=mutate))).splitlines()
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # v1 or hybrid: the controller-less cgroup2 line ("0::") is not joined
        lines = [line for line in lines if not line.startswith("0::")]
    paths = {line.split(":", 2)[2] for line in lines}
    assert lines
    if cgroupns:
        assert paths == {"/"}
    else:
        cid = rt.ids[-1]
        assert all(p.endswith(f"/portside/{cid}") for p in paths), paths


def test_created_init_is_not_dumpable(rt: RuntimeCLI, userns_bundle: UsernsBundle) -> None:
    """Until it execs, init is not dumpable: its /proc files belong to host root,
    not to its (mapped) user, so nothing in the container can ptrace or read them."""
    cid = rt.create(userns_bundle(["sleep", "10"]))
    pid = rt.pid(cid)
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0
    rt("start", cid)

    def execed() -> bool:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "sleep"

    wait_for("init to exec sleep", execed)
    assert os.stat(f"/proc/{pid}/environ").st_uid == 100000
