"""Snapshotters: the file systems containers and layers live on, after containerd's
``core/snapshots/snapshotter.go``.

A snapshot is a file system state named by a ``key``. :meth:`Snapshotter.prepare`
makes an *active* (writable) snapshot on top of a *committed* parent and returns
the :class:`Mount` list that shows it; :meth:`Snapshotter.commit` freezes an active
snapshot under a name (the image store uses chainIDs, so a layer two images share is
unpacked once); :meth:`Snapshotter.view` is a read-only snapshot of a parent. Keys
and names share one space. A snapshot with children cannot be removed.

The mount list is the one contract with the runtime: each :class:`Mount` is shaped
as an OCI ``config.json`` mount (:meth:`Mount.to_oci`); :func:`mount_all` and
:func:`unmount_all` do it on the host.

Durability: by default every change is on disk when the call returns (but the
files of a committed snapshot are the caller's to sync). An unpack of many layers
commits them with ``durable=False`` instead: the snapshot's files are not synced
and the row is written without waiting for the disk, but it carries the label
:data:`UNSYNCED_LABEL` (the boot it was made in), in the same transaction.
:meth:`Snapshotter.sync` — a ``syncfs`` of the file system, then the labels
cleared from the snapshots named and their parents in a durable transaction —
makes them durable; :func:`~portside.image.unpack.unpack` calls it before a
container is made on them. A snapshot still labelled when a snapshotter opens the
root was either made in this boot (its files are in the page cache: one
``syncfs`` makes them durable, and the labels go) or in an earlier one, cut
short by a power loss or a crash of the kernel: its files may be incomplete, so
it is removed, with the snapshots above it (they are made again from the content
store when needed). A chain under a container's snapshot is never labelled, as
``unpack`` synced it first.

Implementations: :mod:`.overlay` (overlayfs: a committed snapshot is a layer) and
:mod:`.vfs` (plain copies, for hosts without overlayfs). :func:`open_snapshotter`
picks one. Both keep their metadata in SQLite (:mod:`.meta`) and name directories by
the snapshot's integer id, never by its key.

Errors::

    NotFound ─────────── SnapshotNotFound     no snapshot with that key
    AlreadyExists ────── SnapshotExists       the key or name is taken
    FailedPrecondition ─ SnapshotInUse        remove of a snapshot with children
                    └─── WrongKind            e.g. commit of a view, a parent not committed
"""

from __future__ import annotations

import errno
import os
import time

from portside.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PortsideError,
    Unavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Protocol

    from portside.image.snapshots.meta import MetaStore, Snapshot
    from portside.linux.kernel import Kernel
    from portside.oci import runtime_spec
else:  # a plain base class at run time: importing typing costs ~5 ms
    Protocol = object

__all__ = [
    "ACTIVE",
    "COMMITTED",
    "KINDS",
    "UNSYNCED_LABEL",
    "VIEW",
    "Info",
    "Mount",
    "SnapshotExists",
    "SnapshotInUse",
    "SnapshotNotFound",
    "Snapshotter",
    "SnapshotterBase",
    "WrongKind",
    "mount_all",
    "open_snapshotter",
    "unmount_all",
]

VIEW = "view"
ACTIVE = "active"
COMMITTED = "committed"
KINDS = (VIEW, ACTIVE, COMMITTED)

#: the kernel copies mount options into one page, NUL included
PAGE_SIZE = os.sysconf("SC_PAGESIZE")
#: label of a snapshot committed with ``durable=False`` until a ``sync`` covers it:
#: the boot id (``/proc/sys/kernel/random/boot_id``) it was committed in
UNSYNCED_LABEL = "portside.snapshot.unsynced"


class SnapshotNotFound(NotFound):
    pass


class SnapshotExists(AlreadyExists):
    pass


class SnapshotInUse(FailedPrecondition):
    pass


class WrongKind(FailedPrecondition):
    pass


