"""portside.oci: typed JSON records (_json) and the runtime spec (config.json) parser."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from portside.errors import InvalidArgument
from portside.oci import _json
from portside.oci._json import ANY, BOOL, INT, STR, F, Record, SpecError, list_of
from portside.oci.runtime_spec import (
    NAMESPACE_TYPES,
    LinuxResources,
    Spec,
    load_spec,
    parse_resources,
    parse_spec,
)
from portside.runtime.specgen import default_spec

_HOOK = {"path": "/usr/bin/hook", "args": ["hook", "--x"], "env": ["A=1"], "timeout": 5}


def full_config() -> dict[str, Any]:
    """A config.json that sets every field of runtime-spec 1.2 that applies to Linux
    (except ``linux.netDevices``, see test_net_devices_survive_round_trip), no nulls."""

    def throttle() -> list[dict[str, int]]:
        return [{"major": 8, "minor": 0, "rate": 1048576}]

    return {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": True,
            "consoleSize": {"height": 25, "width": 80},
            "user": {
                "uid": 1000,
                "gid": 1000,
                "umask": 18,
                "additionalGids": [5, 6],
                "username": "someone",
            },
            "args": ["/bin/sh", "-c", "echo hi"],
            "commandLine": "sh -c 'echo hi'",
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/home/someone",
            "capabilities": {
                k: ["CAP_CHOWN", "CAP_KILL"]
                for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
            "apparmorProfile": "portside-default",
            "oomScoreAdj": 100,
            "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "scheduler": {
                "policy": "SCHED_OTHER",
                "nice": 5,
                "flags": ["SCHED_FLAG_RESET_ON_FORK"],
            },
            "execCPUAffinity": {"initial": "0-3", "final": "2"},
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "box",
        "domainname": "example.org",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/data",
                "type": "bind",
                "source": "/srv/data",
                "options": ["rbind", "ro", "idmap"],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            },
        ],
        "hooks": {
            name: [dict(_HOOK)]
            for name in (
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            )
        },
        "annotations": {"org.example.key": "value", "com.example.other": ""},
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/var/run/netns/x"},
                {"type": "mount"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "user"},
                {"type": "cgroup"},
                {"type": "time"},
            ],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 32000}],
            "timeOffsets": {
                "monotonic": {"secs": 172800, "nanosecs": 0},
                "boottime": {"secs": 604800, "nanosecs": 0},
            },
            "devices": [
                {
                    "path": "/dev/fuse",
                    "type": "c",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 438,
                    "uid": 0,
                    "gid": 0,
                },
                {"path": "/dev/fifo", "type": "p"},
            ],
            "cgroupsPath": "/myRuntime/myContainer",
            "resources": {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                ],
                "memory": {
                    "limit": 536870912,
                    "reservation": 536870912,
                    "swap": 536870912,
                    "kernel": -1,
                    "kernelTCP": -1,
                    "swappiness": 0,
                    "disableOOMKiller": False,
                    "useHierarchy": True,
                    "checkBeforeUpdate": True,
                },
                "cpu": {
                    "shares": 1024,
                    "quota": 1000000,
                    "burst": 100000,
                    "period": 500000,
                    "realtimeRuntime": 950000,
                    "realtimePeriod": 1000000,
                    "cpus": "2-3",
                    "mems": "0-7",
                    "idle": 0,
                },
                "pids": {"limit": 32771},
                "blockIO": {
                    "weight": 10,
                    "leafWeight": 10,
                    "weightDevice": [
                        {"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                        {"major": 8, "minor": 16, "weight": 500},
                    ],
                    "throttleReadBpsDevice": throttle(),
                    "throttleWriteBpsDevice": throttle(),
                    "throttleReadIOPSDevice": throttle(),
                    "throttleWriteIOPSDevice": throttle(),
                },
                "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
                "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                "unified": {"io.max": "259:0 rbps=2097152", "memory.high": "max"},
            },
            "rootfsPropagation": "slave",
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "listenerPath": "/run/seccomp-agent.socket",
                "listenerMetadata": "metadata",
                "syscalls": [
                    {"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [
                            {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"},
                        ],
                    },
                ],
            },
            "sysctl": {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"},
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
            "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f"},
            "personality": {"domain": "LINUX", "flags": []},
        },
    }


def set_at(doc: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the value at ``path`` replaced (or added)."""
    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def delete_at(doc: dict[str, Any], path: list[str | int]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


# --- accepting and round-tripping -----------------------------------------------------------


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_parses_and_round_trips(rootless: bool) -> None:
    doc = default_spec(rootless=rootless)
    spec = parse_spec(doc)
    assert spec.to_json() == doc
    assert spec.process is not None and spec.process.capabilities is not None
    assert spec.process.capabilities.bounding == [
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
    ]
    assert spec.process.rlimits[0].soft == 1024
    assert spec.mounts[1].options == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert spec.linux is not None
    assert spec.linux.masked_paths[0] == "/proc/acpi"


def test_default_spec_survives_json_text_round_trip() -> None:
    doc = default_spec()
    text = json.dumps(parse_spec(json.loads(json.dumps(doc))).to_json())
    assert json.loads(text) == doc


def test_full_config_parses_every_field() -> None:
    spec = parse_spec(full_config())
    p, linux = spec.process, spec.linux
    assert p is not None and linux is not None and linux.resources is not None
    assert p.console_size is not None and p.console_size.width == 80
    assert p.user is not None and p.user.additional_gids == [5, 6] and p.user.umask == 18
    assert p.io_priority is not None and p.io_priority.class_ == "IOPRIO_CLASS_BE"
    assert p.capabilities is not None and p.capabilities.inheritable == ["CAP_CHOWN", "CAP_KILL"]
    assert p.oom_score_adj == 100 and p.no_new_privileges is True
    assert p.scheduler == {
        "policy": "SCHED_OTHER",
        "nice": 5,
        "flags": ["SCHED_FLAG_RESET_ON_FORK"],
    }
    assert spec.domainname == "example.org"
    assert spec.mounts[1].uid_mappings[0].host_id == 100000
    assert spec.hooks is not None
    for name in ("prestart", "create_runtime", "create_container", "start_container"):
        (hook,) = getattr(spec.hooks, name)
        assert (hook.path, hook.args, hook.timeout) == ("/usr/bin/hook", ["hook", "--x"], 5)
    assert [h.path for h in spec.hooks.poststop] == ["/usr/bin/hook"]
    assert linux.namespace("network") is not None
    assert linux.namespace("network").path == "/var/run/netns/x"  # type: ignore[union-attr]
    assert linux.namespace("pid").path is None  # type: ignore[union-attr]
    assert linux.time_offsets == {
        "monotonic": {"secs": 172800, "nanosecs": 0},
        "boottime": {"secs": 604800, "nanosecs": 0},
    }
    assert linux.devices[0].file_mode == 0o666 and linux.devices[1].major is None
    r = linux.resources
    assert r.memory is not None and r.memory.kernel_tcp == -1 and r.memory.check_before_update
    assert r.memory.disable_oom_killer is False
    assert r.cpu is not None and r.cpu.realtime_runtime == 950000 and r.cpu.burst == 100000
    assert r.pids is not None and r.pids.limit == 32771
    assert r.block_io is not None
    assert r.block_io.weight_device[0].leaf_weight == 300
    assert r.block_io.weight_device[1].leaf_weight is None
    assert r.block_io.throttle_read_bps_device[0].rate == 1048576
    assert r.block_io.throttle_write_iops_device[0].minor == 0
    assert r.hugepage_limits[0].page_size == "2MB"
    assert r.devices[1].allow is True and r.devices[0].type is None
    assert r.unified["memory.high"] == "max"
    assert r.network == {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]}
    assert linux.seccomp is not None
    assert linux.seccomp.default_errno_ret == 1
    assert linux.seccomp.syscalls[1].errno_ret == 13
    arg = linux.seccomp.syscalls[2].args[1]
    assert (arg.index, arg.value, arg.value_two, arg.op) == (1, 255, 8, "SCMP_CMP_MASKED_EQ")
    assert linux.sysctl == {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256"}
    assert linux.readonly_paths == ["/proc/sys", "/proc/sysrq-trigger"]
    assert linux.rootfs_propagation == "slave"


def test_full_config_round_trips() -> None:
    doc = full_config()
    assert parse_spec(doc).to_json() == doc


def test_net_devices_survive_round_trip() -> None:
    doc = set_at(full_config(), ["linux", "netDevices"], {"eth1": {"name": "ctr1"}})
    assert parse_spec(doc).to_json() == doc


def test_seccomp_arg_without_value_two_round_trips() -> None:
    doc = delete_at(full_config(), ["linux", "seccomp", "syscalls", 2, "args", 0, "valueTwo"])
    assert parse_spec(doc).to_json() == doc


def test_unknown_keys_are_ignored() -> None:
    doc = set_at(default_spec(), ["process", "x-extension"], {"anything": [1, 2]})
    doc["vm"] = {"hypervisor": {"path": "/x"}}
    spec = parse_spec(doc)
    assert spec.to_json() == default_spec()


def test_explicit_null_is_absent() -> None:
    doc = set_at(default_spec(), ["hostname"], None)
    doc["linux"]["resources"] = None
    spec = parse_spec(doc)
    assert spec.hostname is None
    assert spec.linux is not None and spec.linux.resources is None
    assert "hostname" not in spec.to_json()


def test_empty_collections_are_left_out() -> None:
    # documented behaviour of Record.to_json: [] and {} are the same as absent
    doc = set_at(default_spec(), ["annotations"], {})
    doc["linux"]["devices"] = []
    out = parse_spec(doc).to_json()
    assert "annotations" not in out and "devices" not in out["linux"]


def test_integral_floats_become_ints() -> None:
    doc = set_at(full_config(), ["linux", "resources", "memory", "limit"], 1024.0)
    spec = parse_spec(doc)
    limit = spec.linux.resources.memory.limit  # type: ignore[union-attr]
    assert limit == 1024 and type(limit) is int


def test_parse_resources() -> None:
    data = full_config()["linux"]["resources"]
    res = parse_resources(data)
    assert isinstance(res, LinuxResources)
    assert res.to_json() == data
    with pytest.raises(SpecError, match=r"^pids\.limit: expected an integer"):
        parse_resources({"pids": {"limit": "many"}})


# --- ociVersion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3", "1.0.0-rc5", "1.10.22"]
)
def test_any_1x_version_is_accepted(version: str) -> None:
    assert parse_spec(set_at(default_spec(), ["ociVersion"], version)).oci_version == version


