"""The OCI runtime specification (config.json and the state document), 1.0 - 1.2.

Plain data, no I/O beyond :func:`load_spec`. Field names follow Python style; each
field's JSON (camelCase) name is given where it differs. Any 1.x ``ociVersion`` is
accepted.
"""

from __future__ import annotations

from portside.oci import fastjson
from portside.oci._json import ANY, BOOL, INT, STR, F, Record, SpecError, list_of, map_of
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "NAMESPACE_TYPES",
    "ConsoleSize",
    "Hook",
    "Hooks",
    "IDMapping",
    "IOPriority",
    "Linux",
    "LinuxBlockIO",
    "LinuxCPU",
    "LinuxCapabilities",
    "LinuxDevice",
    "LinuxDeviceCgroup",
    "LinuxHugepageLimit",
    "LinuxMemory",
    "LinuxNamespace",
    "LinuxPids",
    "LinuxResources",
    "LinuxSeccomp",
    "LinuxSeccompArg",
    "LinuxSyscall",
    "LinuxThrottleDevice",
    "LinuxWeightDevice",
    "Mount",
    "POSIXRlimit",
    "Process",
    "Root",
    "Spec",
    "SpecError",
    "State",
    "User",
    "load_spec",
    "parse_resources",
    "parse_spec",
]

#: namespace type names of the spec, in the order a runtime joins existing ones
NAMESPACE_TYPES = ("user", "cgroup", "ipc", "uts", "network", "pid", "mount", "time")

_STRS = list_of(STR)

# --- process -------------------------------------------------------------------


class ConsoleSize(Record):
    height: int = F(INT, 0)
    width: int = F(INT, 0)


class User(Record):
    uid: int = F(INT, 0)
    gid: int = F(INT, 0)
    umask: int | None = F(INT)
    additional_gids: list[int] = F(list_of(INT), json="additionalGids")
    username: str | None = F(STR)


class LinuxCapabilities(Record):
    bounding: list[str] = F(_STRS)
    effective: list[str] = F(_STRS)
    inheritable: list[str] = F(_STRS)
    permitted: list[str] = F(_STRS)
    ambient: list[str] = F(_STRS)


class POSIXRlimit(Record):
    type: str = F(STR, required=True)
    hard: int = F(INT, 0)
    soft: int = F(INT, 0)


class IOPriority(Record):
    class_: str = F(STR, "IOPRIO_CLASS_NONE", json="class")
    priority: int = F(INT, 0)


class Process(Record):
    cwd: str = F(STR, "/")
    args: list[str] = F(_STRS)
    env: list[str] = F(_STRS)
    terminal: bool | None = F(BOOL)
    console_size: ConsoleSize | None = F(ConsoleSize, json="consoleSize")
    user: User | None = F(User)
    command_line: str | None = F(STR, json="commandLine")
    capabilities: LinuxCapabilities | None = F(LinuxCapabilities)
    rlimits: list[POSIXRlimit] = F(list_of(POSIXRlimit))
    no_new_privileges: bool | None = F(BOOL, json="noNewPrivileges")
    apparmor_profile: str | None = F(STR, json="apparmorProfile")
    oom_score_adj: int | None = F(INT, json="oomScoreAdj")
    selinux_label: str | None = F(STR, json="selinuxLabel")
    io_priority: IOPriority | None = F(IOPriority, json="ioPriority")
    scheduler: dict[str, Any] | None = F(ANY)
    exec_cpu_affinity: dict[str, Any] | None = F(ANY, json="execCPUAffinity")


# --- root, mounts, hooks -------------------------------------------------------


class Root(Record):
    path: str = F(STR, required=True)
    readonly: bool | None = F(BOOL)


class IDMapping(Record):
    container_id: int = F(INT, 0, json="containerID")
    host_id: int = F(INT, 0, json="hostID")
    size: int = F(INT, 0)


class Mount(Record):
    destination: str = F(STR, required=True)
    source: str | None = F(STR)
    type: str | None = F(STR)
    options: list[str] = F(_STRS)
    uid_mappings: list[IDMapping] = F(list_of(IDMapping), json="uidMappings")
    gid_mappings: list[IDMapping] = F(list_of(IDMapping), json="gidMappings")


class Hook(Record):
    path: str = F(STR, required=True)
    args: list[str] = F(_STRS)
    env: list[str] = F(_STRS)
    timeout: int | None = F(INT)


_HOOKS = list_of(Hook)


class Hooks(Record):
    prestart: list[Hook] = F(_HOOKS)
    create_runtime: list[Hook] = F(_HOOKS, json="createRuntime")
    create_container: list[Hook] = F(_HOOKS, json="createContainer")
    start_container: list[Hook] = F(_HOOKS, json="startContainer")
    poststart: list[Hook] = F(_HOOKS)
    poststop: list[Hook] = F(_HOOKS)


# --- linux ---------------------------------------------------------------------


class LinuxNamespace(Record):
    type: str = F(STR, required=True)
    path: str | None = F(STR)


