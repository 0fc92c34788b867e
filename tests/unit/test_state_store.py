"""portside.runtime.state: container IDs, the on-disk state store, process start times."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.errors import AlreadyExists, InvalidArgument, NotFound
from portside.runtime.errors import ContainerExists, ContainerNotFound, InvalidID
from portside.runtime.state import (
    CONFIG_FILE,
    STATE_FILE,
    ContainerState,
    StateStore,
    atomic_write,
    process_start_time,
    state_document,
    validate_id,
)

# --- validate_id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cid",
    [
        "a",
        "abc",
        "ABC123",
        "my-container",
        "my_container",
        "my.container",
        "a+b",
        "...",
        ".hidden",
        "-leading-dash",
        "0",
        "x" * 1024,
        "f" * 64,
    ],
)
def test_valid_ids(cid: str) -> None:
    validate_id(cid)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        ".",
        "..",
        "a/b",
        "../etc",
        "/abs",
        "a b",
        "a\nb",
        "a:b",
        "a@b",
        "a\x00b",
        "é",
        "a٣",  # a non-ASCII digit
        "x" * 1025,
    ],
)
def test_invalid_ids(cid: str) -> None:
    with pytest.raises(InvalidID, match=r"^invalid container id"):
        validate_id(cid)


def test_invalid_id_is_invalid_argument() -> None:
    assert issubclass(InvalidID, InvalidArgument)
    assert issubclass(ContainerNotFound, NotFound)
    assert issubclass(ContainerExists, AlreadyExists)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_valid_ids_are_safe_path_components(cid: str) -> None:
    try:
        validate_id(cid)
    except InvalidID:
        return
    assert "/" not in cid and cid not in (".", "..") and "\x00" not in cid
    assert os.path.basename(cid) == cid and os.path.normpath(cid) == cid


# --- StateStore -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(str(tmp_path / "root"))


def sample_state(cid: str = "ctr") -> ContainerState:
    return ContainerState(
        id=cid,
        bundle="/bundles/ctr",
        rootfs="/bundles/ctr/rootfs",
        pid=1234,
        pid_start=987654,
        created="2024-01-02T03:04:05.000000006Z",
        owner="",
        annotations={"org.example": "x"},
        cgroups_path="/portside/ctr",
        systemd_cgroup=True,
        config={"ociVersion": "1.2.0", "process": {"args": ["sh"]}},
        oci_version="1.2.0",
    )


def reserve(store: StateStore, cid: str) -> str:
    """Claim ``cid`` as a finished create would: the lock is released after."""
    path, lock = store.reserve(cid)
    os.close(lock)
    return path


def test_reserve_creates_the_directory(store: StateStore) -> None:
    path = reserve(store, "ctr")
    assert path == os.path.join(store.root, "ctr")
    assert os.path.isdir(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o711 & ~_umask()
    assert store.fifo("ctr") == os.path.join(path, "exec.fifo")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_reserve_twice_is_container_exists(store: StateStore) -> None:
    _, lock = store.reserve("ctr")  # a create in progress holds the lock
    try:
        with pytest.raises(ContainerExists, match=r"container with id 'ctr' already exists"):
            store.reserve("ctr")
    finally:
        os.close(lock)
    store.save(sample_state("ctr"))  # a created container: no lock, but state
    with pytest.raises(ContainerExists):
        store.reserve("ctr")


def test_reserve_reclaims_what_a_killed_create_left(store: StateStore) -> None:
    reserve(store, "ctr")  # claimed, lock released, never saved: the creator died
    Path(store.root, "ctr", "exec.fifo").write_text("")
    path = reserve(store, "ctr")
    assert os.listdir(path) == []  # the directory itself is the lock


def test_reserve_refuses_bad_ids(store: StateStore) -> None:
    with pytest.raises(InvalidID):
        reserve(store, "../escape")
    assert not os.path.exists(os.path.join(os.path.dirname(store.root), "escape"))


def test_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert StateStore("rel").root == str(tmp_path / "rel")


def test_save_load_round_trip(store: StateStore) -> None:
    state = sample_state()
    reserve(store, state.id)
    store.save(state)
    loaded = store.load(state.id)
    assert loaded == state
    path = os.path.join(store.root, "ctr", STATE_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    on_disk = json.loads(Path(path).read_text())
    assert on_disk["pidStart"] == 987654 and on_disk["systemdCgroup"] is True
    assert on_disk["cgroupsPath"] == "/portside/ctr"


def test_state_document_is_to_json_without_the_copy() -> None:
    state = sample_state()
    state.cgroup = {"mode": "v1", "dirs": {"cpu": "/sys/fs/cgroup/cpu/portside/ctr"}}
    doc = state_document(state)
    assert doc == state.to_json()
    assert doc["config"] is state.config  # not copied
    bare = ContainerState(id="x")  # unset and empty fields are left out, as to_json does
    assert state_document(bare) == bare.to_json()


_CONFIG = {
    "ociVersion": "1.2.0",
    "process": {"args": ["sh"]},
    "hooks": {
        "prestart": [{"path": "/bin/pre"}],
        "poststart": [{"path": "/bin/post", "args": ["post", "start"]}],
        "poststop": [],
    },
    "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]},
}


def test_the_config_is_kept_beside_the_state_as_read(store: StateStore) -> None:
    state = ContainerState(id="ctr", pid=7, oci_version="1.2.0")
    state.remember_config(_CONFIG)
    raw = json.dumps(_CONFIG, indent=1).encode()
    reserve(store, "ctr")
    store.save(state, raw)
    directory = os.path.join(store.root, "ctr")
    assert Path(directory, CONFIG_FILE).read_bytes() == raw
    on_disk = json.loads(Path(directory, STATE_FILE).read_text())
    assert "config" not in on_disk  # state.json stays small: start and delete parse it
    assert on_disk["hooks"] == {"poststart": _CONFIG["hooks"]["poststart"]}
    assert on_disk["ownPidNamespace"] is True
    loaded = store.load("ctr")
    assert not loaded.config and loaded.own_pid_namespace
    assert loaded.hooks == {"poststart": [{"path": "/bin/post", "args": ["post", "start"]}]}
    assert store.config(loaded) == _CONFIG


@pytest.mark.parametrize(
    ("namespaces", "own"),
    [
        ([{"type": "pid"}], True),
        ([{"type": "pid", "path": "/proc/1/ns/pid"}], False),  # joined, not its own
        ([{"type": "network"}], False),
        ([], False),
    ],
)
def test_remember_config_knows_an_own_pid_namespace(namespaces: list, own: bool) -> None:
    state = ContainerState(id="ctr")
    state.remember_config({"linux": {"namespaces": namespaces}})
    assert state.own_pid_namespace is own and state.hooks is None


def test_a_state_file_of_an_older_version_holds_the_config_inline(store: StateStore) -> None:
    path = reserve(store, "old")
    doc = {"id": "old", "pid": 5, "pidStart": 9, "config": _CONFIG, "ociVersion": "1.2.0"}
    Path(path, STATE_FILE).write_text(json.dumps(doc))
    loaded = store.load("old")
    assert loaded.own_pid_namespace and loaded.hooks == {"poststart": _CONFIG["hooks"]["poststart"]}
    assert store.config(loaded) == _CONFIG  # no config.json needed


def test_a_missing_or_corrupt_config_file_is_an_error_naming_it(store: StateStore) -> None:
    reserve(store, "ctr")
    state = ContainerState(id="ctr")
    store.save(state)  # no config given: none written
    with pytest.raises(NotFound):
        store.config(store.load("ctr"))
    Path(store.root, "ctr", CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(Exception, match="corrupt config file"):
        store.config(store.load("ctr"))


def test_save_overwrites(store: StateStore) -> None:
    state = sample_state()
    reserve(store, state.id)
    store.save(state)
    state.pid = 42
    store.save(state)
    assert store.load("ctr").pid == 42
    assert sorted(os.listdir(os.path.join(store.root, "ctr"))) == [STATE_FILE]


def test_load_missing_is_container_not_found(store: StateStore) -> None:
    with pytest.raises(ContainerNotFound, match=r"container 'nope' does not exist") as info:
        store.load("nope")
    assert info.value.container_id == "nope"
    reserve(store, "half")  # reserved, never saved
    with pytest.raises(ContainerNotFound):
        store.load("half")


def test_load_when_the_id_is_a_file(store: StateStore) -> None:
    os.makedirs(store.root)
    Path(store.root, "plain").write_text("")
    with pytest.raises(ContainerNotFound):
        store.load("plain")


def test_ids_lists_only_saved_containers(store: StateStore) -> None:
    assert store.ids() == []  # the root does not exist yet
    for cid in ("b", "a", "c"):
        reserve(store, cid)
        store.save(sample_state(cid))
    reserve(store, "reserved-only")
    os.mkdir(os.path.join(store.root, "stray"))
    Path(store.root, "file").write_text("")
    assert store.ids() == ["a", "b", "c"]


def test_remove(store: StateStore) -> None:
    reserve(store, "ctr")
    store.save(sample_state())
    store.remove("ctr")
    assert store.ids() == []
    store.remove("ctr")  # removing twice is fine
    reserve(store, "ctr")  # and the id is free again


# --- atomic_write ---------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic_write(str(path), b"one")
    atomic_write(str(path), b"two", 0o600)
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_mode_applies_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(str(path), b"x", 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_atomic_write_never_shows_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    before = os.stat(path).st_ino
    atomic_write(str(path), b"new" * 1000)
    assert os.stat(path).st_ino != before  # a rename, not a rewrite in place


def test_atomic_write_into_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(str(tmp_path / "missing" / "f"), b"x")
    assert os.listdir(tmp_path) == []


def test_atomic_write_cleans_up_when_the_rename_fails(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()  # os.replace(file, dir) fails
    with pytest.raises(OSError):
        atomic_write(str(tmp_path / "target"), b"x")
    assert os.listdir(tmp_path) == ["target"]


# --- process_start_time ---------------------------------------------------------------------


def test_start_time_of_this_process() -> None:
    first = process_start_time(os.getpid())
    assert isinstance(first, int) and first > 0
    assert process_start_time(os.getpid()) == first
    parent = process_start_time(os.getppid())
    assert parent is not None and parent <= first


def _exited_child() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


def test_start_time_of_a_dead_process_is_none() -> None:
    pid = _exited_child()
    os.waitpid(pid, 0)
    assert process_start_time(pid) is None


def test_start_time_of_a_zombie_is_none() -> None:
    pid = _exited_child()
    try:
        for _ in range(200):  # wait until it is a zombie, without reaping it
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.005)
        assert process_start_time(pid) is None
    finally:
        os.waitpid(pid, 0)


def test_start_time_of_a_live_child_is_later_than_ours() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        child = process_start_time(pid)
        ours = process_start_time(os.getpid())
        assert child is not None and ours is not None and child >= ours
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_start_time_survives_a_command_name_with_parentheses() -> None:
    # /proc/PID/stat field 2 is "(comm)", and comm may contain ") " itself
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        try:
            with open("/proc/self/comm", "w") as f:
                f.write("a) Z 1 2 (b")  # a naive parse would read state Z
        finally:
            os.read(r, 1)
            os._exit(0)
    os.close(r)
    try:
        for _ in range(200):
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("a)"):
                    break
            time.sleep(0.005)
        assert isinstance(process_start_time(pid), int)
        assert process_start_time(pid) == process_start_time(pid)
    finally:
        os.close(w)
        os.waitpid(pid, 0)
