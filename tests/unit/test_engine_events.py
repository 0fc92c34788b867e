"""The events bus (``portside.engine.events``): Docker's event JSON, its filters,
since/until replay, and many publishers and subscribers at once."""

from __future__ import annotations

import threading
import time

import pytest

from portside.engine.events import EventBus, make_event, match_filters
from portside.errors import InvalidArgument

CID = "a" * 64
IMG = "sha256:" + "b" * 64


def _container(action: str, cid: str = CID, **attrs: str) -> dict:
    return make_event(
        "container", action, cid, {"image": "busybox", "name": "web", **attrs}, 1_700_000_000_5
    )


def test_container_event_shape() -> None:
    event = make_event(
        "container", "start", CID, {"image": "busybox:1", "name": "x"}, 1_234_567_890_123
    )
    assert list(event) == [
        "status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"
    ]  # fmt: skip
    assert event["status"] == "start" and event["id"] == CID and event["from"] == "busybox:1"
    assert event["Actor"] == {"ID": CID, "Attributes": {"image": "busybox:1", "name": "x"}}
    assert (event["scope"], event["time"], event["timeNano"]) == ("local", 1234, 1_234_567_890_123)


def test_image_and_volume_event_shapes() -> None:
    image = make_event("image", "tag", IMG, {"name": "busybox:latest"}, 10**18)
    assert image["status"] == "tag" and image["id"] == IMG and "from" not in image
    volume = make_event("volume", "create", "data", {"driver": "local"}, 10**18)
    assert "status" not in volume and "id" not in volume and volume["Type"] == "volume"


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        ({}, True),
        ({"type": ["container"]}, True),
        ({"type": ["image"]}, False),
        ({"type": ["image", "container"]}, True),
        ({"event": ["start"]}, True),
        ({"event": ["sta"]}, False),  # exact, unless a fuzzy action is asked for
        ({"event": ["stop", "start"]}, True),
        ({"container": ["web"]}, True),
        ({"container": [CID[:12]]}, True),
        ({"container": ["other"]}, False),
        ({"image": ["busybox"]}, True),
        ({"image": ["busybox:latest"]}, False),
        ({"image": ["alpine"]}, False),
        ({"label": ["tier"]}, True),
        ({"label": ["tier=front"]}, True),
        ({"label": ["tier=back"]}, False),
        ({"label": ["tier", "missing"]}, False),
        ({"scope": ["local"]}, True),
        ({"scope": ["swarm"]}, False),
        ({"type": ["container"], "event": ["start"], "container": ["web"]}, True),
        ({"type": ["container"], "event": ["die"]}, False),
        ({"volume": ["web"]}, True),  # Docker matches the actor's name whatever its type
        ({"volume": ["data"]}, False),
    ],
)
def test_match_filters(filters: dict[str, list[str]], want: bool) -> None:
    assert match_filters(_container("start", tier="front"), filters) is want


def test_fuzzy_health_status_and_image_events() -> None:
    health = _container("health_status: healthy")
    assert match_filters(health, {"event": ["health_status"]})
    assert not match_filters(health, {"event": ["start"]})
    tagged = make_event("image", "tag", IMG, {"name": "me/app:v1"}, 10**18)
    assert match_filters(tagged, {"image": ["me/app"]})
    assert match_filters(tagged, {"image": ["me/app:v1"]})
    assert match_filters(tagged, {"image": [IMG]})
    assert not match_filters(tagged, {"container": ["web"]})
    registry = make_event("container", "start", CID, {"image": "localhost:5000/app"}, 10**18)
    assert match_filters(registry, {"image": ["localhost:5000/app"]})


def test_publish_and_subscribe_live() -> None:
    bus = EventBus()
    sub = bus.subscribe(filters={"type": ["container"]})
    bus.publish("image", "tag", IMG, {"name": "x:latest"})
    published = bus.publish("container", "create", CID, {"image": "busybox", "name": "web"})
    assert sub.get(timeout=1) == published
    assert sub.get(timeout=0.05) is None
    assert bus.subscribers() == 1
    sub.close()
    assert sub.closed and bus.subscribers() == 0
    assert sub.get(timeout=0.05) is None


def test_invalid_filter_key() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        EventBus().subscribe(filters={"colour": ["red"]})


def test_since_replays_backlog_then_live() -> None:
    bus = EventBus()
    first = bus.publish("container", "create", CID)
    time.sleep(0.005)
    second = bus.publish("container", "start", CID)
    sub = bus.subscribe(since=second["timeNano"] / 1e9 - 0.001)
    assert sub.get(timeout=1)["Action"] == "start"
    live = bus.publish("container", "die", CID)
    assert sub.get(timeout=1) == live
    assert first["timeNano"] < second["timeNano"] < live["timeNano"]
    everything = bus.subscribe(since=0)
    assert [everything.get(timeout=1)["Action"] for _ in range(3)] == ["create", "start", "die"]


def test_until_in_the_past_replays_and_ends() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID)
    cut = time.time()
    time.sleep(0.002)
    bus.publish("container", "start", CID)
    sub = bus.subscribe(since=0, until=cut)
    assert [e["Action"] for e in sub] == ["create"]
    assert sub.closed and bus.subscribers() == 0


def test_until_in_the_future_ends_the_stream() -> None:
    bus = EventBus()
    sub = bus.subscribe(until=time.time() + 0.2)
    bus.publish("container", "start", CID)
    started = time.monotonic()
    assert [e["Action"] for e in sub] == ["start"]
    assert 0.05 < time.monotonic() - started < 2
    assert sub.closed


def test_since_after_until_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must not be after"):
        EventBus().subscribe(since=20.0, until=10.0)


def test_close_wakes_a_blocked_get() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sub.get()))
    reader.start()
    time.sleep(0.05)
    sub.close()
    reader.join(timeout=2)
    assert not reader.is_alive() and got == [None]


def test_backlog_is_bounded() -> None:
    bus = EventBus(backlog=3)
    for i in range(5):
        bus.publish("volume", "create", f"v{i}")
    assert [e["Actor"]["ID"] for e in bus.backlog()] == ["v2", "v3", "v4"]


def test_many_publishers_and_subscribers() -> None:
    bus = EventBus(backlog=10)
    subs = [bus.subscribe() for _ in range(4)]
    filtered = bus.subscribe(filters={"container": ["t0-"]})

    def publish(n: int) -> None:
        for i in range(250):
            bus.publish("container", "start", f"t{n}-{i}")

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sub in subs:
        events = [sub.get(timeout=1) for _ in range(1000)]
        assert sub.get(timeout=0.01) is None
        ids = [e["Actor"]["ID"] for e in events if e]
        assert len(set(ids)) == 1000
        stamps = [e["timeNano"] for e in events if e]
        assert stamps == sorted(stamps) and len(set(stamps)) == 1000
    mine = list(iter(lambda: filtered.get(timeout=0.05), None))
    assert len(mine) == 250 and all(e["Actor"]["ID"].startswith("t0-") for e in mine)
