"""Security settings of the config, checked from inside the container.

Each setting is tested against a control (the same container without it) so that
a setting the runtime ignores fails the test.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from portside.testing import unique_id
from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import RuntimeCLI

pytestmark = pytest.mark.root

CAP_NET_RAW = 13
CAP_SYS_RESOURCE = 24


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


def fields(text: str) -> dict[str, str]:
    """``Key: value`` lines (as /proc/self/status) as a dict."""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def assert_create_refused(rt: RuntimeCLI, path: str, *words: str) -> None:
    """``create`` fails naming ``words``, and leaves no state, cgroup or process."""
    cid = rt.new_id()
    proc = rt("create", "-b", path, cid, check=False)
    assert proc.returncode != 0, f"create succeeded: {proc.stdout}"
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert rt.leftovers(cid) == []
    assert rt("list", "-q").stdout == ""


@pytest.mark.parametrize("filtered", [True, False])
def test_seccomp_errno(rt: RuntimeCLI, bundle: BundleFactory, filtered: bool) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        if filtered:
            spec["linux"]["seccomp"] = {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }

    proc = rt.run(bundle(args=["sh", "-c", "mkdir /tmp/x && echo made"], mutate=mutate))
    if filtered:
        assert proc.returncode == 1
        assert "Operation not permitted" in proc.stderr
    else:
        assert (proc.returncode, proc.stdout) == (0, "made\n"), proc.stderr


@pytest.mark.parametrize("net_raw", [True, False])
def test_capabilities(rt: RuntimeCLI, bundle: BundleFactory, net_raw: bool) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        caps = spec["process"]["capabilities"]
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = ["CAP_KILL", *(["CAP_NET_RAW"] if net_raw else [])]
        caps["ambient"] = []

    proc = rt.run(bundle(args=["cat", "/proc/self/status"], mutate=mutate))
    status = fields(proc.stdout)
    for name in ("CapBnd", "CapEff", "CapPrm"):
        assert bool(int(status[name], 16) & (1 << CAP_NET_RAW)) == net_raw, name
        assert int(status[name], 16) & (1 << 5), f"{name} lacks CAP_KILL"


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(rt: RuntimeCLI, bundle: BundleFactory, nnp: bool) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["process"]["noNewPrivileges"] = nnp

    proc = rt.run(bundle(args=["cat", "/proc/self/status"], mutate=mutate))
    assert fields(proc.stdout)["NoNewPrivs"] == ("1" if nnp else "0")


def _readable_proc_file(*paths: str) -> str:
    """The first of ``paths`` the host can read something from (kcore may be compiled out)."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                if f.read(1):
                    return path
        except OSError:
            continue
    pytest.skip(f"none of {paths} is readable on this host")