@pytest.mark.parametrize("version", ["2.0.0", "0.9", "", "1", "1.", "1.x", "v1.0.0", "1.0.0.0"])
def test_other_versions_are_refused(version: str) -> None:
    with pytest.raises(SpecError, match=r"^ociVersion: unsupported version"):
        parse_spec(set_at(default_spec(), ["ociVersion"], version))


def test_missing_version_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^ociVersion"):
        parse_spec(delete_at(default_spec(), ["ociVersion"]))


def test_spec_error_is_invalid_argument() -> None:
    assert issubclass(SpecError, InvalidArgument)


# --- type errors name the JSON path ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["linux", "resources", "memory", "limit"],
            "1g",
            "linux.resources.memory.limit: expected an integer",
        ),
        (
            ["linux", "resources", "memory", "limit"],
            True,
            "linux.resources.memory.limit: expected an integer",
        ),
        (
            ["linux", "resources", "memory", "limit"],
            1.5,
            "linux.resources.memory.limit: expected an integer",
        ),
        (["linux", "resources", "pids"], [1], "linux.resources.pids: expected an object"),
        (["process", "args", 1], 7, "process.args[1]: expected a string"),
        (["process", "args"], "sh", "process.args: expected a list"),
        (["process", "terminal"], "yes", "process.terminal: expected true or false"),
        (["process", "terminal"], 1, "process.terminal: expected true or false"),
        (
            ["process", "user", "additionalGids", 0],
            "5",
            "process.user.additionalGids[0]: expected an integer",
        ),
        (["process", "rlimits", 0, "hard"], "1024", "process.rlimits[0].hard: expected an integer"),
        (["annotations", "org.example.key"], 1, "annotations.org.example.key: expected a string"),
        (["annotations"], [], "annotations: expected an object"),
        (["mounts", 1, "options", 0], None, "mounts[1].options[0]: expected a string"),
        (
            ["mounts", 1, "uidMappings", 0, "size"],
            "x",
            "mounts[1].uidMappings[0].size: expected an integer",
        ),
        (
            ["hooks", "poststop", 0, "timeout"],
            "5s",
            "hooks.poststop[0].timeout: expected an integer",
        ),
        (
            ["linux", "sysctl", "net.core.somaxconn"],
            256,
            "linux.sysctl.net.core.somaxconn: expected a string",
        ),
        (
            ["linux", "resources", "blockIO", "throttleReadBpsDevice", 0, "rate"],
            "1m",
            "linux.resources.blockIO.throttleReadBpsDevice[0].rate: expected an integer",
        ),
        (
            ["linux", "seccomp", "syscalls", 2, "args", 1, "valueTwo"],
            "8",
            "linux.seccomp.syscalls[2].args[1].valueTwo: expected an integer",
        ),
        (
            ["linux", "resources", "unified", "memory.high"],
            5,
            "linux.resources.unified.memory.high: expected a string",
        ),
        (["root"], "rootfs", "root: expected an object"),
        (["ociVersion"], 1.2, "ociVersion: expected a string"),
    ],
)
def test_type_errors_name_the_path(path: list[str | int], value: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(set_at(full_config(), path, value))
    assert str(info.value).startswith(message + ", got ")


def test_long_values_are_abbreviated_in_errors() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(set_at(default_spec(), ["hostname"], ["x" * 500]))
    assert len(str(info.value)) < 120 and str(info.value).endswith("...")


@pytest.mark.parametrize("doc", [None, [], "config", 1, True])
def test_document_must_be_an_object(doc: Any) -> None:
    with pytest.raises(SpecError, match=r"^\.: expected an object"):
        parse_spec(doc)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (["root", "path"], "root.path: required field is missing"),
        (["mounts", 0, "destination"], "mounts[0].destination: required field is missing"),
        (["linux", "namespaces", 0, "type"], "linux.namespaces[0].type: required field is missing"),
        (["process", "rlimits", 0, "type"], "process.rlimits[0].type: required field is missing"),
        (["hooks", "prestart", 0, "path"], "hooks.prestart[0].path: required field is missing"),
        (["linux", "devices", 0, "type"], "linux.devices[0].type: required field is missing"),
        (
            ["linux", "seccomp", "syscalls", 0, "action"],
            "linux.seccomp.syscalls[0].action: required field is missing",
        ),
        (
            ["linux", "seccomp", "syscalls", 2, "args", 0, "op"],
            "linux.seccomp.syscalls[2].args[0].op: required field is missing",
        ),
        (
            ["linux", "resources", "blockIO", "weightDevice", 0, "major"],
            "linux.resources.blockIO.weightDevice[0].major: required field is missing",
        ),
    ],
)
def test_missing_required_fields(path: list[str | int], message: str) -> None:
    doc = full_config()
    with pytest.raises(SpecError, match="^" + message.replace("[", r"\[").replace(".", r"\.")):
        parse_spec(delete_at(doc, path))
    with pytest.raises(SpecError, match=r"required field is missing"):
        parse_spec(set_at(doc, path, None))


