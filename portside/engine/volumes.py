"""Local volumes, and turning a container's Binds/Mounts/Tmpfs/Volumes into mounts.

:class:`VolumeStore` is Docker's ``local`` volume driver: ``<root>/<name>/_data`` holds
the data, ``<root>/<name>/meta.json`` the driver, labels, options and creation time. A
volume appears and disappears by one ``rename`` (made in ``.tmp-*``, removed through
``.trash-*``), so a crash never leaves a half-made one; leftovers are swept at start.

:func:`resolve_mounts` parses ``HostConfig.Binds`` ("src:dst[:opts]"), ``HostConfig.Mounts``,
``HostConfig.Tmpfs`` and the image's ``Config.Volumes`` with Docker's rules and messages,
creates the named and anonymous volumes they need, fills an empty volume from the image's
content at its mount point (Docker's copy-up), and returns the :class:`MountSpec` list for
the OCI spec plus Docker's ``Mounts`` entries for inspect.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import shutil
import threading
import time
from dataclasses import dataclass, field

from portside.engine.archive import NotADirectory, PathNotFound, copy_tree
from portside.engine.model import MountSpec
from portside.errors import (
    Conflict,
    Internal,
    InvalidArgument,
    NotFound,
    PortsideError,
    Unavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [
    "ANONYMOUS_LABEL",
    "MountPlan",
    "VolumeStore",
    "copy_up",
    "parse_bind",
    "parse_mount",
    "parse_tmpfs",
    "resolve_mounts",
]

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_META = "meta.json"
_DATA = "_data"
_LIST_FILTERS = ("dangling", "driver", "label", "name")
_PRUNE_FILTERS = ("all", "label", "label!")


def _rfc3339_seconds() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _bool_filter(key: str, value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def _labels_match(labels: dict[str, str], wanted: Iterable[str]) -> bool:
    """Docker's label filter: every ``key`` or ``key=value`` must match."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _regex_any(patterns: list[str], value: str) -> bool:
    """Docker's ``Args.Match``: any pattern found by regexp search (bad ones never match)."""
    for pattern in patterns:
        try:
            if re.search(pattern, value):
                return True
        except re.error:
            continue
    return False


def _check_filters(filters: dict[str, list[str]] | None, allowed: tuple[str, ...]) -> dict:
    filters = filters or {}
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
    return filters


