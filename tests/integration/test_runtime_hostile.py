"""Hostile bundles: paths in the config or symlinks in the rootfs that point out of
the rootfs. Whatever the runtime does with them, the host must not be touched:
each test names a unique host path and checks it afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from portside.testing import unique_id
from tests.conftest import BundleFactory
from tests.integration.runtime_helpers import RuntimeCLI

pytestmark = pytest.mark.root


@pytest.fixture
def rt(runtime_root: str) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI(runtime_root)
    yield cli
    cli.close()


@pytest.fixture
def host_path() -> Iterator[str]:
    """A unique path under the host's /tmp that no test may create (tests that make it
    themselves check it is left alone); removed afterwards."""
    path = f"/tmp/{unique_id('esc')}"
    yield path
    if os.path.lexists(path):
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def assert_host_untouched(rt: RuntimeCLI, path: str) -> None:
    assert not os.path.lexists(path), f"{path} was created on the host"
    assert rt.host_mounts_under(path) == [], f"a mount on the host at {path}"


def tmpfs_at(destination: str) -> Any:
    def mutate(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": []}
        )

    return mutate


def mount_points(mountinfo: str) -> list[str]:
    return [line.split()[4] for line in mountinfo.splitlines()]


@pytest.mark.parametrize("prefix", ["/../../../..", "../../../.."])
def test_dotdot_destination_stays_inside(
    rt: RuntimeCLI, bundle: BundleFactory, host_path: str, prefix: str
) -> None:
    """An absolute destination with ``..`` is clamped to the rootfs; a relative one
    may also be refused (the spec wants it absolute)."""
    name = os.path.basename(host_path)
    path = bundle(args=["cat", "/proc/self/mountinfo"], mutate=tmpfs_at(f"{prefix}/tmp/{name}"))
    proc = rt.run(path)
    if proc.returncode != 0 and not prefix.startswith("/"):
        assert "destination" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert f"/tmp/{name}" in mount_points(proc.stdout)
        assert os.path.isdir(os.path.join(path, "rootfs", "tmp", name))
    assert_host_untouched(rt, host_path)


@pytest.mark.parametrize("target", ["/", "../../../..", "/../../../../"])
def test_symlink_destination_stays_inside(
    rt: RuntimeCLI, bundle: BundleFactory, host_path: str, target: str
) -> None:
    name = os.path.basename(host_path)
    path = bundle(args=["cat", "/proc/self/mountinfo"], mutate=tmpfs_at(f"/evil/tmp/{name}"))
    os.symlink(target, os.path.join(path, "rootfs", "evil"))
    proc = rt.run(path)
    assert proc.returncode == 0, proc.stderr
    assert f"/tmp/{name}" in mount_points(proc.stdout)
    assert_host_untouched(rt, host_path)


def _bind_file(destination: str) -> Any:
    def mutate(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": destination, "source": "payload", "type": "bind", "options": ["bind"]}
        )

    return mutate


def test_symlink_file_destination_of_a_bind_stays_inside(
    rt: RuntimeCLI, bundle: BundleFactory, host_path: str
) -> None:
    """A bind of a file onto a symlink to a host file: the host file keeps its content
    (the runtime may mount on the container's own path, or refuse)."""
    with open(host_path, "w") as f:
        f.write("host\n")
    path = bundle(args=["cat", host_path], mutate=_bind_file("/etc/evil"))
    with open(os.path.join(path, "payload"), "w") as f:
        f.write("payload\n")
    os.symlink(host_path, os.path.join(path, "rootfs", "etc", "evil"))
    proc = rt.run(path)
    with open(host_path) as f:
        assert f.read() == "host\n"
    assert rt.host_mounts_under(host_path) == []
    if proc.returncode != 0:
        assert "/etc/evil" in proc.stderr
    else:  # inside, the symlink's target is the container's own path
        assert proc.stdout == "payload\n", proc.stderr


def test_file_bind_onto_an_inner_symlink(rt: RuntimeCLI, bundle: BundleFactory) -> None:
    """As ``-v /etc/localtime:/etc/localtime`` on an image whose /etc/localtime is a
    symlink into /usr/share/zoneinfo."""
    path = bundle(args=["cat", "/etc/localtime"], mutate=_bind_file("/etc/localtime"))
    with open(os.path.join(path, "payload"), "w") as f:
        f.write("payload\n")
    zoneinfo = os.path.join(path, "rootfs", "usr", "share", "zoneinfo")
    os.makedirs(zoneinfo)
    with open(os.path.join(zoneinfo, "UTC"), "w") as f:
        f.write("utc\n")
    os.symlink("/usr/share/zoneinfo/UTC", os.path.join(path, "rootfs", "etc", "localtime"))
    proc = rt.run(path)
    assert (proc.returncode, proc.stdout) == (0, "payload\n"), proc.stderr


def test_proc_symlinked_out(rt: RuntimeCLI, bundle: BundleFactory, host_path: str) -> None:
    """/proc replaced by a symlink pointing out: proc is mounted inside or refused."""
    path = bundle(args=["true"])
    proc_dir = os.path.join(path, "rootfs", "proc")
    os.rmdir(proc_dir)
    os.symlink(f"../../../../../../..{host_path}", proc_dir)
    rt.run(path)
    assert_host_untouched(rt, host_path)


def test_cwd_through_a_symlink_stays_inside(
    rt: RuntimeCLI, bundle: BundleFactory, host_path: str
) -> None:
    os.mkdir(host_path)
    with open(os.path.join(host_path, "host-only"), "w") as f:
        f.write("host\n")

    def mutate(spec: dict[str, Any]) -> None:
        spec["process"]["cwd"] = "/cwdlink"

    script = f"pwd -P; cat etc/hostname; ls .{host_path}/host-only"
    path = bundle(args=["sh", "-c", script], mutate=mutate)
    os.symlink("/../../..", os.path.join(path, "rootfs", "cwdlink"))
    proc = rt.run(path)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["/", "portside"], proc.stderr
    assert "No such file" in proc.stderr


def test_missing_bind_source_is_a_clear_error(
    rt: RuntimeCLI, bundle: BundleFactory, host_path: str
) -> None:
    def mutate(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/data", "source": host_path, "type": "bind", "options": ["rbind"]}
        )

    cid = rt.new_id()
    proc = rt("create", "-b", bundle(args=["true"], mutate=mutate), cid, check=False)
    assert proc.returncode != 0
    assert host_path in proc.stderr
    assert "does not exist" in proc.stderr
    assert rt.leftovers(cid) == []
    assert_host_untouched(rt, host_path)
