"""Where the cgroup hierarchies are, and which directory a cgroup path names in each.

Pure parsers of ``/proc/self/mountinfo`` and ``/proc/self/cgroup``, runc's systemd
``slice:prefix:name`` form, and :class:`Layout`, the hierarchies mounted under a
root. The mount table and the process's own cgroups are parameters, so every
function here can be tested on text and a temporary directory.
"""

from __future__ import annotations

import os
import posixpath

from portside.runtime.cgroups.base import CgroupInvalid, CgroupUnavailable

__all__ = [
    "V1_CONTROLLERS",
    "Layout",
    "Mount",
    "cgroup_path",
    "expand_slice",
    "layout_from_dir",
    "layout_from_mounts",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_layout",
    "resolve_dir",
    "systemd_path",
]

#: the cgroup v1 controllers the kernel knows (a v1 mount's options name some of them)
V1_CONTROLLERS = frozenset(
    (
        "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
        "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc",
    )
)  # fmt: skip


class Mount:
    """One cgroup mount: ``controllers`` is empty for cgroup2, else its v1 controllers."""

    __slots__ = ("controllers", "fstype", "mountpoint", "root")

    def __init__(
        self, mountpoint: str, root: str, fstype: str, controllers: tuple[str, ...] = ()
    ) -> None:
        self.mountpoint = mountpoint
        self.root = root
        self.fstype = fstype
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Mount({self.mountpoint!r}, {self.root!r}, {self.fstype!r}, {self.controllers!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mount):
            return NotImplemented
        return (self.mountpoint, self.root, self.fstype, self.controllers) == (
            other.mountpoint,
            other.root,
            other.fstype,
            other.controllers,
        )

    __hash__ = None  # type: ignore[assignment]


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` is a space)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts of a mountinfo table, in table order."""
    mounts: list[Mount] = []
    for line in text.split("\n"):
        fields = line.split(" ")  # the kernel separates with one space, escapes the rest
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3 or len(fields) < 5:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        controllers: tuple[str, ...] = ()
        if fstype == "cgroup":
            opts = fields[sep + 3].split(",")
            controllers = tuple(o for o in opts if o in V1_CONTROLLERS or o.startswith("name="))
        mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), fstype, controllers))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 entry has the key ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hier, names, path = parts
        for name in names.split(",") if names else [""]:
            out[name] = path
    return out


def expand_slice(slice_name: str) -> str:
    """systemd's slice path: ``a-b.slice`` is ``/a.slice/a-b.slice``; ``-.slice`` is ``/``."""
    suffix = ".slice"
    if not slice_name.endswith(suffix) or len(slice_name) <= len(suffix) or "/" in slice_name:
        raise CgroupInvalid(f"invalid systemd slice name {slice_name!r}")
    stem = slice_name[: -len(suffix)]
    if stem == "-":
        return "/"
    path, prefix = "", ""
    for component in stem.split("-"):
        if not component:
            raise CgroupInvalid(f"invalid systemd slice name {slice_name!r}")
        path += f"/{prefix}{component}{suffix}"
        prefix += component + "-"
    return path


def systemd_path(spec: str) -> str:
    """The cgroupfs path of runc's systemd form ``slice:prefix:name``.

    ``machine.slice:libpod:abc`` is ``/machine.slice/libpod-abc.scope``; an empty
    slice is ``system.slice``; a name ending in ``.slice`` is used as the unit as is.
    """
    parts = spec.split(":")
    if len(parts) != 3:
        raise CgroupInvalid(
            f'expected cgroupsPath of the form "slice:prefix:name" for systemd, got {spec!r}'
        )
    slice_name, prefix, name = parts
    if not name or "/" in name or "/" in prefix:
        raise CgroupInvalid(f"invalid systemd unit name in cgroupsPath {spec!r}")
    if name.endswith(".slice"):
        unit = name
    else:
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    parent = expand_slice(slice_name or "system.slice")
    return posixpath.join(parent, unit)


def cgroup_path(cgroups_path: str | None, container_id: str, *, systemd: bool = False) -> str:
    """The normalised cgroup path: absolute (``/portside/abc``) or relative (``a/b``).

    ``..`` can never climb out: a relative path stays below the caller's cgroup, and
    the root itself (``/``, ``""``) is refused, so that destroy can never remove it.
    """
    if systemd:
        path = systemd_path(cgroups_path or f"system.slice:portside:{container_id}")
    elif cgroups_path is None:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise CgroupInvalid(f"invalid container id {container_id!r} for a cgroup path")
        path = f"/portside/{container_id}"
    else:
        path = cgroups_path
    clean = posixpath.normpath("/" + path)
    clean = "/" + clean.lstrip("/")  # normpath keeps a leading "//"
    if clean == "/":
        raise CgroupInvalid(f"cgroup path {path!r} names the root cgroup")
    return clean if path.startswith("/") else clean[1:]


class Layout:
    """The hierarchies under a cgroup root.

    ``mode`` is "v2" (cgroup2 at the root), "hybrid" (v1 controllers plus a cgroup2
    mount) or "v1". ``v1`` maps each v1 controller (and ``name=...`` hierarchy) to
    its mount; ``unified`` is the cgroup2 mount, if any.
    """

    __slots__ = ("mode", "root", "unified", "v1")

    def __init__(self, root: str, v1: dict[str, Mount], unified: Mount | None) -> None:
        self.root = root
        self.v1 = v1
        self.unified = unified
        if unified is not None and unified.mountpoint == root:
            self.mode = "v2"
        elif not v1:
            raise CgroupUnavailable(f"no cgroup hierarchy is mounted at {root}")
        else:
            self.mode = "hybrid" if unified is not None else "v1"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def layout_from_mounts(mounts: list[Mount], root: str) -> Layout | None:
    """The layout of the mounts at or under ``root``; None when there are none."""
    root = posixpath.normpath(root)
    v1: dict[str, Mount] = {}
    unified: Mount | None = None
    for m in mounts:
        if not _under(m.mountpoint, root):
            continue
        if m.fstype == "cgroup2":
            if m.mountpoint == root or unified is None:
                unified = m
        else:
            for c in m.controllers:
                v1.setdefault(c, m)
    if unified is None and not v1:
        return None
    if unified is not None and unified.mountpoint == root:
        v1 = {}
    return Layout(root, v1, unified)


def layout_from_dir(root: str) -> Layout:
    """The layout a directory tree looks like: a fallback when ``root`` is not a mount.

    ``root/cgroup.controllers`` makes it v2; otherwise each sub-directory holding a
    ``cgroup.procs`` is a v1 hierarchy named by its controllers (``cpu,cpuacct``;
    ``systemd`` is ``name=systemd``), and ``unified`` with ``cgroup.controllers`` is v2.
    """
    root = posixpath.normpath(root)
    if os.path.exists(f"{root}/cgroup.controllers"):
        return Layout(root, {}, Mount(root, "/", "cgroup2"))
    v1: dict[str, Mount] = {}
    unified: Mount | None = None
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        raise CgroupUnavailable(f"no cgroup hierarchy at {root}: {exc.strerror}") from exc
    for name in names:
        sub = f"{root}/{name}"
        if os.path.exists(f"{sub}/cgroup.controllers"):
            unified = Mount(sub, "/", "cgroup2")
        elif os.path.exists(f"{sub}/cgroup.procs"):
            ctrls = tuple(c if c in V1_CONTROLLERS else f"name={c}" for c in name.split(",") if c)
            m = Mount(sub, "/", "cgroup", ctrls)
            for c in ctrls:
                v1.setdefault(c, m)
    return Layout(root, v1, unified)


def read_layout(root: str, mountinfo: str | None = None) -> Layout:
    """The layout under ``root``, from ``mountinfo`` (default: this process's table).

    When nothing is mounted under ``root`` (a test tree), the directory is examined.
    """
    if mountinfo is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            mountinfo = f.read()
    # only the cgroup lines matter; other mounts (a container's root) come and go
    lines = "\n".join(line for line in mountinfo.split("\n") if " - cgroup" in line)
    layout = _LAYOUTS.get((root, lines))
    if layout is not None:
        return layout
    layout = layout_from_mounts(parse_mountinfo(lines), root)
    if layout is None:
        return layout_from_dir(root)  # not remembered: a directory tree can change
    if len(_LAYOUTS) >= 8:
        _LAYOUTS.clear()
    _LAYOUTS[(root, lines)] = layout
    return layout


_LAYOUTS: dict[tuple[str, str], Layout] = {}  # (root, cgroup mount lines) -> layout


def resolve_dir(mount: Mount, key: str, path: str, own: dict[str, str]) -> str:
    """The directory of cgroup ``path`` in the hierarchy of ``mount``.

    An absolute path is below the mount point; a relative one is below the caller's
    own cgroup in that hierarchy (``own``, from :func:`parse_proc_cgroup`, looked up
    by ``key``: a controller name, or "" for cgroup2), which differs per hierarchy.
    """
    top = mount.mountpoint.rstrip("/")
    if path.startswith("/"):
        return top + path
    base = own.get(key, "/") or "/"
    if mount.root != "/" and _under(base, mount.root):
        base = base[len(mount.root.rstrip("/")) :] or "/"
    return posixpath.normpath(f"{top}/{base.strip('/')}/{path}")
