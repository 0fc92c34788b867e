"""portside.runtime.cli: the runc-compatible command line (flag parsing, pure helpers, and
the commands that need no container)."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from portside.oci.runtime_spec import parse_resources
from portside.runtime import cli
from portside.runtime.cli import (
    CREATE_FLAGS,
    EXEC_FLAGS,
    GLOBAL_FLAGS,
    RUN_FLAGS,
    UPDATE_FLAGS,
    UsageError,
    main,
    parse_flags,
    parse_signal,
    update_resources,
)
from portside.runtime.specgen import default_spec

# --- parse_flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-bundle", "/b", "ctr"],
        ["--bundle", "/b", "ctr"],
        ["--bundle=/b", "ctr"],
        ["-bundle=/b", "ctr"],
        ["-b", "/b", "ctr"],
        ["--b=/b", "ctr"],
        ["-b", "/x", "--bundle", "/b", "ctr"],  # the last one wins
    ],
)
def test_value_flag_spellings(args: list[str]) -> None:
    flags, rest = parse_flags(args, CREATE_FLAGS)
    assert flags.get("bundle") == "/b"
    assert "b" not in flags.values  # aliases are stored under the canonical name
    assert rest == ["ctr"]


@pytest.mark.parametrize(
    ("args", "detach"),
    [
        (["--detach"], True),
        (["-detach"], True),
        (["-d"], True),
        (["--detach=true"], True),
        (["--detach=TRUE"], True),
        (["--detach=1"], True),
        (["--detach=false"], False),
        (["--detach=False"], False),
        (["--detach=0"], False),
        (["-d=false"], False),
        (["--detach", "--detach=false"], False),
        ([], None),
    ],
)
def test_bool_flags(args: list[str], detach: bool | None) -> None:
    flags, rest = parse_flags([*args, "ctr"], RUN_FLAGS)
    assert flags.get("detach") == detach
    assert rest == ["ctr"]


@pytest.mark.parametrize("value", ["f", "F", "no", "garbage"])
def test_bool_flag_values_as_go_reads_them(value: str) -> None:
    try:
        flags, _ = parse_flags([f"--detach={value}", "ctr"], RUN_FLAGS)
    except UsageError:
        return  # "invalid boolean value", as runc says
    assert flags.get("detach") is False


def test_bool_flag_does_not_take_the_next_argument() -> None:
    flags, rest = parse_flags(["--detach", "false", "ctr"], RUN_FLAGS)
    assert flags.get("detach") is True
    assert rest == ["false", "ctr"]


def test_a_value_flag_takes_the_next_argument_even_if_it_looks_like_a_flag() -> None:
    flags, rest = parse_flags(["--memory-swap", "-1", "ctr"], UPDATE_FLAGS)
    assert flags.get("memory-swap") == "-1"
    assert rest == ["ctr"]
    flags, _ = parse_flags(["--bundle=", "ctr"], CREATE_FLAGS)
    assert flags.get("bundle") == ""


@pytest.mark.parametrize("arg", ["--nosuch", "-nosuch", "--nosuch=1", "-x"])
def test_unknown_flag(arg: str) -> None:
    name = arg.lstrip("-").split("=")[0]
    with pytest.raises(UsageError, match=rf"^flag provided but not defined: -{name}$"):
        parse_flags([arg, "ctr"], CREATE_FLAGS)


def test_value_flag_without_a_value() -> None:
    with pytest.raises(UsageError, match=r"^flag needs an argument: -bundle$"):
        parse_flags(["--bundle"], CREATE_FLAGS)
    with pytest.raises(UsageError, match=r"^flag needs an argument: -bundle$"):
        parse_flags(["-b"], CREATE_FLAGS)


def test_stops_at_the_first_positional() -> None:
    flags, rest = parse_flags(["--root", "/r", "state", "--bundle", "x"], GLOBAL_FLAGS)
    assert flags.get("root") == "/r"
    assert rest == ["state", "--bundle", "x"]  # not an error: the command's own flags


def test_double_dash_ends_the_flags() -> None:
    flags, rest = parse_flags(["--detach", "--", "--bundle", "ctr"], RUN_FLAGS)
    assert flags.get("detach") is True
    assert rest == ["--bundle", "ctr"]


def test_single_dash_is_a_positional() -> None:
    flags, rest = parse_flags(["-", "--detach"], RUN_FLAGS)
    assert rest == ["-", "--detach"] and flags.values == {}


def test_interspersed_flags_when_asked() -> None:
    flags, rest = parse_flags(
        ["a", "--force", "b", "--", "--c"], {"force": "bool"}, stop_at_positional=False
    )
    assert flags.get("force") is True
    assert rest == ["a", "b", "--c"]


def test_list_flags_accumulate() -> None:
    flags, rest = parse_flags(
        ["-e", "A=1", "--env", "B=2", "--env=C=3", "--cap", "CAP_KILL", "ctr", "sh"], EXEC_FLAGS
    )
    assert flags.lists == {"env": ["A=1", "B=2", "C=3"], "cap": ["CAP_KILL"]}
    assert rest == ["ctr", "sh"]


def test_flags_get_default() -> None:
    flags, _ = parse_flags([], CREATE_FLAGS)
    assert flags.get("bundle") is None and flags.get("bundle", ".") == "."


# --- parse_signal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("9", 9),
        ("15", 15),
        ("KILL", signal.SIGKILL),
        ("SIGKILL", signal.SIGKILL),
        ("kill", signal.SIGKILL),
        ("sigkill", signal.SIGKILL),
        ("term", signal.SIGTERM),
        ("TERM", signal.SIGTERM),
        ("hup", signal.SIGHUP),
        ("USR1", signal.SIGUSR1),
        ("SIGWINCH", signal.SIGWINCH),
        ("rtmin", signal.SIGRTMIN),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == int(number)


@pytest.mark.parametrize("text", ["", "NOPE", "SIG", "SIGSIGKILL", "-9", "9x", "KILL "])
def test_parse_signal_refuses(text: str) -> None:
    with pytest.raises(UsageError, match=r"^unknown signal"):
        parse_signal(text)


# --- update_resources -----------------------------------------------------------------------


def update(args: list[str]) -> dict[str, Any]:
    flags, rest = parse_flags([*args, "ctr"], UPDATE_FLAGS)
    assert rest == ["ctr"]
    return update_resources(flags)


def test_update_without_flags_is_empty() -> None:
    assert update([]) == {}


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 1024**2),
        ("512M", 512 * 1024**2),
        ("512mb", 512 * 1024**2),
        ("1g", 1024**3),
        ("1.5g", 1536 * 1024**2),
        ("100k", 102400),
        ("2t", 2 * 1024**4),
        ("1048576", 1048576),
        ("100b", 100),
        ("-1", -1),
        (" 64m ", 64 * 1024**2),
    ],
)
def test_memory_sizes(text: str, size: int) -> None:
    assert update(["--memory", text]) == {"memory": {"limit": size}}


def test_every_update_flag() -> None:
    res = update(
        [
            "--memory", "512m",
            "--memory-reservation", "256m",
            "--memory-swap", "-1",
            "--kernel-memory", "1m",
            "--kernel-memory-tcp", "2m",
            "--cpu-share", "512",
            "--cpu-quota", "50000",
            "--cpu-period", "100000",
            "--cpu-rt-period", "1000000",
            "--cpu-rt-runtime", "950000",
            "--cpuset-cpus", "0-1",
            "--cpuset-mems", "0",
            "--pids-limit", "100",
            "--blkio-weight", "300",
        ]
    )  # fmt: skip
    assert res == {
        "memory": {
            "limit": 512 * 1024**2,
            "reservation": 256 * 1024**2,
            "swap": -1,
            "kernel": 1024**2,
            "kernelTCP": 2 * 1024**2,
        },
        "cpu": {
            "shares": 512,
            "quota": 50000,
            "period": 100000,
            "realtimePeriod": 1000000,
            "realtimeRuntime": 950000,
            "cpus": "0-1",
            "mems": "0",
        },
        "pids": {"limit": 100},
        "blockIO": {"weight": 300},
    }
    parsed = parse_resources(res)
    assert parsed.memory is not None and parsed.memory.limit == 512 * 1024**2
    assert parsed.cpu is not None and parsed.cpu.realtime_runtime == 950000
    assert parsed.block_io is not None and parsed.block_io.weight == 300


def test_resources_file_with_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}}))
    assert update(["--resources", str(path)]) == {
        "memory": {"limit": 1, "swap": 2},
        "pids": {"limit": 5},
    }
    assert update(["-r", str(path), "--memory", "1k", "--pids-limit", "7"]) == {
        "memory": {"limit": 1024, "swap": 2},
        "pids": {"limit": 7},
    }


def test_resources_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"cpu": {"shares": 2}}'))
    assert update(["--resources", "-"]) == {"cpu": {"shares": 2}}


def test_resources_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.json: no such file"):
        update(["--resources", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match=r"bad\.json: invalid JSON"):
        update(["--resources", str(bad)])


@pytest.mark.parametrize(
    "args", [["--memory", "lots"], ["--cpu-quota", "1.5"], ["--pids-limit", "x"], ["--memory", "m"]]
)
def test_non_numeric_update_flags_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(UsageError):
        update(args)


# --- main -----------------------------------------------------------------------------------


@pytest.fixture
def state_root(tmp_path: Path) -> str:
    path = tmp_path / "state"
    path.mkdir()
    return str(path)


@pytest.mark.parametrize("flag", ["--version", "-v", "-version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    out = capsys.readouterr()
    assert out.out == f"portside-runtime version {cli.VERSION}\nspec: {cli.SPEC_VERSION}\n"
    assert out.err == ""


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"]])
def test_usage(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: portside-runtime")
    for name in cli.COMMANDS:
        if name not in ("checkpoint", "restore"):
            assert name in out


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch"]) == 1
    out = capsys.readouterr()
    assert out.err == "portside-runtime: no such command: nosuch\n"
    assert out.out == ""


def test_unknown_global_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nosuch", "list"]) == 1
    assert "flag provided but not defined: -nosuch" in capsys.readouterr().err


def test_error_goes_to_a_json_log(
    state_root: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.json"
    args = ["--root", state_root, "--log", str(log), "--log-format", "json", "state", "nope"]
    assert main(args) == 1
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert "'nope'" in entry["msg"] and "does not exist" in entry["msg"]
    assert entry["time"].endswith("Z")
    assert "'nope'" in capsys.readouterr().err
    assert main(args) == 1
    assert len(log.read_text().splitlines()) == 2  # appended


def test_error_goes_to_a_text_log(state_root: str, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    assert main(["--root", state_root, "--log", str(log), "state", "nope"]) == 1
    text = log.read_text()
    assert text.startswith('time="') and " level=error msg=" in text and "nope" in text


def test_unwritable_log_is_ignored(state_root: str, tmp_path: Path) -> None:
    log = tmp_path / "no" / "such" / "dir" / "log"
    assert main(["--root", state_root, "--log", str(log), "state", "nope"]) == 1


def test_list_json_of_an_empty_root(state_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", state_root, "list", "--format", "json"]) == 0
    assert capsys.readouterr().out == "null\n"
    assert main(["--root", state_root, "list", "-f", "json"]) == 0
    assert capsys.readouterr().out == "null\n"


def test_list_of_a_root_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path / "none"), "list", "--format", "json"]) == 0
    assert capsys.readouterr().out == "null\n"


def test_list_table_and_quiet(state_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", state_root, "list"]) == 0
    assert capsys.readouterr().out == "ID   PID   STATUS   BUNDLE   CREATED   OWNER\n"
    assert main(["--root", state_root, "list", "-q"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["state"], '"state" requires a container id'),
        (["state", "a", "b"], '"state" requires exactly 1 argument(s)'),
        (["kill"], '"kill" requires a container id'),
        (["kill", "ctr", "NOPE"], "unknown signal 'NOPE'"),
        (["kill", "ctr", "9", "extra"], '"kill" requires a minimum of 1 and a maximum of 2'),
        (["delete"], '"delete" requires a container id'),
        (["delete", "nope"], "container 'nope' does not exist"),
        (["state", "../escape"], "invalid container id '../escape'"),
        (["checkpoint", "ctr"], "checkpoint/restore is not supported"),
        (["start", "--bundle", "x", "ctr"], "flag provided but not defined: -bundle"),
    ],
)
def test_command_errors(
    state_root: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", state_root, *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("portside-runtime: ") and message in err


def test_delete_force_of_a_missing_container(state_root: str) -> None:
    assert main(["--root", state_root, "delete", "--force", "nope"]) == 0
    assert main(["--root", state_root, "delete", "nope", "-f"]) == 0


def test_update_with_a_bad_number_returns_1(state_root: str) -> None:
    assert main(["--root", state_root, "update", "--memory", "lots", "ctr"]) == 1


@pytest.mark.parametrize("flag", ["-b", "--bundle", "-bundle"])
def test_spec_writes_config_json(flag: str, tmp_path: Path) -> None:
    assert main(["spec", flag, str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text()) == default_spec()


def test_spec_rootless(tmp_path: Path) -> None:
    assert main(["spec", "--rootless", "-b", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text()) == default_spec(rootless=True)


def test_spec_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["spec"]) == 0
    assert os.path.isfile(tmp_path / "config.json")


def test_spec_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert main(["spec", "-b", str(tmp_path)]) == 1
    assert "file exists" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_text() == "{}"


def test_spec_of_a_missing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "-b", str(tmp_path / "missing")]) == 1
    assert "bundle directory does not exist" in capsys.readouterr().err
