"""bench.harness: alternation, timing, absent peers, the JSON line, discovery and CLI."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import harness
from bench.harness import BenchmarkError, Command, compare, discover, summarize

ABSENT = "portside-no-such-program-x1"


def _recorder(log: list[str], name: str) -> Command:
    return Command(name, lambda: log.append(name))


def test_command_available() -> None:
    assert Command("c", lambda: None).available()
    assert Command("t", ["true"]).available()
    assert not Command("x", [ABSENT]).available()
    assert not Command("empty", []).available()


def test_compare_alternates_and_lists_absent(capsys: pytest.CaptureFixture[str]) -> None:
    log: list[str] = []
    result = compare(
        "order",
        _recorder(log, "ours"),
        [_recorder(log, "a"), Command("gone", [ABSENT]), _recorder(log, "b")],
        runs=3,
        warmup=1,
    )
    assert log == ["a", "b"] + ["ours", "a", "b"] * 4  # probes, then the rounds
    assert result["benchmark"] == "order" and result["runs"] == 3
    assert result["absent"] == ["gone"]
    assert result["absent_reasons"] == {"gone": "not installed"}
    assert set(result["peers"]) == {"a", "b"}
    assert result["ours"]["name"] == "ours"
    assert set(result["machine"]) == {"cpus", "kernel", "python"}
    assert result["time"].endswith("+00:00")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == result


def test_compare_times_and_ratio() -> None:
    result = compare(
        "sleep",
        Command("slow", lambda: time.sleep(0.02)),
        [Command("fast", lambda: time.sleep(0.005))],
        runs=3,
        warmup=0,
    )
    ours, fast = result["ours"], result["peers"]["fast"]
    assert 20 <= ours["p10_ms"] <= ours["median_ms"] <= ours["p90_ms"] < 200
    assert 5 <= fast["median_ms"] < ours["median_ms"]
    assert fast["ratio"] == round(ours["median_ms"] / fast["median_ms"], 3)
    assert fast["ratio"] > 1


def test_setup_and_teardown_run_outside_the_timing() -> None:
    events: list[str] = []

    def setup() -> None:
        events.append("setup")
        time.sleep(0.03)

    cmd = Command("c", lambda: events.append("run"), setup, lambda: events.append("down"))
    result = compare("st", cmd, [], runs=2, warmup=1)
    assert events == ["setup", "run", "down"] * 3
    assert result["ours"]["median_ms"] < 30
    assert result["peers"] == {} and result["absent"] == []


def test_teardown_runs_when_the_command_fails() -> None:
    events: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        compare("f", Command("c", boom, teardown=lambda: events.append("down")), [], runs=1)
    assert events == ["down"]


def test_compare_subprocess_commands(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    for _ in range(2):
        result = compare(
            "proc",
            Command("true", ["true"]),
            [Command("sleep0", ["sleep", "0"]), Command("gone", [ABSENT])],
            runs=3,
            warmup=1,
            out=str(out),
        )
        assert result["ours"]["median_ms"] > 0
        assert result["absent"] == ["gone"] and "sleep0" in result["peers"]
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["benchmark"] == "proc"


def test_failing_command_is_an_error() -> None:
    with pytest.raises(BenchmarkError, match="exited 1"):
        compare("fail", Command("false", ["false"]), [Command("true", ["true"])], runs=1)


def test_peer_failing_its_probe_is_absent_with_the_reason() -> None:
    result = compare(
        "probe",
        Command("true", ["true"]),
        [Command("false", ["sh", "-c", "echo nope >&2; exit 1"]), Command("gone", [ABSENT])],
        runs=2,
        warmup=0,
    )
    assert result["peers"] == {}
    assert result["absent"] == ["false", "gone"]
    assert result["absent_reasons"]["gone"] == "not installed"
    assert result["absent_reasons"]["false"].startswith("probe failed: ")
    assert result["absent_reasons"]["false"].endswith("exited 1: nope")


def test_peer_failing_after_its_probe_is_an_error() -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise BenchmarkError("flaky broke")

    with pytest.raises(BenchmarkError, match="flaky broke"):
        compare("flaky", Command("ours", lambda: None), [Command("flaky", flaky)], runs=2)
    assert len(calls) == 2  # the probe, then the first round


def test_probe_runs_once_before_the_rounds() -> None:
    log: list[str] = []
    compare("p", _recorder(log, "ours"), [_recorder(log, "a")], runs=2, warmup=1)
    assert log == ["a"] + ["ours", "a"] * 3


def test_extra_fields() -> None:
    seen: list[int] = []
    cmd = Command("c", lambda: seen.append(1))
    result = compare("x", cmd, [], runs=2, warmup=1, extra=lambda: {"phases": len(seen)})
    assert result["phases"] == 3  # called after the runs
    with pytest.raises(ValueError, match="clash"):
        compare("x", cmd, [], runs=1, extra=lambda: {"runs": 5})


def test_ours_must_be_available() -> None:
    with pytest.raises(BenchmarkError, match="not available"):
        compare("x", Command("ours", [ABSENT]), [], runs=1)
    with pytest.raises(ValueError, match="runs"):
        compare("x", Command("ours", ["true"]), [], runs=0)


def test_summarize() -> None:
    samples = [ms * 1_000_000 for ms in range(10, 0, -1)]
    assert summarize("s", samples) == {
        "name": "s",
        "median_ms": 5.5,
        "p10_ms": 1.9,
        "p90_ms": 9.1,
    }
    assert summarize("one", [2_500_000])["p90_ms"] == 2.5


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=50))
def test_summarize_orders_quantiles(samples: list[int]) -> None:
    s = summarize("h", samples)
    lo, hi = round(min(samples) / 1e6, 3), round(max(samples) / 1e6, 3)
    assert lo <= s["p10_ms"] <= s["median_ms"] <= s["p90_ms"] <= hi


def _fake_bench_dir(tmp_path: Path) -> Path:
    (tmp_path / "bench_alpha.py").write_text('"""Alpha: starts things.\n\nMore."""\n')
    (tmp_path / "bench_beta.py").write_text("x = 1\n")
    (tmp_path / "bench_gamma.py").write_text(
        '"""Gamma."""\n'
        'def bench_gamma_one(**kw):\n    """One."""\n'
        "def bench_gamma_two(**kw):\n    pass\n"
        "def helper():\n    pass\n"
    )
    (tmp_path / "helper.py").write_text('"""Not a benchmark."""\n')
    return tmp_path


def test_discover(tmp_path: Path) -> None:
    assert discover(str(_fake_bench_dir(tmp_path))) == {
        "alpha": "Alpha: starts things.",
        "beta": "",
        "gamma": "Gamma.",
        "gamma_one": "One.",
        "gamma_two": "",
    }


def test_discover_refuses_a_name_twice(tmp_path: Path) -> None:
    (tmp_path / "bench_a.py").write_text("def bench_b(**kw):\n    pass\n")
    (tmp_path / "bench_b.py").write_text("")
    (tmp_path / "bench_c.py").write_text("def bench_a(**kw):\n    pass\n")
    with pytest.raises(ValueError, match="defined twice"):
        discover(str(tmp_path))


def test_run_benchmark_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "BENCH_DIR", str(_fake_bench_dir(tmp_path)))
    calls: list[tuple[str, dict]] = []
    fake = types.ModuleType("bench.bench_gamma")
    fake.bench_gamma_one = lambda **kw: calls.append(("one", kw))  # type: ignore[attr-defined]
    fake.bench_gamma_two = lambda **kw: calls.append(("two", kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "bench.bench_gamma", fake)
    harness.run_benchmark("gamma_two", runs=4, warmup=1)
    assert calls == [("two", {"runs": 4, "warmup": 1, "out": None})]
    calls.clear()
    harness.run_benchmark("gamma", runs=1, warmup=0, out="o")
    assert [name for name, _ in calls] == ["one", "two"]  # a module without run(): each one


def test_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(harness, "BENCH_DIR", str(_fake_bench_dir(tmp_path)))
    calls: list[dict] = []
    fake = types.ModuleType("bench.bench_alpha")
    fake.run = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "bench.bench_alpha", fake)

    assert harness.main(["--list"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["alpha\tAlpha: starts things.", "beta\t"]
    assert harness.main(["nope"]) == 2
    assert "unknown benchmark(s): nope" in capsys.readouterr().err
    assert harness.main(["alpha", "--runs", "5", "--warmup", "0"]) == 0
    assert calls == [{"runs": 5, "warmup": 0, "out": None}]


def test_cli_lists_real_benchmarks() -> None:
    for name, doc in discover().items():
        assert name and isinstance(doc, str)
