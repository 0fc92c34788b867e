"""The resources a container's cgroup gets: the config's, plus what every
container needs (runc's ``AllowedDevices``)."""

from __future__ import annotations

from portside.oci.runtime_spec import LinuxDeviceCgroup, LinuxResources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.oci.runtime_spec import Spec

__all__ = ["ALLOWED_DEVICES", "effective_resources"]

#: (type, major, minor, access) allowed after the config's own device rules
ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"),  # mknod of any device (access stays denied)
    ("b", None, None, "m"),
    ("c", 1, 3, "rwm"),  # null
    ("c", 1, 8, "rwm"),  # random
    ("c", 1, 7, "rwm"),  # full
    ("c", 5, 0, "rwm"),  # tty
    ("c", 1, 5, "rwm"),  # zero
    ("c", 1, 9, "rwm"),  # urandom
    ("c", 5, 1, "rwm"),  # console
    ("c", 136, None, "rwm"),  # pts
    ("c", 5, 2, "rwm"),  # ptmx
    ("c", 10, 200, "rwm"),  # tun
)


def effective_resources(spec: Spec) -> LinuxResources:
    """The config's resources with the default allowed devices and each of
    linux.devices appended to the device rules, as runc does."""
    linux = spec.linux
    base = linux.resources if linux is not None and linux.resources is not None else None
    res = LinuxResources.from_json(base.to_json()) if base is not None else LinuxResources()
    rules = list(res.devices)
    for kind, major, minor, access in ALLOWED_DEVICES:
        rules.append(
            LinuxDeviceCgroup(allow=True, type=kind, major=major, minor=minor, access=access)
        )
    for dev in linux.devices if linux is not None else []:
        if dev.type not in ("c", "u", "b"):
            continue  # fifos are not device-cgroup controlled
        rules.append(
            LinuxDeviceCgroup(
                allow=True,
                type=dev.type if dev.type != "u" else "c",
                major=dev.major,
                minor=dev.minor,
                access="rwm",
            )
        )
    res.devices = rules
    return res
