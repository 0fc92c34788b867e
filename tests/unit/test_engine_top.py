"""``docker top`` (``portside.engine.top``) over canned ``ps`` output."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine.top import PsFailed, _fields, parse_ps_output, top
from portside.errors import InvalidArgument

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 Nov27 ?        00:00:10 /sbin/init
root        4242       1  0 04:00 ?        00:00:00 sh -c sleep 1000
root        4250    4242  0 04:00 ?        00:00:00 sleep 1000
nobody      5000       1  0 04:00 ?        00:00:00 other
"""

PS_THREADS = """USER       PID %CPU COMMAND
root      4242  0.0 app
root         -  0.0 -
root         -  0.0 -
root      5000  0.0 other
root         -  0.0 -
"""


class FakePs:
    """Answers ``ps`` calls from a table; records them."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, bytes, bytes]:
        self.calls.append(list(argv))
        code, out, err = self.answers.pop(0)
        return code, out.encode(), err.encode()


def test_rows_of_the_container_only() -> None:
    ps = FakePs((0, PS_EF, ""))
    got = top([4242, 4250], run=ps)
    assert ps.calls == [["ps", "-ef", "-q4242,4250"]]
    assert got["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert got["Processes"] == [
        ["root", "4242", "1", "0", "04:00", "?", "00:00:00", "sh -c sleep 1000"],
        ["root", "4250", "4242", "0", "04:00", "?", "00:00:00", "sleep 1000"],
    ]


def test_threads_follow_their_process() -> None:
    got = top([4242], "aux -m", run=FakePs((0, PS_THREADS, "")))
    assert [row[1] for row in got["Processes"]] == ["4242", "-", "-"]


def test_retry_without_q_when_ps_refuses_it() -> None:
    ps = FakePs((1, "", "error: unsupported option\n"), (0, PS_EF, ""))
    got = top([1], "f", run=ps)
    assert ps.calls == [["ps", "f", "-q1"], ["ps", "f"]]
    assert [row[1] for row in got["Processes"]] == ["1"]


def test_ps_failure_is_dockers_error() -> None:
    ps = FakePs((1, "", "x"), (1, "", "error: unknown gnu long option\nusage...\n"))
    with pytest.raises(PsFailed, match=r"^ps: error: unknown gnu long option$"):
        top([1], "--bogus", run=ps)


def test_no_pid_column() -> None:
    with pytest.raises(PsFailed, match="Couldn't find PID field in ps output"):
        top([1], "-o comm", run=FakePs((0, "COMMAND\nsh\n", "")))


def test_unexpected_pid() -> None:
    with pytest.raises(PsFailed, match="Unexpected pid 'abc'"):
        parse_ps_output("PID CMD\nabc sh\n", [1])


@pytest.mark.parametrize("args", ["-o pid,user=PID", "-o comm= PIDX", "x -o foo=PID"])
def test_renamed_pid_column_refused(args: str) -> None:
    with pytest.raises(InvalidArgument, match="is not allowed"):
        top([1], args, run=FakePs())


def test_pid_rename_to_pid_allowed() -> None:
    out = "PID CMD\n7 sh\n"
    assert top([7], "-o pid=PID,cmd", run=FakePs((0, out, "")))["Processes"] == [["7", "sh"]]


def test_real_ps_sees_this_process() -> None:
    got = top([os.getpid()])
    assert "PID" in got["Titles"]
    assert [row[got["Titles"].index("PID")] for row in got["Processes"]] == [str(os.getpid())]


_word = st.text(st.characters(blacklist_characters="\t\n\f\r ", codec="utf-8"), min_size=1)


@given(st.lists(_word), st.lists(st.sampled_from(["\t", " ", "\f", "\r"]), min_size=1))
def test_fields_split_on_ascii_space_only(words: list[str], seps: list[str]) -> None:
    line = "".join(w + seps[i % len(seps)] for i, w in enumerate(words))
    assert _fields(line) == words
    assert _fields("a\u00a0b c") == ["a\u00a0b", "c"]  # a non-ASCII space stays inside
