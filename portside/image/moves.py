"""Moving images and containers: ``docker import``, ``export`` and ``commit``.

- :func:`import_rootfs` stores a tarball (plain, gzip or zstd; the bytes are kept)
  as the one layer of a new image.
- :func:`export_container` writes the merged view of a container's snapshot as a
  plain tar.
- :func:`commit_container` stores a container's read-write layer, gzipped, as a new
  image on top of its parent.

All three take ``--change`` lines (:func:`parse_change`, :func:`apply_changes`):
the Dockerfile instructions Docker allows there, applied to the image's container
config (``Cmd``, ``Env``…). Not handled: ``HEALTHCHECK`` and ``$VAR`` expansion.
"""

from __future__ import annotations

import json
import os
import time

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, BinaryIO

    from portside.image.content import ContentStore
    from portside.image.snapshots import Mount, Snapshotter
    from portside.image.store import ImageStore
    from portside.image.store_db import Image

__all__ = [
    "InvalidChange",
    "apply_changes",
    "commit_container",
    "export_container",
    "import_rootfs",
    "parse_change",
]

#: a blob commit's lease outlives a crashed process by this long at most
_LEASE_SECONDS = 3600
_SINGLE = ("USER", "WORKDIR", "STOPSIGNAL")
_EXEC = ("CMD", "ENTRYPOINT")
_PAIRS = ("ENV", "LABEL")
_VALID = (*_EXEC, *_PAIRS, *_SINGLE, "EXPOSE", "ONBUILD", "VOLUME")


class InvalidChange(InvalidArgument):
    """A ``--change`` line Docker would refuse."""


# --- parsing ------------------------------------------------------------------------


def _words(text: str, line: str) -> list[str]:
    """Whitespace-separated words; quotes group and are removed, ``\\`` escapes."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    started = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quote != "'" and i + 1 < len(text):
            word.append(text[i + 1])
            started, i = True, i + 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                word.append(c)
        elif c in "'\"":
            quote, started = c, True
        elif c.isspace():
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(c)
            started = True
        i += 1
    if quote:
        raise InvalidChange(f"unterminated quote in change {line!r}")
    if started:
        words.append("".join(word))
    return words


def _json_list(rest: str) -> list[str] | None:
    """``rest`` as a JSON array of strings, or None (then it is the shell form)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _pairs(name: str, rest: str, line: str) -> tuple[str, ...]:
    """ENV / LABEL: ``k=v`` words, or the legacy ``k v`` (the value is the rest)."""
    words = _words(rest, line)
    if not words:
        raise InvalidChange(f"{name} requires at least one argument: {line!r}")
    if "=" not in words[0]:
        key, _, value = rest.partition(" ")
        value = value.strip()
        if not value and len(words) < 2:
            raise InvalidChange(f"{name} must have two arguments: {line!r}")
        return (f"{_words(key, line)[0]}={' '.join(_words(value, line)) if value else ''}",)
    out = []
    for word in words:
        key, eq, _ = word.partition("=")
        if not eq or not key:
            raise InvalidChange(f"{name} names can not be blank and need a value: {word!r}")
        out.append(word)
    return tuple(out)


def _ports(rest: str, line: str) -> tuple[str, ...]:
    """EXPOSE: ``80``, ``80/udp``, ``8000-8002/tcp`` → ``80/tcp``… (one per port)."""
    out: list[str] = []
    for word in _words(rest, line):
        spec, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = spec.partition("-")
        try:
            start, end = int(low), int(high or low)
        except ValueError:
            raise InvalidChange(f"invalid containerPort: {spec}") from None
        if not 0 < start <= end <= 65535 or proto not in ("tcp", "udp", "sctp"):
            raise InvalidChange(f"invalid port specification: {word!r}")
        out.extend(f"{port}/{proto}" for port in range(start, end + 1))
    if not out:
        raise InvalidChange(f"EXPOSE requires at least one argument: {line!r}")
    return tuple(out)


