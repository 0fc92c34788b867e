"""The real docker CLI (v28) against a real Portside daemon: DOCKER_HOST is all it
is told. Skipped when the docker client is not installed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

from portside.testing.daemon import Daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI"),
]


def docker(
    d: Daemon, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return d.run(["docker"], *args, check=check, timeout=timeout,
                 input=input.decode() if input is not None else None)  # fmt: skip


def name() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


def test_version_and_info(daemon: Daemon) -> None:
    out = docker(daemon, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}").stdout
    assert out.split() == ["1.50", "linux"]
    info = json.loads(docker(daemon, "info", "--format", "{{json .}}").stdout)
    assert info["NCPU"] == os.cpu_count()
    assert info["Images"] >= 1


def test_run_prints_and_propagates_exit_code(daemon: Daemon) -> None:
    assert docker(daemon, "run", "--rm", "busybox", "echo", "hello").stdout == "hello\n"
    proc = docker(daemon, "run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 3", check=False)
    assert proc.returncode == 3
    assert "err" in proc.stderr


def test_run_hostname_is_short_id(daemon: Daemon) -> None:
    n = name()
    out = docker(daemon, "run", "--name", n, "busybox", "hostname").stdout.strip()
    cid = docker(daemon, "inspect", "--format", "{{.Id}}", n).stdout.strip()
    assert out == cid[:12]
    docker(daemon, "rm", n)


def test_detached_logs_follow_and_stop(daemon: Daemon) -> None:
    n = name()
    script = "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"
    docker(daemon, "run", "-d", "--name", n, "busybox", "sh", "-c", script)
    follow = subprocess.Popen(
        ["docker", "logs", "-f", n], env=daemon.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "started\n"
        status = docker(daemon, "inspect", "--format", "{{.State.Status}}", n).stdout.strip()
        assert status == "running"
        docker(daemon, "stop", "-t", "5", n)
        rest, _ = follow.communicate(timeout=15)
        assert "bye" in rest
    finally:
        follow.kill()
    code = docker(daemon, "inspect", "--format", "{{.State.ExitCode}}", n).stdout.strip()
    assert code == "0"
    docker(daemon, "rm", n)


def test_exec_ps_and_inspect(daemon: Daemon) -> None:
    n = name()
    docker(daemon, "run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        assert docker(daemon, "exec", n, "echo", "inside").stdout == "inside\n"
        assert docker(daemon, "exec", n, "sh", "-c", "exit 4", check=False).returncode == 4
        ps = docker(daemon, "ps", "--format", "{{.Names}} {{.Status}}").stdout
        assert any(line.startswith(f"{n} Up") for line in ps.splitlines())
        doc = json.loads(docker(daemon, "inspect", n).stdout)[0]
        assert doc["Name"] == f"/{n}"
        assert doc["State"]["Running"] is True
        assert doc["Config"]["Cmd"] == ["sleep", "300"]
    finally:
        docker(daemon, "rm", "-f", n)
    assert n not in docker(daemon, "ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_cp_both_ways(daemon: Daemon, tmp_path: os.PathLike[str]) -> None:
    n = name()
    docker(daemon, "create", "--name", n, "busybox", "true")
    try:
        src = os.path.join(tmp_path, "hello.txt")
        with open(src, "w") as f:
            f.write("from the host\n")
        docker(daemon, "cp", src, f"{n}:/tmp/")
        back = os.path.join(tmp_path, "back")
        os.mkdir(back)
        docker(daemon, "cp", f"{n}:/tmp/hello.txt", back)
        with open(os.path.join(back, "hello.txt")) as f:
            assert f.read() == "from the host\n"
        missing = docker(daemon, "cp", f"{n}:/nope", back, check=False)
        assert missing.returncode != 0
        assert "Could not find the file /nope" in missing.stderr
    finally:
        docker(daemon, "rm", "-f", n)


def test_cp_reaches_volumes_and_binds(daemon: Daemon, tmp_path: os.PathLike[str]) -> None:
    """Into a created container's volume, out of it by the mount's own name, into a
    running one's (seen by an exec), and not into a read-only bind."""
    n, vol = name(), f"e2e-vol-{uuid.uuid4().hex[:8]}"
    conf = os.path.join(tmp_path, "conf")
    os.mkdir(conf)
    src = os.path.join(tmp_path, "hello.txt")
    with open(src, "w") as f:
        f.write("into the volume\n")
    docker(daemon, "create", "--name", n, "-v", f"{vol}:/data", "-v", f"{conf}:/conf:ro",
           "busybox", "sleep", "60")  # fmt: skip
    try:
        docker(daemon, "cp", src, f"{n}:/data/")
        back = os.path.join(tmp_path, "back")
        docker(daemon, "cp", f"{n}:/data", back)  # a new directory named as given
        with open(os.path.join(back, "hello.txt")) as f:
            assert f.read() == "into the volume\n"
        refused = docker(daemon, "cp", src, f"{n}:/conf/", check=False)
        assert refused.returncode != 0 and "read-only" in refused.stderr
        assert not os.path.exists(os.path.join(conf, "hello.txt"))
        docker(daemon, "start", n)
        docker(daemon, "cp", src, f"{n}:/data/again.txt")
        seen = docker(daemon, "exec", n, "cat", "/data/hello.txt", "/data/again.txt").stdout
        assert seen == "into the volume\n" * 2
    finally:
        docker(daemon, "rm", "-f", n)
        docker(daemon, "volume", "rm", vol, check=False)