def _tree_size(path: str) -> int:
    """Bytes of the regular files under ``path`` (hardlinks once), as Docker's df counts."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


class VolumeStore:
    """Docker's ``local`` volume driver on ``root`` (``<data_root>/volumes``). Thread-safe."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._lock = threading.RLock()
        self._name_locks: dict[str, threading.Lock] = {}
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._sweep()

    # --- on disk -------------------------------------------------------------------

    def _sweep(self) -> None:
        """Remove what a crash left half-made (``.tmp-*``) or half-removed (``.trash-*``)."""
        for entry in os.listdir(self.root):
            if entry.startswith((".tmp-", ".trash-")):
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _load(self, name: str) -> dict[str, Any] | None:
        if not _NAME_RE.match(name):
            return None
        try:
            with open(os.path.join(self._dir(name), _META), "rb") as f:
                meta: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise Internal(f"read volume metadata of {name}: {exc}") from exc
        return meta

    def _doc(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "CreatedAt": meta.get("CreatedAt", ""),
            "Driver": meta.get("Driver", "local"),
            "Labels": dict(meta.get("Labels") or {}),
            "Mountpoint": os.path.join(self._dir(name), _DATA),
            "Name": name,
            "Options": dict(meta.get("Options") or {}),
            "Scope": "local",
        }

    def _names(self) -> list[str]:
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if _NAME_RE.match(e))

    def name_lock(self, name: str) -> threading.Lock:
        """A lock per volume name: held while a volume is filled from an image."""
        with self._lock:
            return self._name_locks.setdefault(name, threading.Lock())

    # --- the API -------------------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        driver: str = "local",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a volume (idempotent for an existing name of the same driver).

        ``name`` None makes an anonymous volume: a random 64-hex name and the label
        ``com.docker.volume.anonymous``.
        """
        driver = driver or "local"
        labels = dict(labels or {})
        if name is None or name == "":
            name = os.urandom(32).hex()
            labels.setdefault(ANONYMOUS_LABEL, "")
        _validate_name(name)
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if driver_opts:
            raise Unavailable(
                f"create {name}: local volume options are not supported: "
                + ", ".join(sorted(driver_opts))
            )
        with self._lock:
            meta = self._load(name)
            if meta is not None:
                if meta.get("Driver", "local") != driver:
                    raise Conflict(
                        f"create {name}: volume name must be unique: driver "
                        f"'{meta.get('Driver')}' is already using name '{name}'"
                    )
                return self._doc(name, meta)
            meta = {
                "Name": name,
                "Driver": driver,
                "Labels": labels,
                "Options": dict(driver_opts or {}),
                "CreatedAt": _rfc3339_seconds(),
            }
            self._materialise(name, meta)
        return self._doc(name, meta)

    def _materialise(self, name: str, meta: dict[str, Any]) -> None:
        staging = os.path.join(self.root, f".tmp-{os.urandom(8).hex()}")
        try:
            os.mkdir(staging, 0o755)
            os.mkdir(os.path.join(staging, _DATA), 0o755)
            tmp = os.path.join(staging, _META)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(staging, self._dir(name))
            dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Unavailable(f"create {name}: {exc.strerror}") from exc
            raise Internal(f"create {name}: {exc.strerror or exc}") from exc

    def inspect(self, name: str) -> dict[str, Any]:
        meta = self._load(name)
        if meta is None:
            raise NotFound(f"get {name}: no such volume")
        return self._doc(name, meta)

    def exists(self, name: str) -> bool:
        return self._load(name) is not None

    def path(self, name: str) -> str:
        """The volume's ``_data`` directory (what gets bind-mounted)."""
        if self._load(name) is None:
            raise NotFound(f"get {name}: no such volume")
        return os.path.join(self._dir(name), _DATA)

    def usage(self, name: str) -> int:
        """Bytes used by the volume's files (for ``system df``)."""
        return _tree_size(self.path(name))

    def list(
        self,
        filters: dict[str, list[str]] | None = None,
        in_use: Callable[[str], list[str]] | None = None,
    ) -> dict[str, Any]:
        """Docker's volume list; filters ``name`` (regexp), ``label``, ``driver``,
        ``dangling`` (which needs ``in_use``)."""
        filters = _check_filters(filters, _LIST_FILTERS)
        dangling = None
        for value in filters.get("dangling", []):
            dangling = _bool_filter("dangling", value)
        if dangling is not None and in_use is None:
            raise InvalidArgument("filter 'dangling' needs to know which volumes are in use")
        out = []
        for name in self._names():
            meta = self._load(name)
            if meta is None:
                continue
            doc = self._doc(name, meta)
            if "name" in filters and not _regex_any(filters["name"], name):
                continue
            if "driver" in filters and doc["Driver"] not in filters["driver"]:
                continue
            if "label" in filters and not _labels_match(doc["Labels"], filters["label"]):
                continue
            if dangling is not None and in_use is not None and bool(in_use(name)) == dangling:
                continue
            out.append(doc)
        return {"Volumes": out, "Warnings": []}

    def remove(self, name: str, *, force: bool = False, in_use: Callable[[str], list[str]]) -> None:
        """Remove a volume; Conflict while a container uses it (even with ``force``,
        which only makes a missing volume not an error, as in Docker)."""
        with self._lock:
            if self._load(name) is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = in_use(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._delete(name)

    def _delete(self, name: str) -> None:
        trash = os.path.join(self.root, f".trash-{os.urandom(8).hex()}")
        try:
            os.rename(self._dir(name), trash)
        except OSError as exc:
            raise Internal(f"remove {name}: {exc.strerror or exc}") from exc
        shutil.rmtree(trash, ignore_errors=True)

    def prune(
        self, filters: dict[str, list[str]] | None, in_use: Callable[[str], list[str]]
    ) -> dict[str, Any]:
        """Remove unused volumes: only anonymous ones unless ``all=true`` (API ≥ 1.42);
        ``label``/``label!`` filters."""
        filters = _check_filters(filters, _PRUNE_FILTERS)
        prune_all = False
        for value in filters.get("all", []):
            prune_all = _bool_filter("all", value)
        deleted: list[str] = []
        reclaimed = 0
        with self._lock:
            for name in self._names():
                meta = self._load(name)
                if meta is None:
                    continue
                labels = dict(meta.get("Labels") or {})
                if not prune_all and ANONYMOUS_LABEL not in labels:
                    continue
                if "label" in filters and not _labels_match(labels, filters["label"]):
                    continue
                if "label!" in filters and _labels_match_any(labels, filters["label!"]):
                    continue
                if in_use(name):
                    continue
                size = _tree_size(os.path.join(self._dir(name), _DATA))
                self._delete(name)
                deleted.append(name)
                reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}