# --- semantic validation --------------------------------------------------------------------


def test_duplicate_namespace_is_refused() -> None:
    doc = default_spec()
    doc["linux"]["namespaces"].append({"type": "pid", "path": "/proc/1/ns/pid"})
    with pytest.raises(SpecError, match=r"^linux\.namespaces\[5\]: namespace 'pid' given twice"):
        parse_spec(doc)


@pytest.mark.parametrize("ns_type", ["net", "mnt", "PID", "", "users"])
def test_unknown_namespace_type_is_refused(ns_type: str) -> None:
    doc = default_spec()
    doc["linux"]["namespaces"].insert(0, {"type": ns_type})
    with pytest.raises(SpecError, match=r"^linux\.namespaces\[0\]\.type: unknown namespace"):
        parse_spec(doc)


@pytest.mark.parametrize("key", ["uidMappings", "gidMappings"])
def test_id_mappings_need_a_user_namespace(key: str) -> None:
    doc = default_spec()
    doc["linux"][key] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    with pytest.raises(SpecError, match=r"need a user namespace"):
        parse_spec(doc)
    doc["linux"]["namespaces"].append({"type": "user"})
    assert parse_spec(doc).linux.namespace("user") is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("cwd", ["", "home", "./", "relative/dir"])
def test_relative_cwd_is_refused(cwd: str) -> None:
    with pytest.raises(SpecError, match=r"^process\.cwd: must be an absolute path"):
        parse_spec(set_at(default_spec(), ["process", "cwd"], cwd))


