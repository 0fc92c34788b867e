"""Docker's shapes of containers: ps Status texts, durations, filters, inspect."""

from __future__ import annotations

import calendar
import datetime
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.engine import views
from portside.engine.model import Container, ContainerState, Paths, rfc3339
from portside.errors import InvalidArgument

NOW = 1_800_000_000.0


def _at(seconds_ago: float) -> str:
    return rfc3339(int((NOW - seconds_ago) * 1e9))


def _c(n: int, status: str = "running", **kw: object) -> Container:
    state = ContainerState(status=status, started_at=_at(3), finished_at=_at(5), exit_code=0)
    for key, value in kw.items():
        setattr(state, key, value)
    return Container(
        id=f"{n:02x}" * 32,
        name=f"c{n}",
        image="busybox",
        image_id="sha256:" + "ab" * 32,
        created=_at(100 - n),
        config={"Cmd": ["sleep", "9"], "Labels": {"team": "a" if n % 2 else "b", "n": str(n)}},
        host_config={"NetworkMode": "none"},
        state=state,
        mounts=[{"Type": "volume", "Name": f"vol{n}", "Destination": "/data"}],
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (150, "2 minutes"),
        (3600, "About an hour"),
        (7200, "2 hours"),
        (3 * 86400, "3 days"),
        (21 * 86400, "3 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert views.human_duration(seconds) == text


def test_status_text() -> None:
    assert views.status_text(_c(1), NOW) == "Up 3 seconds"
    assert views.status_text(_c(1, "paused"), NOW) == "Up 3 seconds (Paused)"
    healthy = _c(1, health={"Status": "healthy"})
    assert views.status_text(healthy, NOW) == "Up 3 seconds (healthy)"
    starting = _c(1, health={"Status": "starting"})
    assert views.status_text(starting, NOW) == "Up 3 seconds (health: starting)"
    assert views.status_text(_c(1, "exited", exit_code=2), NOW) == "Exited (2) 5 seconds ago"
    assert views.status_text(_c(1, "created", finished_at="0001-01-01T00:00:00Z"), NOW) == "Created"
    assert views.status_text(_c(1, "restarting", exit_code=1), NOW).startswith("Restarting (1)")


def _ids(found: list[Container]) -> list[str]:
    return [c.name for c in found]


def test_select() -> None:
    cs = [_c(1), _c(2, "exited", exit_code=3), _c(3, "paused"), _c(4, "created")]
    by_name = {c.name: c for c in cs}

    def sel(all: bool = False, limit: int = -1, **filters: list[str]) -> list[str]:
        return _ids(
            views.select(
                cs, all=all, limit=limit, filters=filters,
                resolve=by_name.__getitem__, image_id=lambda ref: "sha256:" + "ab" * 32,
            )
        )  # fmt: skip

    assert sel() == ["c3", "c1"]  # running ones, newest first
    assert sel(all=True) == ["c4", "c3", "c2", "c1"]
    assert sel(limit=2) == ["c4", "c3"]
    assert sel(status=["exited"]) == ["c2"]
    assert sel(exited=["3"]) == ["c2"] and sel(exited=["0"]) == []
    assert sel(all=True, label=["team=a"]) == ["c3", "c1"]
    assert sel(all=True, label=["n"]) == ["c4", "c3", "c2", "c1"]
    assert sel(all=True, name=["c[12]"]) == ["c2", "c1"]
    assert sel(all=True, id=[cs[1].id[:6]]) == ["c2"]
    assert sel(before=["c3"]) == ["c2", "c1"] and sel(since=["c2"]) == ["c4", "c3"]
    assert sel(all=True, volume=["vol4"]) == ["c4"]
    assert sel(all=True, ancestor=["busybox"]) == ["c4", "c3", "c2", "c1"]
    with pytest.raises(InvalidArgument, match="invalid filter 'color'"):
        sel(color=["red"])
    with pytest.raises(InvalidArgument, match="invalid filter 'status=sleepy'"):
        sel(status=["sleepy"])


class _NoSnapshots:
    def mounts(self, key: str) -> list:
        return []

    def usage(self, key: str) -> tuple[int, int]:
        return (10, 1)


def test_inspect_and_summary_shapes() -> None:
    c = _c(5)
    doc = views.inspect(c, Paths("/d", "/r"), _NoSnapshots(), size=True, image_size=lambda _: 100)
    assert doc["Name"] == "/c5" and (doc["Path"], doc["Args"]) == ("sleep", ["9"])
    assert doc["State"]["Running"] and doc["ExecIDs"] is None
    assert doc["HostsPath"] == f"/d/containers/{c.id}/hosts"
    assert (doc["SizeRw"], doc["SizeRootFs"]) == (10, 110)
    assert list(doc["NetworkSettings"]["Networks"]) == ["none"]
    row = views.summary(c, _NoSnapshots(), size=False, image_size=lambda _: 0)
    assert row["Names"] == ["/c5"] and row["Command"] == "sleep 9" and row["State"] == "running"
    assert row["Created"] == int(NOW - 95) and "SizeRw" not in row


def test_host_config_defaults() -> None:
    hc = views.host_config_defaults({"NetworkMode": "default", "Memory": 8 << 20})
    assert hc["NetworkMode"] == "bridge" and hc["Memory"] == 8 << 20
    assert views.host_config_defaults({}, "none")["NetworkMode"] == "none"
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


@given(st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(9999, 1, 1)))
def test_parse_time_reads_what_rfc3339_writes(moment: datetime.datetime) -> None:
    from portside.engine.lifecycle import _parse_time

    seconds = moment.replace(tzinfo=datetime.UTC).timestamp()
    text = rfc3339(round(seconds * 1_000_000) * 1000)
    assert abs(_parse_time(text) - seconds) < 1e-3
    base = text.partition(".")[0].rstrip("Z")
    assert int(_parse_time(text)) == calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize("text", ["2026-02-30T00:00:00Z", "2026-11-29 04:47:19Z", "x"])
def test_parse_time_refuses_what_strptime_refuses(text: str) -> None:
    from portside.engine.lifecycle import _parse_time

    with pytest.raises(ValueError):
        _parse_time(text)
