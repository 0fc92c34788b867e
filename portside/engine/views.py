"""Docker's JSON shapes of containers: inspect, the ps summary and its filters,
``docker diff``, and small stream helpers the engine hands to the API."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from portside.engine.model import Container, Paths
from portside.errors import InvalidArgument, PortsideError
from portside.text import is_number

__all__ = ["host_config_defaults", "human_duration", "inspect", "select", "status_text", "summary"]

_FILTERS = {
    "id",
    "name",
    "label",
    "status",
    "exited",
    "ancestor",
    "before",
    "since",
    "volume",
    "health",
    "is-task",
    "network",
    "publish",
    "expose",
    "isolation",
}
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def host_config_defaults(
    host_config: dict[str, Any] | None, default_network: str = "bridge"
) -> dict[str, Any]:
    """HostConfig with the defaults Docker fills in (as inspect shows them); the network
    mode "" or "default" is ``default_network`` (the default bridge, or "none" without one)."""
    hc = dict(host_config or {})
    if not hc.get("NetworkMode") or hc["NetworkMode"] == "default":
        hc["NetworkMode"] = default_network
    if not hc.get("LogConfig") or not (hc["LogConfig"] or {}).get("Type"):
        hc["LogConfig"] = {
            "Type": "json-file",
            "Config": (hc.get("LogConfig") or {}).get("Config") or {},
        }
    if not hc.get("RestartPolicy") or not hc["RestartPolicy"].get("Name"):
        hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    for key, value in (
        ("Binds", None),
        ("AutoRemove", False),
        ("Privileged", False),
        ("ReadonlyRootfs", False),
        ("CapAdd", None),
        ("CapDrop", None),
        ("PortBindings", {}),
        ("Dns", []),
        ("DnsOptions", []),
        ("DnsSearch", []),
        ("ExtraHosts", None),
        ("IpcMode", "private"),
        ("PidMode", ""),
        ("UTSMode", ""),
        ("UsernsMode", ""),
        ("ShmSize", 67108864),
        ("Runtime", "runc"),
        ("Isolation", ""),
        ("Memory", 0),
        ("NanoCpus", 0),
        ("CpuShares", 0),
    ):
        hc.setdefault(key, value)
    return hc


def _command(c: Container) -> list[str]:
    return [*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])]


_EMPTY_ENDPOINT: dict[str, Any] = {
    "IPAMConfig": None,
    "Links": None,
    "Aliases": None,
    "MacAddress": "",
    "DriverOpts": None,
    "NetworkID": "",
    "EndpointID": "",
    "Gateway": "",
    "IPAddress": "",
    "IPPrefixLen": 0,
    "IPv6Gateway": "",
    "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0,
    "DNSNames": None,
}


def _networks(c: Container) -> dict[str, Any]:
    """NetworkSettings.Networks; a container recorded before networks were (no
    endpoints) shows its mode's network, empty."""
    from portside.engine.endpoints import public

    if not c.networks:
        mode = str(c.host_config.get("NetworkMode") or "")
        if not mode or mode.startswith("container:"):
            return {}
        return {mode: dict(_EMPTY_ENDPOINT)}
    return {name: public(c, ep) for name, ep in c.networks.items()}


def _network_settings(c: Container) -> dict[str, Any]:
    """Docker's NetworkSettings: the endpoints by network, the published ports while
    running, and the legacy top-level fields from the default ``bridge`` network's."""
    running = c.state.status in ("running", "paused")
    own_netns = running and not str(c.host_config.get("NetworkMode") or "").startswith(
        ("container:", "host")
    )
    legacy = c.networks.get("bridge") or {}
    return {
        "Bridge": "",
        "SandboxID": c.id if own_netns else "",
        "SandboxKey": f"/proc/{c.state.pid}/ns/net" if own_netns and c.state.pid else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": {k: (list(v) if v else None) for k, v in c.ports.items()} if running else {},
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": legacy.get("EndpointID", ""),
        "Gateway": legacy.get("Gateway", ""),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": legacy.get("IPAddress", ""),
        "IPPrefixLen": legacy.get("IPPrefixLen", 0),
        "IPv6Gateway": "",
        "MacAddress": legacy.get("MacAddress", ""),
        "Networks": _networks(c),
    }


def _graph_driver(c: Container, paths: Paths, snapshotter: Any) -> dict[str, Any]:
    data: dict[str, str] = {"MergedDir": paths.rootfs(c.id)}
    try:
        mounts = snapshotter.mounts(c.id)
    except PortsideError:
        mounts = []
    for m in mounts:
        opts = dict(o.split("=", 1) for o in m.options if "=" in o)
        if m.type == "overlay":
            data.update(
                LowerDir=opts.get("lowerdir", ""),
                UpperDir=opts.get("upperdir", ""),
                WorkDir=opts.get("workdir", ""),
            )
        else:
            data["UpperDir"] = m.source
    return {"Data": data, "Name": c.driver}