def test_masked_paths(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    masked = _readable_proc_file("/proc/kcore", "/proc/timer_list", "/proc/keys")

    def mutate(spec: dict[str, Any]) -> None:
        assert masked in spec["linux"]["maskedPaths"]  # runc's default list
        spec["linux"]["maskedPaths"] += ["/secret", "/secret.txt"]

    script = (
        f"head -c 1 {masked} | wc -c; ls -A /secret | wc -l; cat /secret.txt | wc -c; "
        "ls -A /visible | wc -l"
    )
    path = bundle(args=["sh", "-c", script], mutate=mutate)
    rootfs = os.path.join(path, "rootfs")
    for name in ("secret", "visible"):
        os.mkdir(os.path.join(rootfs, name))
        with open(os.path.join(rootfs, name, "file"), "w") as f:
            f.write("data\n")
    with open(os.path.join(rootfs, "secret.txt"), "w") as f:
        f.write("password\n")
    proc = rt.run(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "0", "1"], proc.stderr


def test_readonly_paths(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["readonlyPaths"].append("/data")

    script = "echo 1 > /proc/sys/net/ipv4/ip_forward; touch /data/f; touch /tmp/f && echo tmp-ok"
    path = bundle(args=["sh", "-c", script], mutate=mutate)
    os.mkdir(os.path.join(path, "rootfs", "data"))
    proc = rt.run(path)
    assert proc.stderr.count("Read-only file system") == 2, proc.stderr
    assert proc.stdout == "tmp-ok\n"


@pytest.mark.parametrize("readonly", [True, False])
def test_readonly_root(rt: RuntimeCLI, bundle: BundleFactory, readonly: bool) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["root"]["readonly"] = readonly

    proc = rt.run(bundle(args=["sh", "-c", "touch /x && echo wrote"], mutate=mutate))
    if readonly:
        assert "Read-only file system" in proc.stderr
        assert proc.returncode != 0
    else:
        assert (proc.returncode, proc.stdout) == (0, "wrote\n"), proc.stderr


def test_rlimit_nofile(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512}]

    proc = rt.run(bundle(args=["sh", "-c", "ulimit -n; ulimit -Hn"], mutate=mutate))
    assert proc.stdout.split() == ["256", "512"], proc.stderr


def test_rlimit_above_host_hard_limit_is_refused(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    with open("/proc/self/status") as f:
        if int(fields(f.read())["CapEff"], 16) & (1 << CAP_SYS_RESOURCE):
            pytest.skip("we have CAP_SYS_RESOURCE: raising a hard limit is allowed")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the host's hard RLIMIT_NOFILE is unlimited")

    def mutate(spec: dict[str, Any]) -> None:
        spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": hard + 1}]

    assert_create_refused(rt, bundle(args=["true"], mutate=mutate), "RLIMIT_NOFILE")


def test_process_user(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5]}

    proc = rt.run(bundle(args=["sh", "-c", "id -u; id -g; id -G"], mutate=mutate))
    assert proc.stdout.splitlines() == ["65534", "65534", "65534 5"], proc.stderr


def test_sysctl_applied_in_the_container_only(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read()

    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "net.ipv4.tcp_syncookies": "0"}

    script = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/tcp_syncookies"
    proc = rt.run(bundle(args=["sh", "-c", script], mutate=mutate))
    assert proc.stdout.split() == ["1", "0"], proc.stderr
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_before


@pytest.mark.parametrize(
    ("key", "drop_netns", "words"),
    [
        ("kernel.pid_max", False, ("kernel.pid_max", "not namespaced")),
        ("net.ipv4.ip_forward", True, ("net.ipv4.ip_forward", "network namespace")),
    ],
)
def test_sysctl_refused(
    rt: RuntimeCLI, bundle: BundleFactory, key: str, drop_netns: bool, words: tuple[str, ...]
) -> None:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        host_before = f.read()

    def mutate(spec: dict[str, Any]) -> None:
        spec["linux"]["sysctl"] = {key: "1"}
        if drop_netns:
            spec["linux"]["namespaces"] = [
                ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"
            ]

    assert_create_refused(rt, bundle(args=["true"], mutate=mutate), *words)
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        assert f.read() == host_before


def _run_with_fd3(
    rt: RuntimeCLI, path: str, content: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``run`` with a file open on fd 3 of the runtime (as a sloppy engine leaks it)."""
    marker = os.path.join(path, "fd3.txt")
    with open(marker, "w") as f:
        f.write(content)
    argv = rt.argv("run", "-b", path, *extra, rt.new_id())
    wrapper = ["/bin/sh", "-c", 'exec "$@" 3<"$FD3"', "sh", *argv]
    env = {**os.environ, "FD3": marker}
    return subprocess.run(wrapper, check=False, capture_output=True, text=True, env=env, timeout=20)


def test_only_stdio_reaches_the_container(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """fd 3 is ls's own directory fd: the leaked fd 3 of the caller is gone."""
    script = "ls /proc/self/fd; cat <&3"
    proc = _run_with_fd3(rt, bundle(args=["sh", "-c", script]), unique_id("fd"))
    assert proc.stdout.split() == ["0", "1", "2", "3"]
    assert "Bad file descriptor" in proc.stderr


def test_preserve_fds(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    marker = unique_id("fd")
    script = "ls /proc/self/fd; cat <&3"
    proc = _run_with_fd3(rt, bundle(args=["sh", "-c", script]), marker, "--preserve-fds", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1", "2", "3", "4", marker]
