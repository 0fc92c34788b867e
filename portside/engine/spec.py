"""A Docker container (Config, HostConfig, image config) → the OCI runtime :class:`Spec`.

Docker's behaviour is the reference: :func:`merge_image_config` is Docker's
``merge``, :func:`validate_create` its create-time checks and messages, and
:func:`build_spec` what dockerd and containerd put in config.json, with Portside's
default security (:mod:`portside.engine.defaults`, :mod:`portside.engine.seccomp_profile`).
"""

from __future__ import annotations

import json
import os
import posixpath
import resource

from portside.engine import defaults as D
from portside.engine.seccomp_profile import default_profile, from_docker
from portside.engine.spec_resources import host_devices, parse_cgroup_rule, resources, user_devices
from portside.engine.userinfo import in_root, lookup_user
from portside.errors import InvalidArgument, NotFound
from portside.oci.runtime_spec import (
    Linux,
    LinuxCapabilities,
    LinuxDeviceCgroup,
    LinuxNamespace,
    LinuxSeccomp,
    Mount,
    POSIXRlimit,
    Process,
    Root,
    Spec,
    User,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portside.engine.model import Container, ExecConfig, MountSpec, Paths

__all__ = [
    "SecurityOptions",
    "build_exec_process",
    "build_spec",
    "container_capabilities",
    "merge_image_config",
    "parse_security_opts",
    "validate_create",
]

OCI_VERSION = "1.1.0"
_NO_EXEC = ["nosuid", "noexec", "nodev"]

# --- the effective Config -------------------------------------------------------------


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def _merge_env(user: list[str], image: list[str]) -> list[str]:
    """Docker's merge: the user's entries, then the image's whose key the user lacks."""
    if not user:
        return list(image)
    keys = {_env_key(e) for e in user}
    return [*user, *(e for e in image if _env_key(e) not in keys)]


def _merge_healthcheck(user: dict[str, Any] | None, image: dict[str, Any]) -> dict[str, Any]:
    if not user:
        return dict(image)
    out = dict(user)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def merge_image_config(config: dict[str, Any], image_config: dict[str, Any]) -> dict[str, Any]:
    """The container's effective Config: the user's ``config`` over the image's defaults.

    As Docker's ``merge``: an Entrypoint given by the user drops the image's Cmd and
    Entrypoint (an empty Entrypoint resets it); Env, Labels, ExposedPorts and Volumes
    are merged by key; User, WorkingDir, StopSignal and Healthcheck fields fall back to
    the image's. Docker's default PATH is added when neither side sets one.
    """
    out = dict(config)
    image = image_config or {}
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    out["Env"] = _merge_env(list(out.get("Env") or []), list(image.get("Env") or []))
    if not any(e.startswith("PATH=") for e in out["Env"]):
        out["Env"].append("PATH=" + D.DEFAULT_PATH)
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = dict(image.get(key) or {})
        merged.update(out.get(key) or {})
        out[key] = merged if (merged or key == "Labels") else out.get(key)
    entrypoint = out.get("Entrypoint")
    if entrypoint == [""]:
        entrypoint = out["Entrypoint"] = []
    if not entrypoint:
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
        if entrypoint is None:
            out["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck"):
        out["Healthcheck"] = _merge_healthcheck(out.get("Healthcheck"), image["Healthcheck"])
    for key in ("WorkingDir", "StopSignal"):
        if not out.get(key):
            out[key] = image.get(key) or ""
    return out


# --- security options -----------------------------------------------------------------


class SecurityOptions:
    """HostConfig.SecurityOpt, parsed: ``seccomp`` is "default", "unconfined" or a profile."""

    __slots__ = ("no_new_privileges", "seccomp")

    def __init__(self) -> None:
        self.no_new_privileges = False
        self.seccomp: str | dict[str, Any] = "default"


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def parse_security_opts(opts: list[str] | None) -> SecurityOptions:
    """Docker's ``parseSecurityOpt``; apparmor= and label= are accepted and ignored."""
    out = SecurityOptions()
    for opt in opts or []:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":
            continue
        sep = "=" if "=" in opt else ":"
        key, found, value = opt.partition(sep)
        if not found:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        if key in ("label", "apparmor"):
            continue
        if key == "no-new-privileges":
            if value not in _TRUE + _FALSE:
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
            out.no_new_privileges = value in _TRUE
        elif key == "seccomp":
            out.seccomp = _seccomp_opt(value)
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return out


def _seccomp_opt(value: str) -> str | dict[str, Any]:
    if value in ("unconfined", "builtin", ""):
        return "unconfined" if value == "unconfined" else "default"
    try:
        profile = json.loads(value)
    except ValueError as exc:
        raise InvalidArgument(f"decoding seccomp profile failed: {exc}") from exc
    if not isinstance(profile, dict):
        raise InvalidArgument("decoding seccomp profile failed: expected a JSON object")
    return profile


# --- capabilities -----------------------------------------------------------------------


def _bounding_set() -> int:
    """The daemon's own capability bounding set (a container cannot get more)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return -1


def _all_caps() -> list[str]:
    """Every capability: those the kernel knows and this process may hand out."""
    from portside.linux.caps import CAPS, last_cap

    top, bounding = last_cap(), _bounding_set()
    return [name for name, n in CAPS.items() if n <= top and bounding >> n & 1]


def _normalize_caps(names: list[str] | None) -> list[str]:
    """Upper case with the CAP_ prefix ("ALL" stays); unknown names are refused."""
    from portside.linux.caps import CAPS

    out: list[str] = []
    for raw in names or []:
        name = raw.strip().upper()
        if name != "ALL":
            name = name if name.startswith("CAP_") else "CAP_" + name
            if name not in CAPS:
                raise InvalidArgument(f'unknown capability: "{name}"')
        if name not in out:
            out.append(name)
    return out


def container_capabilities(host_config: dict[str, Any]) -> list[str]:
    """The bounding/permitted/effective set: Docker's defaults tweaked by CapAdd/CapDrop."""
    adds = _normalize_caps(host_config.get("CapAdd"))
    drops = _normalize_caps(host_config.get("CapDrop"))
    if host_config.get("Privileged"):
        return _all_caps()
    if "ALL" in adds:
        return [c for c in _all_caps() if c not in drops]
    if "ALL" in drops:
        return adds
    caps = [c for c in D.DEFAULT_CAPS if c not in drops]
    return caps + [c for c in adds if c not in caps]


def _capabilities(caps: list[str], uid: int) -> LinuxCapabilities:
    """Docker's sets: root gets ``caps`` in bounding, permitted and effective; another
    user only in bounding (as execve would leave them), inheritable and ambient empty."""
    held = list(caps) if uid == 0 else []
    return LinuxCapabilities(
        bounding=list(caps), effective=held, permitted=list(held), inheritable=[], ambient=[]
    )


# --- validation ------------------------------------------------------------------------


def _check_memory(hc: dict[str, Any], warnings: list[str]) -> None:
    memory = hc.get("Memory") or 0
    swap = hc.get("MemorySwap") or 0
    reservation = hc.get("MemoryReservation") or 0
    if memory and memory < D.MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if memory == 0 and swap > 0:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if reservation and reservation < D.MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > memory:
        raise InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    if hc.get("OomKillDisable") and not memory:
        warnings.append(
            "OOM killer is disabled for the container, but no memory limit is set, "
            "this can result in the system running out of resources."
        )
    if hc.get("KernelMemory"):
        warnings.append("Kernel memory limits are not supported and will be ignored")


def _check_cpu(hc: dict[str, Any]) -> None:
    nano = hc.get("NanoCpus") or 0
    period = hc.get("CpuPeriod") or 0
    quota = hc.get("CpuQuota") or 0
    if nano and period:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and quota:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidArgument(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if period and not 1000 <= period <= 1000000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if quota > 0 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if (hc.get("CpuShares") or 0) < 0:
        raise InvalidArgument(f"invalid CPU shares {hc['CpuShares']}: must not be negative")
    weight = hc.get("BlkioWeight") or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if (hc.get("ShmSize") or 0) < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    adj = hc.get("OomScoreAdj") or 0
    if not -1000 <= adj <= 1000:
        raise InvalidArgument(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")


def _check_restart(hc: dict[str, Any]) -> None:
    policy = hc.get("RestartPolicy") or {}
    name = policy.get("Name") or ""
    retries = policy.get("MaximumRetryCount") or 0
    if name not in D.RESTART_POLICIES:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; "
            "use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if retries and name != "on-failure":
        raise InvalidArgument(
            f"invalid restart policy: maximum retry count cannot be used with restart policy "
            f"'{name}'"
        )
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if hc.get("AutoRemove") and name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


def _check_sysctls(hc: dict[str, Any]) -> None:
    net = hc.get("NetworkMode") or ""
    ipc = hc.get("IpcMode") or ""
    for key in hc.get("Sysctls") or {}:
        if key in D.NAMESPACED_SYSCTLS or key.startswith("fs.mqueue."):
            if ipc == "host" or ipc.startswith("container:"):
                raise InvalidArgument(f"sysctl '{key}' is not allowed in host IPC namespace")
        elif key.startswith("net."):
            if net == "host":
                raise InvalidArgument(f"sysctl '{key}' is not allowed in host network namespace")
            if net.startswith("container:"):
                raise InvalidArgument(
                    f"sysctl '{key}' is not allowed when joining another container's network"
                )
        else:
            raise InvalidArgument(f"sysctl '{key}' is not allowed")


def _check_modes(
    config: dict[str, Any], hc: dict[str, Any], known_network: Callable[[str], bool] | None
) -> None:
    ipc = hc.get("IpcMode") or ""
    if ipc not in ("", "private", "shareable", "host", "none") and not _joins(ipc):
        raise InvalidArgument(f"invalid IPC mode: {ipc}")
    pid = hc.get("PidMode") or ""
    if pid not in ("", "host") and not _joins(pid):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    uts = hc.get("UTSMode") or ""
    if uts not in ("", "host"):
        raise InvalidArgument(f"invalid UTS mode: {uts}")
    userns = hc.get("UsernsMode") or ""
    if userns not in ("", "host"):
        raise InvalidArgument(f"invalid userns mode {userns!r}: only 'host' is supported")
    net = hc.get("NetworkMode") or ""
    builtin = net in ("", "default", "bridge", "none", "host") or _joins(net)
    if not builtin and (known_network is None or not known_network(net)):
        raise NotFound(f"network {net} not found")
    if config.get("Hostname") and (net == "host" or _joins(net)):
        raise InvalidArgument("conflicting options: hostname and the network mode")
    if uts == "host" and config.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the UTS mode")


def _joins(mode: str) -> bool:
    return mode.startswith("container:") and len(mode) > len("container:")


def _check_ulimits(hc: dict[str, Any]) -> None:
    for ulimit in hc.get("Ulimits") or []:
        name = ulimit.get("Name") or ""
        if name not in D.ULIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        soft, hard = ulimit.get("Soft", 0), ulimit.get("Hard", 0)
        if soft > hard:
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )


def _check_workdir(wd: str) -> None:
    if not wd:
        return
    if not wd.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{wd}' is invalid, it needs to be an absolute path"
        )
    parts = posixpath.normpath(wd).split("/")
    if len(parts) > 3 and parts[1] == "proc" and parts[3] == "fd":
        raise InvalidArgument(
            f"the working directory '{wd}' is invalid, it may not be under /proc/self/fd"
        )


def validate_create(
    config: dict[str, Any],
    host_config: dict[str, Any],
    known_network: Callable[[str], bool] | None = None,
) -> list[str]:
    """Docker's create-time checks; raises InvalidArgument (NotFound for a network mode
    that is no builtin one and not ``known_network``) with Docker's messages, returns
    the warnings."""
    warnings: list[str] = []
    hc = host_config or {}
    _check_workdir(config.get("WorkingDir") or "")
    _check_memory(hc, warnings)
    _check_cpu(hc)
    _check_restart(hc)
    _check_modes(config, hc, known_network)
    if (hc.get("NetworkMode") or "") == "host" and (
        hc.get("PortBindings") or hc.get("PublishAllPorts")
    ):
        warnings.append("Published ports are discarded when using host network mode")
    _check_sysctls(hc)
    _check_ulimits(hc)
    parse_security_opts(hc.get("SecurityOpt"))
    container_capabilities(hc)
    for rule in hc.get("DeviceCgroupRules") or []:
        parse_cgroup_rule(rule)
    return warnings


# --- the process ------------------------------------------------------------------------


def _replace_env(base: list[str], overrides: list[str]) -> list[str]:
    """Docker's ``ReplaceOrAppendEnvValues``: by key; a bare ``KEY`` removes it."""
    out = {_env_key(e): e for e in base}
    for entry in overrides:
        if "=" in entry:
            out[_env_key(entry)] = entry
        else:
            out.pop(entry, None)
    return list(out.values())


def _process_env(
    config: dict[str, Any], extra: list[str], hostname: str, tty: bool, home: str
) -> list[str]:
    base = ["PATH=" + D.DEFAULT_PATH, "HOSTNAME=" + hostname]
    if tty:
        base.append("TERM=xterm")
    env = _replace_env(_replace_env(base, list(config.get("Env") or [])), extra)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + home)
    return env