class LinuxDevice(Record):
    path: str = F(STR, required=True)
    type: str = F(STR, required=True)
    major: int | None = F(INT)
    minor: int | None = F(INT)
    file_mode: int | None = F(INT, json="fileMode")
    uid: int | None = F(INT)
    gid: int | None = F(INT)


class LinuxDeviceCgroup(Record):
    allow: bool = F(BOOL, False)
    type: str | None = F(STR)
    major: int | None = F(INT)
    minor: int | None = F(INT)
    access: str | None = F(STR)


class LinuxMemory(Record):
    limit: int | None = F(INT)
    reservation: int | None = F(INT)
    swap: int | None = F(INT)
    kernel: int | None = F(INT)
    kernel_tcp: int | None = F(INT, json="kernelTCP")
    swappiness: int | None = F(INT)
    disable_oom_killer: bool | None = F(BOOL, json="disableOOMKiller")
    use_hierarchy: bool | None = F(BOOL, json="useHierarchy")
    check_before_update: bool | None = F(BOOL, json="checkBeforeUpdate")


class LinuxCPU(Record):
    shares: int | None = F(INT)
    quota: int | None = F(INT)
    burst: int | None = F(INT)
    period: int | None = F(INT)
    realtime_runtime: int | None = F(INT, json="realtimeRuntime")
    realtime_period: int | None = F(INT, json="realtimePeriod")
    cpus: str | None = F(STR)
    mems: str | None = F(STR)
    idle: int | None = F(INT)


class LinuxPids(Record):
    limit: int = F(INT, 0)


class LinuxWeightDevice(Record):
    major: int = F(INT, required=True)
    minor: int = F(INT, required=True)
    weight: int | None = F(INT)
    leaf_weight: int | None = F(INT, json="leafWeight")


class LinuxThrottleDevice(Record):
    major: int = F(INT, required=True)
    minor: int = F(INT, required=True)
    rate: int = F(INT, 0)


_THROTTLES = list_of(LinuxThrottleDevice)


class LinuxBlockIO(Record):
    weight: int | None = F(INT)
    leaf_weight: int | None = F(INT, json="leafWeight")
    weight_device: list[LinuxWeightDevice] = F(list_of(LinuxWeightDevice), json="weightDevice")
    throttle_read_bps_device: list[LinuxThrottleDevice] = F(
        _THROTTLES, json="throttleReadBpsDevice"
    )
    throttle_write_bps_device: list[LinuxThrottleDevice] = F(
        _THROTTLES, json="throttleWriteBpsDevice"
    )
    throttle_read_iops_device: list[LinuxThrottleDevice] = F(
        _THROTTLES, json="throttleReadIOPSDevice"
    )
    throttle_write_iops_device: list[LinuxThrottleDevice] = F(
        _THROTTLES, json="throttleWriteIOPSDevice"
    )


class LinuxHugepageLimit(Record):
    page_size: str = F(STR, "", json="pageSize")
    limit: int = F(INT, 0)


class LinuxResources(Record):
    devices: list[LinuxDeviceCgroup] = F(list_of(LinuxDeviceCgroup))
    memory: LinuxMemory | None = F(LinuxMemory)
    cpu: LinuxCPU | None = F(LinuxCPU)
    pids: LinuxPids | None = F(LinuxPids)
    block_io: LinuxBlockIO | None = F(LinuxBlockIO, json="blockIO")
    hugepage_limits: list[LinuxHugepageLimit] = F(
        list_of(LinuxHugepageLimit), json="hugepageLimits"
    )
    network: dict[str, Any] | None = F(ANY)
    rdma: dict[str, Any] | None = F(ANY)
    unified: dict[str, str] = F(map_of(STR))


class LinuxSeccompArg(Record):
    index: int = F(INT, required=True)
    value: int = F(INT, 0)
    value_two: int | None = F(INT, json="valueTwo")
    op: str = F(STR, required=True)


class LinuxSyscall(Record):
    names: list[str] = F(_STRS)
    action: str = F(STR, required=True)
    errno_ret: int | None = F(INT, json="errnoRet")
    args: list[LinuxSeccompArg] = F(list_of(LinuxSeccompArg))


class LinuxSeccomp(Record):
    default_action: str = F(STR, "SCMP_ACT_ALLOW", json="defaultAction")
    default_errno_ret: int | None = F(INT, json="defaultErrnoRet")
    architectures: list[str] = F(_STRS)
    flags: list[str] = F(_STRS)
    listener_path: str | None = F(STR, json="listenerPath")
    listener_metadata: str | None = F(STR, json="listenerMetadata")
    syscalls: list[LinuxSyscall] = F(list_of(LinuxSyscall))


_SECCOMP_SEEN: dict[str, LinuxSeccomp] = {}  # profile JSON -> its record
_SECCOMP_SEEN_LIMIT = 16