class Info:
    """What :meth:`Snapshotter.stat` tells of a snapshot. Only ``labels`` is mutable
    (:meth:`Snapshotter.update`)."""

    __slots__ = ("created", "kind", "labels", "name", "parent", "updated")

    def __init__(
        self,
        name: str,
        kind: str,
        parent: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        created: float = 0.0,
        updated: float = 0.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.parent = parent
        self.labels = labels if labels is not None else {}
        self.created = created
        self.updated = updated

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Info):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Info(name={self.name!r}, kind={self.kind!r}, parent={self.parent!r})"


class Mount:
    """One mount, shaped as an OCI ``config.json`` mount without its destination:
    ``type`` (``bind``, ``overlay``), ``source`` and ``options`` (flags such as
    ``ro`` or ``rbind`` and file system data such as ``lowerdir=...``)."""

    __slots__ = ("options", "source", "target", "type")

    def __init__(
        self, type: str, source: str, options: Iterable[str] = (), target: str | None = None
    ) -> None:
        self.type = type
        self.source = source
        self.options = list(options)
        self.target = target

    def to_oci(self, destination: str) -> runtime_spec.Mount:
        """This mount as a config.json entry at ``destination``. An overlay whose
        options do not fit a page (100+ layers) cannot be handed to a runtime:
        mount it with :func:`mount_all` and give the runtime the directory."""
        from portside.oci import runtime_spec

        _, data = _split_options(self.options)
        if len(data.encode()) >= PAGE_SIZE:
            raise InvalidArgument(
                f"{self.type} mount options of {len(data)} bytes exceed a page ({PAGE_SIZE}):"
                " mount it on the host with mount_all"
            )
        return runtime_spec.Mount(
            destination=destination, type=self.type, source=self.source, options=self.options
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mount):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Mount(type={self.type!r}, source={self.source!r}, options={self.options!r})"


class Snapshotter(Protocol):
    """The snapshotter interface. Every method raises SnapshotNotFound for an
    unknown key and InvalidArgument for a malformed one."""

    root: str

    def prepare(
        self,
        key: str,
        parent: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        durable: bool = True,
    ) -> list[Mount]:
        """Make the active snapshot ``key`` on committed ``parent`` (None: empty) and
        return its mounts. SnapshotExists if the key is taken; WrongKind if ``parent``
        is not committed. Not ``durable``: a power loss may take it back (leaving a
        directory for :meth:`cleanup`)."""
        ...

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """As :meth:`prepare`, read-only; it can never be committed."""
        ...

    def mounts(self, key: str, *, volatile: bool = False) -> list[Mount]:
        """The mounts of an active snapshot or a view (WrongKind for a committed one).
        ``volatile``: the caller throws the snapshot away rather than trust it after
        a crash (the layer of a ``run --rm`` container): where the file system can,
        its syncs are skipped (overlayfs's ``volatile``), as podman and CRI-O do."""
        ...

    def commit(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        *,
        durable: bool = True,
    ) -> None:
        """Turn active ``key`` into committed ``name`` (same parent); ``key`` is gone
        afterwards. ``labels`` replace the active snapshot's (None: keep them).
        Unmount it first. Not ``durable``: labelled :data:`UNSYNCED_LABEL` until a
        :meth:`sync` covers it (see the module doc)."""
        ...

    def sync(self, names: Iterable[str] = ()) -> None:
        """Make every change so far durable, the files of every snapshot included
        (``syncfs``), then drop :data:`UNSYNCED_LABEL` from ``names`` and their
        parents, durably."""
        ...

    def remove(self, key: str, *, durable: bool = True) -> None:
        """Remove a snapshot of any kind; SnapshotInUse while it has children. Not
        ``durable``: a power loss may bring the row back without its directory (for
        the owner to remove again, as the engine does with orphaned container layers)."""
        ...

    def stat(self, key: str) -> Info: ...

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Set ``info.labels`` on ``info.name``: all of them (``"labels"``, the
        default) or those named ``"labels.<key>"``."""
        ...

    def walk(
        self,
        fn: Callable[[Info], object] | None = None,
        *,
        kind: str | None = None,
        parent: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Info]:
        """The snapshots matching every filter given, oldest first; ``fn`` is called
        with each as well."""
        ...

    def usage(self, key: str) -> tuple[int, int]:
        """(bytes, inodes) the snapshot itself uses, not counting its parents."""
        ...

    def cleanup(self) -> list[str]:
        """Remove directories no snapshot owns (left by a crash); returns their paths."""
        ...

    def close(self) -> None: ...


# --- mounting on the host ------------------------------------------------------------


def _split_options(options: Iterable[str]) -> tuple[int, str]:
    """(mount flags, file system data) of an option list: the runtime's parser."""
    from portside.linux.mountopts import parse_mount_options

    parsed = parse_mount_options(list(options))
    return parsed.flags, parsed.data


