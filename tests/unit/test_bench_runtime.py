"""bench.bench_runtime: discovery, command construction, fresh IDs (no containers are run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_runtime as br
from bench.harness import BenchmarkError, discover


def test_benchmarks_are_discovered() -> None:
    found = discover()
    for name in ("runtime", "runtime_run_true", "runtime_create_start", "runtime_inprocess"):
        assert found.get(name)
    for name in ("runtime_run_true", "runtime_create_start", "runtime_inprocess"):
        assert callable(getattr(br, f"bench_{name}"))


def test_argv_builders() -> None:
    assert br.run_argv("runc", "/r", "/b", "c1") == [
        "runc", "--root", "/r", "run", "--bundle", "/b", "c1"
    ]  # fmt: skip
    assert br.create_argv("crun", "/r", "/b", "c1", "/p") == [
        "crun", "--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p", "c1"
    ]  # fmt: skip
    assert br.start_argv("x", "/r", "c1") == ["x", "--root", "/r", "start", "c1"]
    assert br.delete_argv("x", "/r", "c1") == ["x", "--root", "/r", "delete", "--force", "c1"]


def test_ours_first_then_the_peers() -> None:
    contenders = br._contenders()
    assert [name for name, _ in contenders] == ["portside-runtime", "runc", "crun"]
    assert contenders[0][1].endswith("portside-runtime")


def test_fresh_run_renews_the_id_in_place(tmp_path: Path) -> None:
    fresh = br._FreshRun("runc", "runc", str(tmp_path / "root"), "/bundle")
    argv = fresh.command.argv
    assert isinstance(argv, list)
    ids = set()
    for _ in range(3):
        fresh.setup()
        assert fresh.command.argv is argv  # the harness reads this very list at each run
        assert argv[:-1] == ["runc", "--root", str(tmp_path / "root"), "run", "--bundle", "/bundle"]
        ids.add(argv[-1])
        fresh.teardown()  # no state directory: nothing to delete, no subprocess
    assert len(ids) == 3 and all(i.startswith("b") for i in ids)


def test_create_start_teardown_without_a_container(tmp_path: Path) -> None:
    cs = br._CreateStart("runc", "runc", str(tmp_path / "root"), "/bundle", str(tmp_path))
    cs.setup()
    assert cs.cid and not cs.started
    cs.teardown()
    assert cs.command.argv is cs and cs.command.setup == cs.setup


def test_timed_call(tmp_path: Path) -> None:
    err = str(tmp_path / "err")
    assert br._timed_call(["true"], err) > 0
    with pytest.raises(BenchmarkError, match="exited 3: oops"):
        br._timed_call(["sh", "-c", "echo oops >&2; exit 3"], err)


def test_tail_keeps_the_measured_runs() -> None:
    assert br._tail([9, 9, 1, 2, 3], 3) == [1, 2, 3]