def _stop_signal(value: str) -> str:
    import signal

    name = value.upper()
    if is_number(value) and 0 < int(value) < signal.NSIG:
        return value
    if hasattr(signal, name if name.startswith("SIG") else "SIG" + name):
        return value
    raise InvalidChange(f"invalid signal: {value}")


def parse_change(line: str) -> tuple[str, ...]:
    """One ``--change`` line as (INSTRUCTION, its arguments): CMD and ENTRYPOINT as
    the argv (a shell form is ``/bin/sh -c …``), ENV and LABEL as ``k=v`` items,
    EXPOSE as ``port/proto`` items, VOLUME as paths, the others as one value."""
    text = line.strip()
    head, _, rest = text.partition(" ")
    if "\t" in head:
        head, _, more = head.partition("\t")
        rest = more + " " + rest
    rest = rest.strip()
    name = head.upper()
    if not name:
        raise InvalidChange("empty change: want a Dockerfile instruction such as CMD or ENV")
    if name not in _VALID:
        raise InvalidChange(f"{head} is not a valid change command")
    if name in _PAIRS:
        return (name, *_pairs(name, rest, line))
    if name == "EXPOSE":
        return (name, *_ports(rest, line))
    if name in _EXEC:
        argv = _json_list(rest)
        return (name, *(argv if argv is not None else ["/bin/sh", "-c", rest]))
    if not rest:
        raise InvalidChange(f"{name} requires exactly one argument: {line!r}")
    if name == "VOLUME":
        paths = _json_list(rest)
        paths = paths if paths is not None else _words(rest, line)
        if not paths or any(not p.strip() for p in paths):
            raise InvalidChange("VOLUME specified can not be an empty string")
        return (name, *paths)
    if name == "ONBUILD":
        trigger = rest.split(None, 1)[0].upper()
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidChange(f"{trigger} isn't allowed as an ONBUILD trigger")
        return (name, rest)
    if name == "STOPSIGNAL":
        return (name, _stop_signal(rest))
    return (name, rest)


def _set_env(env: list[str], item: str) -> None:
    key = item.partition("=")[0]
    for i, old in enumerate(env):
        if old.partition("=")[0] == key:
            env[i] = item
            return
    env.append(item)


def _workdir(current: str | None, requested: str) -> str:
    import posixpath

    if not requested.startswith("/"):
        requested = posixpath.join("/", current or "/", requested)
    return posixpath.normpath(requested).replace("//", "/")


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """A copy of the container config ``config`` (Docker's keys: ``Cmd``, ``Env``…)
    with the ``--change`` lines applied in order; blank and ``#`` lines are skipped.
    An ENTRYPOINT clears ``Cmd`` unless a CMD came before it, as in a build."""
    out = json.loads(json.dumps(config))  # a deep copy
    cmd_set = False
    for text in changes:
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, *args = parse_change(line)
            if name == "CMD":
                out["Cmd"], cmd_set = args, True
            elif name == "ENTRYPOINT":
                out["Entrypoint"] = args
                if not cmd_set:
                    out["Cmd"] = None
            elif name == "ENV":
                env = out["Env"] = list(out.get("Env") or [])
                for item in args:
                    _set_env(env, item)
            elif name == "LABEL":
                labels = out["Labels"] = dict(out.get("Labels") or {})
                labels.update(item.split("=", 1) for item in args)
            elif name == "EXPOSE":
                ports = out["ExposedPorts"] = dict(out.get("ExposedPorts") or {})
                ports.update((port, {}) for port in args)
            elif name == "VOLUME":
                volumes = out["Volumes"] = dict(out.get("Volumes") or {})
                volumes.update((path, {}) for path in args)
            elif name == "ONBUILD":
                out["OnBuild"] = [*(out.get("OnBuild") or []), args[0]]
            elif name == "WORKDIR":
                out["WorkingDir"] = _workdir(out.get("WorkingDir"), args[0])
            else:
                out[{"USER": "User", "STOPSIGNAL": "StopSignal"}[name]] = args[0]
    return out


