"""Where the runtime keeps its containers: ``<root>/<id>/state.json``.

The config the container was created from is kept beside it, in ``config.json``, as
it was read: state.json holds only what the runtime's own steps need (a few hundred
bytes to parse where the config is ~10 kB), and :meth:`StateStore.config` reads the
rest for an exec. A state.json of an older portside holds the config inline.

A container's status is never stored, it is observed: ``created`` while the
exec fifo exists and init is alive, ``running`` after start, ``paused`` while
its cgroup is frozen, ``stopped`` once init is gone — checked against the
process start time so a reused PID is not mistaken for the container.
Writes become visible by atomic rename.
"""

from __future__ import annotations

import os

from portside.errors import Internal
from portside.oci import fastjson
from portside.oci._json import ANY, BOOL, INT, STR, F, Record, map_of
from portside.runtime.errors import ContainerExists, ContainerNotFound, InvalidID
from portside.text import ASCII_ALNUM

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ContainerState",
    "StateStore",
    "atomic_write",
    "process_start_time",
    "state_document",
    "validate_id",
]

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"


class ContainerState(Record):
    id: str = F(STR, "")
    bundle: str = F(STR, "")
    rootfs: str = F(STR, "")
    pid: int = F(INT, 0)
    pid_start: int = F(INT, 0, json="pidStart")
    created: str = F(STR, "")
    owner: str = F(STR, "")
    annotations: dict[str, str] = F(map_of(STR))
    cgroups_path: str = F(STR, "", json="cgroupsPath")
    systemd_cgroup: bool = F(BOOL, False, json="systemdCgroup")
    config: dict[str, Any] | None = F(ANY)  # inline only in state files of older versions
    cgroup: dict[str, Any] | None = F(ANY)
    oci_version: str = F(STR, "", json="ociVersion")
    #: the config's poststart and poststop hooks, the ones start and delete run
    hooks: dict[str, Any] | None = F(ANY)
    #: the config gives the container a PID namespace of its own
    own_pid_namespace: bool = F(BOOL, False, json="ownPidNamespace")

    def remember_config(self, config: dict[str, Any]) -> None:
        """Take what the runtime's own steps need from ``config`` (the spec's JSON)."""
        hooks = config.get("hooks")
        if isinstance(hooks, dict):
            kept = {k: hooks[k] for k in ("poststart", "poststop") if hooks.get(k)}
            self.hooks = kept or None
        linux = config.get("linux")
        namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
        self.own_pid_namespace = any(
            isinstance(ns, dict) and ns.get("type") == "pid" and not ns.get("path")
            for ns in namespaces or ()
        )


def state_document(state: ContainerState) -> dict[str, Any]:
    """``state.to_json()`` without its deep copy: every field already holds plain
    JSON values (the config is the document as read), so they are used as they are."""
    out: dict[str, Any] = {}
    for f in ContainerState.__fields__:
        value = getattr(state, f.name)
        if value is None or (f.factory is not None and not value):
            continue
        out[f.json or f.name] = value
    return out


_ID_CHARS = ASCII_ALNUM | frozenset("_+-.")


def validate_id(container_id: str) -> None:
    """IDs as runc allows them: letters, digits, ``_ + - .``; not '.' or '..'."""
    ok = container_id not in ("", ".", "..") and len(container_id) <= 1024
    ok = ok and _ID_CHARS.issuperset(container_id)
    if not ok:
        raise InvalidID(f"invalid container id {container_id!r}: use letters, digits, _ + - .")


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, durable: bool = False) -> None:
    """Write ``path`` by rename, so readers see the old or the new file, never
    half of one. ``durable`` adds an fsync, for files that must survive a power
    loss (runtime state lives in /run, which does not)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        validate_id(container_id)
        return os.path.join(self.root, container_id)

    def fifo(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), FIFO)

    def reserve(self, container_id: str) -> tuple[str, int]:
        """Create the container's directory; the mkdir claims the ID.

        Returns the directory and an fd of it holding ``flock`` for as long as the
        creation runs (the directory itself: no lock file to make and remove). A
        directory without state.json whose lock nobody holds is what a killed
        ``create`` left: it is cleared and the ID claimed again."""
        path = self.dir(container_id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        for _ in range(2):
            try:
                os.mkdir(path, 0o711)
            except FileExistsError:
                if not self._stale(path):
                    raise ContainerExists(container_id) from None
                self.remove(container_id)
                continue
            return path, self._lock(path, blocking=True)
        raise ContainerExists(container_id)

    @staticmethod
    def _lock(path: str, *, blocking: bool) -> int:
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _stale(self, path: str) -> bool:
        if os.path.exists(os.path.join(path, STATE_FILE)):
            return False
        try:
            fd = self._lock(path, blocking=False)
        except BlockingIOError:
            return False  # a create is running
        except FileNotFoundError:
            return True  # removed meanwhile
        os.close(fd)
        return True

    def save(self, state: ContainerState, config: bytes | None = None) -> None:
        """Write state.json; ``config`` (the config's JSON, as read) goes first, to
        config.json: a state.json is only ever seen with its config beside it."""
        directory = self.dir(state.id)
        if config is not None:  # no rename needed: state.json, after it, is the commit
            fd = os.open(
                os.path.join(directory, CONFIG_FILE),
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                0o600,
            )
            try:
                os.write(fd, config)
            finally:
                os.close(fd)
        path = os.path.join(directory, STATE_FILE)
        atomic_write(path, fastjson.dumps(state_document(state)).encode(), 0o600)

    def load(self, container_id: str) -> ContainerState:
        path = os.path.join(self.dir(container_id), STATE_FILE)
        try:
            with open(path, "rb") as f:
                state = ContainerState.from_json(fastjson.loads(f.read()))
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(container_id) from None
        except ValueError as exc:  # JSONDecodeError, or a state file of another schema
            raise Internal(f"{path}: corrupt state file: {exc}") from exc
        if state.config:  # an older state file: the config inline
            state.remember_config(state.config)
        return state

    def config(self, state: ContainerState) -> dict[str, Any]:
        """The config ``state``'s container was created from."""
        if state.config:
            return state.config
        path = os.path.join(self.dir(state.id), CONFIG_FILE)
        try:
            with open(path, "rb") as f:
                config = fastjson.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(state.id) from None
        except ValueError as exc:
            raise Internal(f"{path}: corrupt config file: {exc}") from exc
        if not isinstance(config, dict):
            raise Internal(f"{path}: corrupt config file: not a JSON object")
        return config

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(os.path.join(self.root, n, STATE_FILE))]

    def remove(self, container_id: str) -> None:
        """Remove the container's directory (its files are flat: no rmtree, whose
        import costs more than the whole removal)."""
        path = self.dir(container_id)
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(path, name))
            except IsADirectoryError:
                import shutil

                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
            except FileNotFoundError:
                continue
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
