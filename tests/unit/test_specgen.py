"""portside.runtime.specgen: the default config.json, compared with ``runc spec``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from portside.errors import AlreadyExists, NotFound
from portside.oci import load_spec, parse_spec
from portside.runtime.specgen import DEFAULT_HOSTNAME, default_spec, write_spec


def _mount(spec: dict, destination: str) -> dict:
    (found,) = [m for m in spec["mounts"] if m["destination"] == destination]
    return found


def _ns_types(spec: dict) -> list[str]:
    return [ns["type"] for ns in spec["linux"]["namespaces"]]


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid(rootless: bool) -> None:
    spec = parse_spec(default_spec(rootless=rootless))
    assert spec.process is not None and spec.process.args == ["sh"]
    assert spec.root is not None and spec.root.path == "rootfs" and spec.root.readonly
    assert spec.hostname == DEFAULT_HOSTNAME == "portside"


def test_default_spec_rootful() -> None:
    spec = default_spec()
    assert spec["process"]["terminal"] is True
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert _ns_types(spec) == ["pid", "network", "ipc", "uts", "mount"]
    assert "gid=5" in _mount(spec, "/dev/pts")["options"]
    assert _mount(spec, "/sys")["type"] == "sysfs"
    assert _mount(spec, "/sys/fs/cgroup")["type"] == "cgroup"
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "uidMappings" not in spec["linux"]


def test_default_spec_rootless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setattr(os, "getegid", lambda: 567)
    spec = default_spec(rootless=True)
    assert _ns_types(spec) == ["pid", "ipc", "uts", "mount", "user"]
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1234, "size": 1}]
    assert spec["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 567, "size": 1}]
    sysfs = _mount(spec, "/sys")
    assert (sysfs["type"], sysfs["source"], sysfs["options"][0]) == ("none", "/sys", "rbind")
    assert not [o for m in spec["mounts"] for o in m.get("options", []) if o.startswith("gid=")]
    assert "resources" not in spec["linux"]


def test_default_spec_arguments_and_fresh_copies() -> None:
    args = ["sh", "-c", "true"]
    spec = default_spec(terminal=False, args=args)
    assert spec["process"]["terminal"] is False
    assert spec["process"]["args"] == args and spec["process"]["args"] is not args
    spec["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    spec["mounts"][4]["options"].append("ro")
    spec["linux"]["maskedPaths"].clear()
    again = default_spec()
    assert again["process"]["capabilities"]["bounding"] == [
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
    ]
    assert again["mounts"][4]["options"] == ["nosuid", "noexec", "nodev"]
    assert len(again["linux"]["maskedPaths"]) == 10


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_spec(tmp_path: Path, rootless: bool) -> None:
    argv = ["runc", "spec", "--bundle", str(tmp_path)] + (["--rootless"] if rootless else [])
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    theirs = json.loads((tmp_path / "config.json").read_text())
    ours = default_spec(rootless=rootless)
    assert ours.pop("hostname") == "portside"
    theirs.pop("hostname")
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key


def test_write_spec(tmp_path: Path) -> None:
    spec = default_spec(args=["true"])
    path = write_spec(str(tmp_path), spec)
    assert path == str(tmp_path / "config.json")
    text = (tmp_path / "config.json").read_text()
    assert text.startswith('{\n\t"ociVersion"')
    assert json.loads(text) == spec
    assert load_spec(path).process.args == ["true"]


def test_write_spec_refuses_existing_unless_forced(tmp_path: Path) -> None:
    write_spec(str(tmp_path), default_spec(args=["one"]))
    with pytest.raises(AlreadyExists, match=r"config\.json"):
        write_spec(str(tmp_path), default_spec(args=["two"]))
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["one"]
    write_spec(str(tmp_path), default_spec(args=["two"]), force=True)
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["two"]
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_write_spec_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nope"):
        write_spec(str(tmp_path / "nope"), default_spec())