# --- import, export, commit ----------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Tee:
    """A readable stream that copies what is read from ``src`` into ``sink``."""

    def __init__(self, src: BinaryIO, sink: Any) -> None:
        self._src = src
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        if data:
            self._sink.write(data)
        return data


def _ingest_import(stream: BinaryIO, writer: Any) -> tuple[str, str]:
    """Copy ``stream`` into ``writer``, checking it is a tar; (diffID, compression)."""
    from portside.image.tarstream import CHUNK, CorruptLayer, LayerSource, TarReader

    tee = _Tee(stream, writer)
    source = LayerSource(tee, prefetch=False)  # type: ignore[arg-type]
    try:
        reader = TarReader(source.read)
        try:
            for _ in reader:
                pass
            reader.drain()
        except CorruptLayer as exc:
            raise InvalidArgument(f"importing a rootfs: not a valid tar archive: {exc}") from exc
        while tee.read(CHUNK):  # a compressed stream's trailing bytes are kept too
            pass
        return source.diff_id(), source.compression
    finally:
        source.close()


def _store_blob(content: ContentStore, lease: str, fill: Any) -> tuple[Any, str]:
    """Write a layer blob with ``fill(writer) -> (diffID, media type)``; returns
    (descriptor, diffID)."""
    from portside.oci.digest import Digest
    from portside.oci.image_spec import Descriptor

    writer = content.writer(f"moves-{os.getpid()}-{os.urandom(6).hex()}", lease=lease)
    try:
        diff_id, media_type = fill(writer)
        size = writer.offset
        digest = writer.commit(ok_if_exists=True)
    except BaseException:
        if not writer.closed:
            writer.abort()
        raise
    return Descriptor(media_type=media_type, digest=Digest(digest), size=size), diff_id


def _with_lease(content: ContentStore, what: str) -> Any:
    lease_id = f"{what}-{os.getpid()}-{os.urandom(6).hex()}"
    return content.create_lease(lease_id, time.time() + _LEASE_SECONDS)


def import_rootfs(
    content: ContentStore,
    store: ImageStore,
    stream: BinaryIO,
    *,
    changes: Sequence[str] = (),
    tag: str | None = None,
    message: str = "",
) -> Image:
    """``docker import``: the tarball in ``stream`` (its bytes kept, whatever the
    compression) as a one-layer image for this host, ``changes`` applied."""
    from portside.oci import mediatypes as mt
    from portside.oci.platform import host_platform

    container = apply_changes({}, changes)  # bad changes fail before any I/O
    types = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}
    lease = _with_lease(content, "import")
    try:

        def fill(writer: Any) -> tuple[str, str]:
            diff_id, compression = _ingest_import(stream, writer)
            return diff_id, types[compression]

        desc, diff_id = _store_blob(content, lease.id, fill)
        created = _now()
        platform = host_platform()
        doc: dict[str, Any] = {"created": created, "architecture": platform.architecture}
        if platform.variant:
            doc["variant"] = platform.variant
        doc.update(
            os="linux",
            config=container,
            rootfs={"type": "layers", "diff_ids": [diff_id]},
            history=[{"created": created, "comment": message or "Imported from -"}],
        )
        config = json.dumps(doc, separators=(",", ":")).encode()
        return store.create(config, [(desc, diff_id)], tags=[tag] if tag else [])
    finally:
        lease.delete()


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """Read-only mounts of the same view: an overlay's upper directory becomes its
    top lower directory (no work directory), a bind gains ``ro``."""
    from portside.image.snapshots import Mount

    out = []
    for m in mounts:
        options = [o for o in m.options if o not in ("rw", "ro")]
        if m.type == "overlay":
            opts = dict(o.split("=", 1) for o in options if "=" in o)
            upper = opts.get("upperdir")
            if upper is not None:
                lowers = [d for d in opts.get("lowerdir", "").split(":") if d]
                if not lowers:
                    out.append(Mount("bind", upper, ["ro", "rbind"]))
                    continue
                keep = [o for o in options if o.split("=", 1)[0] not in _OVERLAY_RW]
                options = [*keep, "lowerdir=" + ":".join([upper, *lowers])]
        out.append(Mount(m.type, m.source, ["ro", *options]))
    return out