def _rlimits(
    hc: dict[str, Any], default_ulimits: dict[str, tuple[int, int]] | None
) -> list[POSIXRlimit]:
    """Explicit defaults (RLIMIT_NOFILE capped at our own hard limit), then Ulimits."""
    host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    cap = D.DEFAULT_NOFILE[1] if host_hard == resource.RLIM_INFINITY else host_hard
    limits = {"RLIMIT_NOFILE": (min(D.DEFAULT_NOFILE[0], cap), min(D.DEFAULT_NOFILE[1], cap))}
    for name, (soft, hard) in (default_ulimits or {}).items():
        limits[D.ULIMITS.get(name, name)] = (soft, hard)
    for ulimit in hc.get("Ulimits") or []:
        kind = D.ULIMITS.get(ulimit.get("Name") or "")
        if kind is None:
            raise InvalidArgument(f"invalid ulimit type: {ulimit.get('Name')}")
        limits[kind] = (ulimit.get("Soft", 0), ulimit.get("Hard", 0))
    return [POSIXRlimit(type=k, soft=s, hard=h) for k, (s, h) in limits.items()]


def _args(config: dict[str, Any]) -> list[str]:
    entrypoint = [a for a in config.get("Entrypoint") or []]
    if entrypoint == [""]:
        entrypoint = []
    args = entrypoint + list(config.get("Cmd") or [])
    if not args:
        raise InvalidArgument("no command specified")
    return args


