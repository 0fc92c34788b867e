"""Our own ``portside`` CLI against a real Portside daemon, as a user types it:
outputs, docker's exit codes (125/126/127, else the container's), and the
interactive side in tmux (a real terminal: raw mode, resize, Ctrl-C, detach)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from portside.testing.daemon import REPO, Daemon

pytestmark = [pytest.mark.root]

CLI = [sys.executable, "-m", "portside.cli.main"]
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def portside(
    d: Daemon,
    *args: str,
    check: bool = True,
    timeout: float = 30,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return d.run(CLI, *args, check=check, timeout=timeout, input=input, cwd=REPO)


def unique(prefix: str = "pse2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_name(daemon: Daemon) -> Iterator[Callable[[], str]]:
    """Container names for one test; whatever still exists is removed afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(unique())
        return names[-1]

    yield make
    if names:
        portside(daemon, "rm", "-f", *names, check=False)


def container_names(d: Daemon) -> list[str]:
    return portside(d, "ps", "-a", "--format", "{{.Names}}").stdout.split()


def state(d: Daemon, name: str) -> str:
    return portside(d, "inspect", "--format", "{{.State.Status}}", name).stdout.strip()


# --- run: output and exit codes ----------------------------------------------------


def test_run_rm_prints_and_leaves_nothing(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    proc = portside(daemon, "run", "--rm", "--name", n, "busybox", "echo", "hi")
    assert (proc.stdout, proc.stderr) == ("hi\n", "")
    assert n not in container_names(daemon)


def test_run_propagates_exit_code_and_stderr(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "busybox", "sh", "-c", "echo oops >&2; exit 3",
                    check=False)  # fmt: skip
    assert proc.returncode == 3
    assert (proc.stdout, proc.stderr) == ("", "oops\n")


def test_run_with_stdin(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="shout\n")
    assert proc.stdout == "SHOUT\n"


def test_run_unknown_image_is_125(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "nosuchimage:1", check=False)
    assert proc.returncode == 125, proc.stderr
    assert "Unable to find image 'nosuchimage:1' locally" in proc.stderr
    assert "nosuchimage" in proc.stderr.splitlines()[-2]
    assert proc.stderr.endswith("See 'portside run --help'.\n")


def test_run_bad_memory_is_125_with_dockers_message(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "-m", "12x", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith(
        'invalid argument "12x" for "-m, --memory" flag: invalid size: \'12x\'\n'
    ), proc.stderr
    assert "See 'portside run --help'." in proc.stderr


def test_run_too_little_memory_is_125(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "-m", "1m", "busybox", "true", check=False)
    assert proc.returncode == 125
    assert "Minimum memory limit allowed is 6MB" in proc.stderr


def test_run_missing_command_is_127_and_directory_126(daemon: Daemon) -> None:
    proc = portside(daemon, "run", "--rm", "busybox", "/nonexistent", check=False)
    assert proc.returncode == 127, proc.stderr
    assert "/nonexistent" in proc.stderr
    proc = portside(daemon, "run", "--rm", "busybox", "nosuchcommand", check=False)
    assert proc.returncode == 127, proc.stderr
    assert "nosuchcommand" in proc.stderr
    proc = portside(daemon, "run", "--rm", "busybox", "/etc", check=False)
    assert proc.returncode == 126, proc.stderr


# --- detached containers -------------------------------------------------------------


def test_detached_ps_logs_follow_stop_rm(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    script = "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"
    cid = portside(daemon, "run", "-d", "--name", n, "busybox", "sh", "-c", script).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    ps = portside(daemon, "ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout.splitlines()
    assert any(line.startswith(f"{cid[:12]} {n} Up") for line in ps), ps
    table = portside(daemon, "ps").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]  # fmt: skip
    assert cid[:12] in portside(daemon, "ps", "-q").stdout.split()
    follow = subprocess.Popen([*CLI, "logs", "-f", n], env=daemon.env(), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "started\n"
        assert portside(daemon, "logs", n).stdout == "started\n"
        assert state(daemon, n) == "running"
        assert portside(daemon, "stop", "-t", "5", n).stdout == f"{n}\n"
        rest, _ = follow.communicate(timeout=10)
        assert rest == "bye\n"
        assert follow.returncode == 0
    finally:
        follow.kill()
        follow.wait()
    assert portside(daemon, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                    n).stdout.split() == ["exited", "0"]  # fmt: skip
    assert cid[:12] not in portside(daemon, "ps", "-q").stdout.split()
    assert portside(daemon, "logs", "--tail", "1", n).stdout == "bye\n"
    assert portside(daemon, "rm", n).stdout == f"{n}\n"
    assert n not in container_names(daemon)


def test_rm_running_needs_force(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    portside(daemon, "run", "-d", "--name", n, "busybox", "sleep", "300")
    proc = portside(daemon, "rm", n, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error response from daemon: ")
    assert "container is running" in proc.stderr
    dup = portside(daemon, "run", "-d", "--name", n, "busybox", "true", check=False)
    assert dup.returncode == 125
    assert "is already in use" in dup.stderr
    assert portside(daemon, "rm", "-f", n).stdout == f"{n}\n"
    assert n not in container_names(daemon)


def test_exec_and_inspect_format(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    portside(daemon, "run", "-d", "--name", n, "-e", "FOO=bar", "busybox", "sleep", "300")
    assert portside(daemon, "inspect", "--format", "{{.State.Status}}", n).stdout == "running\n"
    fmt = "{{.Name}} {{json .Config.Cmd}} {{index .Config.Env 0}} {{.State.Running}}"
    out = portside(daemon, "inspect", "--format", fmt, n).stdout.split()
    assert out == [f"/{n}", '["sleep","300"]', "FOO=bar", "true"]
    doc = json.loads(portside(daemon, "inspect", n).stdout)
    assert doc[0]["Name"] == f"/{n}" and doc[0]["State"]["Pid"] > 0
    assert portside(daemon, "exec", n, "echo", "inside").stdout == "inside\n"
    assert portside(daemon, "exec", n, "sh", "-c", "exit 4", check=False).returncode == 4
    out = portside(daemon, "exec", "-e", "X=y", "-w", "/tmp", n, "sh", "-c", 'echo "$FOO$X $PWD"')
    assert out.stdout == "bary /tmp\n"
    assert portside(daemon, "exec", "-i", n, "cat", input="piped\n").stdout == "piped\n"
    assert portside(daemon, "exec", "-d", n, "touch", "/tmp/bg").stdout == ""
    deadline = time.monotonic() + 5
    while portside(daemon, "exec", n, "test", "-e", "/tmp/bg", check=False).returncode != 0:
        assert time.monotonic() < deadline, "exec -d did not run"
        time.sleep(0.1)
    portside(daemon, "rm", "-f", n)


def test_cp_both_ways(daemon: Daemon, new_name: Callable[[], str], tmp_path: str) -> None:
    n = new_name()
    portside(daemon, "create", "--name", n, "busybox", "cat", "/tmp/hello.txt")
    src = os.path.join(tmp_path, "hello.txt")
    with open(src, "w") as f:
        f.write("from the host\n")
    portside(daemon, "cp", src, f"{n}:/tmp/")
    assert portside(daemon, "start", "-a", n).stdout == "from the host\n"
    back = os.path.join(tmp_path, "back")
    os.mkdir(back)
    portside(daemon, "cp", f"{n}:/tmp/hello.txt", back)
    with open(os.path.join(back, "hello.txt")) as f:
        assert f.read() == "from the host\n"
    portside(daemon, "cp", f"{n}:/etc", os.path.join(tmp_path, "etc"))
    assert os.path.isfile(os.path.join(tmp_path, "etc", "hostname"))
    missing = portside(daemon, "cp", f"{n}:/nope", back, check=False)
    assert missing.returncode == 1
    assert "Could not find the file /nope" in missing.stderr


# --- images --------------------------------------------------------------------------


def test_images_tag_rmi(daemon: Daemon) -> None:
    tag = f"e2e/tagged:{uuid.uuid4().hex[:6]}"
    assert portside(daemon, "tag", "busybox", tag).stdout == ""
    try:
        listed = portside(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert tag in listed and "busybox:latest" in listed
        table = portside(daemon, "images").stdout.splitlines()
        assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
        fmt = "{{.ID}}"
        ids = {portside(daemon, "images", "--format", fmt, ref).stdout for ref in ("busybox", tag)}
        assert len(ids) == 1
    finally:
        out = portside(daemon, "rmi", tag).stdout
    assert out == f"Untagged: {tag}\n"
    assert tag not in portside(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    proc = portside(daemon, "rmi", "nosuch:image", check=False)
    assert proc.returncode == 1
    assert "No such image: nosuch:image" in proc.stderr


def test_save_and_load(daemon: Daemon, tmp_path: str) -> None:
    tag = f"e2e/saved:{uuid.uuid4().hex[:6]}"
    portside(daemon, "tag", "busybox", tag)
    path = os.path.join(tmp_path, "saved.tar")
    try:
        portside(daemon, "save", "-o", path, tag)
        with tarfile.open(path) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [tag]
        portside(daemon, "rmi", tag)
        out = portside(daemon, "load", "-i", path).stdout
        assert f"Loaded image: {tag}" in out
        assert portside(daemon, "run", "--rm", tag, "echo", "loaded").stdout == "loaded\n"
    finally:
        portside(daemon, "rmi", tag, check=False)


def test_volume_create_and_use(daemon: Daemon) -> None:
    vol = unique()
    assert portside(daemon, "volume", "create", vol).stdout == f"{vol}\n"
    try:
        portside(daemon, "run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c",
                 "echo kept > /data/file")  # fmt: skip
        out = portside(daemon, "run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "cat",
                       "/data/file")  # fmt: skip
        assert out.stdout == "kept\n"
        ro = portside(daemon, "run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "touch",
                      "/data/x", check=False)  # fmt: skip
        assert ro.returncode == 1 and "Read-only file system" in ro.stderr
        assert vol in portside(daemon, "volume", "ls", "--format", "{{.Name}}").stdout.split()
        point = portside(daemon, "volume", "inspect", "--format", "{{.Mountpoint}}", vol)
        with open(os.path.join(point.stdout.strip(), "file")) as f:
            assert f.read() == "kept\n"
    finally:
        rm = portside(daemon, "volume", "rm", vol)
    assert rm.stdout == f"{vol}\n"


# --- events and stats ----------------------------------------------------------------


def test_events_since_until_filter(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    since = str(int(time.time()) - 1)
    portside(daemon, "run", "--name", n, "busybox", "true")
    portside(daemon, "rm", n)
    until = str(int(time.time()) + 1)
    out = portside(daemon, "events", "--since", since, "--until", until,
                   "--filter", f"container={n}", "--format", "{{.Action}}", timeout=10)  # fmt: skip
    actions = out.stdout.split()
    assert actions[0] == "create" and actions[-1] == "destroy", actions
    for action in ("start", "die"):
        assert action in actions, actions
    plain = portside(daemon, "events", "--since", since, "--until", until,
                     "--filter", f"container={n}", "--filter", "event=start",
                     timeout=10).stdout.splitlines()  # fmt: skip
    assert len(plain) == 1, plain
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)"
    assert re.match(stamp + r" container start [0-9a-f]{64} \(", plain[0]), plain
    assert f"name={n}" in plain[0] and "image=busybox" in plain[0]


def test_stats_no_stream(daemon: Daemon, new_name: Callable[[], str]) -> None:
    n = new_name()
    portside(daemon, "run", "-d", "--name", n, "-m", "64m", "busybox", "sleep", "300")
    out = portside(daemon, "stats", "--no-stream", "--format",
                   "{{.Name}} {{.MemUsage}} {{.PIDs}}", n).stdout.split()  # fmt: skip
    assert out[0] == n and out[-1] == "1", out
    assert "64MiB" in out, out
    table = portside(daemon, "stats", "--no-stream", n).stdout.splitlines()
    assert table[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"], table
    assert len(table) == 2 and table[1].split()[1] == n, table
    portside(daemon, "rm", "-f", n)


# --- interactive, in a real terminal (tmux) -------------------------------------------


class Tmux:
    """A private tmux server (own socket, no user config, no status line)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.socket = os.path.join(daemon.dir, unique("tmux"))  # goes with the daemon's dir
        self.config = os.path.join(daemon.dir, "tmux.conf")
        with open(self.config, "w") as f:
            f.write("set -g status off\nset -g history-limit 2000\n")

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", self.socket, "-f", self.config, *args],
                              env=self.daemon.env(), capture_output=True, text=True,
                              check=True, timeout=10)  # fmt: skip

    def start(
        self, session: str, portside_args: str, *, width: int = 100, height: int = 30
    ) -> None:
        """Run ``portside <args>`` in a new session; its exit code is printed after it."""
        command = f"{' '.join(CLI)} {portside_args}; rc=$?; echo; echo {session}-rc=$rc; sleep 60"
        self.tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
                  "-c", REPO, command)  # fmt: skip

    def keys(self, session: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", session, *keys)

    def line(self, session: str, text: str) -> None:
        self.keys(session, "-l", text)
        self.keys(session, "Enter")

    def wait(self, session: str, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        pane = ""
        while time.monotonic() < deadline:
            pane = self.tmux("capture-pane", "-p", "-t", session).stdout
            if re.search(pattern, pane):
                return pane
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in the pane:\n{pane}\n{self.daemon.log()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       check=False)  # fmt: skip


@pytest.fixture
def tmux(daemon: Daemon) -> Iterator[Tmux]:
    t = Tmux(daemon)
    try:
        yield t
    finally:
        t.close()


PROMPT = r"(?m)^/ #"  # capture-pane drops the trailing space


@needs_tmux
def test_it_shell_and_resize(daemon: Daemon, tmux: Tmux, new_name: Callable[[], str]) -> None:
    n = new_name()
    tmux.start("sh", f"run -it --rm --name {n} busybox sh")
    tmux.wait("sh", PROMPT)
    tmux.line("sh", "echo $((6*7))")
    tmux.wait("sh", r"(?m)^42$")
    tmux.line("sh", "echo size-$(stty size | tr ' ' x)")
    tmux.wait("sh", r"(?m)^size-30x100$")
    tmux.tmux("resize-window", "-t", "sh", "-x", "120", "-y", "40")
    time.sleep(0.3)
    tmux.line("sh", "echo size-$(stty size | tr ' ' x)")
    tmux.wait("sh", r"(?m)^size-40x120$")
    tmux.line("sh", "exit 5")
    tmux.wait("sh", r"(?m)^sh-rc=5$")
    deadline = time.monotonic() + 5
    while n in container_names(daemon):
        assert time.monotonic() < deadline, "--rm did not remove the container"
        time.sleep(0.1)


@needs_tmux
def test_it_ctrl_c_reaches_the_container(
    daemon: Daemon, tmux: Tmux, new_name: Callable[[], str]
) -> None:
    n = new_name()
    tmux.start("cc", f"run -it --rm --name {n} busybox sh")
    tmux.wait("cc", PROMPT)
    tmux.line("cc", "sleep 100")
    deadline = time.monotonic() + 5
    while "sleep 100" not in portside(daemon, "top", n).stdout:
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.1)
    tmux.keys("cc", "C-c")
    tmux.line("cc", "echo after-$((2+3))")
    tmux.wait("cc", r"(?m)^after-5$", timeout=5)
    tmux.line("cc", "exit")
    tmux.wait("cc", r"(?m)^cc-rc=0$")


@needs_tmux
def test_it_detach_exec_attach(daemon: Daemon, tmux: Tmux, new_name: Callable[[], str]) -> None:
    n = new_name()
    tmux.start("det", f"run -it --rm --name {n} busybox sh")
    tmux.wait("det", PROMPT)
    tmux.line("det", "echo before-$((1+1))")
    tmux.wait("det", r"(?m)^before-2$")
    tmux.keys("det", "C-p", "C-q")
    tmux.wait("det", r"(?m)^det-rc=0$")
    assert state(daemon, n) == "running"
    tmux.start("ex", f"exec -it {n} sh", width=90, height=20)
    tmux.wait("ex", PROMPT)
    tmux.line("ex", "echo exec-$(stty size | tr ' ' x)")
    tmux.wait("ex", r"(?m)^exec-20x90$")
    tmux.line("ex", "exit 3")
    tmux.wait("ex", r"(?m)^ex-rc=3$")
    tmux.start("att", f"attach {n}")
    time.sleep(0.5)
    tmux.line("att", "echo again-$((1+2))")
    tmux.wait("att", r"(?m)^again-3$")
    tmux.line("att", "exit 7")
    tmux.wait("att", r"(?m)^att-rc=7$")
    deadline = time.monotonic() + 5
    while n in container_names(daemon):
        assert time.monotonic() < deadline, "--rm did not remove the container"
        time.sleep(0.1)
