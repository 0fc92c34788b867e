"""portside.runtime.rootfs: the filesystem steps of init, against a RecordingKernel.

The recording kernel changes nothing, so these run as any user over a temporary rootfs;
the directories and files the steps create themselves (mount points) are real.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from portside.errors import InvalidArgument
from portside.linux import kernel as K
from portside.linux.kernel import RecordingKernel
from portside.oci.runtime_spec import LinuxDevice, Mount, parse_spec
from portside.runtime import rootfs
from portside.runtime.rootfs import DEFAULT_DEVICES, parse_mount_options
from portside.runtime.specgen import default_spec

FD_TARGET = re.compile(r"^/proc/self/fd/\d+$")


class ResolvingKernel(RecordingKernel):
    """Records, and also notes where a ``/proc/self/fd/N`` target points at call time."""

    def __init__(self, fail: dict[str, OSError] | None = None) -> None:
        super().__init__(fail)
        self.resolved: list[str] = []

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self.resolved.append(os.readlink(target) if FD_TARGET.match(target) else target)
        super().mount(source, target, fstype, flags, data)


class FailingKernel(ResolvingKernel):
    """Raises PermissionError on the first mount for which ``when(args)`` is true."""

    def __init__(self, when: Any) -> None:
        super().__init__()
        self.when = when
        self.failed = False

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        super().mount(source, target, fstype, flags, data)
        if not self.failed and self.when(source, fstype, flags):
            self.failed = True
            raise PermissionError(1, "Operation not permitted")


class NodeKernel(RecordingKernel):
    """Records mknod and leaves a regular file in its place, so chown/chmod can follow."""

    def mknod(self, path: str, mode: int, device: int, uid: int = 0, gid: int = 0) -> None:
        super().mknod(path, mode, device, uid, gid)
        Path(path).touch()
        os.chown(path, uid, gid)
        os.chmod(path, mode & 0o7777)


def mounts_of(k: RecordingKernel) -> list[tuple[Any, ...]]:
    return [args for name, args in k.calls if name == "mount"]


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = tmp_path / "bundle" / "rootfs"
    path.mkdir(parents=True)
    return str(path)


@pytest.fixture
def bundle(root: str) -> str:
    return os.path.dirname(root)


# --- parse_mount_options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "flags", "propagation", "data"),
    [
        ([], 0, [], ""),
        (["ro"], K.MS_RDONLY, [], ""),
        (["rw"], 0, [], ""),
        (["ro", "rw"], 0, [], ""),
        (["rw", "ro"], K.MS_RDONLY, [], ""),
        (["nosuid", "nodev", "noexec"], K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC, [], ""),
        (["nosuid", "suid"], 0, [], ""),
        (["bind"], K.MS_BIND, [], ""),
        (["rbind"], K.MS_BIND | K.MS_REC, [], ""),
        (["rbind", "ro"], K.MS_BIND | K.MS_REC | K.MS_RDONLY, [], ""),
        (["rprivate"], 0, [K.MS_PRIVATE | K.MS_REC], ""),
        (["shared", "rslave"], 0, [K.MS_SHARED, K.MS_SLAVE | K.MS_REC], ""),
        (["runbindable"], 0, [K.MS_UNBINDABLE | K.MS_REC], ""),
        (["mode=755"], 0, [], "mode=755"),
        (["mode=755", "size=65536k"], 0, [], "mode=755,size=65536k"),
        (["nosuid", "strictatime", "mode=755", "size=65536k"],
         K.MS_NOSUID | K.MS_STRICTATIME, [], "mode=755,size=65536k"),
        (["tmpcopyup"], 0, [], ""),
        (["tmpcopyup", "idmap", "mode=1777"], 0, [], "mode=1777"),
        (["defaults"], 0, [], ""),
        (["relatime", "norelatime"], 0, [], ""),
        (["noatime", "atime", "nodiratime"], K.MS_NODIRATIME, [], ""),
        (["remount", "ro"], K.MS_REMOUNT | K.MS_RDONLY, [], ""),
        (["sync", "dirsync", "lazytime", "nosymfollow"],
         K.MS_SYNCHRONOUS | K.MS_DIRSYNC | K.MS_LAZYTIME | K.MS_NOSYMFOLLOW, [], ""),
        (["newinstance", "ptmxmode=0666", "gid=5"], 0, [], "newinstance,ptmxmode=0666,gid=5"),
    ],
)  # fmt: skip
def test_parse_mount_options(
    options: list[str], flags: int, propagation: list[int], data: str
) -> None:
    opts = parse_mount_options(options)
    assert (opts.flags, opts.propagation, opts.data) == (flags, propagation, data)
    assert opts.is_bind == bool(flags & K.MS_BIND)


def test_mount_options_repr() -> None:
    assert repr(parse_mount_options(["ro", "mode=1"])) == (
        "MountOptions(flags=0x1, propagation=[], data='mode=1')"
    )


# --- set_propagation, bind_rootfs, finish_root ----------------------------------------------


@pytest.mark.parametrize(
    ("propagation", "flags"),
    [
        (None, K.MS_REC | K.MS_PRIVATE),
        ("", K.MS_REC | K.MS_PRIVATE),
        ("rprivate", K.MS_REC | K.MS_PRIVATE),
        ("private", K.MS_REC | K.MS_PRIVATE),
        ("slave", K.MS_REC | K.MS_SLAVE),
        ("rslave", K.MS_REC | K.MS_SLAVE),
        ("unbindable", K.MS_REC | K.MS_UNBINDABLE),
        ("shared", K.MS_REC | K.MS_SLAVE),  # made shared only after pivot_root
        ("rshared", K.MS_REC | K.MS_SLAVE),
    ],
)
def test_set_propagation(propagation: str | None, flags: int) -> None:
    k = RecordingKernel()
    rootfs.set_propagation(k, propagation)
    assert k.calls == [("mount", (None, "/", None, flags, None))]


@pytest.mark.parametrize("propagation", ["bogus", "RPRIVATE", "private,rec"])
def test_set_propagation_refuses_unknown(propagation: str) -> None:
    k = RecordingKernel()
    with pytest.raises(InvalidArgument, match=r"^linux\.rootfsPropagation: unknown propagation"):
        rootfs.set_propagation(k, propagation)
    assert k.calls == []


def test_bind_rootfs(root: str) -> None:
    k = RecordingKernel()
    rootfs.bind_rootfs(k, root)
    assert k.calls == [("mount", (root, root, "bind", K.MS_BIND | K.MS_REC, None))]


@pytest.mark.parametrize(
    ("readonly", "propagation", "expected"),
    [
        (False, None, []),
        (False, "rprivate", []),
        (True, None, [(None, "/", None, K.MS_BIND | K.MS_RDONLY | K.MS_REMOUNT, None)]),
        (False, "shared", [(None, "/", None, K.MS_SHARED, None)]),
        (
            True,
            "rshared",
            [
                (None, "/", None, K.MS_BIND | K.MS_RDONLY | K.MS_REMOUNT, None),
                (None, "/", None, K.MS_SHARED | K.MS_REC, None),
            ],
        ),
    ],
)
def test_finish_root(readonly: bool, propagation: str | None, expected: list[Any]) -> None:
    k = RecordingKernel()
    rootfs.finish_root(k, readonly, propagation)
    assert mounts_of(k) == expected


def test_pivot_calls_in_order(root: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # pivot changes the cwd; restore it afterwards
    k = RecordingKernel()
    rootfs.pivot(k, root)
    assert k.calls == [
        ("pivot_root", (".", ".")),
        ("mount", (None, ".", None, K.MS_SLAVE | K.MS_REC, None)),
        ("umount2", (".", K.MNT_DETACH)),
    ]
    assert os.getcwd() == "/"


# --- mount_all ------------------------------------------------------------------------------


def test_mount_all_default_spec(root: str, bundle: str) -> None:
    spec = parse_spec(default_spec())
    k = ResolvingKernel()
    rootfs.mount_all(k, root, spec.mounts, bundle)
    nse = K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV
    assert [(a[0], a[2], a[3], a[4]) for a in mounts_of(k)] == [
        ("proc", "proc", 0, None),
        ("tmpfs", "tmpfs", K.MS_NOSUID | K.MS_STRICTATIME, "mode=755,size=65536k"),
        (
            "devpts",
            "devpts",
            K.MS_NOSUID | K.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        ("shm", "tmpfs", nse, "mode=1777,size=65536k"),
        ("mqueue", "mqueue", nse, None),
        ("sysfs", "sysfs", nse | K.MS_RDONLY, None),
        ("cgroup", "cgroup", nse | K.MS_RELATIME | K.MS_RDONLY, None),
    ]
    assert all(FD_TARGET.match(args[1]) for args in mounts_of(k))
    dests = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert k.resolved == [root + d for d in dests]
    for d in dests:
        assert os.path.isdir(root + d)


def test_mount_all_closes_its_fds(root: str, bundle: str) -> None:
    before = set(os.listdir("/proc/self/fd"))
    rootfs.mount_all(RecordingKernel(), root, parse_spec(default_spec()).mounts, bundle)
    assert set(os.listdir("/proc/self/fd")) == before


def test_mount_all_rootless_sysfs_is_a_bind(root: str, bundle: str) -> None:
    spec = parse_spec(default_spec(rootless=True))
    k = ResolvingKernel()
    rootfs.mount_all(k, root, spec.mounts, bundle)
    sys_calls = [(args, where) for args, where in zip(mounts_of(k), k.resolved, strict=True)
                 if where == root + "/sys"]  # fmt: skip
    assert [args[0] for args, _ in sys_calls] == ["/sys", None]
    bind, remount = (args for args, _ in sys_calls)
    assert (bind[2], bind[3]) == (None, K.MS_BIND | K.MS_REC)
    assert (
        remount[3]
        == K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV
    )


def test_bind_directory_ro_adds_a_remount(root: str, bundle: str, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    k = ResolvingKernel()
    m = Mount(destination="/mnt/data", source=str(src), type="bind", options=["rbind", "ro"])
    rootfs.mount_all(k, root, [m], bundle)
    (bind, remount) = mounts_of(k)
    assert bind == (str(src), bind[1], None, K.MS_BIND | K.MS_REC, None)
    # the remount goes through a fresh fd of the new mount, at the same place
    assert remount == (None, remount[1], None, K.MS_RDONLY | K.MS_BIND | K.MS_REMOUNT, None)
    assert FD_TARGET.match(bind[1])
    assert FD_TARGET.match(remount[1])
    assert k.resolved == [root + "/mnt/data"] * 2
    assert os.path.isdir(root + "/mnt/data")


def test_bind_without_extra_flags_has_no_remount(root: str, bundle: str, tmp_path: Path) -> None:
    k = RecordingKernel()
    m = Mount(destination="/mnt", source=str(tmp_path), options=["bind"])
    rootfs.mount_all(k, root, [m], bundle)
    assert [args[3] for args in mounts_of(k)] == [K.MS_BIND]


def test_bind_type_alone_makes_a_bind(root: str, bundle: str, tmp_path: Path) -> None:
    k = RecordingKernel()
    m = Mount(destination="/mnt", source=str(tmp_path), type="bind", options=["nosuid"])
    rootfs.mount_all(k, root, [m], bundle)
    (bind, remount) = mounts_of(k)
    assert bind[2:4] == (None, K.MS_BIND)
    assert remount[3] == K.MS_BIND | K.MS_NOSUID | K.MS_REMOUNT


def test_bind_propagation_is_applied_after(root: str, bundle: str, tmp_path: Path) -> None:
    k = RecordingKernel()
    m = Mount(destination="/mnt", source=str(tmp_path), options=["rbind", "rprivate"])
    rootfs.mount_all(k, root, [m], bundle)
    flags = [args[3] for args in mounts_of(k)]
    assert flags == [K.MS_BIND | K.MS_REC, K.MS_PRIVATE | K.MS_REC]


def test_bind_of_a_file_creates_a_file(root: str, bundle: str, tmp_path: Path) -> None:
    src = tmp_path / "hosts"
    src.write_text("127.0.0.1 localhost\n")
    k = ResolvingKernel()
    m = Mount(destination="/etc/hosts", source=str(src), type="bind", options=["bind", "ro"])
    rootfs.mount_all(k, root, [m], bundle)
    dest = Path(root, "etc", "hosts")
    assert dest.is_file() and dest.read_text() == ""  # an empty mount point, not a copy
    assert k.resolved[0] == str(dest)
    assert len(mounts_of(k)) == 2


def test_bind_of_a_file_keeps_an_existing_file(root: str, bundle: str, tmp_path: Path) -> None:
    src = tmp_path / "resolv.conf"
    src.write_text("nameserver 1.1.1.1\n")
    Path(root, "etc").mkdir()
    Path(root, "etc", "resolv.conf").write_text("old\n")
    m = Mount(destination="/etc/resolv.conf", source=str(src), options=["bind"])
    rootfs.mount_all(RecordingKernel(), root, [m], bundle)
    assert Path(root, "etc", "resolv.conf").read_text() == "old\n"


def test_relative_bind_source_is_taken_from_the_bundle(root: str, bundle: str) -> None:
    Path(bundle, "shared").mkdir()
    k = RecordingKernel()
    rootfs.mount_all(k, root, [Mount(destination="/s", source="shared", options=["bind"])], bundle)
    assert mounts_of(k)[0][0] == os.path.join(bundle, "shared")


def test_missing_bind_source_is_refused(root: str, bundle: str, tmp_path: Path) -> None:
    k = RecordingKernel()
    m = Mount(destination="/mnt", source=str(tmp_path / "missing"), options=["rbind"])
    with pytest.raises(InvalidArgument, match=r"^mount /mnt: source .*missing does not exist"):
        rootfs.mount_all(k, root, [m], bundle)
    assert k.calls == []


@pytest.mark.parametrize("dest", ["../../etc", "/../../etc", "/tmp/../../../etc"])
def test_destination_cannot_climb_out_of_the_rootfs(root: str, bundle: str, dest: str) -> None:
    k = ResolvingKernel()
    rootfs.mount_all(k, root, [Mount(destination=dest, type="tmpfs", source="tmpfs")], bundle)
    assert k.resolved == [root + "/etc"]
    assert os.path.isdir(root + "/etc")
    assert not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(root)), "etc"))


def test_destination_through_an_absolute_symlink_stays_inside(
    root: str, bundle: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(root, "evil"))
    src = tmp_path / "file"
    src.write_text("x")
    k = ResolvingKernel()
    mounts = [
        Mount(destination="/evil/dir", type="tmpfs", source="tmpfs"),
        Mount(destination="/evil/file", source=str(src), options=["bind"]),
    ]
    rootfs.mount_all(k, root, mounts, bundle)
    assert list(outside.iterdir()) == []
    assert k.resolved == [root + str(outside) + "/dir", root + str(outside) + "/file"]


def test_mount_without_a_type_is_refused(root: str, bundle: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^mount /x: no type given"):
        rootfs.mount_all(RecordingKernel(), root, [Mount(destination="/x", source="x")], bundle)


def test_mount_through_a_file_is_refused(root: str, bundle: str) -> None:
    Path(root, "file").write_text("")
    with pytest.raises(InvalidArgument, match="is not a directory"):
        rootfs.mount_all(
            RecordingKernel(), root, [Mount(destination="/file/x", type="tmpfs")], bundle
        )


def test_source_defaults_to_the_type(root: str, bundle: str) -> None:
    k = RecordingKernel()
    rootfs.mount_all(k, root, [Mount(destination="/run", type="tmpfs")], bundle)
    assert mounts_of(k)[0][0] == "tmpfs"


def test_special_can_take_over_a_mount(root: str, bundle: str) -> None:
    seen: list[tuple[str, str]] = []

    def special(m: Mount, dest: str) -> bool:
        seen.append((m.destination, dest))
        return m.type == "cgroup"

    k = RecordingKernel()
    rootfs.mount_all(k, root, parse_spec(default_spec()).mounts, bundle, special)
    assert len(seen) == 7
    assert seen[-1] == ("/sys/fs/cgroup", root + "/sys/fs/cgroup")
    assert [args[2] for args in mounts_of(k)] == [
        "proc",
        "tmpfs",
        "devpts",
        "tmpfs",
        "mqueue",
        "sysfs",
    ]


@pytest.mark.parametrize(("fstype", "host"), [("sysfs", "/sys"), ("mqueue", "/dev/mqueue")])
def test_refused_sysfs_or_mqueue_falls_back_to_the_hosts(
    root: str, bundle: str, fstype: str, host: str
) -> None:
    k = FailingKernel(lambda source, t, flags: t == fstype)
    m = Mount(destination="/x", type=fstype, source=fstype, options=["nosuid", "ro"])
    rootfs.mount_all(k, root, [m], bundle)
    first, bind, remount = mounts_of(k)
    assert first[2] == fstype
    assert (bind[0], bind[2], bind[3]) == (host, None, K.MS_BIND | K.MS_REC)
    flags = K.MS_BIND | K.MS_RDONLY | K.MS_NOSUID | K.MS_REMOUNT
    assert remount == (None, remount[1], None, flags, None)
    assert k.resolved[-1] == k.resolved[-2] == root + "/x"


def test_refused_proc_is_not_papered_over(root: str, bundle: str) -> None:
    k = FailingKernel(lambda source, t, flags: t == "proc")
    with pytest.raises(PermissionError):
        rootfs.mount_all(k, root, [Mount(destination="/proc", type="proc")], bundle)
    assert len(k.calls) == 1


def test_refused_remount_retries_with_the_locked_flags(
    root: str, bundle: str, tmp_path: Path
) -> None:
    k = FailingKernel(lambda source, t, flags: bool(flags & K.MS_REMOUNT))
    m = Mount(destination="/mnt", source=str(tmp_path), options=["rbind", "ro"])
    rootfs.mount_all(k, root, [m], bundle)
    _bind, refused, retried = mounts_of(k)
    assert refused[3] == K.MS_BIND | K.MS_RDONLY | K.MS_REMOUNT
    assert retried[3] & refused[3] == refused[3]
    assert retried[1] == refused[1]


# --- create_devices -------------------------------------------------------------------------

LINKS = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
}


def test_default_devices_table() -> None:
    assert [d[0] for d in DEFAULT_DEVICES] == [
        "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
    ]  # fmt: skip
    assert {(d[2], d[3]) for d in DEFAULT_DEVICES} == {
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
    }


def test_create_devices_in_userns_binds_the_hosts(root: str) -> None:
    Path(root, "dev", "pts").mkdir(parents=True)
    Path(root, "dev", "null").write_text("stale")
    k = RecordingKernel()
    devices = [LinuxDevice(path="/dev/fuse", type="c", major=10, minor=229)]
    rootfs.create_devices(k, root, devices, in_userns=True)
    paths = [d[0] for d in DEFAULT_DEVICES] + ["/dev/fuse"]
    assert k.calls == [("mount", (p, root + p, "bind", K.MS_BIND, None)) for p in paths]
    for p in paths:
        assert stat.S_ISREG(os.lstat(root + p).st_mode)
    assert Path(root, "dev", "null").read_text() == ""
    for link, target in LINKS.items():
        assert os.readlink(root + link) == target
    assert os.readlink(root + "/dev/ptmx") == "pts/ptmx"


def test_create_devices_without_dev_pts_makes_no_ptmx(root: str) -> None:
    rootfs.create_devices(RecordingKernel(), root, [], in_userns=True)
    assert not os.path.lexists(root + "/dev/ptmx")
    assert os.path.isdir(root + "/dev")


def test_create_devices_keeps_existing_links(root: str) -> None:
    Path(root, "dev").mkdir()
    os.symlink("/elsewhere", root + "/dev/stdin")
    rootfs.create_devices(RecordingKernel(), root, [], in_userns=True)
    assert os.readlink(root + "/dev/stdin") == "/elsewhere"


def test_create_devices_stays_inside_the_rootfs(root: str, tmp_path: Path) -> None:
    outside = tmp_path / "hostdev"
    outside.mkdir()
    os.symlink(str(outside), root + "/dev")
    rootfs.create_devices(RecordingKernel(), root, [], in_userns=True)
    assert list(outside.iterdir()) == []
    assert os.path.isfile(root + str(outside) + "/null")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (LinuxDevice(path="/etc/x", type="c", major=1, minor=1), r"linux\.devices\[0\]\.path"),
        (LinuxDevice(path="/devices", type="c", major=1, minor=1), r"is not under /dev"),
        (LinuxDevice(path="/dev/x", type="c", minor=1), r"needs major and minor"),
        (LinuxDevice(path="/dev/x", type="b", major=8), r"needs major and minor"),
    ],
)
def test_create_devices_refuses_bad_devices(root: str, device: LinuxDevice, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        rootfs.create_devices(RecordingKernel(), root, [device], in_userns=True)


def test_create_devices_runs_with_the_recording_kernel(root: str) -> None:
    k = RecordingKernel()
    rootfs.create_devices(k, root, [], in_userns=False)
    assert k.names() == ["mknod"] * len(DEFAULT_DEVICES)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="create_devices chowns each node")


@needs_root
def test_create_devices_mknods_the_default_devices(root: str) -> None:
    k = NodeKernel()
    rootfs.create_devices(k, root, [], in_userns=False)
    assert k.calls == [
        ("mknod", (root + path, stat.S_IFCHR | 0o666, os.makedev(major, minor), 0, 0))
        for path, _, major, minor in DEFAULT_DEVICES
    ]
    for path, *_ in DEFAULT_DEVICES:
        st = os.lstat(root + path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o666, 0, 0)
    for link, target in LINKS.items():
        assert os.readlink(root + link) == target


@needs_root
def test_create_devices_mknods_config_devices(root: str) -> None:
    k = NodeKernel()
    devices = [
        LinuxDevice(path="/dev/sda", type="b", major=8, minor=0, file_mode=0o620, uid=1000, gid=6),
        LinuxDevice(path="/dev/fifo", type="p"),
        LinuxDevice(path="/dev/net/tun", type="u", major=10, minor=200),
    ]
    rootfs.create_devices(k, root, devices, in_userns=False)
    extra = k.calls[len(DEFAULT_DEVICES) :]
    assert extra == [
        ("mknod", (root + "/dev/sda", stat.S_IFBLK | 0o620, os.makedev(8, 0), 1000, 6)),
        ("mknod", (root + "/dev/fifo", stat.S_IFIFO | 0o666, os.makedev(0, 0), 0, 0)),
        ("mknod", (root + "/dev/net/tun", stat.S_IFCHR | 0o666, os.makedev(10, 200), 0, 0)),
    ]
    st = os.lstat(root + "/dev/sda")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o620, 1000, 6)


@needs_root
def test_create_devices_refuses_an_unknown_type(root: str) -> None:
    device = LinuxDevice(path="/dev/x", type="z", major=1, minor=1)
    with pytest.raises(InvalidArgument, match=r"unknown device type 'z'"):
        rootfs.create_devices(NodeKernel(), root, [device], in_userns=False)


# --- mask_paths, readonly_paths -------------------------------------------------------------


def test_mask_paths(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("secret")
    paths = [str(d), str(f), str(tmp_path / "missing"), str(f / "under-a-file")]
    k = RecordingKernel()
    rootfs.mask_paths(k, paths)
    assert k.calls == [
        ("mount", ("tmpfs", str(d), "tmpfs", K.MS_RDONLY, None)),
        ("mount", ("/dev/null", str(f), None, K.MS_BIND, None)),
    ]


def test_readonly_paths(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("")
    k = RecordingKernel()
    rootfs.readonly_paths(k, [str(d), str(tmp_path / "missing"), str(f)])
    expected = []
    for p in (str(d), str(f)):
        expected += [
            ("mount", (p, p, None, K.MS_BIND | K.MS_REC, None)),
            ("mount", (None, p, None, K.MS_BIND | K.MS_RDONLY | K.MS_REC | K.MS_REMOUNT, None)),
        ]
    assert k.calls == expected


def test_readonly_paths_retries_a_refused_remount(tmp_path: Path) -> None:
    k = FailingKernel(lambda source, t, flags: bool(flags & K.MS_REMOUNT))
    rootfs.readonly_paths(k, [str(tmp_path)])
    assert len(mounts_of(k)) == 3


@pytest.mark.parametrize(
    ("real_root", "top", "path", "expected"),
    [
        ("/real/root", "/link/root", "/link/root/etc", "/real/root/etc"),
        ("/real/root", "/link/root/", "/link/root/etc/x", "/real/root/etc/x"),
        ("/real/root", "/link/root", "/link/root", "/real/root"),
        ("/real/root", "/link/root", "/link/rootish/etc", None),  # not below the rootfs
        ("/real/root", "/link/root", "/elsewhere", None),
        (None, "/link/root", "/link/root/etc", None),
    ],
)
def test_real_below(real_root: str | None, top: str, path: str, expected: str | None) -> None:
    assert rootfs._real_below(real_root, top, path) == expected