_OVERLAY_RW = ("upperdir", "workdir", "lowerdir")


def export_container(snapshotter: Snapshotter, key: str, out: BinaryIO) -> tuple[str, int]:
    """``docker export``: the merged view of snapshot ``key`` as a plain tar written to
    ``out``; returns (its sha256, its size)."""
    import shutil
    import tempfile

    from portside.image.layer_make import make_layer
    from portside.image.snapshots import mount_all, unmount_all

    mounts = _readonly(snapshotter.mounts(key))
    target = tempfile.mkdtemp(prefix="portside-export-")
    try:
        mount_all(mounts, target)
        try:
            diff_id, _, size = make_layer(target, out)
        finally:
            unmount_all(target)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return diff_id, size


def _write_rw_layer(snapshotter: Snapshotter, key: str, writer: Any) -> str:
    """The changes of active snapshot ``key`` as a gzip layer into ``writer``; its
    diffID. Overlay: the upper directory; a full copy (vfs): compared with its parent."""
    from portside.image.diff import split_mounts, write_diff
    from portside.image.tarstream import LayerWriter

    mounts = snapshotter.mounts(key)
    lowers, upper = split_mounts(mounts)
    sink = LayerWriter(writer, "gzip")
    overlay = mounts[0].type == "overlay"
    parent = snapshotter.stat(key).parent
    if overlay or parent is None:
        write_diff(lowers, upper, sink, mode="overlay")  # type: ignore[arg-type]
        return sink.close()[0]
    view = f"commit-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        below = snapshotter.view(view, parent=parent)
        write_diff(below, upper, sink, mode="tree")  # type: ignore[arg-type]
    finally:
        snapshotter.remove(view)
    return sink.close()[0]


def commit_container(
    content: ContentStore,
    store: ImageStore,
    snapshotter: Snapshotter,
    key: str,
    parent: Image,
    *,
    changes: Sequence[str] = (),
    tag: str | None = None,
    author: str = "",
    message: str = "",
) -> Image:
    """``docker commit``: ``parent`` plus the read-write layer of the container's
    snapshot ``key`` (gzipped), with a history entry and ``changes`` applied."""
    from portside.oci import mediatypes as mt
    from portside.oci.digest import Digest
    from portside.oci.image_spec import Descriptor

    doc = json.loads(parent.config)
    doc["config"] = apply_changes(doc.get("config") or {}, changes)
    lease = _with_lease(content, "commit")
    try:

        def fill(writer: Any) -> tuple[str, str]:
            return _write_rw_layer(snapshotter, key, writer), mt.OCI_LAYER_GZIP

        desc, diff_id = _store_blob(content, lease.id, fill)
        created = _now()
        doc["created"] = created
        if author:
            doc["author"] = author
        else:
            doc.pop("author", None)
        entry = {"created": created, "author": author, "comment": message}
        entry = {k: v for k, v in entry.items() if v}
        doc["history"] = [*(doc.get("history") or []), entry]
        rootfs = doc.setdefault("rootfs", {"type": "layers"})
        rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), diff_id]
        layers = [
            (
                Descriptor(media_type=la.media_type, digest=Digest(la.digest), size=la.size),
                la.diff_id,
            )
            for la in parent.layers
        ]
        config = json.dumps(doc, separators=(",", ":")).encode()
        return store.create(config, [*layers, (desc, diff_id)], tags=[tag] if tag else [])
    finally:
        lease.delete()
