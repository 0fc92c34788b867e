"""The monitor's per-container shortcuts: where OOM kills are counted, and the
index of exec records that ``forget`` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portside.engine.monitor_spawn import memory_cgroup


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (
            {"mode": "hybrid", "dirs": {"memory": "/sys/fs/cgroup/memory/p/c", "pids": "/x"}},
            ("v1", "/sys/fs/cgroup/memory/p/c"),
        ),
        ({"mode": "v1", "dirs": {"pids": "/sys/fs/cgroup/pids/p/c"}}, None),
        ({"mode": "v2", "dirs": {"": "/sys/fs/cgroup/p/c"}}, ("v2", "/sys/fs/cgroup/p/c")),
        ({"mode": "v2"}, None),
        (None, None),
    ],
)
def test_memory_cgroup(recorded: dict | None, expected: tuple[str, str] | None) -> None:
    assert memory_cgroup(recorded) == expected


def test_exec_records_of_an_earlier_monitor_are_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portside.engine.monitor import Monitor

    state = tmp_path / "run" / "monitor"
    state.mkdir(parents=True)
    records = {
        "e1": {"id": "e1", "exec": True, "container_id": "c1"},
        "e2": {"id": "e2", "exec": True, "container_id": "c1"},
        "e3": {"id": "e3", "exec": True, "container_id": "c2"},
        "c1": {"id": "c1", "exec": False, "container_id": "c1"},
    }
    for name, record in records.items():
        (state / f"{name}.exit").write_text(json.dumps(record))
    (state / "junk.exit").write_text("not json")
    monitor = Monitor(str(tmp_path / "run"), str(tmp_path / "runtime"))
    try:
        assert monitor.exec_records == {"c1": {"e1", "e2"}, "c2": {"e3"}}
    finally:
        monitor.sel.close()
