"""The CLI's flag parser and docker's value parsers (sizes, durations, env files...)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.cli.flags import (
    FlagError,
    Opt,
    parse,
    parse_duration,
    parse_env_file,
    parse_env_lines,
    parse_memswap,
    parse_nanocpus,
    parse_restart_policy,
    parse_size,
    parse_ulimit,
)

OPTS = [
    Opt("d|detach", "bool"),
    Opt("i|interactive", "bool"),
    Opt("t|tty", "bool"),
    Opt("e|env", "list"),
    Opt("name", "str"),
    Opt("m|memory", parse_size),
    Opt("cpus", parse_nanocpus),
    Opt("stop-timeout", "int"),
    Opt("rm", "bool"),
]


def test_combined_short_booleans_and_values() -> None:
    p = parse(OPTS, ["-itd", "-eA=1", "-e", "B=2", "--name=web", "busybox", "sh"])
    assert p.interactive and p.tty and p.detach
    assert p.env == ["A=1", "B=2"]
    assert p.name == "web"
    assert p.args == ["busybox", "sh"]
    assert {"interactive", "tty", "detach", "env", "name"} <= p.changed


def test_not_interspersed_stops_at_first_positional() -> None:
    p = parse(OPTS, ["--rm", "busybox", "ls", "-l", "--name", "x"], interspersed=False)
    assert p.args == ["busybox", "ls", "-l", "--name", "x"]
    assert p.name is None and p.rm


def test_interspersed_and_double_dash() -> None:
    p = parse(OPTS, ["a", "--rm", "b", "--", "--name"])
    assert p.args == ["a", "b", "--name"]
    assert p.rm


def test_bool_with_explicit_value() -> None:
    assert parse(OPTS, ["--rm=false"]).rm is False
    assert parse(OPTS, ["-d=true"]).detach is True
    with pytest.raises(FlagError, match='invalid argument "maybe" for "--rm" flag'):
        parse(OPTS, ["--rm=maybe"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unknown flag: --nope"),
        (["-z"], "unknown shorthand flag: 'z' in -z"),
        (["--name"], "flag needs an argument: --name"),
        (["-e"], "flag needs an argument: 'e' in -e"),
        (["-m", "12x"], 'invalid argument "12x" for "-m, --memory" flag: invalid size: \'12x\''),
        (["--stop-timeout", "x"], 'invalid argument "x" for "--stop-timeout" flag: strconv.'),
        (["--cpus", "abc"], "failed to parse abc as a rational number"),
        (["--cpus", "0.0000000001"], "value is too precise"),
    ],
)
def test_flag_errors_have_pflag_messages(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse(OPTS, argv)
    assert message in str(info.value)


def test_negative_cpus_parse_as_a_value_for_the_daemon_to_refuse() -> None:
    assert parse(OPTS, ["--cpus", "-1"]).cpus == -1_000_000_000
    assert parse(OPTS, ["--cpus", "1.5"]).cpus == 1_500_000_000


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("1.5g", int(1.5 * (1 << 30))),
        ("512", 512),
        ("1GiB", 1 << 30),
        ("10 kB", 10 << 10),
        ("1b", 1),
        ("2k", 2048),
    ],
)
def test_size_units_like_go_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["12x", "", "m", "-1", "1.", ".5m", "1..2", "1mm", "0x10"])
def test_invalid_sizes(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid size: '{text}'"):
        parse_size(text)


def test_memory_swap_minus_one() -> None:
    assert parse_memswap("-1") == -1
    assert parse_memswap("1g") == 1 << 30


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "k", "m", "g", "t"]),
    st.sampled_from(["", "b", "ib", "B", "iB"]),
    st.booleans(),
)
def test_size_property(number: int, unit: str, suffix: str, upper: bool) -> None:
    if not unit and suffix in ("ib", "iB"):
        suffix = "b"
    text = f"{number}{unit.upper() if upper else unit}{suffix}"
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    assert parse_size(text) == number * mult


@given(
    st.text(min_size=1, max_size=8).filter(
        lambda s: any(c not in "0123456789. kKmMgGtTpPiIbB" for c in s)
    )
)
def test_size_rejects_foreign_characters(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1m30s", 90 * 10**9),
        ("1.5h", 5400 * 10**9),
        ("-2s", -2 * 10**9),
        ("0", 0),
        ("500ms", 5 * 10**8),
        ("1h2m3s4ms5us6ns", 3723004005006),
        ("3µs", 3000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", 'time: missing unit in duration "1"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("", 'time: invalid duration ""'),
        ("s", 'time: invalid duration "s"'),
        ("1.2.3s", 'time: invalid duration "1.2.3s"'),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@given(st.integers(0, 100), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_duration_property(h: int, m: int, s: int, ms: int) -> None:
    text = f"{h}h{m}m{s}s{ms}ms"
    assert parse_duration(text) == ((h * 60 + m) * 60 + s) * 10**9 + ms * 10**6
    assert parse_duration("-" + text) == -parse_duration(text)


def test_env_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FROM_HOST", "hostvalue")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    path = tmp_path / "env"
    path.write_text(
        "\ufeff# comment\n\n  A=1\nB = spaced\nC=with=equals\nFROM_HOST\nUNSET_VAR\nEMPTY=\n"
    )
    with pytest.raises(ValueError, match="variable 'B ' contains whitespaces"):
        parse_env_file(str(path))
    path.write_text("# comment\n\n  A=1\nC=with=equals\nFROM_HOST\nUNSET_VAR\nEMPTY=\n")
    assert parse_env_file(str(path)) == [
        "A=1",
        "C=with=equals",
        "FROM_HOST=hostvalue",
        "UNSET_VAR",
        "EMPTY=",
    ]
    with pytest.raises(ValueError, match="no variable name on line '=x'"):
        parse_env_lines(["=x"], "f")
    with pytest.raises(ValueError, match=r"open .*missing"):
        parse_env_file(str(tmp_path / "missing"))


_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@given(st.lists(st.tuples(_names, _values), max_size=10))
def test_env_file_property(pairs: list[tuple[str, str]]) -> None:
    lines = [f"{k}={v}" for k, v in pairs]
    assert parse_env_lines(lines, "f") == lines


def test_ulimits() -> None:
    assert parse_ulimit("nofile=1024:2048") == {"Name": "nofile", "Soft": 1024, "Hard": 2048}
    assert parse_ulimit("nproc=10") == {"Name": "nproc", "Soft": 10, "Hard": 10}
    for bad, message in [
        ("nofile", "invalid ulimit argument: nofile"),
        ("bogus=1", "invalid ulimit type: bogus"),
        ("nofile=2048:1024", "soft limit must be less than or equal to hard limit: 2048 > 1024"),
        ("nofile=a:b", "invalid ulimit argument"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_ulimit(bad)


def test_restart_policies() -> None:
    assert parse_restart_policy("always") == {"Name": "always", "MaximumRetryCount": 0}
    assert parse_restart_policy("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert parse_restart_policy("unless-stopped")["Name"] == "unless-stopped"
    for bad, message in [
        ("sometimes", "unknown policy 'sometimes'"),
        ("always:3", "can only be used with 'on-failure'"),
        ("on-failure:x", "maximum retry count must be an integer"),
        (":3", "no policy provided before colon"),
        ("on-failure:-1", "cannot be negative"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_restart_policy(bad)


def test_argument_count_texts_are_cobras() -> None:
    from portside.cli.main import _arity

    assert _arity(0, 0) == "accepts no arguments"
    assert _arity(1, 1) == "requires exactly 1 argument"
    assert _arity(2, 2) == "requires exactly 2 arguments"
    assert _arity(1, -1) == "requires at least 1 argument"
    assert _arity(0, 1) == "requires at most 1 argument"
    assert _arity(1, 2) == "requires at least 1 and at most 2 arguments"


def test_cp_argument_split() -> None:
    from portside.cli.transfer import split_cp_arg

    assert split_cp_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_cp_arg("/abs:path") == (None, "/abs:path")
    assert split_cp_arg("./rel:x") == (None, "./rel:x")
    assert split_cp_arg("plain") == (None, "plain")
    assert split_cp_arg("-") == (None, "-")