def _cwd(rootfs: str, wd: str, uid: int, gid: int) -> str:
    """The working directory, created in the rootfs when missing (as Docker does)."""
    _check_workdir(wd)
    cwd = posixpath.normpath(wd) if wd else "/"
    if cwd != "/" and rootfs:
        host = in_root(rootfs, cwd)
        if not os.path.lexists(host):
            os.makedirs(host, 0o755, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(host, uid, gid, follow_symlinks=False)
    return cwd


def _base_process(
    container: Container,
    config: dict[str, Any],
    rootfs: str,
    *,
    user: str,
    env: list[str],
    tty: bool,
    hostname: str,
    default_ulimits: dict[str, tuple[int, int]] | None,
) -> Process:
    """The process fields a container's init and its execs share."""
    hc = container.host_config
    found = lookup_user(rootfs, user, hc.get("GroupAdd") or [])
    return Process(
        terminal=tty,
        user=User(uid=found.uid, gid=found.gid, additional_gids=found.additional_gids),
        env=_process_env(config, env, hostname, tty, found.home),
        capabilities=_capabilities(container_capabilities(hc), found.uid),
        rlimits=_rlimits(hc, default_ulimits),
        no_new_privileges=parse_security_opts(hc.get("SecurityOpt")).no_new_privileges or None,
        oom_score_adj=hc.get("OomScoreAdj") or None,
    )


def build_exec_process(
    container: Container,
    exec_config: ExecConfig,
    rootfs: str,
    *,
    default_ulimits: dict[str, tuple[int, int]] | None = None,
) -> Process:
    """The OCI process of an exec: the container's env, user, caps and rlimits, with the
    exec's command, env, user, working directory and TTY over them."""
    if not exec_config.cmd:
        raise InvalidArgument("no exec command specified")
    config = container.config
    user = exec_config.user or config.get("User") or ""
    proc = _base_process(
        container,
        config,
        rootfs,
        user=user,
        env=list(exec_config.env),
        tty=exec_config.tty,
        hostname=_hostname(container) or os.uname().nodename,
        default_ulimits=default_ulimits,
    )
    proc.args = list(exec_config.cmd)
    if exec_config.privileged:
        proc.capabilities = _capabilities(_all_caps(), proc.user.uid if proc.user else 0)
    wd = exec_config.working_dir or config.get("WorkingDir") or ""
    proc.cwd = _cwd("", wd, 0, 0)
    return proc


# --- mounts -----------------------------------------------------------------------------


def _mount(dest: str, kind: str, source: str, options: list[str]) -> Mount:
    return Mount(destination=dest, type=kind, source=source, options=options)


def _shm_mount(hc: dict[str, Any], namespace_paths: dict[str, str]) -> Mount | None:
    ipc = hc.get("IpcMode") or ""
    if ipc == "none":
        return None
    if ipc == "host":
        return _mount("/dev/shm", "bind", "/dev/shm", ["rbind", "rprivate"])
    if _joins(ipc):
        ns = namespace_paths.get("ipc", "")
        if ns.startswith("/proc/") and ns.endswith("/ns/ipc"):
            root = ns[: -len("/ns/ipc")] + "/root/dev/shm"
            return _mount("/dev/shm", "bind", root, ["rbind", "rprivate"])
    size = hc.get("ShmSize") or D.DEFAULT_SHM_SIZE
    return _mount("/dev/shm", "tmpfs", "shm", [*_NO_EXEC, "mode=1777", f"size={size}"])


def _default_mounts(hc: dict[str, Any], namespace_paths: dict[str, str]) -> list[Mount]:
    privileged = bool(hc.get("Privileged"))
    ro = [] if privileged else ["ro"]
    mounts = [
        _mount("/proc", "proc", "proc", list(_NO_EXEC)),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount("/sys", "sysfs", "sysfs", [*_NO_EXEC, *ro]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", [*_NO_EXEC, "relatime", *ro]),
        _mount("/dev/mqueue", "mqueue", "mqueue", list(_NO_EXEC)),
    ]
    shm = _shm_mount(hc, namespace_paths)
    if shm is not None:
        mounts.append(shm)
    return mounts


def _etc_mounts(container: Container, paths: Paths) -> list[Mount]:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf from the container's directory."""
    cdir = paths.container_dir(container.id)
    opts = ["rbind", "rprivate"]
    if container.host_config.get("ReadonlyRootfs"):
        opts.append("ro")
    return [
        _mount(f"/etc/{name}", "bind", os.path.join(cdir, name), list(opts))
        for name in ("hostname", "hosts", "resolv.conf")
    ]


def _user_mount(spec: MountSpec) -> Mount:
    if spec.type == "tmpfs":
        return _mount(spec.destination, "tmpfs", "tmpfs", list(spec.options))
    options = list(spec.options)
    if "bind" not in options and "rbind" not in options:
        options.insert(0, "rbind")
    return _mount(spec.destination, "bind", spec.source, options)


def _rootfs_propagation(mounts: list[MountSpec]) -> str | None:
    opts = {o for m in mounts for o in m.options}
    if opts & {"shared", "rshared"}:
        return "rshared"
    if opts & {"slave", "rslave"}:
        return "rslave"
    return None


# --- namespaces -------------------------------------------------------------------------


def _namespace(kind: str, mode: str, paths: dict[str, str]) -> LinuxNamespace | None:
    """None for ``host``, a path for ``container:<id>``, else a new namespace."""
    if mode == "host":
        return None
    if _joins(mode):
        path = paths.get(kind)
        if not path:
            raise InvalidArgument(f"{mode}: no {kind} namespace path for the container")
        return LinuxNamespace(type=kind, path=path)
    return LinuxNamespace(type=kind)


def _namespaces(hc: dict[str, Any], paths: dict[str, str]) -> list[LinuxNamespace]:
    net = hc.get("NetworkMode") or ""
    userns = hc.get("UsernsMode") or ""
    if userns not in ("", "host"):
        raise InvalidArgument(f"invalid userns mode {userns!r}: only 'host' is supported")
    wanted = [
        ("pid", hc.get("PidMode") or ""),
        ("ipc", hc.get("IpcMode") or ""),
        ("uts", hc.get("UTSMode") or ""),
        ("mount", ""),
        ("network", net),
        ("cgroup", ""),
    ]
    out = [_namespace(kind, mode, paths) for kind, mode in wanted]
    return [ns for ns in out if ns is not None]


# --- security ---------------------------------------------------------------------------


def _seccomp(hc: dict[str, Any], caps: list[str]) -> LinuxSeccomp | None:
    if hc.get("Privileged"):
        return None
    choice = parse_security_opts(hc.get("SecurityOpt")).seccomp
    if choice == "unconfined":
        return None
    if choice == "default":
        return default_profile()
    return from_docker(choice, caps)


def _hostname(container: Container) -> str | None:
    """The UTS hostname: Config.Hostname, the host's with host networking, else the short ID;
    None without a UTS namespace of the container's own."""
    hc = container.host_config
    if (hc.get("UTSMode") or "") == "host":
        return None
    if container.config.get("Hostname"):
        return str(container.config["Hostname"])
    if (hc.get("NetworkMode") or "") == "host":
        return os.uname().nodename
    return container.short_id


def _linux(
    container: Container, mounts: list[MountSpec], ns_paths: dict[str, str], cgroup_parent: str
) -> Linux:
    """The ``linux`` section: namespaces, devices, cgroup and resources, security."""
    hc = container.host_config
    privileged = bool(hc.get("Privileged"))
    devices, rules = user_devices(hc)
    if privileged:
        devices = [dev for _, dev in host_devices("/dev")] + devices
        rules = [LinuxDeviceCgroup(allow=True, access="rwm")]
    else:
        rules = [LinuxDeviceCgroup(allow=False, access="rwm"), *rules]
    return Linux(
        namespaces=_namespaces(hc, ns_paths),
        devices=devices,
        cgroups_path=f"{cgroup_parent.rstrip('/')}/{container.id}",
        resources=resources(hc, rules),
        rootfs_propagation=_rootfs_propagation(mounts),
        seccomp=_seccomp(hc, container_capabilities(hc)),
        sysctl={str(k): str(v) for k, v in (hc.get("Sysctls") or {}).items()},
        masked_paths=_paths(hc, "MaskedPaths", D.MASKED_PATHS, privileged),
        readonly_paths=_paths(hc, "ReadonlyPaths", D.READONLY_PATHS, privileged),
    )


def build_spec(
    container: Container,
    image_config: dict[str, Any],
    rootfs: str,
    mounts: list[MountSpec],
    *,
    paths: Paths,
    cgroup_parent: str = "/portside",
    init_path: str | None = "/usr/bin/tini-static",
    namespace_paths: dict[str, str] | None = None,
    default_ulimits: dict[str, tuple[int, int]] | None = None,
) -> Spec:
    """The OCI runtime spec of ``container`` (its root at ``rootfs``, already mounted)."""
    config = merge_image_config(container.config, image_config)
    hc = container.host_config
    ns_paths = namespace_paths or {}
    _check_sysctls(hc)
    proc = _base_process(
        container,
        config,
        rootfs,
        user=config.get("User") or "",
        env=[],
        tty=container.tty,
        hostname=_hostname(container) or os.uname().nodename,
        default_ulimits=default_ulimits,
    )
    proc.args = _args(config)
    assert proc.user is not None
    proc.cwd = _cwd(rootfs, config.get("WorkingDir") or "", proc.user.uid, proc.user.gid)
    spec_mounts = _default_mounts(hc, ns_paths) + _etc_mounts(container, paths)
    if hc.get("Init"):
        if not init_path:
            raise InvalidArgument("--init: no init binary is configured")
        spec_mounts.append(
            _mount(D.INIT_PATH_IN_CONTAINER, "bind", init_path, ["bind", "ro", "rprivate"])
        )
        proc.args = [D.INIT_PATH_IN_CONTAINER, "--", *proc.args]
    user_dests = {m.destination.rstrip("/") or "/" for m in mounts}
    spec_mounts = [m for m in spec_mounts if m.destination not in user_dests]
    spec_mounts.extend(_user_mount(m) for m in mounts)
    linux = _linux(container, mounts, ns_paths, cgroup_parent)
    return Spec(
        oci_version=OCI_VERSION,
        process=proc,
        root=Root(path=rootfs, readonly=bool(hc.get("ReadonlyRootfs"))),
        hostname=_hostname(container),
        domainname=config.get("Domainname") or None,
        mounts=spec_mounts,
        linux=linux,
    )


def _paths(hc: dict[str, Any], key: str, default: tuple[str, ...], privileged: bool) -> list[str]:
    """Masked or read-only paths: none when privileged, HostConfig's when given."""
    if privileged:
        return []
    given = hc.get(key)
    return list(default) if given is None else [str(p) for p in given]