def test_missing_cwd_defaults_to_root() -> None:
    spec = parse_spec(delete_at(default_spec(), ["process", "cwd"]))
    assert spec.process is not None and spec.process.cwd == "/"


@pytest.mark.parametrize("dest", ["proc", "", "../etc", "dev/shm"])
def test_relative_mount_destination_is_refused(dest: str) -> None:
    with pytest.raises(SpecError, match=r"^mounts\[2\]\.destination: must be absolute"):
        parse_spec(set_at(default_spec(), ["mounts", 2, "destination"], dest))


def test_all_namespace_types_accepted_once_each() -> None:
    doc = default_spec()
    doc["linux"]["namespaces"] = [{"type": t} for t in reversed(NAMESPACE_TYPES)]
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    spec = parse_spec(doc)
    assert [ns.type for ns in spec.linux.namespaces] == list(reversed(NAMESPACE_TYPES))  # type: ignore[union-attr]


# --- load_spec ------------------------------------------------------------------------------


def test_load_spec(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(full_config()))
    assert load_spec(str(path)).to_json() == full_config()


def test_load_spec_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    with pytest.raises(SpecError, match=r"config\.json: no such file"):
        load_spec(str(path))
    path.write_text("{not json")
    with pytest.raises(SpecError, match=r"config\.json: invalid JSON"):
        load_spec(str(path))
    path.write_text(json.dumps(set_at(default_spec(), ["process", "cwd"], "x")))
    with pytest.raises(SpecError) as info:
        load_spec(str(path))
    assert str(info.value).startswith(f"{path}: process.cwd: must be an absolute path")


