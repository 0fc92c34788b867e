"""The container's /sys/fs/cgroup view: read-only in one call, or per mount on old kernels."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from portside.linux import kernel as K
from portside.linux.kernel import RecordingKernel
from portside.runtime.cgroupfs import _readonly_tree


def test_readonly_is_one_recursive_mount_setattr(tmp_path: Path) -> None:
    k = RecordingKernel()
    _readonly_tree(k, str(tmp_path), K.MS_NOSUID | K.MS_NOEXEC)
    attrs = K.MOUNT_ATTR_RDONLY | K.MOUNT_ATTR_NOSUID | K.MOUNT_ATTR_NOEXEC
    assert k.calls == [("mount_setattr", (str(tmp_path), K.AT_RECURSIVE, attrs, 0))]


def test_readonly_falls_back_to_remounts_without_mount_setattr(tmp_path: Path) -> None:
    for name in ("memory", "cpu"):
        os.mkdir(tmp_path / name)
    k = RecordingKernel(fail={"mount_setattr": OSError(errno.ENOSYS, "no mount_setattr")})
    _readonly_tree(k, str(tmp_path), K.MS_NODEV)
    remounts = [args for name, args in k.calls if name == "mount"]
    flags = K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_NODEV
    assert remounts == [
        (None, str(tmp_path / "cpu"), None, flags, None),
        (None, str(tmp_path / "memory"), None, flags, None),
        (None, str(tmp_path), None, K.MS_REMOUNT | K.MS_RDONLY | K.MS_NODEV, "mode=755"),
    ]