def _labels_match_any(labels: dict[str, str], items: Iterable[str]) -> bool:
    return any(_labels_match(labels, [item]) for item in items)


def _validate_name(name: str) -> None:
    if _NAME_RE.match(name):
        return
    if len(name) == 1:
        raise InvalidArgument(
            f"create {name}: volume name is too short, names should be at least two "
            "alphanumeric characters"
        )
    raise InvalidArgument(
        f'create {name}: "{name}" includes invalid characters for a local volume name, '
        'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
        "directory, use absolute path"
    )


# --- parsing: Binds, Mounts, Tmpfs ----------------------------------------------------

_PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
_MODE_GROUPS: dict[str, tuple[str, ...]] = {
    "rw": ("rw", "ro"),
    "label": ("z", "Z"),
    "propagation": _PROPAGATIONS,
    "copy": ("nocopy",),
    "consistency": ("consistent", "cached", "delegated"),
}


@dataclass
class MountPlan:
    """One parsed mount request, before any volume exists."""

    type: str  # bind, volume, tmpfs
    source: str  # host path (bind), volume name ("" = anonymous), "" for tmpfs
    destination: str
    read_only: bool = False
    mode: str = ""  # the raw mode string, shown as inspect's "Mode"
    propagation: str = ""
    nocopy: bool = False
    create_source: bool = False  # bind: make a missing source directory
    non_recursive: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    driver: str = "local"
    driver_opts: dict[str, str] = field(default_factory=dict)
    tmpfs_options: tuple[str, ...] = ()
    listed: bool = True  # in inspect's "Mounts" (HostConfig.Tmpfs entries are not)


def _mode_groups(mode: str) -> dict[str, str] | None:
    """Docker's ValidMountMode: comma-separated, at most one of each group."""
    found: dict[str, str] = {}
    if mode == "":
        return found
    for opt in mode.split(","):
        group = next((g for g, opts in _MODE_GROUPS.items() if opt in opts), None)
        if group is None or group in found:
            return None
        found[group] = opt
    return found