# --- Record basics --------------------------------------------------------------------------


class _Pair(Record):
    name: str = F(STR, required=True)
    count: int = F(INT, 3)
    tags: list[str] = F(list_of(STR))


def test_record_constructor_defaults_and_errors() -> None:
    pair = _Pair(name="x")
    assert (pair.name, pair.count, pair.tags) == ("x", 3, [])
    assert pair.to_json() == {"name": "x", "count": 3}
    assert _Pair(name="x") == pair and _Pair(name="y") != pair
    assert _Pair(name="x").tags is not pair.tags  # no shared mutable default
    assert "name='x'" in repr(pair) and "tags" not in repr(pair)
    with pytest.raises(TypeError, match="missing field 'name'"):
        _Pair()
    with pytest.raises(TypeError, match="unknown fields"):
        _Pair(name="x", colour="red")
    assert Spec().to_json() == {"ociVersion": ""}


def test_record_fields_are_not_class_attributes() -> None:
    assert not hasattr(_Pair, "name")
    assert [f.json for f in Spec.__fields__][:2] == ["ociVersion", "process"]
    assert _json.__all__  # the module's public surface is declared


# --- hypothesis -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(doc: Any, prefix: list[str | int]) -> list[list[str | int]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, [*prefix, i])
    return out


_FULL_PATHS = _paths(full_config(), [])


def _parses_or_spec_error(doc: Any) -> None:
    try:
        spec = parse_spec(doc)
    except SpecError:
        return
    assert isinstance(spec, Spec)
    json.dumps(spec.to_json())  # whatever parses can be written back


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_parses_or_raises_spec_error(doc: Any) -> None:
    _parses_or_spec_error(doc)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["ociVersion", "process", "root", "mounts", "hooks", "linux", "annotations"]
        ),
        json_values,
    )
)
def test_random_top_level_fields_parse_or_raise_spec_error(doc: dict[str, Any]) -> None:
    _parses_or_spec_error(doc)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_FULL_PATHS), json_values)
