"""HostConfig's resources and devices → OCI ``linux.resources`` and ``linux.devices``.

Device paths (blkio throttles, Devices) are turned into major:minor numbers with
``os.stat`` on the host, as dockerd does; a privileged container gets every device
of the host's /dev (:func:`host_devices`).
"""

from __future__ import annotations

import os
import posixpath
import stat

from portside.errors import InvalidArgument
from portside.oci.runtime_spec import (
    LinuxBlockIO,
    LinuxCPU,
    LinuxDevice,
    LinuxDeviceCgroup,
    LinuxMemory,
    LinuxPids,
    LinuxResources,
    LinuxThrottleDevice,
    LinuxWeightDevice,
)
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["host_devices", "parse_cgroup_rule", "resources", "user_devices"]


def _device_numbers(path: str, what: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"{what}: {path}: {exc.strerror}") from exc
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise InvalidArgument(f"{what}: {path} is not a device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _throttles(entries: list[dict[str, Any]] | None, what: str) -> list[LinuxThrottleDevice]:
    out = []
    for entry in entries or []:
        major, minor = _device_numbers(entry.get("Path") or "", what)
        out.append(LinuxThrottleDevice(major=major, minor=minor, rate=entry.get("Rate") or 0))
    return out


def _block_io(hc: dict[str, Any]) -> LinuxBlockIO | None:
    weights = []
    for entry in hc.get("BlkioWeightDevice") or []:
        major, minor = _device_numbers(entry.get("Path") or "", "BlkioWeightDevice")
        weights.append(LinuxWeightDevice(major=major, minor=minor, weight=entry.get("Weight")))
    bio = LinuxBlockIO(
        weight=hc.get("BlkioWeight") or None,
        weight_device=weights,
        throttle_read_bps_device=_throttles(hc.get("BlkioDeviceReadBps"), "BlkioDeviceReadBps"),
        throttle_write_bps_device=_throttles(hc.get("BlkioDeviceWriteBps"), "BlkioDeviceWriteBps"),
        throttle_read_iops_device=_throttles(hc.get("BlkioDeviceReadIOps"), "BlkioDeviceReadIOps"),
        throttle_write_iops_device=_throttles(
            hc.get("BlkioDeviceWriteIOps"), "BlkioDeviceWriteIOps"
        ),
    )
    return bio if bio.to_json() else None


def _memory(hc: dict[str, Any]) -> LinuxMemory | None:
    limit = hc.get("Memory") or 0
    swap = hc.get("MemorySwap") or 0
    if limit > 0 and swap == 0:
        swap = 2 * limit  # Docker: as much swap as memory
    swappiness = hc.get("MemorySwappiness")
    mem = LinuxMemory(
        limit=limit or None,
        reservation=hc.get("MemoryReservation") or None,
        swap=swap or None,
        swappiness=swappiness if swappiness is not None and swappiness >= 0 else None,
        disable_oom_killer=True if hc.get("OomKillDisable") else None,
    )
    return mem if mem.to_json() else None


def _cpu(hc: dict[str, Any]) -> LinuxCPU | None:
    quota, period = hc.get("CpuQuota") or 0, hc.get("CpuPeriod") or 0
    nano = hc.get("NanoCpus") or 0
    if nano:
        period = 100000
        quota = nano * period // 10**9
    cpu = LinuxCPU(
        shares=hc.get("CpuShares") or None,
        quota=quota or None,
        period=period or None,
        cpus=hc.get("CpusetCpus") or None,
        mems=hc.get("CpusetMems") or None,
    )
    return cpu if cpu.to_json() else None


def parse_cgroup_rule(rule: str) -> LinuxDeviceCgroup:
    """A DeviceCgroupRules entry: ``c 1:3 rwm``, ``b *:* m``, ``a``."""
    fields = rule.split()
    bad = InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
    if not fields or fields[0] not in ("a", "b", "c") or len(fields) > 3:
        raise bad
    if fields[0] == "a":
        return LinuxDeviceCgroup(allow=True, type="a", access="rwm")
    if len(fields) != 3 or not fields[2] or set(fields[2]) - set("rwm"):
        raise bad
    major, sep, minor = fields[1].partition(":")
    if not sep:
        raise bad
    numbers = []
    for text in (major, minor):
        if text == "*":
            numbers.append(None)
        elif is_number(text):
            numbers.append(int(text))
        else:
            raise bad
    return LinuxDeviceCgroup(
        allow=True, type=fields[0], major=numbers[0], minor=numbers[1], access=fields[2]
    )


def _device_entry(entry: Any) -> tuple[str, str, str]:
    """(host path, container path, permissions) of a HostConfig.Devices entry."""
    if isinstance(entry, str):
        parts = entry.split(":")
        host = parts[0]
        inside = parts[1] if len(parts) > 1 and parts[1] else host
        perms = parts[2] if len(parts) > 2 else "rwm"
        return host, inside, perms
    host = entry.get("PathOnHost") or ""
    return host, entry.get("PathInContainer") or host, entry.get("CgroupPermissions") or "rwm"


def _host_device(path: str, inside: str) -> LinuxDevice | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return LinuxDevice(
        path=inside,
        type=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
    )


def user_devices(hc: dict[str, Any]) -> tuple[list[LinuxDevice], list[LinuxDeviceCgroup]]:
    devices: list[LinuxDevice] = []
    rules: list[LinuxDeviceCgroup] = []
    for entry in hc.get("Devices") or []:
        host, inside, perms = _device_entry(entry)
        if set(perms) - set("rwm") or not perms:
            raise InvalidArgument(f"invalid device permissions {perms!r} for {host}")
        if os.path.isdir(host):
            found = [
                (p, posixpath.join(inside, posixpath.relpath(p, host)))
                for p, _ in host_devices(host)
            ]
        else:
            found = [(host, inside)]
        for src, dst in found:
            dev = _host_device(src, dst)
            if dev is None:
                raise InvalidArgument(
                    f'error gathering device information while adding custom device "{src}": '
                    "not a device node"
                )
            devices.append(dev)
            rules.append(
                LinuxDeviceCgroup(
                    allow=True, type=dev.type, major=dev.major, minor=dev.minor, access=perms
                )
            )
    rules.extend(parse_cgroup_rule(r) for r in hc.get("DeviceCgroupRules") or [])
    return devices, rules


#: directories under /dev a privileged container does not get (mounted by the runtime, or
#: host machinery), and device files the runtime itself creates
_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
_SKIP_FILES = frozenset({"console", "ptmx", "null", "zero", "full", "random", "urandom", "tty"})


def host_devices(top: str) -> list[tuple[str, LinuxDevice]]:
    """(host path, device) of every char/block device under ``top`` (Docker's HostDevices)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if dirpath == "/dev" and name in _SKIP_FILES:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                dev = _host_device(path, path)
                if dev is not None:
                    out.append((path, dev))
    return out


def resources(hc: dict[str, Any], rules: list[LinuxDeviceCgroup]) -> LinuxResources:
    pids = hc.get("PidsLimit") or 0
    return LinuxResources(
        devices=rules,
        memory=_memory(hc),
        cpu=_cpu(hc),
        pids=LinuxPids(limit=pids) if pids > 0 else None,
        block_io=_block_io(hc),
    )
