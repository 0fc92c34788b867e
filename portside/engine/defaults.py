"""The defaults a Docker container gets: capabilities, paths, mounts, sysctls, ulimits.

Plain data shared by :mod:`portside.engine.spec` and its tests. Docker's behaviour is
the reference; where Portside goes further (masked paths) the comment says so.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_NOFILE",
    "DEFAULT_PATH",
    "DEFAULT_SHM_SIZE",
    "INIT_PATH_IN_CONTAINER",
    "MASKED_PATHS",
    "MIN_MEMORY",
    "NAMESPACED_SYSCTLS",
    "NAMESPACED_SYSCTL_PREFIXES",
    "READONLY_PATHS",
    "RESTART_POLICIES",
    "ULIMITS",
]

#: the PATH a container gets when neither the image nor the user sets one (Docker's)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's 14 default capabilities (bounding, permitted, effective)
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Docker's masked paths, plus /proc/interrupts and /sys/devices/virtual/powercap
#: (host-wide information Docker 20.10 left readable)
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

#: mounted read-only inside the container (Docker's list)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: /dev/shm size when HostConfig.ShmSize is 0 (64 MiB, Docker's)
DEFAULT_SHM_SIZE = 64 * 1024 * 1024

#: Docker's lowest memory limit
MIN_MEMORY = 6 * 1024 * 1024

#: where --init's binary is bind-mounted
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"

#: RLIMIT_NOFILE (soft, hard) every container gets unless Ulimits says otherwise, each
#: capped at the daemon's own hard limit (raising it needs CAP_SYS_RESOURCE)
DEFAULT_NOFILE = (1024, 524288)

#: sysctls that belong to the IPC namespace (the only kernel.* ones a container may set)
NAMESPACED_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
#: prefixes of namespaced sysctls: fs.mqueue.* (IPC), net.* (network, not with host networking)
NAMESPACED_SYSCTL_PREFIXES = ("fs.mqueue.", "net.")

#: Docker's ulimit names → the OCI rlimit type
ULIMITS: dict[str, str] = {
    name: "RLIMIT_" + name.upper()
    for name in (
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    )
}

#: RestartPolicy.Name values Docker accepts ("" means "no")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
