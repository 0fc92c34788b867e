"""``run``/``create`` flags → the body of POST /containers/create (Docker's
Config + HostConfig + NetworkingConfig), as docker's ``cli/command/container/opts.go``."""

from __future__ import annotations

import os

from portside.cli.flags import (
    FlagError,
    Opt,
    parse_duration,
    parse_env,
    parse_env_file,
    parse_key_value,
    parse_memswap,
    parse_nanocpus,
    parse_restart_policy,
    parse_size,
    parse_ulimit,
)
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.cli.flags import Parsed

__all__ = ["CREATE_OPTS", "RUN_OPTS", "build_create_body", "parse_mount", "parse_port_specs"]


def _duration_ns(text: str) -> int:
    return parse_duration(text)


CREATE_OPTS = [
    Opt("a|attach", "list", "Attach to STDIN, STDOUT or STDERR"),
    Opt("add-host", "list", "Add a custom host-to-IP mapping (host:ip)"),
    Opt("blkio-weight", "int", "Block IO (relative weight), between 10 and 1000, or 0 to disable"),
    Opt("cap-add", "list", "Add Linux capabilities"),
    Opt("cap-drop", "list", "Drop Linux capabilities"),
    Opt("cgroup-parent", "str", "Optional parent cgroup for the container"),
    Opt("cidfile", "str", "Write the container ID to the file"),
    Opt("cpu-period", "int", "Limit CPU CFS (Completely Fair Scheduler) period"),
    Opt("cpu-quota", "int", "Limit CPU CFS (Completely Fair Scheduler) quota"),
    Opt("c|cpu-shares", "int", "CPU shares (relative weight)"),
    Opt("cpus", parse_nanocpus, "Number of CPUs"),
    Opt("cpuset-cpus", "str", "CPUs in which to allow execution (0-3, 0,1)"),
    Opt("cpuset-mems", "str", "MEMs in which to allow execution (0-3, 0,1)"),
    Opt("device", "list", "Add a host device to the container"),
    Opt("dns", "list", "Set custom DNS servers"),
    Opt("dns-option", "list", "Set DNS options"),
    Opt("dns-search", "list", "Set custom DNS search domains"),
    Opt("domainname", "str", "Container NIS domain name"),
    Opt("entrypoint", "str", "Overwrite the default ENTRYPOINT of the image"),
    Opt("e|env", parse_env, "Set environment variables", default=[]),
    Opt("env-file", "list", "Read in a file of environment variables"),
    Opt("expose", "list", "Expose a port or a range of ports"),
    Opt("group-add", "list", "Add additional groups to join"),
    Opt("health-cmd", "str", "Command to run to check health"),
    Opt("health-interval", _duration_ns, "Time between running the check (ms|s|m|h) (default 0s)"),
    Opt("health-retries", "int", "Consecutive failures needed to report unhealthy"),
    Opt("health-start-period", _duration_ns, "Start period for the container to initialize"),
    Opt("health-start-interval", _duration_ns, "Time between checks during the start period"),
    Opt("health-timeout", _duration_ns, "Maximum time to allow one check to run (ms|s|m|h)"),
    Opt("h|hostname", "str", "Container host name"),
    Opt("init", "bool", "Run an init inside the container that forwards signals and reaps"),
    Opt("i|interactive", "bool", "Keep STDIN open even if not attached"),
    Opt("ip", "str", "IPv4 address (e.g., 172.30.100.104)"),
    Opt("ipc", "str", "IPC mode to use"),
    Opt("l|label", "list", "Set meta data on a container"),
    Opt("label-file", "list", "Read in a line delimited file of labels"),
    Opt("log-driver", "str", "Logging driver for the container"),
    Opt("log-opt", parse_key_value, "Log driver options", default=[]),
    Opt("mac-address", "str", "Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Opt("m|memory", parse_size, "Memory limit"),
    Opt("memory-reservation", parse_size, "Memory soft limit"),
    Opt("memory-swap", parse_memswap, "Swap limit equal to memory plus swap: -1 for unlimited"),
    Opt("memory-swappiness", "int", "Tune container memory swappiness (0 to 100)", default=-1),
    Opt("mount", "list", "Attach a filesystem mount to the container"),
    Opt("name", "str", "Assign a name to the container"),
    Opt("network", "str", "Connect a container to a network"),
    Opt("net", "str", "Connect a container to a network"),
    Opt("network-alias", "list", "Add network-scoped alias for the container"),
    Opt("net-alias", "list", "Add network-scoped alias for the container"),
    Opt("no-healthcheck", "bool", "Disable any container-specified HEALTHCHECK"),
    Opt("oom-kill-disable", "bool", "Disable OOM Killer"),
    Opt("oom-score-adj", "int", "Tune host's OOM preferences (-1000 to 1000)"),
    Opt("pid", "str", "PID namespace to use"),
    Opt("pids-limit", "int", "Tune container pids limit (set -1 for unlimited)"),
    Opt("platform", "str", "Set platform if server is multi-platform capable"),
    Opt("privileged", "bool", "Give extended privileges to this container"),
    Opt("p|publish", "list", "Publish a container's port(s) to the host"),
    Opt("P|publish-all", "bool", "Publish all exposed ports to random ports"),
    Opt("pull", "str", 'Pull image before creating ("always", "missing", "never")'),
    Opt("q|quiet", "bool", "Suppress the pull output"),
    Opt("read-only", "bool", "Mount the container's root filesystem as read only"),
    Opt("restart", parse_restart_policy, "Restart policy to apply when a container exits"),
    Opt("rm", "bool", "Automatically remove the container when it exits"),
    Opt("runtime", "str", "Runtime to use for this container"),
    Opt("security-opt", "list", "Security Options"),
    Opt("shm-size", parse_size, "Size of /dev/shm"),
    Opt("stop-signal", "str", "Signal to stop the container"),
    Opt("stop-timeout", "int", "Timeout (in seconds) to stop a container"),
    Opt("storage-opt", "list", "Storage driver options for the container"),
    Opt("sysctl", parse_key_value, "Sysctl options", default=[]),
    Opt("tmpfs", "list", "Mount a tmpfs directory"),
    Opt("t|tty", "bool", "Allocate a pseudo-TTY"),
    Opt("ulimit", parse_ulimit, "Ulimit options", default=[]),
    Opt("u|user", "str", "Username or UID (format: <name|uid>[:<group|gid>])"),
    Opt("userns", "str", "User namespace to use"),
    Opt("uts", "str", "UTS namespace to use"),
    Opt("v|volume", "list", "Bind mount a volume"),
    Opt("volume-driver", "str", "Optional volume driver for the container"),
    Opt("volumes-from", "list", "Mount volumes from the specified container(s)"),
    Opt("w|workdir", "str", "Working directory inside the container"),
]

RUN_OPTS = [
    *CREATE_OPTS,
    Opt("d|detach", "bool", "Run container in background and print container ID"),
    Opt("detach-keys", "str", "Override the key sequence for detaching a container"),
    Opt("sig-proxy", "bool", "Proxy received signals to the process", default=True),
]


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError as exc:
        raise FlagError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def _kv_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _bad(flag: str, raw: str, message: str) -> FlagError:
    return FlagError(f'invalid argument "{raw}" for "{flag}" flag: {message}')


def parse_mount(text: str) -> dict:
    """``--mount type=bind,source=/a,target=/b,readonly`` → a Docker Mount."""
    import csv

    fields = next(csv.reader([text]), [])
    mount: dict = {"Type": "volume"}
    bind: dict = {}
    volume: dict = {}
    tmpfs: dict = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _flag_bool(key, value, eq)
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _flag_bool(key, value, eq)
        elif key == "volume-nocopy":
            volume["NoCopy"] = _flag_bool(key, value, eq)
        elif key == "volume-label":
            name, _, val = value.partition("=")
            volume.setdefault("Labels", {})[name] = val
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            name, _, val = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[name] = val
        elif key == "volume-subpath":
            volume["Subpath"] = value
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = parse_size(value)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if mount["Type"] not in ("bind", "volume", "tmpfs", "npipe", "cluster", "image"):
        raise ValueError(f"invalid mount type: {mount['Type']!r}")
    if not mount.get("Target"):
        raise ValueError("target is required")
    if bind:
        mount["BindOptions"] = bind
    if volume:
        mount["VolumeOptions"] = volume
    if tmpfs:
        mount["TmpfsOptions"] = tmpfs
    return mount


def _flag_bool(key: str, value: str, eq: str) -> bool:
    if not eq:
        return True
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_device(text: str) -> dict:
    """``/dev/sda:/dev/xvda:rwm`` → {PathOnHost, PathInContainer, CgroupPermissions}."""
    parts = text.split(":")
    perms = "rwm"
    if len(parts) == 3:
        src, dst, perms = parts
    elif len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm"):
            src, dst, perms = parts[0], parts[0], parts[1]
        else:
            src, dst = parts
    elif len(parts) == 1:
        src = dst = parts[0]
    else:
        raise ValueError(f"invalid device specification: {text}")
    if not perms or not set(perms) <= set("rwm"):
        raise ValueError(f"invalid device mode: {perms}")
    if not dst.startswith("/"):
        raise ValueError(f"{dst} is not an absolute path")
    return {"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms}


def parse_port_specs(specs: list[str]) -> tuple[dict, dict]:
    """``-p [ip:][hostPort:]containerPort[/proto]`` → (ExposedPorts, PortBindings)."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        proto = proto or "tcp"
        ip = ""
        if rest.startswith("["):
            end = rest.find("]")
            ip, rest = rest[1:end], rest[end + 2 :]
        parts = rest.split(":")
        if len(parts) == 3:
            ip = ip or parts[0]
            host, container = parts[1], parts[2]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 1:
            host, container = "", parts[0]
        else:
            raise ValueError(f"invalid port format for -p: {spec}")
        if not container:
            raise ValueError(f"no port specified: {spec}<empty>")
        start, _, end = container.partition("-")
        if not is_number(start) or (end and not is_number(end)):
            raise ValueError(f"invalid containerPort: {container}")
        hstart, _, hend = host.partition("-")
        for offset, port in enumerate(range(int(start), int(end or start) + 1)):
            key = f"{port}/{proto}"
            exposed[key] = {}
            hport = str(int(hstart) + offset) if hstart and hend else host
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hport})
    return exposed, bindings


def _security_opts(items: list[str]) -> list[str]:
    out = []
    for opt in items:
        key, eq, value = opt.partition("=")
        if not eq and opt != "no-new-privileges":
            if ":" not in opt:
                raise FlagError(f'Invalid --security-opt: "{opt}"')
            key, _, value = opt.partition(":")
        if key == "seccomp" and value not in ("unconfined", "builtin", ""):
            import json  # only here: it costs every run ~8 ms of imports

            try:
                with open(value, "rb") as handle:
                    profile = json.loads(handle.read())
            except (OSError, ValueError) as exc:
                raise FlagError(f"opening seccomp profile ({value}) failed: {exc}") from None
            out.append("seccomp=" + json.dumps(profile, separators=(",", ":")))
            continue
        out.append(opt)
    return out


def _healthcheck(p: Parsed) -> dict | None:
    given = {
        "health_cmd",
        "health_interval",
        "health_timeout",
        "health_retries",
        "health_start_period",
        "health_start_interval",
    } & p.changed
    if p.no_healthcheck:
        if given:
            raise FlagError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    for dest, flag in (
        ("health_interval", "--health-interval"),
        ("health_timeout", "--health-timeout"),
        ("health_start_period", "--health-start-period"),
        ("health_start_interval", "--health-start-interval"),
    ):
        if (p.values.get(dest) or 0) < 0:
            raise FlagError(f"{flag} cannot be negative")
    if (p.health_retries or 0) < 0:
        raise FlagError("--health-retries cannot be negative")
    health: dict = {
        "Interval": p.health_interval or 0,
        "Timeout": p.health_timeout or 0,
        "StartPeriod": p.health_start_period or 0,
        "StartInterval": p.health_start_interval or 0,
        "Retries": p.health_retries or 0,
    }
    if p.health_cmd:
        health["Test"] = ["CMD-SHELL", p.health_cmd]
    return health


def _binds_and_volumes(items: list[str]) -> tuple[list[str], dict[str, dict]]:
    binds: list[str] = []
    volumes: dict[str, dict] = {}
    for item in items:
        host, sep, rest = item.partition(":")
        if sep and rest and rest != "/" and not (len(host) == 1 and host.isalpha()):
            if host.startswith(".") and not os.path.isabs(host):
                host = os.path.abspath(host)
            binds.append(f"{host}:{rest}")
        elif sep and rest and rest != "/":
            binds.append(item)
        else:
            volumes[item] = {}
    return binds, volumes


def _converted(p: Parsed, dest: str, flag: str, func: object) -> list:
    out = []
    for raw in p.values.get(dest) or []:
        try:
            out.append(func(raw))  # type: ignore[operator]
        except ValueError as exc:
            raise _bad(flag, raw, str(exc)) from None
    return out


def _env(p: Parsed) -> list[str]:
    env: list[str] = []
    for path in p.env_file:
        try:
            env.extend(parse_env_file(path))
        except ValueError as exc:
            raise FlagError(str(exc)) from None
    env.extend(p.env)
    return env


def _labels(p: Parsed) -> dict[str, str]:
    lines: list[str] = []
    for path in p.label_file:
        lines.extend(
            line for line in _read_lines(path) if line.strip() and not line.startswith("#")
        )
    lines.extend(p.label)
    return _kv_map(lines)


def _config(p: Parsed, image: str, cmd: list[str], detach: bool) -> dict:
    attach = {name.lower() for name in p.attach}
    for name in attach:
        if name not in ("stdin", "stdout", "stderr"):
            raise FlagError(
                f'invalid argument {name!r} for "-a, --attach" flag: valid streams '
                "are STDIN, STDOUT and STDERR"
            )
    config: dict = {
        "Hostname": p.hostname or "",
        "Domainname": p.domainname or "",
        "User": p.user or "",
        "AttachStdin": "stdin" in attach or bool(p.interactive),
        "AttachStdout": "stdout" in attach or not attach,
        "AttachStderr": "stderr" in attach or not attach,
        "Tty": bool(p.tty),
        "OpenStdin": bool(p.interactive),
        "StdinOnce": False,
        "Env": _env(p),
        "Cmd": cmd or None,
        "Image": image,
        "Volumes": None,
        "WorkingDir": p.workdir or "",
        "Entrypoint": None,
        "Labels": _labels(p),
    }
    if config["OpenStdin"] and config["AttachStdin"]:
        config["StdinOnce"] = True
    if detach:
        config.update(AttachStdin=False, AttachStdout=False, AttachStderr=False, StdinOnce=False)
    if "entrypoint" in p.changed:
        config["Entrypoint"] = [p.entrypoint] if p.entrypoint else [""]
    if p.stop_signal:
        config["StopSignal"] = p.stop_signal
    if "stop_timeout" in p.changed:
        config["StopTimeout"] = p.stop_timeout
    if p.mac_address:
        config["MacAddress"] = p.mac_address
    health = _healthcheck(p)
    if health is not None:
        config["Healthcheck"] = health
    return config


def _resources(p: Parsed) -> dict:
    res: dict = {
        "Memory": p.memory or 0,
        "MemoryReservation": p.memory_reservation or 0,
        "MemorySwap": p.memory_swap or 0,
        "NanoCpus": p.cpus or 0,
        "CpuShares": p.cpu_shares or 0,
        "CpuPeriod": p.cpu_period or 0,
        "CpuQuota": p.cpu_quota or 0,
        "CpusetCpus": p.cpuset_cpus or "",
        "CpusetMems": p.cpuset_mems or "",
        "BlkioWeight": p.blkio_weight or 0,
        "OomKillDisable": bool(p.oom_kill_disable),
        "Ulimits": p.ulimit or None,
        "Devices": _converted(p, "device", "--device", parse_device),
        "CgroupParent": p.cgroup_parent or "",
    }
    if p.memory_swappiness != -1:
        res["MemorySwappiness"] = p.memory_swappiness
    if "pids_limit" in p.changed:
        res["PidsLimit"] = p.pids_limit
    return res


def _host_config(p: Parsed, config: dict) -> dict:
    binds, volumes = _binds_and_volumes(p.volume)
    if volumes:
        config["Volumes"] = volumes
    exposed, bindings = _port_config(p)
    if exposed:
        config["ExposedPorts"] = exposed
    tmpfs: dict[str, str] = {}
    for item in p.tmpfs:
        path, _, options = item.partition(":")
        tmpfs[path] = options
    restart = p.restart or {"Name": "no", "MaximumRetryCount": 0}
    host: dict = {
        "Binds": binds or None,
        "ContainerIDFile": p.cidfile or "",
        "LogConfig": {"Type": p.log_driver or "", "Config": _kv_map(p.log_opt)},
        "NetworkMode": p.network or p.net or "",
        "PortBindings": bindings or {},
        "RestartPolicy": restart,
        "AutoRemove": bool(p.rm),
        "VolumeDriver": p.volume_driver or "",
        "VolumesFrom": p.volumes_from or None,
        "Mounts": _converted(p, "mount", "--mount", parse_mount) or None,
        "CapAdd": p.cap_add or None,
        "CapDrop": p.cap_drop or None,
        "Dns": p.dns or [],
        "DnsOptions": p.dns_option or [],
        "DnsSearch": p.dns_search or [],
        "ExtraHosts": [_extra_host(h) for h in p.add_host] or None,
        "GroupAdd": p.group_add or None,
        "IpcMode": p.ipc or "",
        "PidMode": p.pid or "",
        "UTSMode": p.uts or "",
        "UsernsMode": p.userns or "",
        "Privileged": bool(p.privileged),
        "PublishAllPorts": bool(p.publish_all),
        "ReadonlyRootfs": bool(p.read_only),
        "SecurityOpt": _security_opts(p.security_opt) or None,
        "StorageOpt": _kv_map(p.storage_opt) or None,
        "Tmpfs": tmpfs or None,
        "ShmSize": p.shm_size or 0,
        "Sysctls": _kv_map(p.sysctl) or None,
        "OomScoreAdj": p.oom_score_adj or 0,
        "Runtime": p.runtime or "",
    }
    if "init" in p.changed:
        host["Init"] = bool(p.init)
    host.update(_resources(p))
    if p.rm and restart["Name"] not in ("", "no"):
        raise FlagError("conflicting options: cannot specify both --restart and --rm")
    return host


def _extra_host(item: str) -> str:
    name, eq, ip = item.partition("=")
    if not eq:
        name, colon, ip = item.partition(":")
        if not colon:
            raise FlagError(f'invalid argument "{item}" for "--add-host" flag: bad format')
    return f"{name}:{ip}"


def _port_config(p: Parsed) -> tuple[dict, dict]:
    try:
        exposed, bindings = parse_port_specs(p.publish)
    except ValueError as exc:
        raise FlagError(str(exc)) from None
    for item in p.expose:
        port, _, proto = item.partition("/")
        start, _, end = port.partition("-")
        if not is_number(start) or (end and not is_number(end)):
            raise FlagError(f"invalid range format for --expose: {item}")
        for number in range(int(start), int(end or start) + 1):
            exposed[f"{number}/{proto or 'tcp'}"] = {}
    return exposed, bindings


def build_create_body(p: Parsed, *, detach: bool = False) -> tuple[dict, str | None]:
    """The create body and the name from parsed run/create flags (``p.args`` =
    IMAGE [COMMAND] [ARG...])."""
    if detach and p.attach:
        raise FlagError("Conflicting options: -a and -d")
    image, cmd = p.args[0], p.args[1:]
    config = _config(p, image, cmd, detach)
    host = _host_config(p, config)
    body = dict(config)
    body["HostConfig"] = host
    body["NetworkingConfig"] = {"EndpointsConfig": _endpoints(p, host["NetworkMode"])}
    return body, p.name or None


def _endpoints(p: Parsed, network: str) -> dict:
    """NetworkingConfig.EndpointsConfig: the network's entry with --ip, --network-alias
    and --mac-address (docker sends them there; the daemon refuses them where they do
    not apply)."""
    endpoint: dict = {}
    if p.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": p.ip}
    aliases = [*p.network_alias, *p.net_alias]
    if aliases:
        endpoint["Aliases"] = aliases
    if p.mac_address:
        endpoint["MacAddress"] = p.mac_address
    if not network:
        if endpoint:
            return {"default": endpoint}
        return {}
    return {network: endpoint}
