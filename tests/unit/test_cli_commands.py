"""The ``portside`` CLI end to end against the fake daemon (a subprocess per call,
with real file descriptors): requests sent, output printed, exit codes."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from portside.client.fakeserver import FakeDaemon, frame

CID = "4f5e6d7c8b9a" + "0" * 52
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def fake(tmp_path):
    with FakeDaemon(str(tmp_path)) as daemon:
        yield daemon


def cli(
    fake: FakeDaemon | None,
    *args: str,
    stdin: bytes = b"",
    env: dict | None = None,
    host: bool = True,
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PORTSIDE_HOST", "DOCKER_HOST")}
    full_env.update(env or {})
    prefix = ["-H", fake.host] if fake is not None and host else []
    return subprocess.run(
        [sys.executable, "-m", "portside.cli.main", *prefix, *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=REPO,
        timeout=30,
        check=False,
    )


def out(result: subprocess.CompletedProcess) -> str:
    return result.stdout.decode()


def err(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode()


def _streamer(*frames: bytes):
    def handler(sock, rec, params):
        sock.sendall(b"".join(frames))
        sock.close()

    return handler


def _run_routes(fake: FakeDaemon, code: int = 0, frames: tuple = ()) -> None:
    fake.route("POST", "/containers/create", json_body={"Id": CID, "Warnings": []}, status=201)
    fake.route("POST", "/containers/{id}/attach", hijack=_streamer(*frames))
    fake.route("POST", "/containers/{id}/start", status=204)
    fake.route("POST", "/containers/{id}/wait", json_body={"StatusCode": code, "Error": None})
    fake.route(
        "GET",
        "/containers/{id}/json",
        json_body={"Id": CID, "State": {"Running": False}, "Config": {"Tty": False}},
    )


def test_run_attached_demultiplexes_and_exits_with_the_code(fake: FakeDaemon) -> None:
    _run_routes(fake, 3, (frame(1, b"hello\n"), frame(2, b"oops\n"), frame(1, b"bye\n")))
    result = cli(fake, "run", "--name", "web", "busybox", "sh", "-c", "exit 3")
    assert result.returncode == 3
    assert out(result) == "hello\nbye\n" and err(result) == "oops\n"
    order = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests]
    assert order[:4] == [
        ("POST", "create"),
        ("POST", "attach"),
        ("POST", "wait"),
        ("POST", "start"),
    ]
    assert fake.find("POST", "/containers/create")[0].query == {"name": ["web"]}
    assert fake.find("POST", f"/containers/{CID}/wait")[0].query == {"condition": ["next-exit"]}


def test_run_rm_waits_for_removal_and_d_prints_the_id(fake: FakeDaemon) -> None:
    _run_routes(fake)
    assert cli(fake, "run", "--rm", "busybox", "true").returncode == 0
    assert fake.find("POST", f"/containers/{CID}/wait")[0].query == {"condition": ["removed"]}
    fake.requests.clear()
    result = cli(fake, "run", "-d", "busybox", "sleep", "9")
    assert result.returncode == 0 and out(result) == CID + "\n"
    assert not fake.find("POST", f"/containers/{CID}/attach")
    assert fake.find("POST", "/containers/create")[0].json()["AttachStdout"] is False


def test_run_stdin_is_forwarded_then_closed(fake: FakeDaemon) -> None:
    received: list[bytes] = []

    def echo(sock, rec, params):
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        received.append(data)
        sock.sendall(frame(1, data.upper()))
        sock.close()

    _run_routes(fake)
    fake.route("POST", "/containers/{id}/attach", hijack=echo)
    result = cli(fake, "run", "-i", "busybox", "cat", stdin=b"piped input\n")
    assert result.returncode == 0
    assert received == [b"piped input\n"] and out(result) == "PIPED INPUT\n"
    assert fake.find("POST", f"/containers/{CID}/attach")[0].query["stdin"] == ["1"]


def test_run_unknown_image(fake: FakeDaemon, tmp_path) -> None:
    fake.error("POST", "/containers/create", 404, "No such image: nope:latest")
    fake.error("POST", "/images/create", 404, "repository nope not found")
    home = {"HOME": str(tmp_path), "PORTSIDE_CONFIG": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}
    result = cli(fake, "run", "nope", env=home)
    assert result.returncode == 125
    assert err(result) == (
        "Unable to find image 'nope:latest' locally\n"
        "portside: Error response from daemon: repository nope not found.\n"
        "See 'portside run --help'.\n"
    )
    result = cli(fake, "run", "--pull", "never", "nope")
    assert result.returncode == 125
    assert err(result) == (
        "portside: Error response from daemon: No such image: nope:latest.\n"
        "See 'portside run --help'.\n"
    )


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ('exec: "nope": executable file not found in $PATH', 127),
        ("exec /bin/x: no such file or directory", 127),
        ("exec /etc/passwd: permission denied", 126),
        ("cgroup trouble", 125),
    ],
)
def test_run_start_errors_map_to_docker_codes(fake: FakeDaemon, message: str, code: int) -> None:
    _run_routes(fake)
    fake.error("POST", "/containers/{id}/start", 400, message)
    result = cli(fake, "run", "busybox", "nope")
    assert result.returncode == code
    assert err(result) == f"portside: Error response from daemon: {message}.\n"


def test_flag_errors_exit_125(fake: FakeDaemon) -> None:
    result = cli(fake, "run", "-m", "12x", "busybox")
    assert result.returncode == 125
    assert err(result) == (
        'invalid argument "12x" for "-m, --memory" flag: invalid size: \'12x\'\n'
        "See 'portside run --help'.\n"
    )
    assert cli(fake, "run", "--restart", "sometimes", "busybox").returncode == 125
    assert cli(fake, "ps", "--bogus").returncode == 125
    assert fake.requests == []


def test_argument_count_errors_exit_1(fake: FakeDaemon) -> None:
    result = cli(fake, "stop")
    assert result.returncode == 1
    assert err(result).startswith('"portside stop" requires at least 1 argument.\n')


def test_cannot_connect(tmp_path) -> None:
    env = {"PORTSIDE_HOST": f"unix://{tmp_path}/none.sock"}
    result = cli(None, "ps", env=env)
    assert result.returncode == 1
    assert err(result) == (
        f"Cannot connect to the Portside daemon at unix://{tmp_path}/none.sock. "
        "Is the daemon running?\n"
    )
    assert cli(None, "run", "busybox", env=env).returncode == 125


def test_host_from_environment(fake: FakeDaemon, tmp_path) -> None:
    fake.route("GET", "/containers/json", json_body=[])
    assert cli(fake, "ps", host=False, env={"DOCKER_HOST": fake.host}).returncode == 0
    result = cli(
        fake,
        "ps",
        host=False,
        env={"DOCKER_HOST": fake.host, "PORTSIDE_HOST": f"unix://{tmp_path}/x.sock"},
    )
    assert result.returncode == 1 and "x.sock" in err(result)


def test_ps_queries_and_quiet(fake: FakeDaemon) -> None:
    now = int(time.time())
    fake.route(
        "GET",
        "/containers/json",
        json_body=[
            {
                "Id": CID,
                "Names": ["/web"],
                "Image": "busybox",
                "Command": "sleep 100",
                "Created": now - 5 * 3600 - 30,  # "5 hours ago" whatever second the test runs in
                "Status": "Up 9 seconds",
                "State": "running",
                "Ports": [],
            }
        ],
    )
    result = cli(fake, "ps", "-a", "-n", "2", "--filter", "status=running", "-s")
    lines = out(result).splitlines()
    assert lines[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
        "SIZE",
    ]
    assert lines[1].startswith('4f5e6d7c8b9a   busybox   "sleep 100"   5 hours ago   ')
    query = fake.requests[-1].query
    assert query["all"] == ["1"] and query["limit"] == ["2"] and query["size"] == ["1"]
    assert json.loads(query["filters"][0]) == {"status": {"running": True}}
    assert out(cli(fake, "ps", "-q")) == "4f5e6d7c8b9a\n"
    assert out(cli(fake, "container", "ls", "-q", "--no-trunc")) == CID + "\n"
    assert fake.requests[-1].query.get("limit") is None
    assert cli(fake, "ps", "-l").returncode == 0
    assert fake.requests[-1].query["limit"] == ["1"]


def test_stop_rm_report_each_and_fail_at_the_end(fake: FakeDaemon) -> None:
    fake.route("POST", "/containers/{id}/stop", status=204)
    fake.error("POST", "/containers/missing/stop", 404, "No such container: missing")
    result = cli(fake, "stop", "-t", "3", "a", "missing", "b")
    assert result.returncode == 1
    assert out(result) == "a\nb\n"
    assert err(result) == "Error response from daemon: No such container: missing\n"
    assert fake.find("POST", "/containers/a/stop")[0].query == {"t": ["3"]}
    fake.route("DELETE", "/containers/{id}", status=204)
    assert out(cli(fake, "rm", "-fv", "a")) == "a\n"
    assert fake.find("DELETE", "/containers/a")[0].query == {"force": ["1"], "v": ["1"]}
    fake.route("POST", "/containers/{id}/kill", status=204)
    assert cli(fake, "kill", "-s", "HUP", "a").returncode == 0
    assert fake.find("POST", "/containers/a/kill")[0].query == {"signal": ["HUP"]}


def test_logs_demux_and_tty(fake: FakeDaemon) -> None:
    fake.route("GET", "/containers/{id}/json", json_body={"Id": CID, "Config": {"Tty": False}})
    stream = frame(1, b"out1\n") + frame(2, b"err1\n") + frame(1, b"out2\n")
    fake.route("GET", "/containers/{id}/logs", chunks=[stream[:3], stream[3:19], stream[19:]])
    result = cli(fake, "logs", "-t", "--tail", "5", "--since", "1700000000", "web")
    assert out(result) == "out1\nout2\n" and err(result) == "err1\n"
    query = fake.find("GET", f"/containers/{CID}/logs")[0].query
    assert query == {
        "stdout": ["1"],
        "stderr": ["1"],
        "timestamps": ["1"],
        "tail": ["5"],
        "since": ["1700000000"],
    }
    fake.route("GET", "/containers/{id}/json", json_body={"Id": CID, "Config": {"Tty": True}})
    fake.route("GET", "/containers/{id}/logs", raw=b"raw tty bytes\r\n")
    assert cli(fake, "logs", "-f", "web").stdout == b"raw tty bytes\r\n"


def test_inspect(fake: FakeDaemon) -> None:
    fake.route(
        "GET",
        "/containers/{id}/json",
        json_body={"Id": CID, "State": {"Status": "running"}, "Name": "/a<b>"},
    )
    fake.error("GET", "/containers/nope/json", 404, "No such container: nope")
    fake.error("GET", "/images/nope/json", 404, "No such image: nope")
    fake.error("GET", "/volumes/nope", 404, "get nope: no such volume")
    result = cli(fake, "inspect", "web")
    assert json.loads(out(result))[0]["Id"] == CID
    assert out(result).startswith('[\n    {\n        "Id"') and "\\u003cb\\u003e" in out(result)
    result = cli(fake, "inspect", "-f", "{{.State.Status}} {{.Name}}", "web", "nope")
    assert result.returncode == 1
    assert out(result) == "running /a<b>\n" and err(result) == "Error: No such object: nope\n"
    result = cli(fake, "container", "inspect", "nope")
    assert result.returncode == 1 and err(result) == "Error: No such container: nope\n"
    assert out(result) == "[]\n"


def test_exec_exit_code_and_detach(fake: FakeDaemon) -> None:
    fake.route("POST", "/containers/{id}/exec", json_body={"Id": "e1"}, status=201)
    fake.route("POST", "/exec/{id}/start", hijack=_streamer(frame(1, b"inside\n")))
    fake.route("GET", "/exec/{id}/json", json_body={"Running": False, "ExitCode": 5})
    result = cli(fake, "exec", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "web", "sh", "-c", "x")
    assert result.returncode == 5 and out(result) == "inside\n"
    created = fake.find("POST", "/containers/web/exec")[0].json()
    assert created["Cmd"] == ["sh", "-c", "x"] and created["Env"] == ["A=1"]
    assert (created["User"], created["WorkingDir"], created["AttachStdin"]) == (
        "nobody",
        "/tmp",
        False,
    )
    fake.route("POST", "/exec/{id}/start", status=200, raw=b"")
    assert cli(fake, "exec", "-d", "web", "sleep", "1").returncode == 0
    assert fake.requests[-1].json() == {"Detach": True, "Tty": False}


def test_start_attach_exit_code(fake: FakeDaemon) -> None:
    _run_routes(fake, 9, (frame(1, b"x\n"),))
    fake.route(
        "GET",
        "/containers/{id}/json",
        json_body={
            "Id": CID,
            "State": {"Running": False},
            "Config": {"Tty": False, "OpenStdin": False},
        },
    )
    result = cli(fake, "start", "-a", "web")
    assert result.returncode == 9 and out(result) == "x\n"
    assert out(cli(fake, "start", "web", "db")) == "web\ndb\n"


def test_images_tag_rmi(fake: FakeDaemon) -> None:
    fake.route(
        "GET",
        "/images/json",
        json_body=[
            {
                "Id": "sha256:" + "b" * 64,
                "RepoTags": ["busybox:latest"],
                "Created": 0,
                "Size": 4261550,
            }
        ],
    )
    lines = out(cli(fake, "images")).splitlines()
    assert lines[0] == "REPOSITORY   TAG       IMAGE ID       CREATED   SIZE"
    assert lines[1].startswith("busybox      latest    bbbbbbbbbbbb   N/A       4.26MB")
    assert out(cli(fake, "images", "-q")) == "b" * 12 + "\n"
    assert cli(fake, "images", "busybox").returncode == 0
    assert json.loads(fake.requests[-1].query["filters"][0]) == {"reference": {"busybox": True}}
    fake.route("POST", "/images/{name}/tag", status=201)
    assert cli(fake, "tag", "busybox", "me/box:1").returncode == 0
    assert fake.requests[-1].query == {"repo": ["me/box"], "tag": ["1"]}
    fake.route(
        "DELETE", "/images/{name}", json_body=[{"Untagged": "me/box:1"}, {"Deleted": "sha256:x"}]
    )
    assert out(cli(fake, "rmi", "me/box:1")) == "Untagged: me/box:1\nDeleted: sha256:x\n"


def test_load_and_import(fake: FakeDaemon, tmp_path) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"tar bytes")
    fake.route("POST", "/images/load", json_body={"stream": "Loaded image: busybox:latest\n"})
    result = cli(fake, "load", "-i", str(archive))
    assert result.returncode == 0 and out(result) == "Loaded image: busybox:latest\n"
    assert fake.requests[-1].body == b"tar bytes"
    fake.route("POST", "/images/create", json_body={"status": "sha256:abc"})
    result = cli(fake, "import", "-c", "CMD sh", "-", "me/imported:1", stdin=b"rootfs tar")
    assert out(result) == "sha256:abc\n"
    rec = fake.requests[-1]
    assert rec.query == {
        "fromSrc": ["-"],
        "repo": ["me/imported"],
        "tag": ["1"],
        "changes": ["CMD sh"],
    }
    assert rec.body == b"rootfs tar"
    result = cli(fake, "import", "https://example.com/x.tar")
    assert result.returncode == 1 and "not supported" in err(result)


def test_save_to_file(fake: FakeDaemon, tmp_path) -> None:
    fake.route("GET", "/images/get", chunks=[b"part1", b"part2"])
    target = tmp_path / "out.tar"
    assert cli(fake, "save", "-o", str(target), "busybox", "alpine").returncode == 0
    assert target.read_bytes() == b"part1part2"
    assert fake.requests[-1].query == {"names": ["busybox", "alpine"]}


def _tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _stat_header(name: str, mode: int) -> dict:
    stat = {
        "name": name,
        "size": 5,
        "mode": mode,
        "mtime": "2026-01-01T00:00:00Z",
        "linkTarget": "",
    }
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(stat).encode()).decode()}


def test_cp_from_container(fake: FakeDaemon, tmp_path) -> None:
    fake.route(
        "GET",
        "/containers/{id}/archive",
        raw=_tar_of("hosts", b"hello"),
        headers=_stat_header("hosts", 0o644),
    )
    assert cli(fake, "cp", "web:/etc/hosts", str(tmp_path / "copy")).returncode == 0
    assert (tmp_path / "copy").read_bytes() == b"hello"
    assert fake.requests[-1].query == {"path": ["/etc/hosts"]}
    (tmp_path / "dir").mkdir()
    assert cli(fake, "cp", "web:/etc/hosts", str(tmp_path / "dir")).returncode == 0
    assert (tmp_path / "dir" / "hosts").read_bytes() == b"hello"
    result = cli(fake, "cp", "web:/etc/hosts", "-")
    assert result.stdout == _tar_of("hosts", b"hello")


def test_cp_to_container(fake: FakeDaemon, tmp_path) -> None:
    source = tmp_path / "local.txt"
    source.write_bytes(b"data!")
    fake.route("HEAD", "/containers/{id}/archive", headers=_stat_header("tmp", (1 << 31) | 0o755))
    fake.route("PUT", "/containers/{id}/archive", status=200)
    assert cli(fake, "cp", str(source), "web:/tmp").returncode == 0
    put = fake.find("PUT", "/containers/web/archive")[-1]
    assert put.query["path"] == ["/tmp"]
    with tarfile.open(fileobj=io.BytesIO(put.body)) as archive:
        assert archive.getnames() == ["local.txt"]
        assert archive.extractfile("local.txt").read() == b"data!"  # type: ignore[union-attr]
    # a new name: into the parent, renamed
    fake.error("HEAD", "/containers/{id}/archive", 404, "Could not find the file /tmp/new")
    assert cli(fake, "cp", str(source), "web:/tmp/new").returncode == 0
    put = fake.find("PUT", "/containers/web/archive")[-1]
    assert put.query["path"] == ["/tmp"]
    with tarfile.open(fileobj=io.BytesIO(put.body)) as archive:
        assert archive.getnames() == ["new"]
    result = cli(fake, "cp", str(tmp_path / "absent"), "web:/tmp")
    assert result.returncode == 1 and "no such file or directory" in err(result)


def test_volumes(fake: FakeDaemon) -> None:
    fake.route("POST", "/volumes/create", json_body={"Name": "data"}, status=201)
    assert out(cli(fake, "volume", "create", "--label", "a=b", "data")) == "data\n"
    assert fake.requests[-1].json() == {
        "Name": "data",
        "Driver": "local",
        "DriverOpts": {},
        "Labels": {"a": "b"},
    }
    fake.route(
        "GET",
        "/volumes",
        json_body={
            "Volumes": [{"Name": "data", "Driver": "local"}, {"Name": "cache", "Driver": "local"}],
            "Warnings": None,
        },
    )
    assert out(cli(fake, "volume", "ls")) == (
        "DRIVER    VOLUME NAME\nlocal     cache\nlocal     data\n"
    )
    assert out(cli(fake, "volume", "ls", "-q")) == "cache\ndata\n"
    fake.route("GET", "/volumes", json_body={"Volumes": [], "Warnings": None})
    assert out(cli(fake, "volume", "ls")) == "DRIVER    VOLUME NAME\n"  # titles without a row
    fake.route("DELETE", "/volumes/{name}", status=204)
    assert out(cli(fake, "volume", "rm", "-f", "data")) == "data\n"
    assert fake.requests[-1].query == {"force": ["1"]}
    fake.route(
        "POST", "/volumes/prune", json_body={"VolumesDeleted": ["x"], "SpaceReclaimed": 2000}
    )
    assert out(cli(fake, "volume", "prune", "-f")) == (
        "Deleted Volumes:\nx\n\nTotal reclaimed space: 2kB\n"
    )
    assert cli(fake, "volume", "prune", stdin=b"n\n").returncode == 0
    assert (
        fake.requests[-1].path != "/volumes/prune"
        or fake.requests[-1].method != "POST"
        or len(fake.find("POST", "/volumes/prune")) == 1
    )


def test_events_and_version(fake: FakeDaemon) -> None:
    event = {
        "Type": "container",
        "Action": "start",
        "Actor": {"ID": CID, "Attributes": {"name": "web", "image": "busybox"}},
        "time": 1795836619,
        "timeNano": 1795836619123456789,
    }
    fake.route("GET", "/events", chunks=[json.dumps(event).encode() + b"\n"])
    result = cli(fake, "events", "--since", "1h", env={"TZ": "UTC"})
    assert out(result) == (
        f"2026-11-28T03:30:19.123456789Z container start {CID} (image=busybox, name=web)\n"
    )
    result = cli(fake, "events", "--format", "{{.Type}} {{.Actor.Attributes.name}}")
    assert out(result) == "container web\n"
    fake.route(
        "GET",
        "/version",
        json_body={
            "Version": "0.1.0",
            "ApiVersion": "1.47",
            "MinAPIVersion": "1.41",
            "Os": "linux",
            "Arch": "amd64",
        },
    )
    result = cli(fake, "version")
    assert "Server: Portside" in out(result) and "  API version:      1.47" in out(result)
    assert out(cli(fake, "version", "-f", "{{.Server.Version}}")) == "0.1.0\n"


def test_top_diff_wait_rename_commit(fake: FakeDaemon) -> None:
    fake.route(
        "GET",
        "/containers/{id}/top",
        json_body={"Titles": ["UID", "PID", "CMD"], "Processes": [["root", "1", "sh"]]},
    )
    assert out(cli(fake, "top", "web")) == (
        "UID                 PID                 CMD\nroot                1                   sh\n"
    )
    fake.route(
        "GET",
        "/containers/{id}/changes",
        json_body=[
            {"Path": "/tmp", "Kind": 0},
            {"Path": "/tmp/x", "Kind": 1},
            {"Path": "/etc/motd", "Kind": 2},
        ],
    )
    assert out(cli(fake, "diff", "web")) == "C /tmp\nA /tmp/x\nD /etc/motd\n"
    fake.route("POST", "/containers/{id}/wait", json_body={"StatusCode": 4})
    assert out(cli(fake, "wait", "web")) == "4\n"
    fake.route("POST", "/containers/{id}/rename", status=204)
    assert cli(fake, "rename", "web", "web2").returncode == 0
    assert fake.requests[-1].query == {"name": ["web2"]}
    fake.route("POST", "/commit", json_body={"Id": "sha256:new"}, status=201)
    assert out(cli(fake, "commit", "-m", "msg", "-c", "CMD x", "web", "me/img:2")) == (
        "sha256:new\n"
    )
    assert fake.requests[-1].query == {
        "container": ["web"],
        "repo": ["me/img"],
        "tag": ["2"],
        "comment": ["msg"],
        "pause": ["true"],
        "changes": ["CMD x"],
    }


def test_stats_no_stream(fake: FakeDaemon) -> None:
    sample = {
        "id": CID,
        "name": "/web",
        "cpu_stats": {
            "cpu_usage": {"total_usage": 300},
            "system_cpu_usage": 2000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {
            "usage": 3 << 20,
            "limit": 1 << 30,
            "stats": {"total_inactive_file": 1 << 20},
        },
        "pids_stats": {"current": 3},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"op": "Read", "value": 4096},
                {"op": "Write", "value": 0},
            ]
        },
    }
    fake.route("GET", "/containers/{id}/stats", json_body=sample)
    lines = out(cli(fake, "stats", "--no-stream", "web")).splitlines()
    assert lines[0].startswith("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %")
    assert lines[1].split() == [
        "4f5e6d7c8b9a",
        "web",
        "40.00%",
        "2MiB",
        "/",
        "1GiB",
        "0.20%",
        "0B",
        "/",
        "0B",
        "4.1kB",
        "/",
        "0B",
        "3",
    ]
    assert fake.requests[-1].query == {"stream": ["false"]}


def test_help_and_version_flag(fake: FakeDaemon) -> None:
    result = cli(fake, "run", "--help")
    assert result.returncode == 0 and "Usage:  portside run [OPTIONS] IMAGE" in out(result)
    assert "-m, --memory" in out(result)
    assert cli(None, "--version").stdout.startswith(b"Portside version ")
    assert cli(None, "nosuch").returncode == 1


def test_run_detects_detach_without_exit(fake: FakeDaemon) -> None:
    """The server closes the stream on detach; the container keeps running: exit 0."""
    release = threading.Event()

    def wait_forever():
        release.wait(10)
        yield b'{"StatusCode": 0}'

    _run_routes(fake)
    fake.route("POST", "/containers/{id}/wait", chunks=wait_forever())
    fake.route("GET", "/containers/{id}/json", json_body={"Id": CID, "State": {"Running": True}})
    try:
        result = cli(fake, "run", "-i", "busybox", "sh", stdin=b"")
    finally:
        release.set()
    assert result.returncode == 0


def test_system_df_info_and_prune(fake: FakeDaemon) -> None:
    fake.route(
        "GET",
        "/system/df",
        json_body={
            "LayersSize": 4261550,
            "Images": [{"Id": "sha256:b", "Size": 4261550, "Containers": 1}],
            "Containers": [{"Id": CID, "SizeRw": 2000, "State": "exited"}],
            "Volumes": [{"Name": "v", "UsageData": {"Size": 1000, "RefCount": 0}}],
            "BuildCache": [],
        },
    )
    assert out(cli(fake, "system", "df")).splitlines() == [
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE",
        "Images          1         1         4.262MB   0B (0%)",
        "Containers      1         0         2kB       2kB (100%)",
        "Local Volumes   1         0         1kB       1kB (100%)",
        "Build Cache     0         0         0B        0B",
    ]
    fake.route(
        "GET",
        "/info",
        json_body={
            "Containers": 2,
            "ContainersRunning": 1,
            "ServerVersion": "0.1.0",
            "NCPU": 4,
            "MemTotal": 8 << 30,
            "Name": "host",
        },
    )
    info = out(cli(fake, "info"))
    assert " Containers: 2\n  Running: 1\n" in info and " Total Memory: 8GiB\n" in info
    assert out(cli(fake, "system", "info", "-f", "{{.NCPU}}")) == "4\n"
    fake.route(
        "POST", "/containers/prune", json_body={"ContainersDeleted": [CID], "SpaceReclaimed": 2000}
    )
    fake.route(
        "POST",
        "/images/prune",
        json_body={"ImagesDeleted": [{"Deleted": "sha256:x"}], "SpaceReclaimed": 1000},
    )
    result = cli(fake, "system", "prune", "-f")
    assert out(result) == (
        f"Deleted Containers:\n{CID}\n\nDeleted Images:\ndeleted: sha256:x\n"
        "\nTotal reclaimed space: 3kB\n"
    )
    images_prune = fake.find("POST", "/images/prune")[-1]
    assert json.loads(images_prune.query["filters"][0]) == {"dangling": {"true": True}}
    assert out(cli(fake, "container", "prune", "-f")).endswith("Total reclaimed space: 2kB\n")
    result = cli(fake, "volume", "ls", "--bogus")
    assert result.returncode == 125 and "See 'portside volume ls --help'." in err(result)


def test_run_forwards_signals_to_the_container(fake: FakeDaemon) -> None:
    import signal as signals

    done = threading.Event()

    def hold(sock, rec, params):
        done.wait(15)
        sock.close()

    def wait_for_exit():
        done.wait(15)
        yield b'{"StatusCode": 143}'

    _run_routes(fake)
    fake.route("POST", "/containers/{id}/attach", hijack=hold)
    fake.route("POST", "/containers/{id}/wait", chunks=wait_for_exit())
    fake.route(
        "POST", "/containers/{id}/kill", handler=lambda rec, params: done.set() or (204, b"", {})
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "portside.cli.main", "-H", fake.host, "run", "busybox", "top"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 10
        while not fake.find("POST", f"/containers/{CID}/attach"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signals.SIGTERM)
        assert proc.wait(15) == 143
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert fake.find("POST", f"/containers/{CID}/kill")[0].query == {"signal": ["SIGTERM"]}
