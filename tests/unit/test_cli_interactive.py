"""The attached session: frames, detach keys, and ``run -it`` on a real pty
against the fake daemon (raw mode on and off, resize, detach)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from portside.cli.interactive import Demuxer, _KeyWatch, parse_detach_keys
from portside.client.fakeserver import FakeDaemon, frame

CID = "c0ffee" + "0" * 58
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demuxer_splits_frames_across_chunks() -> None:
    got: list[tuple[int, bytes]] = []
    demux = Demuxer(lambda kind, data: got.append((kind, data)))
    data = frame(1, b"out") + frame(2, b"err") + frame(3, b"sys") + frame(1, b"")
    for i in range(len(data)):
        demux.feed(data[i : i + 1])
    assert got == [(1, b"out"), (2, b"err"), (2, b"sys"), (1, b"")]
    assert demux.buffer == b""


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-\\") == b"\x01x\x00\x1c"
    with pytest.raises(ValueError, match="Unknown character: 'ctrl-1'"):
        parse_detach_keys("ctrl-1")
    watch = _KeyWatch(b"\x10\x11")
    assert watch.feed(b"ab\x10") == b"ab"  # a possible start is held back
    assert watch.feed(b"x") == b"\x10x" and not watch.seen  # ...and sent when it is not
    assert watch.feed(b"\x10\x10") == b"\x10" and watch.held == b"\x10"
    assert watch.feed(b"\x11rest") == b"" and watch.seen  # the keys never reach the container
    assert _KeyWatch(None).feed(b"\x10\x11") == b"\x10\x11"


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {data!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_run_it_raw_mode_resize_and_detach(tmp_path) -> None:
    release = threading.Event()
    typed: list[bytes] = []

    def shell(sock, rec, params):
        sock.sendall(b"/ # ")
        while chunk := sock.recv(4096):
            typed.append(chunk)
            sock.sendall(chunk.replace(b"\r", b"\r\n"))
        sock.close()

    def wait_for_exit():
        release.wait(20)
        yield b'{"StatusCode": 0}'

    master, slave = pty.openpty()
    _set_size(slave, 30, 100)
    before = termios.tcgetattr(slave)
    with FakeDaemon(str(tmp_path)) as fake:
        fake.route("POST", "/containers/create", json_body={"Id": CID, "Warnings": []}, status=201)
        fake.route("POST", "/containers/{id}/attach", hijack=shell)
        fake.route("POST", "/containers/{id}/start", status=204)
        fake.route("POST", "/containers/{id}/resize", status=200)
        fake.route("POST", "/containers/{id}/wait", chunks=wait_for_exit())
        fake.route(
            "GET", "/containers/{id}/json", json_body={"Id": CID, "State": {"Running": True}}
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portside.cli.main",
                "-H",
                fake.host,
                "run",
                "-it",
                "busybox",
                "sh",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            assert b"/ # " in _read_until(master, b"/ # ")
            during = termios.tcgetattr(slave)
            assert not during[3] & termios.ECHO and not during[3] & termios.ICANON
            os.write(master, b"echo hi\r")
            assert b"echo hi\r\n" in _read_until(master, b"echo hi\r\n")
            resize = f"/containers/{CID}/resize"
            _wait_for(lambda: fake.find("POST", resize))
            assert fake.find("POST", resize)[0].query == {"h": ["30"], "w": ["100"]}
            _set_size(slave, 40, 120)
            proc.send_signal(signal.SIGWINCH)
            _wait_for(lambda: len(fake.find("POST", resize)) >= 2)
            assert fake.find("POST", resize)[-1].query == {"h": ["40"], "w": ["120"]}
            os.write(master, b"\x10\x11")
            assert proc.wait(15) == 0
            assert b"".join(typed) == b"echo hi\r"  # the detach keys stayed in the client
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    assert after == before


def test_run_t_exit_code_and_terminal_restored(tmp_path) -> None:
    def shell(sock, rec, params):
        sock.sendall(b"bye\r\n")
        sock.close()

    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    with FakeDaemon(str(tmp_path)) as fake:
        fake.route("POST", "/containers/create", json_body={"Id": CID, "Warnings": []}, status=201)
        fake.route("POST", "/containers/{id}/attach", hijack=shell)
        fake.route("POST", "/containers/{id}/start", status=204)
        fake.route("POST", "/containers/{id}/resize", status=200)
        fake.route("POST", "/containers/{id}/wait", json_body={"StatusCode": 42})
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portside.cli.main",
                "-H",
                fake.host,
                "run",
                "-it",
                "busybox",
                "sh",
                "-c",
                "exit 42",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            assert b"bye" in _read_until(master, b"bye")
            assert proc.wait(15) == 42
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert fake.find("POST", "/containers/create")[0].json()["Tty"] is True
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


def test_it_without_a_terminal_is_refused(tmp_path) -> None:
    with FakeDaemon(str(tmp_path)) as fake:
        result = subprocess.run(
            [sys.executable, "-m", "portside.cli.main", "-H", fake.host, "run", "-it", "busybox"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=REPO,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr == b"the input device is not a TTY\n"
        assert fake.requests == []
