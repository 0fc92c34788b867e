"""The HTTP client against the fake daemon: JSON, chunked streams, errors, hijack."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from portside.client import (
    API_VERSION,
    APIError,
    Client,
    ConnectionFailed,
    encode_filters,
    parse_host,
)
from portside.client.api import read_wait
from portside.client.fakeserver import FakeDaemon, frame
from portside.client.http import encode_query
from portside.errors import InvalidArgument


@pytest.fixture
def fake(tmp_path):
    with FakeDaemon(str(tmp_path)) as daemon:
        yield daemon


def test_json_call_and_versioned_path(fake: FakeDaemon) -> None:
    fake.route("GET", "/containers/json", json_body=[{"Id": "x"}])
    client = Client(fake.host)
    assert client.call("GET", "/containers/json", query={"all": True, "x": None}) == [{"Id": "x"}]
    rec = fake.requests[-1]
    assert rec.query == {"all": ["1"]}
    assert rec.headers["host"] == "docker"


def test_post_body_and_empty_answer(fake: FakeDaemon) -> None:
    fake.route("POST", "/containers/{id}/start", status=204)
    fake.route("POST", "/containers/create", json_body={"Id": "abc", "Warnings": []}, status=201)
    client = Client(fake.host)
    assert client.container_create({"Image": "busybox"}, "web") == {"Id": "abc", "Warnings": []}
    assert fake.requests[-1].json() == {"Image": "busybox"}
    assert fake.requests[-1].query == {"name": ["web"]}
    assert client.container_start("abc") is None


def test_error_message_from_daemon(fake: FakeDaemon) -> None:
    fake.error("GET", "/containers/{id}/json", 404, "No such container: nope")
    with pytest.raises(APIError) as info:
        Client(fake.host).container_inspect("nope")
    assert info.value.status == 404
    assert info.value.message == "No such container: nope"


def test_non_json_error_body(fake: FakeDaemon) -> None:
    fake.route("GET", "/info", status=500, raw=b"boom\n", headers={"Content-Type": "text/plain"})
    with pytest.raises(APIError, match="boom"):
        Client(fake.host).call("GET", "/info")


def test_connection_failed_message(tmp_path) -> None:
    client = Client(f"unix://{tmp_path}/absent.sock")
    with pytest.raises(ConnectionFailed) as info:
        client.ping()
    assert str(info.value) == (
        f"Cannot connect to the Portside daemon at unix://{tmp_path}/absent.sock. "
        "Is the daemon running?"
    )


def test_chunked_stream_of_json(fake: FakeDaemon) -> None:
    fake.route(
        "GET",
        "/events",
        chunks=[
            b'{"Type":"container",',
            b'"Action":"start"}\n{"Ty',
            b'pe":"image","Action":"tag"}',
        ],
    )
    response = Client(fake.host).request("GET", "/events")
    events = list(response.iter_json())
    assert events == [{"Type": "container", "Action": "start"}, {"Type": "image", "Action": "tag"}]


def test_streamed_upload_is_chunked(fake: FakeDaemon) -> None:
    fake.route("POST", "/images/load", json_body={"stream": "Loaded image: busybox:latest\n"})
    response = Client(fake.host).request("POST", "/images/load", stream=iter([b"abc", b"", b"def"]))
    assert next(response.iter_json()) == {"stream": "Loaded image: busybox:latest\n"}
    rec = fake.requests[-1]
    assert rec.body == b"abcdef" and rec.headers["transfer-encoding"] == "chunked"


def test_head_has_no_body(fake: FakeDaemon) -> None:
    fake.route(
        "HEAD",
        "/containers/{id}/archive",
        raw=b"",
        headers={"X-Docker-Container-Path-Stat": "e30="},
    )
    response = Client(fake.host).request("HEAD", "/containers/c/archive", query={"path": "/"})
    assert response.headers["x-docker-container-path-stat"] == "e30="
    assert response.read() == b""


def test_hijack_two_way(fake: FakeDaemon) -> None:
    got: list[bytes] = []

    def handler(sock: socket.socket, rec: object, params: dict) -> None:
        sock.sendall(frame(1, b"ready\n"))
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        got.append(data)
        sock.sendall(frame(2, b"bye\n"))
        sock.close()

    fake.route("POST", "/containers/{id}/attach", hijack=handler)
    sock, buffered = Client(fake.host).container_attach("c", stdin=True, detach_keys="ctrl-x")
    rec = fake.requests[-1]
    assert rec.headers["upgrade"] == "tcp" and rec.headers["connection"] == "Upgrade"
    assert rec.query["detachKeys"] == ["ctrl-x"] and rec.query["stdin"] == ["1"]
    data = buffered
    while len(data) < len(frame(1, b"ready\n")):
        data += sock.recv(100)
    assert data == frame(1, b"ready\n")
    sock.sendall(b"input")
    sock.shutdown(socket.SHUT_WR)
    rest = b""
    while chunk := sock.recv(100):
        rest += chunk
    sock.close()
    assert rest == frame(2, b"bye\n") and got == [b"input"]


def test_wait_request_read_later(fake: FakeDaemon) -> None:
    release = threading.Event()

    def handler(rec: object, params: dict) -> tuple[int, bytes, dict]:
        release.wait(5)
        return 200, b'{"StatusCode": 7, "Error": null}', {}

    fake.route("POST", "/containers/{id}/wait", handler=handler)
    client = Client(fake.host)
    pending = threading.Thread(target=release.set)
    pending.start()
    response = client.container_wait_request("c", "removed")
    assert fake.requests[-1].query == {"condition": ["removed"]}
    assert read_wait(response) == (7, None)


def test_encode_query_and_filters() -> None:
    assert encode_query({"a": True, "b": False, "c": None, "d": ["x y", "é/"]}) == (
        "?a=1&b=0&d=x%20y&d=%C3%A9%2F"
    )
    assert encode_query({}) == ""
    assert encode_filters(["label=a=b", "status=running", "status=exited"]) == (
        '{"label":{"a=b":true},"status":{"running":true,"exited":true}}'
    )
    assert encode_filters([]) is None
    with pytest.raises(ValueError, match="bad format of filter"):
        encode_filters(["nope"])


def test_parse_host() -> None:
    assert parse_host("unix:///run/portside.sock") == ("unix", "/run/portside.sock")
    assert parse_host("tcp://127.0.0.1:2376") == ("tcp", "127.0.0.1:2376")
    assert parse_host("/var/run/docker.sock") == ("unix", "/var/run/docker.sock")
    for bad in ("unix://", "ssh://host", "tcp://"):
        with pytest.raises(InvalidArgument):
            parse_host(bad)


def test_tcp_transport(tmp_path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.47\r\n\r\nOK")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert Client(f"tcp://127.0.0.1:{port}").ping() == "OK"
    finally:
        thread.join(5)
        server.close()


def test_exported_surface() -> None:
    import portside.client

    assert set(portside.client.__all__) == {
        "API_VERSION",
        "DEFAULT_HOST",
        "APIError",
        "Client",
        "ConnectionFailed",
        "Response",
        "TLSOptions",
        "Transport",
        "encode_filters",
        "parse_host",
        "read_wait",
    }
    assert issubclass(portside.client.ConnectionFailed, portside.client.http.Unavailable)


# --- keep-alive ------------------------------------------------------------------------------


class _Http11:
    """An HTTP/1.1 server on a unix socket answering each request with the next of
    ``answers`` (raw response bytes; None closes the connection instead); it
    records on which connection (0, 1, ...) each request arrived."""

    def __init__(self, path: str, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.seen: list[tuple[int, str]] = []  # (connection, request line)
        self.close_after: set[int] = set()  # connections closed after one answer
        self.closed = 0
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        number = 0
        while self.answers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # a client that went away
                self._answer(conn, number)
            self.closed += 1
            number += 1

    def _answer(self, conn: socket.socket, number: int) -> None:
        data = b""
        while self.answers:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            self.seen.append((number, head.split(b"\r\n")[0].decode()))
            answer = self.answers.pop(0)
            if answer is None:
                return
            conn.sendall(answer)
            if number in self.close_after:
                return

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def _client_and_server(tmp_path: Path, answers: list[bytes | None]) -> tuple[Client, _Http11]:
    path = str(tmp_path / "d.sock")
    client = Client(f"unix://{path}")
    client.transport.timeout = 10  # a broken test fails instead of hanging
    return client, _Http11(path, answers)


def test_connections_are_kept_for_the_next_request(tmp_path: Path) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    client, server = _client_and_server(tmp_path, [_OK, chunked, _NO_CONTENT, _OK])
    try:
        assert client.ping() == "OK"
        assert client.call("GET", "/info") == {}
        client.call("POST", "/containers/x/start")
        assert client.ping() == "OK"
    finally:
        server.close()
    assert [conn for conn, _ in server.seen] == [0, 0, 0, 0]
    assert "Connection: close" not in str(server.seen)


@pytest.mark.parametrize(
    "first",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK",  # HTTP/1.0 closes
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKstray",  # more than the body
    ],
)
def test_connections_that_cannot_go_on_are_closed(tmp_path: Path, first: bytes) -> None:
    client, server = _client_and_server(tmp_path, [first, _OK])
    try:
        assert client.ping() == "OK"
        assert client.ping() == "OK"
    finally:
        server.close()
    assert [conn for conn, _ in server.seen] == [0, 1]


def test_a_body_left_unread_closes_the_connection(tmp_path: Path) -> None:
    long = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
    client, server = _client_and_server(tmp_path, [long, _OK])
    try:
        client.request("GET", "/containers/x/logs").close()  # not read
        assert client.ping() == "OK"
    finally:
        server.close()
    assert [conn for conn, _ in server.seen] == [0, 1]


def test_a_connection_the_daemon_closed_is_replaced(tmp_path: Path) -> None:
    # the daemon closed the kept connection while idle: the client sees that before
    # it sends, and sends the POST once, on a new connection
    client, server = _client_and_server(tmp_path, [_OK, _NO_CONTENT])
    server.close_after = {0}
    try:
        assert client.ping() == "OK"
        deadline = time.monotonic() + 5
        while server.closed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.call("POST", "/containers/x/stop") is None
    finally:
        server.close()
    assert [(conn, line.split()[0]) for conn, line in server.seen] == [(0, "GET"), (1, "POST")]


def test_a_connection_closed_as_the_request_arrives(tmp_path: Path) -> None:
    # closed after the request arrived, without an answer: a GET goes again on a
    # new connection, a POST (which the daemon may have carried out) fails
    client, server = _client_and_server(tmp_path, [_OK, None, _OK, None])
    try:
        assert client.ping() == "OK"
        assert client.ping() == "OK"
        with pytest.raises(ConnectionFailed):
            client.call("POST", "/containers/x/stop")
    finally:
        server.close()
    assert server.seen == [
        (0, f"GET /v{API_VERSION}/_ping HTTP/1.1"),
        (0, f"GET /v{API_VERSION}/_ping HTTP/1.1"),
        (1, f"GET /v{API_VERSION}/_ping HTTP/1.1"),
        (1, f"POST /v{API_VERSION}/containers/x/stop HTTP/1.1"),
    ]