def _mount_error(kind: str, what: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {what}')


def _destination(kind: str, target: str) -> str:
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    clean = posixpath.normpath(target)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return clean


def parse_bind(raw: str) -> MountPlan:
    """One ``HostConfig.Binds`` entry: ``dst``, ``src:dst`` or ``src:dst:mode``."""
    arr = raw.split(":", 3)
    if arr[0] == "" or len(arr) > 3 or any(part == "" for part in arr):
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    source, mode = "", ""
    if len(arr) == 1:
        target = arr[0]
    elif len(arr) == 2:
        if _mode_groups(arr[1]) is not None:
            raise InvalidArgument(f"invalid volume specification: '{raw}'")
        source, target = arr
    else:
        source, target, mode = arr
    groups = _mode_groups(mode)
    if groups is None:
        raise InvalidArgument(f"invalid mode: {mode}")
    kind = "bind" if source.startswith("/") else "volume"
    if kind == "bind" and "copy" in groups:
        raise _mount_error("bind", "field VolumeOptions must not be specified")
    if kind == "volume" and "propagation" in groups:
        raise _mount_error("volume", "field BindOptions must not be specified")
    if kind == "volume" and source:
        _validate_name(source)
    plan = MountPlan(
        type=kind,
        source=posixpath.normpath(source) if kind == "bind" else source,
        destination=_destination(kind, target),
        read_only=groups.get("rw") == "ro",
        mode=mode,
        nocopy="copy" in groups,
        create_source=True,
    )
    if kind == "bind":
        plan.propagation = groups.get("propagation", "rprivate")
    return plan


def _opts(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"mount {key} must be an object, not {value!r}")
    return value


def _check_extra(kind: str, spec: dict[str, Any], allowed: str) -> None:
    for key in ("BindOptions", "VolumeOptions", "TmpfsOptions"):
        if key != allowed and spec.get(key):
            raise _mount_error(kind, f"field {key} must not be specified")


def parse_mount(spec: dict[str, Any]) -> MountPlan:
    """One ``HostConfig.Mounts`` entry (types bind, volume, tmpfs)."""
    kind = spec.get("Type") or ""
    source = spec.get("Source") or ""
    target = spec.get("Target") or ""
    read_only = bool(spec.get("ReadOnly"))
    if kind == "bind":
        _check_extra(kind, spec, "BindOptions")
        if not source:
            raise _mount_error(kind, "field Source must not be empty")
        if not source.startswith("/"):
            raise _mount_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        bind = _opts(spec, "BindOptions")
        propagation = bind.get("Propagation") or "rprivate"
        if propagation not in _PROPAGATIONS:
            raise _mount_error(kind, f"invalid propagation mode: {propagation}")
        return MountPlan(
            type=kind,
            source=posixpath.normpath(source),
            destination=_destination(kind, target),
            read_only=read_only,
            propagation=propagation,
            create_source=bool(bind.get("CreateMountpoint")),
            non_recursive=bool(bind.get("NonRecursive")),
        )
    if kind == "volume":
        _check_extra(kind, spec, "VolumeOptions")
        if source:
            _validate_name(source)
        vol = _opts(spec, "VolumeOptions")
        driver_config = _opts(vol, "DriverConfig")
        return MountPlan(
            type=kind,
            source=source,
            destination=_destination(kind, target),
            read_only=read_only,
            nocopy=bool(vol.get("NoCopy")),
            labels=dict(vol.get("Labels") or {}),
            driver=driver_config.get("Name") or "local",
            driver_opts=dict(driver_config.get("Options") or {}),
        )
    if kind == "tmpfs":
        _check_extra(kind, spec, "TmpfsOptions")
        if source:
            raise _mount_error(kind, "field Source must not be specified")
        options = _tmpfs_api_options(_opts(spec, "TmpfsOptions"))
        if read_only:
            options = (*options, "ro")
        return MountPlan(
            type=kind,
            source="",
            destination=_destination(kind, target),
            read_only=read_only,
            tmpfs_options=("nosuid", "nodev", "noexec", *options),
        )
    raise InvalidArgument(f"mount type unknown: {kind!r}")


def _tmpfs_api_options(opts: dict[str, Any]) -> tuple[str, ...]:
    """Docker's ConvertTmpfsOptions: ``size=N[k|m|g]`` (largest exact unit), ``mode=%o``."""
    out: list[str] = []
    size = opts.get("SizeBytes") or 0
    mode = opts.get("Mode") or 0
    if not isinstance(size, int) or size < 0:
        raise _mount_error("tmpfs", f"invalid tmpfs size: {size!r}")
    if not isinstance(mode, int) or mode < 0 or mode > 0o7777:
        raise _mount_error("tmpfs", f"invalid tmpfs mode: {mode!r}")
    if size:
        suffix = ""
        for unit in ("k", "m", "g"):
            if size % 1024:
                break
            size //= 1024
            suffix = unit
        out.append(f"size={size}{suffix}")
    if mode:
        out.append(f"mode={mode:o}")
    return tuple(out)


_TMPFS_FLAG_PAIRS = {
    "exec": "noexec",
    "noexec": "exec",
    "suid": "nosuid",
    "nosuid": "suid",
    "dev": "nodev",
    "nodev": "dev",
    "rw": "ro",
    "ro": "rw",
}


def parse_tmpfs(destination: str, options: str) -> MountPlan:
    """One ``HostConfig.Tmpfs`` entry: defaults nosuid,nodev,noexec, the user's options
    override them (``exec`` cancels ``noexec``), as Docker's MergeTmpfsOptions."""
    merged = ["nosuid", "nodev", "noexec"]
    for opt in (o.strip() for o in (options or "").split(",")):
        if not opt:
            continue
        if opt in _TMPFS_FLAG_PAIRS:
            merged = [m for m in merged if m not in (opt, _TMPFS_FLAG_PAIRS[opt])]
            if opt in ("exec", "suid", "dev", "rw"):
                continue  # the kernel default
        else:
            key = opt.partition("=")[0]
            merged = [m for m in merged if m.partition("=")[0] != key]
        merged.append(opt)
    return MountPlan(
        type="tmpfs",
        source="",
        destination=_destination("tmpfs", destination),
        read_only="ro" in merged,
        tmpfs_options=tuple(merged),
        listed=False,
    )


def parse_all(config: dict[str, Any], host_config: dict[str, Any]) -> list[MountPlan]:
    """Every mount request of a container, validated, duplicates refused; the image's
    (``Config.Volumes``) destinations not otherwise mounted become anonymous volumes."""
    plans = [parse_bind(raw) for raw in host_config.get("Binds") or []]
    plans += [parse_mount(spec) for spec in host_config.get("Mounts") or []]
    tmpfs = host_config.get("Tmpfs") or {}
    plans += [parse_tmpfs(dst, opts) for dst, opts in tmpfs.items()]
    seen: set[str] = set()
    for plan in plans:
        if plan.destination in seen:
            raise InvalidArgument(f"Duplicate mount point: {plan.destination}")
        seen.add(plan.destination)
    for target in config.get("Volumes") or {}:
        destination = _destination("volume", target)
        if destination not in seen:
            seen.add(destination)
            plans.append(MountPlan(type="volume", source="", destination=destination))
    return plans


# --- resolving: volumes made, binds checked, copy-up ------------------------------------


def _check_bind_source(plan: MountPlan) -> None:
    if os.path.exists(plan.source):
        return
    if not plan.create_source:
        raise _mount_error("bind", f"bind source path does not exist: {plan.source}")


def _make_bind_source(plan: MountPlan) -> None:
    if os.path.exists(plan.source):
        return
    try:
        os.makedirs(plan.source, 0o755, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(
            f"error while creating mount source path '{plan.source}': {exc.strerror or exc}"
        ) from exc


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def resolve_mounts(
    store: VolumeStore,
    container_id: str,
    config: dict[str, Any],
    host_config: dict[str, Any],
    rootfs: str,
) -> tuple[list[MountSpec], list[dict[str, Any]]]:
    """The container's mounts: MountSpecs (parents before children) and Docker's inspect
    ``Mounts`` entries. Volumes are created as needed and filled from ``rootfs`` when
    empty (unless ``nocopy``); anonymous volumes made here are removed again on error.
    ``container_id`` is not used yet (kept for per-container volume bookkeeping)."""
    plans = parse_all(config, host_config)
    for plan in plans:
        if plan.type == "bind":
            _check_bind_source(plan)
    created: list[str] = []
    specs: list[MountSpec] = []
    entries: list[dict[str, Any]] = []
    try:
        for plan in sorted(plans, key=lambda p: _depth(p.destination)):
            spec, entry = _realise(store, plan, rootfs, created)
            specs.append(spec)
            if entry is not None:
                entries.append(entry)
    except BaseException:
        for name in created:
            try:
                store.remove(name, force=True, in_use=lambda _n: [])
            except PortsideError:
                pass
        raise
    return specs, entries


def _realise(
    store: VolumeStore, plan: MountPlan, rootfs: str, created: list[str]
) -> tuple[MountSpec, dict[str, Any] | None]:
    rw = "ro" if plan.read_only else "rw"
    if plan.type == "tmpfs":
        spec = MountSpec("tmpfs", "tmpfs", plan.destination, plan.tmpfs_options)
        return spec, _entry(plan, "", "") if plan.listed else None
    if plan.type == "bind":
        _make_bind_source(plan)
        binding = "bind" if plan.non_recursive else "rbind"
        spec = MountSpec("bind", plan.source, plan.destination, (binding, rw, plan.propagation))
        return spec, _entry(plan, plan.source, "")
    name = plan.source or None
    labels = plan.labels
    doc = store.create(name, plan.driver, plan.driver_opts or None, labels)
    if name is None:
        created.append(doc["Name"])
    data = store.path(doc["Name"])
    if not plan.nocopy:
        with store.name_lock(doc["Name"]):
            copy_up(rootfs, plan.destination, data)
    spec = MountSpec("bind", data, plan.destination, ("rbind", rw, "rprivate"))
    return spec, _entry(plan, data, doc["Name"], doc["Driver"])


def _entry(plan: MountPlan, source: str, name: str, driver: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"Type": plan.type}
    if plan.type == "volume":
        entry["Name"] = name
    entry.update(
        {
            "Source": source,
            "Destination": plan.destination,
            "Mode": plan.mode,
            "RW": not plan.read_only,
            "Propagation": plan.propagation,
        }
    )
    if plan.type == "volume":
        entry["Driver"] = driver
    return entry


# --- copy-up --------------------------------------------------------------------------


def copy_up(rootfs: str, destination: str, data: str) -> bool:
    """Fill the empty volume directory ``data`` from the image's directory
    ``destination`` (resolved inside ``rootfs``, never following a symlink out of it), as
    Docker does on first mount: a tar pipe keeping hardlinks, symlinks, special files,
    ownership, modes, times and (best effort) xattrs, then the directory's own ownership
    and mode. Returns whether anything was copied."""
    try:
        with os.scandir(data) as it:
            if next(it, None) is not None:
                return False
    except OSError as exc:
        raise Internal(f"read volume directory {data}: {exc.strerror or exc}") from exc
    try:
        return copy_tree(rootfs, destination, data)
    except (PathNotFound, NotADirectory):
        return False  # nothing in the image at that path: the volume stays empty
