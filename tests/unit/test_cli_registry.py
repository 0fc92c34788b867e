"""``portside pull/push/login/logout`` and run's automatic pull against the fake
daemon (a subprocess per call): the requests and credentials sent, docker's output
and exit codes; and docker's terminal drawing of a progress stream."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import pytest

from portside.cli.progress import StreamError, display_json_messages, progress_bar
from portside.client.fakeserver import FakeDaemon, frame

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CID = "4f5e6d7c8b9a" + "0" * 52
DIGEST = "sha256:" + "d" * 64
PULLED = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {
        "status": "Downloading",
        "progressDetail": {"current": 1000, "total": 2000},
        "progress": "[=========================>                         ]     1kB/2kB",
        "id": "aaaaaaaaaaaa",
    },
    {"status": "Download complete", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Already exists", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {"status": "Digest: " + DIGEST},
    {"status": "Status: Downloaded newer image for busybox:latest"},
]


@pytest.fixture
def fake(tmp_path):
    with FakeDaemon(str(tmp_path)) as daemon:
        yield daemon


@pytest.fixture
def home(tmp_path) -> str:
    """A HOME and PORTSIDE_CONFIG of the test's own (no real credentials read)."""
    path = tmp_path / "home"
    path.mkdir()
    return str(path)


def cli(fake: FakeDaemon, home: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTSIDE_", "DOCKER_"))}
    env.update({"HOME": home, "PORTSIDE_CONFIG": os.path.join(home, ".portside")})
    return subprocess.run(
        [sys.executable, "-m", "portside.cli.main", "-H", fake.host, *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=30,
        check=False,
    )


def stream(*messages: dict) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\r\n" for m in messages)


def auth_of(header: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def write_config(home: str, auths: dict) -> str:
    directory = os.path.join(home, ".portside")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump({"auths": auths}, f)
    return path


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# --- pull ---------------------------------------------------------------------------------


def test_pull_prints_docker_plain_lines_and_sends_credentials(fake: FakeDaemon, home: str) -> None:
    write_config(home, {"https://index.docker.io/v1/": {"auth": basic("hub", "secret")}})
    fake.route("POST", "/images/create", raw=stream(*PULLED))
    result = cli(fake, home, "pull", "busybox")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == (
        "Using default tag: latest\n"
        "latest: Pulling from library/busybox\n"
        "aaaaaaaaaaaa: Pulling fs layer\n"
        "bbbbbbbbbbbb: Pulling fs layer\n"
        "aaaaaaaaaaaa: Download complete\n"
        "aaaaaaaaaaaa: Pull complete\n"
        "bbbbbbbbbbbb: Already exists\n"
        f"Digest: {DIGEST}\n"
        "Status: Downloaded newer image for busybox:latest\n"
        "docker.io/library/busybox:latest\n"
    )
    [request] = fake.find("POST", "/images/create")
    assert request.query == {"fromImage": ["docker.io/library/busybox"], "tag": ["latest"]}
    assert auth_of(request.headers["x-registry-auth"]) == {
        "username": "hub",
        "password": "secret",
        "serveraddress": "https://index.docker.io/v1/",
    }


def test_pull_flags(fake: FakeDaemon, home: str) -> None:
    fake.route("POST", "/images/create", raw=stream(*PULLED))
    quiet = cli(
        fake, home, "pull", "-q", "--platform", "linux/arm64", f"127.0.0.1:5000/app@{DIGEST}"
    )
    assert (quiet.returncode, quiet.stdout.decode()) == (0, f"127.0.0.1:5000/app@{DIGEST}\n")
    every = cli(fake, home, "image", "pull", "-a", "--disable-content-trust", "127.0.0.1:5000/app")
    assert every.returncode == 0 and every.stdout.decode().endswith("\n127.0.0.1:5000/app\n")
    first, second = fake.find("POST", "/images/create")
    assert first.query == {
        "fromImage": ["127.0.0.1:5000/app"],
        "tag": [DIGEST],
        "platform": ["linux/arm64"],
    }
    assert auth_of(first.headers["x-registry-auth"]) == {}
    assert second.query == {"fromImage": ["127.0.0.1:5000/app"]}
    conflict = cli(fake, home, "pull", "-a", "busybox:1")
    assert (conflict.returncode, conflict.stderr) == (1, b"tag can't be used with --all-tags/-a\n")
    bad = cli(fake, home, "pull", "Busybox")
    assert bad.returncode == 1 and b"must be lowercase" in bad.stderr
    assert len(fake.find("POST", "/images/create")) == 2


def test_pull_errors_before_and_inside_the_stream(fake: FakeDaemon, home: str) -> None:
    missing = "manifest for busybox:nope not found: manifest unknown: manifest unknown"
    fake.error("POST", "/images/create", 404, missing)
    result = cli(fake, home, "pull", "busybox:nope")
    assert (result.returncode, result.stderr.decode()) == (
        1,
        f"Error response from daemon: {missing}\n",
    )
    reset = "connection reset (registry registry-1.docker.io, after 5 attempts)"
    error = {"errorDetail": {"message": reset}, "error": reset}
    fake.route("POST", "/images/create", raw=stream(PULLED[0], error))
    result = cli(fake, home, "pull", "busybox:1")
    assert result.returncode == 1
    assert result.stdout.decode() == "latest: Pulling from library/busybox\n"
    assert result.stderr.decode() == reset + "\n"


# --- push ---------------------------------------------------------------------------------

PUSHED = [
    {"status": "The push refers to repository [127.0.0.1:5000/app]"},
    {"status": "Preparing", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Pushing", "progressDetail": {"current": 5, "total": 9}, "id": "aaaaaaaaaaaa"},
    {"status": "Pushed", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": f"v1: digest: {DIGEST} size: 527"},
    {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": DIGEST, "Size": 527}},
]


def test_push(fake: FakeDaemon, home: str) -> None:
    write_config(home, {"127.0.0.1:5000": {"auth": basic("me", "pw")}})
    fake.route("POST", "/images/{host}/{repo}/push", raw=stream(*PUSHED))
    result = cli(fake, home, "push", "127.0.0.1:5000/app:v1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == (
        "The push refers to repository [127.0.0.1:5000/app]\n"
        "aaaaaaaaaaaa: Preparing\n"
        "aaaaaaaaaaaa: Pushed\n"
        f"v1: digest: {DIGEST} size: 527\n"
    )
    quiet = cli(fake, home, "push", "-q", "127.0.0.1:5000/app")
    assert quiet.stdout.decode() == "127.0.0.1:5000/app:latest\n"
    every = cli(fake, home, "image", "push", "--all-tags", "127.0.0.1:5000/app")
    assert every.returncode == 0
    requests = fake.find("POST", "/images/127.0.0.1:5000/app/push")
    assert [r.query for r in requests] == [{"tag": ["v1"]}, {"tag": ["latest"]}, {}]
    assert auth_of(requests[0].headers["x-registry-auth"]) == {
        "username": "me",
        "password": "pw",
        "serveraddress": "127.0.0.1:5000",
    }
    digest = cli(fake, home, "push", f"127.0.0.1:5000/app@{DIGEST}")
    assert (digest.returncode, digest.stderr) == (1, b"cannot push a digest reference\n")


# --- login, logout --------------------------------------------------------------------------


def test_login_stores_what_the_daemon_accepted(fake: FakeDaemon, home: str, tmp_path) -> None:
    fake.route("POST", "/auth", json_body={"Status": "Login Succeeded", "IdentityToken": ""})
    result = cli(fake, home, "login", "-u", "me", "-p", "pw", "127.0.0.1:5000")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Login Succeeded\n"
    err = result.stderr.decode()
    assert err.startswith("WARNING! Using --password via the CLI is insecure.")
    config = os.path.join(home, ".portside", "config.json")
    assert f"stored unencrypted in '{config}'" in err
    assert fake.find("POST", "/auth")[0].json() == {
        "username": "me",
        "password": "pw",
        "serveraddress": "127.0.0.1:5000",
    }
    with open(config) as f:
        assert json.load(f)["auths"] == {"127.0.0.1:5000": {"auth": basic("me", "pw")}}
    assert os.stat(config).st_mode & 0o777 == 0o600

    other = tmp_path / "cfg"
    result = cli(
        fake, home, "--config", str(other), "login", "-u", "me", "--password-stdin",
        stdin=b"from stdin\n",
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr.decode().startswith("WARNING! Your cred")
    assert fake.find("POST", "/auth")[1].json()["password"] == "from stdin"
    assert fake.find("POST", "/auth")[1].json()["serveraddress"] == "https://index.docker.io/v1/"
    with open(other / "config.json") as f:
        assert list(json.load(f)["auths"]) == ["https://index.docker.io/v1/"]


def test_login_reuses_stored_credentials_and_an_identity_token(fake: FakeDaemon, home: str) -> None:
    path = write_config(home, {"127.0.0.1:5000": {"auth": basic("me", "old")}})
    fake.route("POST", "/auth", json_body={"Status": "Login Succeeded", "IdentityToken": "tok"})
    result = cli(fake, home, "login", "127.0.0.1:5000")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith(
        "Authenticating with existing credentials... [Username: me]\n"
    )
    assert fake.find("POST", "/auth")[0].json()["password"] == "old"
    with open(path) as f:
        assert json.load(f)["auths"]["127.0.0.1:5000"] == {
            "auth": basic("me", ""),
            "identitytoken": "tok",
        }


def test_login_refusals(fake: FakeDaemon, home: str) -> None:
    fake.error("POST", "/auth", 401, "unauthorized: incorrect username or password")
    result = cli(fake, home, "login", "-u", "me", "--password-stdin", "h:5000", stdin=b"bad")
    assert (result.returncode, result.stderr.decode()) == (
        1,
        "Error response from daemon: unauthorized: incorrect username or password\n",
    )
    assert not os.path.exists(os.path.join(home, ".portside", "config.json"))
    no_user = cli(fake, home, "login", "--password-stdin", stdin=b"pw")
    assert no_user.stderr == b"Must provide --username with --password-stdin\n"
    both = cli(fake, home, "login", "-u", "a", "-p", "b", "--password-stdin")
    assert both.returncode == 1
    assert both.stderr.decode().endswith("--password and --password-stdin are mutually exclusive\n")
    no_tty = cli(fake, home, "login", "h:5000")
    assert no_tty.returncode == 1
    assert no_tty.stderr == b"Error: Cannot perform an interactive login from a non TTY device\n"
    assert len(fake.find("POST", "/auth")) == 1


def test_logout(fake: FakeDaemon, home: str) -> None:
    path = write_config(
        home,
        {
            "127.0.0.1:5000": {"auth": basic("a", "b")},
            "https://index.docker.io/v1/": {"auth": basic("c", "d")},
        },
    )
    result = cli(fake, home, "logout", "http://127.0.0.1:5000/")
    assert (result.returncode, result.stdout) == (
        0,
        b"Removing login credentials for 127.0.0.1:5000\n",
    )
    with open(path) as f:
        assert list(json.load(f)["auths"]) == ["https://index.docker.io/v1/"]
    result = cli(fake, home, "logout")
    assert result.stdout == b"Removing login credentials for https://index.docker.io/v1/\n"
    with open(path) as f:
        assert json.load(f)["auths"] == {}
    assert fake.requests == []


# --- run / create --pull ------------------------------------------------------------------


def _created_after_pull(fake: FakeDaemon) -> None:
    """create answers 404 No such image until a pull happened."""

    def create(rec, params):
        if not fake.find("POST", "/images/create"):
            body = json.dumps({"message": "No such image: busybox:latest"}).encode()
            return 404, body, {}
        return 201, json.dumps({"Id": CID, "Warnings": []}).encode(), {}

    fake.route("POST", "/containers/create", handler=create)


def test_create_pulls_a_missing_image(fake: FakeDaemon, home: str) -> None:
    _created_after_pull(fake)
    fake.route("POST", "/images/create", raw=stream(*PULLED))
    result = cli(fake, home, "create", "busybox")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == CID + "\n"
    assert result.stderr.decode() == (
        "Unable to find image 'busybox:latest' locally\n"
        "latest: Pulling from library/busybox\n"
        "aaaaaaaaaaaa: Pulling fs layer\n"
        "bbbbbbbbbbbb: Pulling fs layer\n"
        "aaaaaaaaaaaa: Download complete\n"
        "aaaaaaaaaaaa: Pull complete\n"
        "bbbbbbbbbbbb: Already exists\n"
        f"Digest: {DIGEST}\n"
        "Status: Downloaded newer image for busybox:latest\n"
    )
    assert [r.path for r in fake.requests] == [
        "/containers/create",
        "/images/create",
        "/containers/create",
    ]
    assert fake.requests[1].query == {"fromImage": ["docker.io/library/busybox"], "tag": ["latest"]}


def test_run_pull_policies(fake: FakeDaemon, home: str) -> None:
    _created_after_pull(fake)
    never = cli(fake, home, "run", "--pull", "never", "-d", "busybox")
    assert never.returncode == 125
    assert never.stderr.decode() == (
        "portside: Error response from daemon: No such image: busybox:latest.\n"
        "See 'portside run --help'.\n"
    )
    bad = cli(fake, home, "create", "--pull", "sometimes", "busybox")
    assert bad.returncode == 125
    assert bad.stderr.decode() == (
        'portside: invalid pull option: \'sometimes\': must be one of "always", "missing" '
        "or \"never\".\nSee 'portside create --help'.\n"
    )
    fake.route("POST", "/images/create", raw=stream(*PULLED))
    fake.route("POST", "/containers/{id}/start", status=204)
    always = cli(fake, home, "run", "--pull", "always", "-q", "-d", "127.0.0.1:5000/app:v1")
    assert (always.returncode, always.stdout.decode(), always.stderr) == (0, CID + "\n", b"")
    paths = [r.path for r in fake.requests]
    assert paths == [
        "/containers/create",
        "/images/create",
        "/containers/create",
        "/containers/" + CID + "/start",
    ]
    assert fake.requests[1].query == {"fromImage": ["127.0.0.1:5000/app"], "tag": ["v1"]}


def test_run_reports_a_failed_pull(fake: FakeDaemon, home: str) -> None:
    fake.error("POST", "/containers/create", 404, "No such image: nope:latest")
    denied = (
        "pull access denied for nope, repository does not exist or may require "
        "'portside login': denied: requested access to the resource is denied"
    )
    fake.error("POST", "/images/create", 404, denied)
    result = cli(fake, home, "run", "nope")
    assert result.returncode == 125
    assert result.stderr.decode() == (
        "Unable to find image 'nope:latest' locally\n"
        f"portside: Error response from daemon: {denied}.\n"
        "See 'portside run --help'.\n"
    )
    reset = "unexpected EOF"
    error = {"errorDetail": {"message": reset}, "error": reset}
    fake.route("POST", "/images/create", raw=stream(PULLED[0], error))
    result = cli(fake, home, "create", "-q", "nope")
    assert result.returncode == 125
    assert result.stderr.decode() == "portside: unexpected EOF.\nSee 'portside create --help'.\n"
    ids = cli(fake, home, "create", "sha256:" + "e" * 64)  # an image ID is never pulled
    assert ids.returncode == 125 and b"Unable to find" not in ids.stderr
    assert len(fake.find("POST", "/images/create")) == 2


def test_run_attached_after_a_pull(fake: FakeDaemon, home: str) -> None:
    """The output of the container follows the pull's on stderr."""
    _created_after_pull(fake)
    fake.route("POST", "/images/create", raw=stream(PULLED[0]))

    def attach(sock, rec, params):
        sock.sendall(frame(1, b"hello\n"))
        sock.close()

    fake.route("POST", "/containers/{id}/attach", hijack=attach)
    fake.route("POST", "/containers/{id}/start", status=204)
    fake.route("POST", "/containers/{id}/wait", json_body={"StatusCode": 3, "Error": None})
    result = cli(fake, home, "run", "busybox", "echo", "hello")
    assert (result.returncode, result.stdout) == (3, b"hello\n")
    assert result.stderr.decode().endswith("latest: Pulling from library/busybox\n")


# --- drawing a stream on a terminal ---------------------------------------------------------


def test_terminal_redraws_each_layer_in_place() -> None:
    out = io.StringIO()
    display_json_messages(PULLED, out, tty=True)
    bar = progress_bar({"current": 1000, "total": 2000}, width=200)
    assert bar == "[=========================>                         ]      1kB/2kB"
    assert progress_bar({"current": 1000, "total": 2000}, width=80) == "     1kB/2kB"
    clear = "\x1b[2K\r"
    assert out.getvalue() == (
        "latest: Pulling from library/busybox\n"
        f"\n\x1b[1A{clear}aaaaaaaaaaaa: Pulling fs layer \r\x1b[1B"
        f"\n\x1b[1A{clear}bbbbbbbbbbbb: Pulling fs layer \r\x1b[1B"
        f"\x1b[2A{clear}aaaaaaaaaaaa: Downloading {bar}\r\x1b[2B"
        f"\x1b[2A{clear}aaaaaaaaaaaa: Download complete \r\x1b[2B"
        f"\x1b[2A{clear}aaaaaaaaaaaa: Pull complete \r\x1b[2B"
        f"\x1b[1A{clear}bbbbbbbbbbbb: Already exists \r\x1b[1B"
        f"Digest: {DIGEST}\n"
        "Status: Downloaded newer image for busybox:latest\n"
    )


def test_stream_errors_aux_and_quiet() -> None:
    seen: list[object] = []
    with pytest.raises(StreamError) as caught:
        display_json_messages(
            [PUSHED[5], {"errorDetail": {"message": "denied"}, "error": "denied"}],
            None,
            aux=seen.append,
        )
    assert caught.value.message == "denied" and seen == [PUSHED[5]["aux"]]
    out = io.StringIO()
    display_json_messages([{"stream": "text\n"}, {"status": "x", "progressDetail": {}}], out)
    assert out.getvalue() == "text\nx\n"