def rw_size(snapshotter: Any, cid: str) -> int:
    try:
        return int(snapshotter.usage(cid)[0])
    except (PortsideError, OSError):
        return 0


def inspect(
    c: Container, paths: Paths, snapshotter: Any, *, size: bool, image_size: Callable[[str], int]
) -> dict[str, Any]:
    """Docker's ``docker inspect`` document of ``c``."""
    cmd = _command(c)
    directory = paths.container_dir(c.id)
    out: dict[str, Any] = {
        "Id": c.id,
        "Created": c.created,
        "Path": cmd[0] if cmd else "",
        "Args": cmd[1:],
        "State": c.state.to_docker(),
        "Image": c.image_id,
        "ResolvConfPath": os.path.join(directory, "resolv.conf"),
        "HostnamePath": os.path.join(directory, "hostname"),
        "HostsPath": os.path.join(directory, "hosts"),
        "LogPath": paths.log_path(c.id),
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": c.driver,
        "Platform": c.platform,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": list(c.exec_ids) or None,
        "HostConfig": c.host_config,
        "GraphDriver": _graph_driver(c, paths, snapshotter),
        "Mounts": c.mounts,
        "Config": c.config,
        "NetworkSettings": _network_settings(c),
    }
    if size:
        rw = rw_size(snapshotter, c.id)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + image_size(c.image_id)
    return out


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration, as ``docker ps`` prints it."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes, hours = s // 60, s // 3600
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _since(text: str, now: float) -> float:
    from portside.engine.lifecycle import _parse_time

    return max(0.0, now - _parse_time(text))


def status_text(c: Container, now: float | None = None) -> str:
    """The Status column of ``docker ps``."""
    now = time.time() if now is None else now
    st = c.state
    if st.status in ("running", "paused"):
        text = "Up " + human_duration(_since(st.started_at, now))
        if st.status == "paused":
            return text + " (Paused)"
        health = (st.health or {}).get("Status")
        if health == "starting":
            return text + " (health: starting)"
        return text + (f" ({health})" if health else "")
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) {human_duration(_since(st.finished_at, now))} ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    if st.status == "exited" and not st.finished_at.startswith("0001"):
        return f"Exited ({st.exit_code}) {human_duration(_since(st.finished_at, now))} ago"
    return "Created"


def summary(
    c: Container, snapshotter: Any, *, size: bool, image_size: Callable[[str], int]
) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    from portside.engine.lifecycle import _parse_time

    out: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": " ".join(_command(c)),
        "Created": int(_parse_time(c.created)),
        "Ports": _summary_ports(c),
        "Labels": dict(c.config.get("Labels") or {}),
        "State": c.state.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode") or "none"},
        "NetworkSettings": {"Networks": _networks(c)},
        "Mounts": c.mounts,
    }
    if size:
        rw = rw_size(snapshotter, c.id)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + image_size(c.image_id)
    return out


def _summary_ports(c: Container) -> list[dict[str, Any]]:
    if c.state.status not in ("running", "paused") or not c.ports:
        return []
    from portside.engine.ports import summary_ports

    return summary_ports(c.ports)


def _on_network(c: Container, ref: str) -> bool:
    """The ``network`` filter: a network name or (a prefix of) its ID."""
    return any(
        ref == name or (ref and str(ep.get("NetworkID") or "").startswith(ref))
        for name, ep in c.networks.items()
    ) or ref == (c.host_config.get("NetworkMode") or "")