def test_images_tag_rmi(daemon: Daemon) -> None:
    tag = f"e2e/tagged:{uuid.uuid4().hex[:6]}"
    docker(daemon, "tag", "busybox", tag)
    listed = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert tag in listed
    out = docker(daemon, "rmi", tag).stdout
    assert f"Untagged: {tag}" in out
    assert tag not in docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert "No such image" in docker(daemon, "rmi", "nosuch:image", check=False).stderr


def _rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        with open("/bin/busybox", "rb") as f:
            data = f.read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        note = b"imported\n"
        info = tarfile.TarInfo("note")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    return buf.getvalue()


def test_import_then_run(daemon: Daemon, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "rootfs.tar")
    with open(path, "wb") as f:
        f.write(_rootfs_tar())
    tag = f"e2e/imported:{uuid.uuid4().hex[:6]}"
    docker(daemon, "import", "-c", 'CMD ["/bin/busybox", "cat", "/note"]', path, tag)
    try:
        assert docker(daemon, "run", "--rm", tag).stdout == "imported\n"
    finally:
        docker(daemon, "rmi", "-f", tag, check=False)


def test_save_and_load(daemon: Daemon, tmp_path: os.PathLike[str]) -> None:
    tag = f"e2e/saved:{uuid.uuid4().hex[:6]}"
    docker(daemon, "tag", "busybox", tag)
    path = os.path.join(tmp_path, "saved.tar")
    docker(daemon, "save", "-o", path, tag)
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [tag]
    docker(daemon, "rmi", tag)
    out = docker(daemon, "load", "-i", path).stdout
    assert f"Loaded image: {tag}" in out
    docker(daemon, "rmi", tag)


def test_volume_create_and_use(daemon: Daemon) -> None:
    vol = name()
    docker(daemon, "volume", "create", vol)
    try:
        docker(daemon, "run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c",
               "echo kept > /data/file")  # fmt: skip
        out = docker(daemon, "run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "cat", "/data/file")
        assert out.stdout == "kept\n"
        assert vol in docker(daemon, "volume", "ls", "--format", "{{.Name}}").stdout.split()
    finally:
        docker(daemon, "volume", "rm", vol)


def test_events_show_lifecycle(daemon: Daemon) -> None:
    n = name()
    since = str(int(time.time()) - 1)
    docker(daemon, "run", "--name", n, "busybox", "true")
    docker(daemon, "rm", n)
    until = str(int(time.time()) + 1)
    out = docker(daemon, "events", "--since", since, "--until", until,
                 "--filter", f"container={n}", "--format", "{{.Action}}")  # fmt: skip
    actions = out.stdout.split()
    for action in ("create", "start", "die", "destroy"):
        assert action in actions, actions


def test_stats_no_stream(daemon: Daemon) -> None:
    n = name()
    docker(daemon, "run", "-d", "--name", n, "-m", "64m", "busybox", "sleep", "300")
    try:
        out = docker(daemon, "stats", "--no-stream", "--format",
                     "{{.Name}} {{.MemUsage}} {{.PIDs}}", n).stdout.split()  # fmt: skip
        assert out[0] == n
        assert out[-1] == "1"
        assert "64MiB" in " ".join(out)
    finally:
        docker(daemon, "rm", "-f", n)


def test_errors_as_docker(daemon: Daemon) -> None:
    proc = docker(daemon, "run", "--rm", "nosuchimage:1", check=False)
    assert proc.returncode == 125
    assert "nosuchimage" in proc.stderr
    proc = docker(daemon, "run", "--rm", "busybox", "/nonexistent", check=False)
    assert proc.returncode == 127
    n = name()
    docker(daemon, "run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        proc = docker(daemon, "rm", n, check=False)
        assert proc.returncode != 0
        assert "container is running" in proc.stderr
        proc = docker(daemon, "run", "-d", "--name", n, "busybox", "true", check=False)
        assert "is already in use" in proc.stderr
    finally:
        docker(daemon, "rm", "-f", n)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_run_it_in_tmux(daemon: Daemon) -> None:
    session = name()
    env = daemon.env()
    cmd = f"DOCKER_HOST={daemon.host} DOCKER_CONFIG={daemon.dir} docker run -it --rm busybox sh"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd],
                   env=env, check=True)  # fmt: skip
    try:
        _wait_pane(session, "#")
        subprocess.run(["tmux", "send-keys", "-t", session, "echo $((6*7)); stty size", "Enter"],
                       check=True)  # fmt: skip
        pane = _wait_pane(session, " 100\n")  # stty's answer, printed after the 42
        assert "\n42\n" in pane
        assert "30 100" in pane or "29 100" in pane
        subprocess.run(["tmux", "send-keys", "-t", session, "exit", "Enter"], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def _wait_pane(session: str, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    pane = ""
    while time.monotonic() < deadline:
        pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True, check=False).stdout  # fmt: skip
        if text in pane:
            return pane
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the pane:\n{pane}")