def _compact_lowerdir(data: str) -> tuple[str, str] | None:
    """containerd's trick for long layer chains: the common parent directory of the
    ``lowerdir`` entries and the data with them relative to it (mounted from there)."""
    options = data.split(",")
    index = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), -1)
    if index < 0:
        return None
    dirs = options[index][len("lowerdir=") :].split(":")
    if len(dirs) < 2 or not all(d.startswith("/") for d in dirs):
        return None
    common = os.path.commonpath(dirs)
    if common in dirs:  # an entry must stay a non-empty relative path
        common = os.path.dirname(common)
    if common == "/":
        return None
    options[index] = "lowerdir=" + ":".join(d[len(common) + 1 :] for d in dirs)
    return common, ",".join(options)


def _mount_from(kernel: Kernel, cwd: str, m: Mount, target: str, *, flags: int, data: str) -> None:
    """Mount in a forked child that first changes to ``cwd``, so relative paths in
    ``data`` resolve there (the parent's working directory, shared by its threads,
    is left alone). The child shares the mount namespace: the mount stays."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.chdir(cwd)
            kernel.mount(m.source, target, m.type, flags, data)
        except OSError as exc:
            code = exc.errno or 1
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, f"mount {target}: {os.strerror(code)}")


def _mount_one(kernel: Kernel, m: Mount, target: str) -> None:
    from portside.linux.kernel import MS_BIND, MS_REC, MS_REMOUNT

    flags, data = _split_options(m.options)
    if flags & MS_BIND:
        kernel.mount(m.source, target, None, flags & (MS_BIND | MS_REC), None)
        extra = flags & ~(MS_BIND | MS_REC)  # a bind ignores other flags: remount with them
        if extra:
            try:
                kernel.mount(None, target, None, MS_BIND | MS_REMOUNT | extra, None)
            except OSError:
                kernel.umount2(target, 0)  # never leave a bind writable that should not be
                raise
        return
    if len(data.encode()) + 1 > PAGE_SIZE:
        compact = _compact_lowerdir(data)
        if compact is None or len(compact[1].encode()) + 1 > PAGE_SIZE:
            raise InvalidArgument(
                f"{m.type} mount options of {len(data)} bytes on {target} do not fit a page"
                f" ({PAGE_SIZE}) even with relative lower directories"
            )
        _mount_from(kernel, compact[0], m, target, flags=flags, data=compact[1])
        return
    kernel.mount(m.source, target, m.type, flags, data or None)


def mount_all(mounts: Sequence[Mount], target: str, kernel: Kernel | None = None) -> None:
    """Mount ``mounts`` on ``target`` in order; on failure, unmount what was mounted.
    Overlay options longer than a page are mounted with relative lower directories."""
    if kernel is None:
        from portside.linux.kernel import LinuxKernel

        kernel = LinuxKernel()
    done = 0
    try:
        for m in mounts:
            _mount_one(kernel, m, target)
            done += 1
    except OSError as exc:
        for _ in range(done):
            try:
                kernel.umount2(target, 0)
            except OSError:
                break
        raise mount_error(exc, f"mounting {target}") from exc


def unmount_all(target: str, kernel: Kernel | None = None, *, detach: bool = False) -> None:
    """Unmount every mount stacked on ``target`` (nothing mounted: nothing done)."""
    if kernel is None:
        from portside.linux.kernel import LinuxKernel

        kernel = LinuxKernel()
    flags = 2 if detach else 0  # MNT_DETACH
    for _ in range(1000):
        try:
            kernel.umount2(target, flags)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise mount_error(exc, f"unmounting {target}") from exc
    raise Internal(f"unmounting {target}: still mounted after 1000 unmounts")


def mount_error(exc: OSError, what: str) -> PortsideError:
    """The Portside error for an OSError raised while doing ``what``."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    message = f"{reason.lower()} {what}"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(message)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.ENODEV, errno.EROFS):
        return Unavailable(message)
    return Internal(message)


