"""The default config.json, as ``runc spec`` (runc 1.1) writes it, and writing it to a bundle.

:func:`default_spec` returns the same document as ``runc spec`` (or ``runc spec --rootless``)
of runc 1.1.5, key by key, except the hostname: ``portside`` instead of ``runc``.
"""

from __future__ import annotations

import json
import os

from portside.errors import AlreadyExists, Internal, NotFound, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_HOSTNAME", "default_spec", "write_spec"]

DEFAULT_HOSTNAME = "portside"

_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
_NO_EXEC = ("nosuid", "noexec", "nodev")

_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mounts(rootless: bool) -> list[dict[str, Any]]:
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")  # rootless: no gid= or uid= options (unmapped ids)
    if rootless:
        sysfs = {"destination": "/sys", "type": "none", "source": "/sys"}
        sysfs["options"] = ["rbind", *_NO_EXEC, "ro"]
    else:
        sysfs = {"destination": "/sys", "type": "sysfs", "source": "sysfs"}
        sysfs["options"] = [*_NO_EXEC, "ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_NO_EXEC, "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": list(_NO_EXEC),
        },
        sysfs,
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*_NO_EXEC, "relatime", "ro"],
        },
    ]


def _linux(rootless: bool) -> dict[str, Any]:
    linux: dict[str, Any] = {}
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        namespaces = ["pid", "ipc", "uts", "mount", "user"]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        namespaces = ["pid", "network", "ipc", "uts", "mount"]
    linux["namespaces"] = [{"type": t} for t in namespaces]
    linux["maskedPaths"] = list(_MASKED_PATHS)
    linux["readonlyPaths"] = list(_READONLY_PATHS)
    return linux


def default_spec(
    *, rootless: bool = False, terminal: bool = True, args: list[str] | None = None
) -> dict[str, Any]:
    """A fresh config.json document (plain JSON data), as ``runc spec [--rootless]``.

    The rootless variant adds a user namespace mapping root to the current effective
    user and group, drops the network namespace and the device cgroup rules, bind-mounts
    the host's /sys and leaves ``gid=5`` out of the devpts options.
    """
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args is not None else ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                key: list(_CAPS) for key in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": DEFAULT_HOSTNAME,
        "mounts": _mounts(rootless),
        "linux": _linux(rootless),
    }


def write_spec(bundle_dir: str, spec: dict[str, Any], *, force: bool = False) -> str:
    """Write ``spec`` as ``bundle_dir/config.json`` and return that path.

    Refuses with :class:`AlreadyExists` when the file exists, unless ``force``; a
    forced write replaces the file atomically (rename).
    """
    if not os.path.isdir(bundle_dir):
        raise NotFound(f"{bundle_dir}: bundle directory does not exist")
    path = os.path.join(bundle_dir, "config.json")
    data = json.dumps(spec, indent="\t").encode()
    try:
        if not force:
            with open(path, "xb") as f:
                f.write(data)
            return path
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except FileExistsError as exc:
        raise AlreadyExists(f"{path}: file exists (use force to replace it)") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"{path}: cannot write the spec: {exc.strerror}") from exc
    except OSError as exc:
        raise Internal(f"{path}: cannot write the spec: {exc.strerror}") from exc
    return path
