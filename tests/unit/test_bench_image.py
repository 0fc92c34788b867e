"""bench.bench_image: discovery, command construction, the generated tree (nothing timed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import bench_image as bi
from bench.harness import BenchmarkError, discover


def test_benchmarks_are_discovered() -> None:
    found = discover()
    for name in ("image", "image_layer_apply", "image_gunzip", "image_save_load"):
        assert found.get(name)
    for name in ("image_layer_apply", "image_gunzip", "image_save_load"):
        assert callable(getattr(bi, f"bench_{name}"))


def test_argv_builders() -> None:
    assert bi.tar_extract_argv("/l.tar", "/d") == ["tar", "-xf", "/l.tar", "-C", "/d"]
    assert bi.tar_extract_argv("/l.gz", "/d", gzip=True) == ["tar", "-xzf", "/l.gz", "-C", "/d"]
    assert bi.gunzip_argv("/l.gz") == ["gzip", "-dc", "/l.gz"]
    argv = bi.docker_roundtrip_argv("x/busybox:t1")
    assert argv[:2] == ["bash", "-c"]
    assert "pipefail" in argv[2] and "docker save x/busybox:t1 | docker load" in argv[2]


@pytest.mark.parametrize(
    ("runs", "warmup", "expected"),
    [(20, 2, (7, 1)), (1, 0, (5, 0)), (6, 1, (6, 1))],
)
def test_layer_runs_are_bounded(runs: int, warmup: int, expected: tuple[int, int]) -> None:
    assert bi.layer_runs(runs, warmup) == expected


def test_generate_tree_counts_and_is_deterministic(tmp_path: Path) -> None:
    kw = {"small_files": 30, "small_max": 100, "large_files": 2, "large_size": 5000}
    stats = [bi.generate_tree(str(tmp_path / n), dirs=4, symlinks=6, **kw) for n in "ab"]
    assert stats[0] == stats[1]
    assert stats[0]["entries"] == 4 + 32 + 6
    found = {"dirs": 0, "files": 0, "links": 0, "bytes": 0, "abs": 0}
    for top, dirs, files in os.walk(tmp_path / "a"):
        found["dirs"] += len(dirs)
        for name in files:
            path = os.path.join(top, name)
            if os.path.islink(path):
                found["links"] += 1
                found["abs"] += os.readlink(path).startswith("/")
            else:
                found["files"] += 1
                found["bytes"] += os.path.getsize(path)
    assert (found["dirs"], found["files"], found["links"]) == (4, 32, 6)
    assert found["bytes"] == stats[0]["bytes"] and found["bytes"] >= 10_000
    assert 0 < found["abs"] < 6  # both absolute and relative symlinks
    a, b = tmp_path / "a" / "d000", tmp_path / "b" / "d000"
    assert os.stat(a).st_mtime == os.stat(b).st_mtime == 1_700_000_000


def test_layer_files_are_made_and_removed(tmp_path: Path) -> None:
    layer = bi.LayerFiles(str(tmp_path), small_files=10, large_files=1, large_size=3000, dirs=2)
    layer.make()
    assert not os.path.exists(os.path.join(layer.dir, "tree"))  # only the archives stay
    assert layer.stats["diff_id"].startswith("sha256:")
    assert os.path.getsize(layer.tar) == layer.stats["tar_bytes"]
    assert os.path.getsize(layer.gz) == layer.stats["gzip_bytes"]
    assert bi._stdlib_gunzip(layer.gz) == layer.stats["tar_bytes"]
    ours, tar = bi._apply_commands(layer, layer.tar, gzip=False)
    assert tar.argv == bi.tar_extract_argv(layer.tar, layer.dest("tar"))
    assert callable(ours.argv) and ours.teardown is not None
    layer.close()
    assert not os.path.exists(layer.dir)


def test_isal_peer_is_absent_without_the_module() -> None:
    peer = bi._ModuleCommand("python-isal", lambda: None, "no_such_module_xyz")
    assert not peer.available()
    assert bi._ModuleCommand("zlib", lambda: None, "zlib").available()


def test_docker_round_trip_reports_why_it_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bi, "_docker_reason", lambda: "docker: not installed")
    rt = bi._DockerRoundTrip(str(tmp_path / "a.tar"))
    with pytest.raises(BenchmarkError, match="not installed"):
        rt.command.run_once()
    assert not rt.loaded
    rt.close()  # nothing was loaded: no docker call