def _seccomp(value: Any, path: str) -> LinuxSeccomp:
    """``LinuxSeccomp.from_json``, remembered by the profile's JSON: a long-lived
    runtime (the engine's monitor) reads the same ~400-name profile for nearly every
    container. The record is shared between specs, so it is never changed in place."""
    key = fastjson.dumps(value)
    hit = _SECCOMP_SEEN.get(key)
    if hit is None:
        hit = LinuxSeccomp.from_json(value, path)  # a bad profile raises, unremembered
        if len(_SECCOMP_SEEN) >= _SECCOMP_SEEN_LIMIT:
            _SECCOMP_SEEN.pop(next(iter(_SECCOMP_SEEN)))
        _SECCOMP_SEEN[key] = hit
    return hit


def shared_seccomp(record: LinuxSeccomp) -> bool:
    """Whether ``record`` is one of the profiles parse_spec hands out to every spec of
    the same text (never changed in place, so its identity stands for its content)."""
    return any(record is seen for seen in _SECCOMP_SEEN.values())


class Linux(Record):
    namespaces: list[LinuxNamespace] = F(list_of(LinuxNamespace))
    uid_mappings: list[IDMapping] = F(list_of(IDMapping), json="uidMappings")
    gid_mappings: list[IDMapping] = F(list_of(IDMapping), json="gidMappings")
    time_offsets: dict[str, Any] | None = F(ANY, json="timeOffsets")
    devices: list[LinuxDevice] = F(list_of(LinuxDevice))
    cgroups_path: str | None = F(STR, json="cgroupsPath")
    resources: LinuxResources | None = F(LinuxResources)
    rootfs_propagation: str | None = F(STR, json="rootfsPropagation")
    seccomp: LinuxSeccomp | None = F(_seccomp)
    sysctl: dict[str, str] = F(map_of(STR))
    masked_paths: list[str] = F(_STRS, json="maskedPaths")
    readonly_paths: list[str] = F(_STRS, json="readonlyPaths")
    mount_label: str | None = F(STR, json="mountLabel")
    intel_rdt: dict[str, Any] | None = F(ANY, json="intelRdt")
    personality: dict[str, Any] | None = F(ANY)
    net_devices: dict[str, Any] = F(map_of(ANY), json="netDevices")

    def namespace(self, ns_type: str) -> LinuxNamespace | None:
        """The namespace entry of ``ns_type``, or None when the config has none."""
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


class Spec(Record):
    oci_version: str = F(STR, "", json="ociVersion")
    process: Process | None = F(Process)
    root: Root | None = F(Root)
    hostname: str | None = F(STR)
    domainname: str | None = F(STR)
    mounts: list[Mount] = F(list_of(Mount))
    hooks: Hooks | None = F(Hooks)
    annotations: dict[str, str] = F(map_of(STR))
    linux: Linux | None = F(Linux)


class State(Record):
    """The state document of ``runtime state`` (runtime-spec ``state.md``)."""

    oci_version: str = F(STR, "", json="ociVersion")
    id: str = F(STR, "")
    status: str = F(STR, "")
    pid: int = F(INT, 0)
    bundle: str = F(STR, "")
    annotations: dict[str, str] = F(map_of(STR))


def _is_1x(version: str) -> bool:
    """True for ``1.N``, ``1.N.M`` and those with a ``-suffix`` (no ``re``: import cost)."""
    core = version.split("-", 1)[0]
    parts = core.split(".")
    return parts[0] == "1" and len(parts) in (2, 3) and all(is_number(p) for p in parts[1:])


def _validate(spec: Spec) -> None:
    if not _is_1x(spec.oci_version):
        raise SpecError(
            f"ociVersion: unsupported version {spec.oci_version!r} (this runtime accepts 1.x)"
        )
    if spec.linux is not None:
        seen: set[str] = set()
        for i, ns in enumerate(spec.linux.namespaces):
            if ns.type not in NAMESPACE_TYPES:
                raise SpecError(f"linux.namespaces[{i}].type: unknown namespace {ns.type!r}")
            if ns.type in seen:
                raise SpecError(f"linux.namespaces[{i}]: namespace {ns.type!r} given twice")
            seen.add(ns.type)
        if (spec.linux.uid_mappings or spec.linux.gid_mappings) and "user" not in seen:
            raise SpecError("linux.uidMappings: mappings need a user namespace")
    if spec.process is not None and not spec.process.cwd.startswith("/"):
        raise SpecError(f"process.cwd: must be an absolute path, got {spec.process.cwd!r}")
    for i, m in enumerate(spec.mounts):
        if not m.destination.startswith("/"):
            raise SpecError(f"mounts[{i}].destination: must be absolute, got {m.destination!r}")


def parse_spec(data: Any) -> Spec:
    """Validate the parsed JSON of a config.json and return its :class:`Spec`."""
    spec = Spec.from_json(data)
    _validate(spec)
    return spec


def parse_resources(data: Any) -> LinuxResources:
    """The :class:`LinuxResources` of a JSON object (``runtime update --resources``)."""
    return LinuxResources.from_json(data)


def load_spec(path: str) -> Spec:
    """Read and validate the config.json at ``path``."""
    try:
        with open(path, "rb") as f:
            data = fastjson.loads(f.read())
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such file") from exc
    except fastjson.JSONError as exc:
        raise SpecError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return parse_spec(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