def test_mutated_full_config_parses_or_raises_spec_error(path: list[str | int], value: Any) -> None:
    _parses_or_spec_error(set_at(full_config(), path, value))


# a strategy for valid configs: no nulls, no empty collections (those are dropped)

_text = st.text(min_size=1, max_size=10)
_abs_path = st.lists(st.text("abc-_.x", min_size=1, max_size=5), max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)
_ints = st.integers(min_value=-(2**63), max_value=2**64)


def _obj(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


def _nonempty(s: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(s, min_size=1, max_size=3)


_id_map = _obj({"containerID": _ints, "hostID": _ints, "size": _ints}, {})
_hook = _obj(
    {"path": _abs_path}, {"args": _nonempty(_text), "env": _nonempty(_text), "timeout": _ints}
)
_process = _obj(
    {"cwd": _abs_path},
    {
        "args": _nonempty(_text),
        "env": _nonempty(_text),
        "terminal": st.booleans(),
        "user": _obj(
            {"uid": _ints, "gid": _ints},
            {"umask": _ints, "additionalGids": _nonempty(_ints), "username": _text},
        ),
        "capabilities": _obj({}, {"bounding": _nonempty(_text), "ambient": _nonempty(_text)}),
        "rlimits": _nonempty(_obj({"type": _text, "hard": _ints, "soft": _ints}, {})),
        "noNewPrivileges": st.booleans(),
        "oomScoreAdj": _ints,
        "ioPriority": _obj({"class": _text, "priority": _ints}, {}),
    },
)
_mount = _obj(
    {"destination": _abs_path},
    {
        "source": _text,
        "type": _text,
        "options": _nonempty(_text),
        "uidMappings": _nonempty(_id_map),
    },
)
_resources = _obj(
    {},
    {
        "devices": _nonempty(
            _obj({"allow": st.booleans()}, {"type": _text, "major": _ints, "access": _text})
        ),
        "memory": _obj({}, {"limit": _ints, "swap": _ints, "disableOOMKiller": st.booleans()}),
        "cpu": _obj({}, {"shares": _ints, "quota": _ints, "cpus": _text}),
        "pids": _obj({"limit": _ints}, {}),
        "blockIO": _obj(
            {},
            {
                "weight": _ints,
                "throttleReadBpsDevice": _nonempty(
                    _obj({"major": _ints, "minor": _ints, "rate": _ints}, {})
                ),
            },
        ),
        "hugepageLimits": _nonempty(_obj({"pageSize": _text, "limit": _ints}, {})),
        "unified": st.dictionaries(_text, _text, min_size=1, max_size=3),
    },
)
_seccomp = _obj(
    {"defaultAction": _text},
    {
        "architectures": _nonempty(_text),
        "syscalls": _nonempty(
            _obj(
                {"names": _nonempty(_text), "action": _text},
                {
                    "errnoRet": _ints,
                    "args": _nonempty(
                        _obj({"index": _ints, "value": _ints, "valueTwo": _ints, "op": _text}, {})
                    ),
                },
            )
        ),
    },
)


@st.composite
def _linux(draw: st.DrawFn) -> dict[str, Any]:
    order = draw(st.permutations(NAMESPACE_TYPES))
    types = list(order[: draw(st.integers(1, len(order)))])
    linux: dict[str, Any] = draw(
        _obj(
            {},
            {
                "resources": _resources,
                "seccomp": _seccomp,
                "sysctl": st.dictionaries(_text, _text, min_size=1, max_size=3),
                "maskedPaths": _nonempty(_abs_path),
                "readonlyPaths": _nonempty(_abs_path),
                "cgroupsPath": _text,
                "rootfsPropagation": st.sampled_from(["private", "rslave", "shared"]),
                "devices": _nonempty(
                    _obj({"path": _abs_path, "type": st.sampled_from("cbup")}, {"major": _ints})
                ),
            },
        )
    )
    linux["namespaces"] = [
        {"type": t, "path": draw(_abs_path)} if draw(st.booleans()) else {"type": t} for t in types
    ]
    if "user" in types and draw(st.booleans()):
        linux["uidMappings"] = draw(_nonempty(_id_map))
        linux["gidMappings"] = draw(_nonempty(_id_map))
    return linux


valid_configs = _obj(
    {
        "ociVersion": st.sampled_from(["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3"])
        | st.builds("1.{}.{}".format, st.integers(0, 99), st.integers(0, 99)),
    },
    {
        "process": _process,
        "root": _obj({"path": _text}, {"readonly": st.booleans()}),
        "hostname": st.text(max_size=10),
        "mounts": _nonempty(_mount),
        "hooks": _obj({}, {"prestart": _nonempty(_hook), "poststop": _nonempty(_hook)}),
        "annotations": st.dictionaries(_text, st.text(max_size=5), min_size=1, max_size=3),
        "linux": _linux(),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs)
def test_valid_configs_round_trip(doc: dict[str, Any]) -> None:
    assert parse_spec(doc).to_json() == doc
    assert parse_spec(json.loads(json.dumps(doc))).to_json() == doc


# --- the fast paths ------------------------------------------------------------------------


class _Lists(Record):
    names: list[str] = F(list_of(STR))
    counts: list[int] = F(list_of(INT))


@given(st.lists(st.one_of(st.text(max_size=3), st.integers(), st.booleans(), st.floats())))
def test_scalar_lists_agree_with_the_item_converter(items: list[Any]) -> None:
    """A list of exactly the right type is copied whole; anything else goes item by
    item, so the error names the first wrong item and integral floats still convert."""
    for key, conv in (("names", STR), ("counts", INT)):
        try:
            expected: Any = [conv(v, f"{key}[{i}]") for i, v in enumerate(items)]
        except SpecError as exc:
            expected = str(exc)
        try:
            got: Any = getattr(_Lists.from_json({key: items}), key)
        except SpecError as exc:
            got = str(exc)
        assert got == expected
        if isinstance(got, list):
            assert got is not items  # a copy: the record never shares the parsed JSON


class _Scalars(Record):
    name: str = F(STR)
    count: int = F(INT)
    flag: bool = F(BOOL)
    raw: Any = F(ANY)


@given(st.one_of(st.text(max_size=3), st.integers(), st.booleans(), st.floats(), st.none()))
@example(float("nan"))  # passes ANY as it is, and equals nothing
@example(True)
@example(2.0)
def test_scalar_fields_agree_with_their_converter(value: Any) -> None:
    """from_json takes a value of exactly the field's type as it is (no path string
    made); anything else still goes through the converter: same value, same error."""
    for key, conv in (("name", STR), ("count", INT), ("flag", BOOL), ("raw", ANY)):
        try:
            expected: Any = None if value is None else conv(value, key)
        except SpecError as exc:
            expected = str(exc)
        try:
            got: Any = getattr(_Scalars.from_json({key: value}), key)
        except SpecError as exc:
            got = str(exc)
        assert repr(got) == repr(expected) and type(got) is type(expected)  # nan != nan


def test_bool_is_not_an_int_in_a_list() -> None:
    with pytest.raises(SpecError, match=r"^counts\[1\]: expected an integer"):
        _Lists.from_json({"counts": [1, True]})


def test_a_seccomp_profile_is_parsed_once_per_text() -> None:
    config = full_config()
    first = parse_spec(copy.deepcopy(config)).linux
    second = parse_spec(copy.deepcopy(config)).linux
    assert first is not None and second is not None
    assert first.seccomp is not None and first.seccomp is second.seccomp
    config["linux"]["seccomp"]["defaultAction"] = "SCMP_ACT_KILL"
    third = parse_spec(config).linux
    assert third is not None and third.seccomp is not first.seccomp
    assert third.seccomp is not None and third.seccomp.default_action == "SCMP_ACT_KILL"


def test_a_bad_seccomp_profile_fails_every_time() -> None:
    config = set_at(full_config(), ["linux", "seccomp", "syscalls", 0, "names"], "read")
    for _ in range(2):
        with pytest.raises(SpecError, match=r"^linux\.seccomp\.syscalls\[0\]\.names"):
            parse_spec(copy.deepcopy(config))
