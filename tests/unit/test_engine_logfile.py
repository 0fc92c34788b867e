"""The json-file log: Docker's line format, partial lines, rotation, and
``docker logs`` semantics (streams, since/until, tail, timestamps, follow)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine.logfile import (
    MAX_LINE,
    JsonLogWriter,
    format_time,
    parse_size,
    parse_time,
    read_logs,
)
from portside.errors import InvalidArgument

S = 1_000_000_000
T0 = 1_795_000_000 * S  # a time in 2026


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_are_dockers_format(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    w = JsonLogWriter(str(log))
    w.write(1, b"hello\nwor", T0)
    w.write(2, b"oops\n", T0 + 1)
    w.write(1, b"ld\n", T0 + 2)
    w.close()
    first = log.read_text().splitlines()[0]
    assert first == '{"log":"hello\\n","stream":"stdout","time":"2026-11-18T11:06:40.000000000Z"}'
    assert [(e["stream"], e["log"]) for e in entries(log)] == [
        ("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "world\n"),
    ]  # fmt: skip
    assert oct(log.stat().st_mode & 0o777) == "0o640"


def test_partial_and_long_lines(tmp_path: Path) -> None:
    log = tmp_path / "l.log"
    w = JsonLogWriter(str(log))
    w.write(1, b"x" * (MAX_LINE + 10) + b"\nprompt $ ", T0)
    assert [len(e["log"]) for e in entries(log)] == [MAX_LINE, 11]
    w.close()  # the partial line is written at the end
    assert entries(log)[-1]["log"] == "prompt $ "


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "u.log"
    w = JsonLogWriter(str(log))
    w.write(1, b"caf\xc3\xa9 \xff\n", T0)
    w.close()
    assert entries(log)[0]["log"] == "café \ufffd\n"


def test_rotation_keeps_max_file(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    w = JsonLogWriter(str(log), {"max-size": "1k", "max-file": "3"})
    for i in range(200):
        w.write(1, f"line {i:03d}\n".encode(), T0 + i)
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["r.log", "r.log.1", "r.log.2"]
    assert all(os.path.getsize(tmp_path / n) < 1024 + 100 for n in os.listdir(tmp_path))
    lines = [data for _, data in read_logs(str(log))]
    assert lines == sorted(lines) and lines[-1] == b"line 199\n"
    assert [data for _, data in read_logs(str(log), tail=3)] == [
        b"line 197\n", b"line 198\n", b"line 199\n",
    ]  # fmt: skip
    kept = len(lines)
    assert [d for _, d in read_logs(str(log), tail=kept + 50)] == lines  # more than there is


def test_one_file_is_truncated(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    w = JsonLogWriter(str(log), {"max-size": "100"})
    for i in range(10):
        w.write(1, f"{i}\n".encode(), T0)
    w.close()
    assert os.listdir(tmp_path) == ["t.log"] and os.path.getsize(log) < 200


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"max-size": "12x"}, "max-size"),
        ({"max-file": "0", "max-size": "1m"}, "at least 1"),
        ({"max-file": "3"}, "needs max-size"),
        ({"max-file": "x", "max-size": "1m"}, "not a number"),
        ({"max-sise": "1m"}, "unknown log opt 'max-sise' for json-file log driver"),
    ],
)
def test_bad_options(tmp_path: Path, opts: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        JsonLogWriter(str(tmp_path / "x.log"), opts)


@pytest.mark.parametrize(
    ("text", "size"),
    [("100", 100), ("1k", 1024), ("10m", 10 << 20), ("1g", 1 << 30), ("2kb", 2048),
     ("1.5k", 1536), ("3MiB", 3 << 20)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@given(st.integers(0, 4_000_000_000 * S))
def test_time_round_trip(ns: int) -> None:
    assert parse_time(format_time(ns)) == ns


def test_parse_time_forms() -> None:
    assert parse_time("2026-11-18T11:06:40Z") == T0
    assert parse_time("2026-11-18T11:06:40.5Z") == T0 + S // 2
    assert parse_time("2026-11-18T12:06:40.000000001+01:00") == T0 + 1
    with pytest.raises(InvalidArgument):
        parse_time("yesterday")


def make_log(tmp_path: Path) -> str:
    path = str(tmp_path / "c.log")
    w = JsonLogWriter(path)
    for i in range(6):
        w.write(1 + i % 2, f"l{i}\n".encode(), T0 + i * S)
    w.close()
    return path


def test_streams_since_until(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    assert list(read_logs(path, stderr=False)) == [(1, b"l0\n"), (1, b"l2\n"), (1, b"l4\n")]
    assert [d for _, d in read_logs(path, since=T0 / S + 2, until=T0 / S + 4)] == [
        b"l2\n", b"l3\n", b"l4\n",
    ]  # fmt: skip
    # Docker counts the tail over both streams, then filters
    assert list(read_logs(path, tail=2, stdout=False)) == [(2, b"l5\n")]
    assert list(read_logs(path, tail=0)) == []
    assert list(read_logs(str(tmp_path / "none.log"))) == []


def test_timestamps(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    first = next(read_logs(path, timestamps=True))
    assert first == (1, b"2026-11-18T11:06:40.000000000Z l0\n")


def test_damaged_lines_are_skipped(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    with open(path, "ab") as f:
        f.write(b"not json\n")
    assert len(list(read_logs(path))) == 6


def test_follow_until_stopped_across_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "f.log")
    w = JsonLogWriter(path, {"max-size": "300", "max-file": "2"})
    w.write(1, b"before\n", T0)
    running = threading.Event()
    running.set()
    got: list[bytes] = []

    def reader() -> None:
        for _, data in read_logs(path, follow=True, running=running.is_set, poll=0.01):
            got.append(data)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(20):
        w.write(1, f"after {i:02d}\n".encode(), T0 + S)
        time.sleep(0.005)
    w.close()
    time.sleep(0.05)
    running.clear()
    t.join(5)
    assert not t.is_alive()
    assert got[0] == b"before\n" and got[-1] == b"after 19\n"
    assert got == sorted(got, key=lambda b: (b != b"before\n", b))


def test_follow_with_tail_starts_at_the_end(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    assert [d for _, d in read_logs(path, tail=1, follow=True, running=lambda: False)] == [b"l5\n"]


def test_a_follower_of_a_silent_log_yields_heartbeats(tmp_path: Path) -> None:
    """So that the API notices a client that has gone while nothing is written."""
    path = make_log(tmp_path)
    live = iter([True, True, True, False])
    got = list(
        read_logs(path, tail=0, follow=True, running=lambda: next(live), poll=0, heartbeat=True)
    )
    assert got == [None, None, None]
    silent = read_logs(path, tail=0, follow=True, running=lambda: False, poll=0)
    assert list(silent) == []  # without heartbeat: nothing but entries