def _labels_match(labels: dict[str, str], wanted: Iterable[str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _check_filters(filters: dict[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in _FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "status":
            for v in values:
                if v not in _STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={v}'")
        if key == "exited":
            for v in values:
                if not is_number(v.lstrip("-")):
                    raise InvalidArgument(f"invalid filter 'exited={v}'")


def _match(c: Container, filters: dict[str, list[str]], ctx: dict[str, Any]) -> bool:
    checks: list[tuple[str, Callable[[str], bool]]] = [
        ("id", c.id.startswith),
        ("name", lambda v: re.search(v.lstrip("/"), c.name) is not None),
        ("status", lambda v: c.state.status == v),
        ("exited", lambda v: c.state.status == "exited" and c.state.exit_code == int(v)),
        ("ancestor", lambda v: c.image == v or c.image_id == ctx["ancestors"].get(v)),
        (
            "volume",
            lambda v: any(
                v in (m.get("Name"), m.get("Destination"), m.get("Source")) for m in c.mounts
            ),
        ),
        ("health", lambda v: ((c.state.health or {}).get("Status") or "none") == v),
        ("network", lambda v: _on_network(c, v)),
    ]
    for key, test in checks:
        values = filters.get(key)
        if values and not any(test(v) for v in values):
            return False
    if filters.get("label") and not _labels_match(c.config.get("Labels") or {}, filters["label"]):
        return False
    if "before" in ctx and c.created >= ctx["before"]:
        return False
    return not ("since" in ctx and c.created <= ctx["since"])


def select(
    containers: list[Container],
    *,
    all: bool,
    limit: int,
    filters: dict[str, list[str]],
    resolve: Callable[[str], Container],
    image_id: Callable[[str], str | None],
) -> list[Container]:
    """The containers ``docker ps`` shows, newest first."""
    _check_filters(filters)
    ctx: dict[str, Any] = {"ancestors": {v: image_id(v) for v in filters.get("ancestor", [])}}
    for key in ("before", "since"):
        for ref in filters.get(key, []):
            ctx[key] = resolve(ref).created
    if limit > 0 or "before" in ctx or "since" in ctx or filters.get("status"):
        all = True
    if filters.get("exited"):
        all = True
    out = [
        c
        for c in sorted(containers, key=lambda c: c.created, reverse=True)
        if (all or c.state.status in ("running", "paused", "restarting"))
        and _match(c, filters, ctx)
    ]
    return out[:limit] if limit > 0 else out


def prunable(containers: list[Container], filters: dict[str, list[str]]) -> list[Container]:
    """Stopped containers matching prune filters (label, label!, until)."""
    from portside.engine.lifecycle import _parse_time

    out = []
    for c in containers:
        labels = c.config.get("Labels") or {}
        if filters.get("label") and not _labels_match(labels, filters["label"]):
            continue
        if filters.get("label!") and _labels_match(labels, filters["label!"]):
            continue
        until = filters.get("until")
        if until and _parse_time(c.created) >= _until(until[0]):
            continue
        out.append(c)
    return out


def prunable_labels_until(labels: dict[str, str], created: str, filters: dict) -> bool:
    """Whether an object with ``labels``, created at ``created``, passes prune filters
    (label, label!, until)."""
    from portside.engine.lifecycle import _parse_time

    if filters.get("label") and not _labels_match(labels, filters["label"]):
        return False
    if filters.get("label!") and _labels_match(labels, filters["label!"]):
        return False
    until = filters.get("until")
    return not (until and _parse_time(created) >= _until(until[0]))


def _until(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if value and value[-1] in units and is_number(value[:-1]):
        return time.time() - int(value[:-1]) * units[value[-1]]
    from portside.engine.lifecycle import _parse_time

    return _parse_time(value)


_KINDS = {"C": 0, "A": 1, "D": 2}


ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def changes(snapshotter: Any, cid: str, hidden: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``docker diff``: [{"Path", "Kind": 0 modified, 1 added, 2 deleted}]. Mount points
    the runtime made (``hidden``: /etc files, volume destinations) are left out, as
    Docker's init layer hides them, with the parents they alone changed."""
    from portside.image.diff import changes as diff_changes
    from portside.image.diff import split_mounts

    mounts = snapshotter.mounts(cid)
    lowers, upper = split_mounts(mounts)
    if mounts[0].type == "overlay":
        found = diff_changes(lowers, upper, mode="overlay")
    else:
        parent = snapshotter.stat(cid).parent
        view = f"diff-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            below = snapshotter.view(view, parent=parent) if parent else []
            found = diff_changes(below, upper, mode="tree")
        finally:
            if parent:
                snapshotter.remove(view)
    hide = {p.rstrip("/") for p in hidden if p.rstrip("/")}
    kept = [ch for ch in found if ch.path not in hide]
    parents = {os.path.dirname(p) for p in hide}
    out = []
    for ch in kept:
        below = ch.path + "/"
        if (
            ch.kind == "C"
            and ch.path in parents
            and not any(o.path.startswith(below) for o in kept)
        ):
            continue  # changed only by a hidden mount point
        out.append({"Path": ch.path, "Kind": _KINDS[ch.kind]})
    return out


def pipe_stream(write: Callable[[BinaryIO], Any], chunk: int = 65536) -> Iterator[bytes]:
    """Run ``write(out)`` in a thread; yield what it writes. Its error is raised at the end."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with open(w, "wb") as out:
                write(out)
        except BrokenPipeError:
            pass
        except (OSError, PortsideError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with open(r, "rb", buffering=0) as src:
            while data := src.read(chunk):
                yield data
    finally:
        thread.join(timeout=5)
    if errors:
        raise errors[0]


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def replay_then_relay(
    chunks: Iterator[tuple[int, bytes]], live: socket.socket | None, tty: bool
) -> socket.socket:
    """A socket that first gives the logs (framed without a TTY), then relays ``live``
    both ways until either side closes."""
    ours, theirs = socket.socketpair()

    def pump() -> None:
        try:
            for stream, data in chunks:
                ours.sendall(data if tty else frame(stream, data))
            if live is not None:
                _relay(ours, live)
        except OSError:
            pass
        finally:
            ours.close()
            if live is not None:
                live.close()

    threading.Thread(target=pump, daemon=True).start()
    return theirs


def _relay(a: socket.socket, b: socket.socket) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(65536)
                if not data:
                    if src is a:
                        b.shutdown(socket.SHUT_WR)
                        sel.unregister(a)
                        continue
                    return
                key.data.sendall(data)
    finally:
        sel.close()