# --- the shared implementation -------------------------------------------------------


class SnapshotterBase:
    """The bookkeeping every snapshotter here shares; an implementation supplies how
    a snapshot directory is filled (:meth:`_populate`) and mounted (:meth:`_mounts`).

    Layout: ``<root>/metadata.db``, ``<root>/snapshots/<id>/fs`` (and ``work`` for
    overlay), ``<root>/driver`` naming the implementation that owns the root.
    """

    driver = ""
    #: :meth:`_populate` is quick (a few mkdirs, no copy): done in the transaction
    quick_populate = False

    def __init__(self, root: str) -> None:
        from portside.image.snapshots.meta import MetaStore, db_path

        self.root = os.path.abspath(root)
        self._snapshots = os.path.join(self.root, "snapshots")
        try:
            os.makedirs(self._snapshots, 0o700, exist_ok=True)
            _claim_root(self.root, self.driver)
        except OSError as exc:
            raise mount_error(exc, f"creating snapshotter root {self.root}") from exc
        self._meta: MetaStore = MetaStore(db_path(self.root))
        # what syncfs must cover: the root (metadata.db) and snapshots/, once per device
        devices = {os.stat(p).st_dev: p for p in (self._snapshots, self.root)}
        self._sync_paths = sorted(devices.values())
        from portside.image.snapshots.unsynced import recover

        recover(self, self._meta)

    # --- hooks ---------------------------------------------------------------------

    def _populate(self, path: str, snap: Snapshot) -> None:
        """Fill the new snapshot directory ``path`` (renamed to its id afterwards)."""
        raise NotImplementedError

    def _mounts(self, snap: Snapshot, *, volatile: bool = False) -> list[Mount]:
        """The mounts of ``snap``; ``volatile``: made to skip their syncs, where the
        implementation can (see :meth:`Snapshotter.mounts`)."""
        raise NotImplementedError

    # --- paths ---------------------------------------------------------------------

    def snapshot_dir(self, sid: int) -> str:
        return f"{self._snapshots}/{sid}"

    def fs_dir(self, sid: int) -> str:
        # a format, not os.path.join: a mount of a long chain asks for hundreds
        return f"{self._snapshots}/{sid}/fs"

    # --- the interface -------------------------------------------------------------

    def prepare(
        self,
        key: str,
        parent: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        durable: bool = True,
    ) -> list[Mount]:
        return self._create(ACTIVE, key, parent, labels, durable)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(VIEW, key, parent, labels)

    def _create(
        self,
        kind: str,
        key: str,
        parent: str | None,
        labels: Mapping[str, str] | None,
        durable: bool = True,
    ) -> list[Mount]:
        from portside.image.snapshots.meta import Snapshot

        labels = dict(labels or {})
        if self.quick_populate:
            snap = self._create_in_transaction(kind, key, parent, labels, durable=durable)
            return self._mounts(snap)
        with self._meta.transaction(write=False) as tx:
            chain = tx.plan(kind, key, parent)
        final = ""
        # the slow part (a vfs copy) happens outside the write lock, in a directory
        # flock()ed so that cleanup() leaves it alone while we live
        tmp, lock = self._new_dir()
        try:
            self._populate(tmp, Snapshot(0, key, kind, chain))
            with self._meta.transaction(durable=durable) as tx:
                snap = tx.create(kind, key, parent, labels, time.time())
                if snap.parent_ids != chain:
                    raise FailedPrecondition(f"parent {parent!r} of {key!r} changed meanwhile")
                final = self.snapshot_dir(snap.id)
                # a crash after a rename and before its commit leaves this id's
                # directory behind; no row owns it, as the id is new
                _remove_tree(final)
                os.rename(tmp, final)
                return self._mounts(snap)
        except BaseException as exc:
            for path in (tmp, final):
                if path:
                    _remove_tree(path)
            if isinstance(exc, OSError):
                raise mount_error(exc, f"preparing snapshot {key!r}") from exc
            raise
        finally:
            os.close(lock)

    def _create_in_transaction(
        self,
        kind: str,
        key: str,
        parent: str | None,
        labels: dict[str, str],
        *,
        durable: bool,
        populate: Callable[[str, Snapshot], None] | None = None,
    ) -> Snapshot:
        """:meth:`_create` for a quick :meth:`_populate` (or ``populate``): the
        directory is made and filled in the write transaction that adds its row, under
        its final name (no staging directory to make, lock and rename: a pull makes one
        per layer). cleanup() cannot look meanwhile: it takes the write lock too."""
        final = ""
        try:
            with self._meta.transaction(durable=durable) as tx:
                snap = tx.create(kind, key, parent, labels, time.time())
                final = self.snapshot_dir(snap.id)
                # a crash after the mkdir and before the commit leaves this id's
                # directory behind; no row owns it, as the id is new
                _remove_tree(final)
                os.mkdir(final, 0o700)
                (populate or self._populate)(final, snap)
                return snap
        except BaseException as exc:
            if final:
                _remove_tree(final)
            if isinstance(exc, OSError):
                raise mount_error(exc, f"preparing snapshot {key!r}") from exc
            raise

    def _new_dir(self) -> tuple[str, int]:
        """A fresh ``new-*`` directory and an fd holding an exclusive flock on it."""
        import fcntl
        import tempfile

        try:
            path = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise mount_error(exc, f"creating a snapshot directory in {self._snapshots}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        return path, fd

    def mounts(self, key: str, *, volatile: bool = False) -> list[Mount]:
        with self._meta.transaction(write=False) as tx:
            snap = tx.get(key)
        if snap.kind == COMMITTED:
            raise WrongKind(f"snapshot {key!r} is committed: mount a view or prepare on it")
        return self._mounts(snap, volatile=volatile and snap.kind == ACTIVE)

    def commit(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        *,
        durable: bool = True,
    ) -> None:
        with self._meta.transaction(write=False) as tx:
            snap = tx.get(key)
        if snap.kind != ACTIVE:
            raise WrongKind(f"snapshot {key!r} is {snap.kind}, only an active one can be committed")
        usage = self._measure(snap)  # outside the write lock: it reads the whole tree
        with self._meta.transaction(durable=durable) as tx:
            done = tx.commit_active(
                key, name, None if labels is None else dict(labels), usage, time.time()
            )
            if not durable:  # in the same transaction: never the row without its label
                from portside.image.snapshots.unsynced import boot_id

                tx.add_labels(done.id, {UNSYNCED_LABEL: boot_id()})

    def sync(self, names: Iterable[str] = ()) -> None:
        names = list(names)
        self.syncfs()
        with self._meta.transaction() as tx:
            tx.clear_label(UNSYNCED_LABEL, keys=names)

    def syncfs(self) -> None:
        """One ``syncfs`` of every file system the snapshots and their database are on."""
        from portside.image.content_common import syncfs

        for path in self._sync_paths:
            try:
                syncfs(path)
            except OSError as exc:
                raise mount_error(exc, f"syncing snapshots in {path}") from exc

    def remove(self, key: str, *, durable: bool = True) -> None:
        with self._meta.transaction(durable=durable) as tx:
            snap = tx.remove(key)
        # the row is gone: from here a crash leaves only a directory, for cleanup()
        self._discard(snap.id, key)

    def _discard(self, sid: int, key: str) -> None:
        """Remove the directory of snapshot ``sid``, whose row is gone."""
        path = self.snapshot_dir(sid)
        doomed = os.path.join(self._snapshots, f"rm-{sid}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise mount_error(exc, f"removing snapshot {key!r} at {path}") from exc
        _remove_tree(doomed)

    def stat(self, key: str) -> Info:
        with self._meta.transaction(write=False) as tx:
            return tx.info(key)

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        with self._meta.transaction() as tx:
            return tx.update(info, fieldpaths, time.time())

    def walk(
        self,
        fn: Callable[[Info], object] | None = None,
        *,
        kind: str | None = None,
        parent: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Info]:
        if kind is not None and kind not in KINDS:
            raise InvalidArgument(f"invalid snapshot kind {kind!r}: want one of {KINDS}")
        with self._meta.transaction(write=False) as tx:
            infos = tx.walk()
        out = [
            i
            for i in infos
            if (kind is None or i.kind == kind)
            and (parent is None or i.parent == parent)
            and all(i.labels.get(k) == v for k, v in (labels or {}).items())
        ]
        if fn is not None:
            for info in out:
                fn(info)
        return out

    def usage(self, key: str) -> tuple[int, int]:
        with self._meta.transaction(write=False) as tx:
            snap = tx.get(key)
            stored = tx.stored_usage(key)
        return stored if stored is not None else self._measure(snap)

    def _measure(self, snap: Snapshot) -> tuple[int, int]:
        return disk_usage(self.fs_dir(snap.id))

    def cleanup(self) -> list[str]:
        removed = []
        # the write lock keeps a prepare from renaming a directory into place while we
        # look; a directory still being filled is flock()ed by its maker
        with self._meta.transaction() as tx:
            owned = {str(i) for i in tx.ids()}
            for name in sorted(os.listdir(self._snapshots)):
                path = os.path.join(self._snapshots, name)
                if name not in owned and not _in_use(path):
                    _remove_tree(path)
                    removed.append(path)
        return removed

    def close(self) -> None:
        """Nothing is held open between calls."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"


def disk_usage(path: str) -> tuple[int, int]:
    """(bytes allocated, inodes) of the tree at ``path``, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    stack = [path]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0, 0
    seen.add((st.st_dev, st.st_ino))
    size += st.st_blocks * 512
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return size, len(seen)


def _in_use(path: str) -> bool:
    """Whether a live process holds the flock of directory ``path``."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove_tree(path: str) -> None:
    """Remove ``path`` and everything below it (absent: nothing to do)."""
    import shutil

    def ignore_missing(func: object, p: str, info: tuple[type, BaseException, object]) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    shutil.rmtree(path, onerror=ignore_missing)


def _claim_root(root: str, driver: str) -> None:
    """Record which implementation owns ``root``; refuse another one."""
    path = os.path.join(root, "driver")
    try:
        with open(path, encoding="ascii") as f:
            owner = f.read().strip()
    except FileNotFoundError:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(driver + "\n")
        os.rename(tmp, path)
        return
    if owner != driver:
        raise FailedPrecondition(f"snapshotter root {root} belongs to {owner!r}, not {driver!r}")


def root_driver(root: str) -> str | None:
    """The implementation that owns ``root``, or None for a new root."""
    try:
        with open(os.path.join(root, "driver"), encoding="ascii") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def open_snapshotter(root: str, kind: str = "auto") -> SnapshotterBase:
    """The snapshotter at ``root``: ``overlay``, ``vfs``, or ``auto`` — the one that
    owns the root already, else overlay when :func:`.overlay.overlay_supported`
    says so, else vfs."""
    if kind not in ("auto", "overlay", "vfs"):
        raise InvalidArgument(f"invalid snapshotter {kind!r}: want auto, overlay or vfs")
    if kind == "auto":
        kind = root_driver(root) or ""
    if kind in ("", "overlay"):
        from portside.image.snapshots.overlay import OverlaySnapshotter, overlay_features

        os.makedirs(root, 0o700, exist_ok=True)
        features = overlay_features(root)
        if features.supported:
            return OverlaySnapshotter(root, features=features)
        if kind == "overlay":
            raise Unavailable(f"overlayfs does not work in {root}: {features.reason}")
    from portside.image.snapshots.vfs import VfsSnapshotter

    return VfsSnapshotter(root)
