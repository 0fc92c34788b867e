"""``run``/``create`` flags → the Docker create body."""

from __future__ import annotations

import json

import pytest

from portside.cli.flags import FlagError, parse
from portside.cli.runopts import RUN_OPTS, build_create_body, parse_mount, parse_port_specs


def body(*argv: str) -> dict:
    parsed = parse(RUN_OPTS, list(argv), interspersed=False)
    result, name = build_create_body(parsed, detach=bool(parsed.detach))
    result["_name"] = name
    return result


def test_minimal_run() -> None:
    b = body("busybox", "echo", "hi")
    assert b["Image"] == "busybox" and b["Cmd"] == ["echo", "hi"]
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, True, True)
    assert b["Entrypoint"] is None and b["_name"] is None
    assert b["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert "Init" not in b["HostConfig"] and "PidsLimit" not in b["HostConfig"]


def test_interactive_tty_and_detach() -> None:
    b = body("-it", "--rm", "busybox", "sh")
    assert b["Tty"] and b["OpenStdin"] and b["AttachStdin"] and b["StdinOnce"]
    assert b["HostConfig"]["AutoRemove"]
    d = body("-dit", "busybox")
    assert d["OpenStdin"] and not d["AttachStdin"] and not d["StdinOnce"]
    assert not d["AttachStdout"] and not d["AttachStderr"]


def test_resources_and_limits() -> None:
    b = body(
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "--cpus",
        "1.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0-1",
        "--pids-limit",
        "100",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "1g",
        "--oom-kill-disable",
        "--oom-score-adj",
        "-500",
        "busybox",
    )
    h = b["HostConfig"]
    assert h["Memory"] == 64 << 20 and h["MemorySwap"] == -1
    assert h["NanoCpus"] == 1_500_000_000 and h["CpuShares"] == 512
    assert h["CpusetCpus"] == "0-1" and h["PidsLimit"] == 100
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert h["ShmSize"] == 1 << 30 and h["OomKillDisable"] and h["OomScoreAdj"] == -500


def test_security_and_namespaces(tmp_path) -> None:
    profile = tmp_path / "seccomp.json"
    profile.write_text('{ "defaultAction": "SCMP_ACT_ALLOW" }')
    b = body(
        "--privileged",
        "--read-only",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        f"seccomp={profile}",
        "--security-opt",
        "seccomp:unconfined",
        "--init",
        "--ipc",
        "host",
        "--pid",
        "host",
        "--uts",
        "host",
        "--userns",
        "host",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--group-add",
        "audio",
        "busybox",
    )
    h = b["HostConfig"]
    assert h["Privileged"] and h["ReadonlyRootfs"] and h["Init"] is True
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["SecurityOpt"] == [
        "no-new-privileges",
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}',
        "seccomp:unconfined",
    ]
    assert (h["IpcMode"], h["PidMode"], h["UTSMode"], h["UsernsMode"]) == ("host",) * 4
    assert h["Sysctls"] == {"net.ipv4.ip_forward": "1"} and h["GroupAdd"] == ["audio"]
    with pytest.raises(FlagError, match="Invalid --security-opt"):
        body("--security-opt", "bogus", "busybox")


def test_env_labels_and_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOSTVAR", "h")
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\n")
    labels = tmp_path / "labels"
    labels.write_text("team=core\n# c\n")
    b = body(
        "--env-file",
        str(env_file),
        "-e",
        "A=1",
        "-e",
        "HOSTVAR",
        "-l",
        "x=y",
        "--label-file",
        str(labels),
        "busybox",
    )
    assert b["Env"] == ["FROM_FILE=1", "A=1", "HOSTVAR=h"]
    assert b["Labels"] == {"team": "core", "x": "y"}


def test_volumes_mounts_tmpfs_devices() -> None:
    b = body(
        "-v",
        "/src:/dst:ro",
        "-v",
        "/anon",
        "-v",
        "named:/data",
        "--mount",
        "type=bind,source=/a,target=/b,readonly",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=64m",
        "--tmpfs",
        "/run:rw,size=1m",
        "--device",
        "/dev/fuse",
        "busybox",
    )
    h = b["HostConfig"]
    assert h["Binds"] == ["/src:/dst:ro", "named:/data"]
    assert b["Volumes"] == {"/anon": {}}
    assert h["Mounts"] == [
        {"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20}},
    ]
    assert h["Tmpfs"] == {"/run": "rw,size=1m"}
    assert h["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}
    ]


def test_bad_mounts() -> None:
    with pytest.raises(FlagError, match='invalid argument "type=bind,source=/a" for "--mount"'):
        body("--mount", "type=bind,source=/a", "busybox")
    with pytest.raises(ValueError, match="unexpected key 'colour'"):
        parse_mount("type=bind,target=/b,colour=red")
    with pytest.raises(ValueError, match="must be a key=value pair"):
        parse_mount("type=bind,target=/b,source")


def test_health_and_stop() -> None:
    b = body(
        "--health-cmd",
        "true",
        "--health-interval",
        "1m30s",
        "--health-retries",
        "3",
        "--stop-signal",
        "SIGINT",
        "--stop-timeout",
        "5",
        "--entrypoint",
        "",
        "busybox",
    )
    assert b["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 90 * 10**9,
        "Timeout": 0,
        "StartPeriod": 0,
        "StartInterval": 0,
        "Retries": 3,
    }
    assert b["StopSignal"] == "SIGINT" and b["StopTimeout"] == 5
    assert b["Entrypoint"] == [""]
    assert body("--no-healthcheck", "busybox")["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(FlagError, match="conflicts with --health"):
        body("--no-healthcheck", "--health-cmd", "x", "busybox")
    with pytest.raises(FlagError, match="--health-interval cannot be negative"):
        body("--health-interval", "-1s", "busybox")


def test_restart_conflicts_with_rm() -> None:
    assert body("--restart", "on-failure:2", "busybox")["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure",
        "MaximumRetryCount": 2,
    }
    with pytest.raises(FlagError, match="cannot specify both --restart and --rm"):
        body("--restart", "always", "--rm", "busybox")
    with pytest.raises(FlagError, match="unknown policy"):
        body("--restart", "often", "busybox")


def test_ports_network_hosts_logs() -> None:
    b = body(
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:53:53/udp",
        "--expose",
        "9000-9001",
        "--network",
        "host",
        "--add-host",
        "db:10.0.0.2",
        "--add-host",
        "cache=10.0.0.3",
        "--dns",
        "1.1.1.1",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=10m",
        "--hostname",
        "box",
        "-w",
        "/work",
        "-u",
        "1000:1000",
        "--name",
        "web",
        "busybox",
    )
    assert b["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {}}
    h = b["HostConfig"]
    assert h["PortBindings"]["53/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "53"}]
    assert h["NetworkMode"] == "host" and h["ExtraHosts"] == ["db:10.0.0.2", "cache:10.0.0.3"]
    assert h["Dns"] == ["1.1.1.1"]
    assert h["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert (b["Hostname"], b["WorkingDir"], b["User"], b["_name"]) == (
        "box",
        "/work",
        "1000:1000",
        "web",
    )
    json.dumps(b)  # serialisable as is


def test_port_specs_ranges() -> None:
    _, bindings = parse_port_specs(["8000-8001:80-81"])
    assert bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8000"}],
        "81/tcp": [{"HostIp": "", "HostPort": "8001"}],
    }
    with pytest.raises(ValueError):
        parse_port_specs(["a:b:c:d"])
