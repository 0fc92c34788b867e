"""portside.engine.volumes: the local volume store, and Binds/Mounts/Tmpfs/Volumes parsing."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portside.engine.model import MountSpec
from portside.engine.volumes import (
    ANONYMOUS_LABEL,
    VolumeStore,
    parse_all,
    parse_bind,
    parse_mount,
    parse_tmpfs,
    resolve_mounts,
)
from portside.errors import Conflict, InvalidArgument, NotFound, Unavailable


def unused(_name: str) -> list[str]:
    return []


@pytest.fixture
def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(str(tmp_path / "volumes"))


# --- the store --------------------------------------------------------------------------


def test_create_named_has_dockers_shape(store: VolumeStore) -> None:
    doc = store.create("data", labels={"a": "1"})
    assert doc["Name"] == "data"
    assert doc["Driver"] == "local"
    assert doc["Scope"] == "local"
    assert doc["Labels"] == {"a": "1"}
    assert doc["Options"] == {}
    assert doc["Mountpoint"] == os.path.join(store.root, "data", "_data")
    assert os.path.isdir(doc["Mountpoint"])
    assert doc["CreatedAt"].endswith("Z") and "T" in doc["CreatedAt"]
    assert store.inspect("data") == doc
    assert store.path("data") == doc["Mountpoint"]


def test_create_anonymous(store: VolumeStore) -> None:
    doc = store.create()
    assert len(doc["Name"]) == 64 and all(c in string.hexdigits for c in doc["Name"])
    assert doc["Labels"] == {ANONYMOUS_LABEL: ""}


def test_create_is_idempotent(store: VolumeStore) -> None:
    first = store.create("data", labels={"a": "1"})
    path = Path(first["Mountpoint"]) / "keep"
    path.write_text("x")
    again = store.create("data", labels={"b": "2"})
    assert again == first
    assert path.read_text() == "x"


def test_create_other_driver_is_refused(store: VolumeStore) -> None:
    with pytest.raises(NotFound, match='plugin "nfs" not found'):
        store.create("data", driver="nfs")
    assert not store.exists("data")


def test_create_with_options_is_refused_clearly(store: VolumeStore) -> None:
    with pytest.raises(Unavailable, match="options are not supported: device, type"):
        store.create("data", driver_opts={"type": "tmpfs", "device": "tmpfs"})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a", "too short"),
        ("-ab", "includes invalid characters"),
        ("a/b", "includes invalid characters"),
        ("../x", "includes invalid characters"),
        (".tmp-x", "includes invalid characters"),
    ],
)
def test_invalid_names(store: VolumeStore, name: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        store.create(name)
    assert os.listdir(store.root) == []


def test_inspect_missing(store: VolumeStore) -> None:
    with pytest.raises(NotFound, match=r"^get nope: no such volume$"):
        store.inspect("nope")
    with pytest.raises(NotFound):
        store.path("nope")


def test_metadata_survives_a_new_store(store: VolumeStore) -> None:
    doc = store.create("data", labels={"k": "v"})
    assert VolumeStore(store.root).inspect("data") == doc
    meta = json.loads(Path(store.root, "data", "meta.json").read_text())
    assert meta["Labels"] == {"k": "v"}


def test_leftovers_of_a_crash_are_swept(store: VolumeStore) -> None:
    os.makedirs(os.path.join(store.root, ".tmp-123", "_data"))
    os.makedirs(os.path.join(store.root, ".trash-456", "_data"))
    VolumeStore(store.root)
    assert os.listdir(store.root) == []


def names(result: dict) -> list[str]:
    assert result["Warnings"] == []
    return sorted(v["Name"] for v in result["Volumes"])


def test_list_filters(store: VolumeStore) -> None:
    store.create("web-data", labels={"app": "web", "tier": "front"})
    store.create("db-data", labels={"app": "db"})
    store.create("cache")
    assert names(store.list()) == ["cache", "db-data", "web-data"]
    assert names(store.list({"name": ["data"]})) == ["db-data", "web-data"]
    assert names(store.list({"name": ["^db"]})) == ["db-data"]
    assert names(store.list({"name": ["[bad"]})) == []
    assert names(store.list({"label": ["app"]})) == ["db-data", "web-data"]
    assert names(store.list({"label": ["app=web"]})) == ["web-data"]
    assert names(store.list({"label": ["app=web", "tier=back"]})) == []
    assert names(store.list({"driver": ["local"]})) == ["cache", "db-data", "web-data"]
    assert names(store.list({"driver": ["nfs"]})) == []


def test_list_dangling(store: VolumeStore) -> None:
    store.create("used")
    store.create("free")

    def in_use(name: str) -> list[str]:
        return ["c1"] if name == "used" else []

    assert names(store.list({"dangling": ["true"]}, in_use)) == ["free"]
    assert names(store.list({"dangling": ["0"]}, in_use)) == ["used"]
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling=maybe'"):
        store.list({"dangling": ["maybe"]}, in_use)


def test_list_unknown_filter(store: VolumeStore) -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'color'"):
        store.list({"color": ["red"]})


def test_remove(store: VolumeStore) -> None:
    store.create("data")
    store.remove("data", in_use=unused)
    assert not store.exists("data")
    assert os.listdir(store.root) == []
    with pytest.raises(NotFound, match="get data: no such volume"):
        store.remove("data", in_use=unused)
    store.remove("data", force=True, in_use=unused)


def test_remove_in_use_is_a_conflict_even_forced(store: VolumeStore) -> None:
    store.create("data")
    for force in (False, True):
        with pytest.raises(Conflict, match=r"^remove data: volume is in use - \[aaa, bbb\]$"):
            store.remove("data", force=force, in_use=lambda _n: ["aaa", "bbb"])
    assert store.exists("data")


def test_prune_only_anonymous_by_default(store: VolumeStore) -> None:
    store.create("named")
    anon = store.create()["Name"]
    busy = store.create()["Name"]
    Path(store.path(anon), "f").write_bytes(b"x" * 1000)
    result = store.prune(None, lambda n: ["c"] if n == busy else [])
    assert result == {"VolumesDeleted": [anon], "SpaceReclaimed": 1000}
    assert names(store.list()) == sorted(["named", busy])


def test_prune_all_and_labels(store: VolumeStore) -> None:
    store.create("keep", labels={"keep": "yes"})
    store.create("drop", labels={"keep": "no"})
    store.create("plain")
    result = store.prune({"all": ["true"], "label!": ["keep=yes"]}, unused)
    assert sorted(result["VolumesDeleted"]) == ["drop", "plain"]
    store.create("other", labels={"x": "1"})
    assert store.prune({"all": ["1"], "label": ["x"]}, unused)["VolumesDeleted"] == ["other"]
    assert names(store.list()) == ["keep"]
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        store.prune({"dangling": ["true"]}, unused)


def test_usage_counts_hardlinks_once(store: VolumeStore) -> None:
    store.create("data")
    root = Path(store.path("data"))
    (root / "a").write_bytes(b"x" * 300)
    os.link(root / "a", root / "b")
    (root / "sub").mkdir()
    (root / "sub" / "c").write_bytes(b"y" * 20)
    assert store.usage("data") == 320


# --- Binds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/host:/ctr", ("bind", "/host", "/ctr", False, "rprivate", False)),
        ("/host/:/ctr/sub/", ("bind", "/host", "/ctr/sub", False, "rprivate", False)),
        ("/host:/ctr:ro", ("bind", "/host", "/ctr", True, "rprivate", False)),
        ("/host:/ctr:ro,Z,rshared", ("bind", "/host", "/ctr", True, "rshared", False)),
        ("/host:/ctr:z,slave", ("bind", "/host", "/ctr", False, "slave", False)),
        ("vol:/data", ("volume", "vol", "/data", False, "", False)),
        ("vol:/data:ro,nocopy", ("volume", "vol", "/data", True, "", True)),
        ("/data", ("volume", "", "/data", False, "", False)),
    ],
)
def test_parse_bind(raw: str, expected: tuple) -> None:
    plan = parse_bind(raw)
    got = (plan.type, plan.source, plan.destination, plan.read_only, plan.propagation)
    assert (*got, plan.nocopy) == expected
    assert plan.mode == (raw.split(":")[2] if raw.count(":") == 2 else "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "invalid volume specification: ''"),
        (":/x", "invalid volume specification: ':/x'"),
        ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
        ("/a::ro", "invalid volume specification"),
        ("/foo:rw", "invalid volume specification: '/foo:rw'"),
        ("/a:/b:rx", "invalid mode: rx"),
        ("/a:/b:ro,rw", "invalid mode: ro,rw"),
        ("/a:/b:ro,", "invalid mode: ro,"),
        ("/a:/b:shared,slave", "invalid mode: shared,slave"),
        ("/a:rel", "invalid mount path: 'rel' mount path must be absolute"),
        ("/a:/", "destination can't be '/'"),
        ("/a:/b:nocopy", 'type "bind": field VolumeOptions must not be specified'),
        ("vol:/b:rshared", 'type "volume": field BindOptions must not be specified'),
        ("v$l:/b", "includes invalid characters"),
    ],
)
def test_parse_bind_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        parse_bind(raw)


_segment = st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=8)
_abs_path = st.lists(_segment.filter(lambda s: s not in (".", "..")), min_size=1, max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
_modes = st.tuples(
    st.sampled_from(["", "ro", "rw"]),
    st.sampled_from(["", "z", "Z"]),
    st.sampled_from(["", "shared", "rslave", "private", "rprivate"]),
)


@settings(max_examples=200, deadline=None)
@given(source=_abs_path, dest=_abs_path, mode=_modes)
def test_parse_bind_valid_specs_round_trip(source: str, dest: str, mode: tuple) -> None:
    opts = ",".join(m for m in mode if m)
    raw = f"{source}:{dest}" + (f":{opts}" if opts else "")
    plan = parse_bind(raw)
    assert plan.type == "bind"
    assert plan.source == source and plan.destination == dest
    assert plan.read_only == (mode[0] == "ro")
    assert plan.propagation == (mode[2] or "rprivate")
    assert plan.mode == opts


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + "/:,.-_ $", max_size=30))
def test_parse_bind_never_fails_badly(raw: str) -> None:
    try:
        plan = parse_bind(raw)
    except InvalidArgument:
        return
    assert plan.destination.startswith("/") and plan.destination != "/"
    assert plan.type in ("bind", "volume")
    assert plan.type == "volume" or plan.source.startswith("/")


# --- Mounts and Tmpfs ---------------------------------------------------------------------


def test_parse_mount_kinds() -> None:
    bind = parse_mount(
        {
            "Type": "bind",
            "Source": "/h",
            "Target": "/c",
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rslave", "CreateMountpoint": True},
        }
    )
    assert (bind.read_only, bind.propagation, bind.create_source) == (True, "rslave", True)
    vol = parse_mount(
        {
            "Type": "volume",
            "Target": "/d",
            "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}},
        }
    )
    assert (vol.source, vol.nocopy, vol.labels) == ("", True, {"a": "b"})
    tmp = parse_mount(
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}}
    )
    assert tmp.tmpfs_options == ("nosuid", "nodev", "noexec", "size=64m", "mode=1777")
    odd = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1000}})
    assert odd.tmpfs_options[-1] == "size=1000"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"Type": "bind", "Source": "rel", "Target": "/c"}, "'rel' mount path must be absolute"),
        ({"Type": "bind", "Target": "/c"}, "field Source must not be empty"),
        ({"Type": "tmpfs", "Source": "x", "Target": "/c"}, "field Source must not be specified"),
        (
            {"Type": "volume", "Target": "/c", "BindOptions": {"Propagation": "shared"}},
            "field BindOptions must not be specified",
        ),
        ({"Type": "volume", "Target": "c"}, "mount path must be absolute"),
        ({"Type": "npipe", "Target": "/c"}, "mount type unknown"),
        ({"Type": "tmpfs", "Target": "/c", "TmpfsOptions": {"SizeBytes": -1}}, "invalid tmpfs"),
    ],
)
def test_parse_mount_errors(spec: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_mount(spec)


def test_parse_tmpfs_merges_options() -> None:
    assert parse_tmpfs("/run", "").tmpfs_options == ("nosuid", "nodev", "noexec")
    plan = parse_tmpfs("/run", "rw,size=64m,exec,mode=1777")
    assert plan.tmpfs_options == ("nosuid", "nodev", "size=64m", "mode=1777")
    assert not plan.read_only and not plan.listed
    assert parse_tmpfs("/run", "ro,size=1m,size=2m").tmpfs_options[-2:] == ("ro", "size=2m")
    with pytest.raises(InvalidArgument, match="mount path must be absolute"):
        parse_tmpfs("run", "")


def test_duplicates_and_image_volumes() -> None:
    with pytest.raises(InvalidArgument, match=r"^Duplicate mount point: /x$"):
        parse_all({}, {"Binds": ["/a:/x"], "Mounts": [{"Type": "volume", "Target": "/x/"}]})
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /run"):
        parse_all({}, {"Binds": ["v1:/run"], "Tmpfs": {"/run": ""}})
    plans = parse_all({"Volumes": {"/x": {}, "/y": {}}}, {"Binds": ["/a:/x"]})
    assert [(p.type, p.source, p.destination) for p in plans] == [
        ("bind", "/a", "/x"),
        ("volume", "", "/y"),
    ]


# --- resolve_mounts -------------------------------------------------------------------------


def test_resolve_mounts(store: VolumeStore, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "data").mkdir(parents=True)
    (rootfs / "data" / "seed").write_text("from the image")
    host = tmp_path / "host"
    host.mkdir()
    missing = tmp_path / "made" / "by" / "binds"
    config = {"Volumes": {"/data": {}, "/cache": {}}}
    host_config = {
        "Binds": [f"{host}:/mnt/host:ro", f"{missing}:/mnt/new", "named:/srv:nocopy"],
        "Mounts": [{"Type": "tmpfs", "Target": "/scratch"}],
        "Tmpfs": {"/run": "size=1m"},
    }
    specs, entries = resolve_mounts(store, "c" * 64, config, host_config, str(rootfs))
    assert missing.is_dir()
    by_dest = {s.destination: s for s in specs}
    assert by_dest["/mnt/host"] == MountSpec(
        "bind", str(host), "/mnt/host", ("rbind", "ro", "rprivate")
    )
    assert by_dest["/run"] == MountSpec(
        "tmpfs", "tmpfs", "/run", ("nosuid", "nodev", "noexec", "size=1m")
    )
    data = by_dest["/data"].source
    assert Path(data, "seed").read_text() == "from the image"
    assert by_dest["/srv"].source == store.path("named")
    depths = [s.destination.count("/") for s in specs]
    assert depths == sorted(depths)
    listed = {e["Destination"]: e for e in entries}
    assert set(listed) == {"/mnt/host", "/mnt/new", "/srv", "/scratch", "/data", "/cache"}
    assert listed["/mnt/host"] == {
        "Type": "bind",
        "Source": str(host),
        "Destination": "/mnt/host",
        "Mode": "ro",
        "RW": False,
        "Propagation": "rprivate",
    }
    assert listed["/srv"]["Name"] == "named" and listed["/srv"]["Driver"] == "local"
    anon = listed["/data"]["Name"]
    assert store.inspect(anon)["Labels"] == {ANONYMOUS_LABEL: ""}
    assert listed["/data"]["Source"] == data


def test_resolve_mounts_missing_bind_source_of_mounts(store: VolumeStore, tmp_path: Path) -> None:
    host_config = {
        "Mounts": [{"Type": "bind", "Source": str(tmp_path / "nope"), "Target": "/x"}],
    }
    with pytest.raises(InvalidArgument, match='type "bind": bind source path does not exist: /'):
        resolve_mounts(store, "c" * 64, {"Volumes": {"/v": {}}}, host_config, str(tmp_path))
    assert store.list()["Volumes"] == []


def test_resolve_mounts_removes_its_anonymous_volumes_on_error(
    store: VolumeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portside.engine import volumes

    calls = []

    def failing_copy(rootfs: str, destination: str, data: str) -> bool:
        calls.append(destination)
        if len(calls) == 2:
            raise InvalidArgument("boom")
        return False

    monkeypatch.setattr(volumes, "copy_up", failing_copy)
    with pytest.raises(InvalidArgument, match="boom"):
        resolve_mounts(store, "c" * 64, {"Volumes": {"/a": {}, "/b": {}}}, {}, str(tmp_path))
    assert store.list()["Volumes"] == []


def test_copy_up_skips_a_volume_with_content(store: VolumeStore, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "srv").mkdir(parents=True)
    (rootfs / "srv" / "image-file").write_text("image")
    store.create("full")
    Path(store.path("full"), "mine").write_text("mine")
    resolve_mounts(store, "c" * 64, {}, {"Binds": ["full:/srv"]}, str(rootfs))
    assert os.listdir(store.path("full")) == ["mine"]
