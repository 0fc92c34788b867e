"""Docker's JSON progress messages: shapes, the progress bar, sizes, the throttle."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from portside.distribution.progress import (
    Throttle,
    aux,
    human_size,
    message,
    progress_text,
    short_id,
    status,
)

DIGEST = "sha256:3f4d90098f5b5a6f6a76e9d217da85aa39b2081e30fa1f7d287138d6e7bf0ad7"


def test_short_id() -> None:
    assert short_id(DIGEST) == "3f4d90098f5b"
    assert short_id("3f4d90098f5b5a6f") == "3f4d90098f5b"


def test_human_size_is_go_units() -> None:
    # go-units HumanSize: powers of 1000, "%.4g" and the unit glued on
    assert human_size(0) == "0B"
    assert human_size(512) == "512B"
    assert human_size(999) == "999B"
    assert human_size(1000) == "1kB"
    assert human_size(32475) == "32.48kB"
    assert human_size(2219949) == "2.22MB"
    assert human_size(772_788_224) == "772.8MB"
    assert human_size(5 * 10**12) == "5TB"


def test_progress_text_is_mobys_json_progress_string() -> None:
    # real lines of a docker pull's API stream (200 columns, no start time)
    assert progress_text(32475, 2219949) == "[>" + " " * 50 + "]  32.48kB/2.22MB"
    assert progress_text(2219949, 2219949) == "[" + "=" * 50 + ">]   2.22MB/2.22MB"
    half = progress_text(50, 100)
    assert half == "[" + "=" * 25 + ">" + " " * 25 + "]      50B/100B"
    assert progress_text(0, 0) == ""
    assert progress_text(1234, 0) == " 1.234kB"
    assert progress_text(200, 100) == "[" + "=" * 50 + ">]     200B"  # wonky: no total


@given(st.integers(0, 10**13), st.integers(1, 10**13))
def test_progress_bar_is_always_53_wide(current: int, total: int) -> None:
    text = progress_text(current, total)
    bar = text[: text.index("]") + 1]
    assert len(bar) == 53 and bar.count(">") == 1
    assert bar.count("=") == min(int(current / total * 100) // 2, 50)


def test_message_shapes() -> None:
    # progress.Message: no progressDetail
    assert status("Pulling from library/busybox", id="latest") == {
        "status": "Pulling from library/busybox",
        "id": "latest",
    }
    assert status("Digest: " + DIGEST) == {"status": "Digest: " + DIGEST}
    # progress.Update without counts: an empty progressDetail, no progress text
    assert message("Pull complete", id="3f4d90098f5b") == {
        "status": "Pull complete",
        "progressDetail": {},
        "id": "3f4d90098f5b",
    }
    # with counts; zero counts are left out, as Go's omitempty does
    assert message("Downloading", id="x", current=1, total=2) == {
        "status": "Downloading",
        "progressDetail": {"current": 1, "total": 2},
        "progress": progress_text(1, 2),
        "id": "x",
    }
    start = message("Downloading", id="x", current=0, total=2)
    assert start["progressDetail"] == {"total": 2} and start["progress"].startswith("[>")
    assert aux({"Tag": "latest", "Digest": DIGEST, "Size": 527}) == {
        "progressDetail": {},
        "aux": {"Tag": "latest", "Digest": DIGEST, "Size": 527},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_limits_counters_per_id_and_passes_finals() -> None:
    got: list[dict[str, Any]] = []
    clock = Clock()
    t = Throttle(got.append, interval=0.1, clock=clock)
    for n in range(1, 50):
        t.update("Downloading", "a", n, 100)  # same instant: only the first passes
    t.update("Downloading", "b", 1, 100)  # another id has its own budget
    t.update("Extracting", "a", 1, 100)  # so has another status of the same id
    clock.now += 0.05
    t.update("Downloading", "a", 60, 100)  # too soon
    clock.now += 0.06
    t.update("Downloading", "a", 70, 100)  # 0.11 s after the first
    t.update("Downloading", "a", 100, 100)  # final: always
    t.update("Downloading", "a", 100, 100, final=True)  # but not twice
    t.event("Download complete", "a")
    seen = [(m["status"], m.get("id"), m["progressDetail"].get("current")) for m in got]
    assert seen == [
        ("Downloading", "a", 1),
        ("Downloading", "b", 1),
        ("Extracting", "a", 1),
        ("Downloading", "a", 70),
        ("Downloading", "a", 100),
        ("Download complete", "a", None),
    ]


def test_throttle_serialises_threads() -> None:
    inside = 0
    overlaps = 0
    lock = threading.Lock()
    got: list[dict[str, Any]] = []

    def slow(msg: dict[str, Any]) -> None:
        nonlocal inside, overlaps
        with lock:
            inside += 1
            overlaps += inside > 1
        got.append(msg)
        with lock:
            inside -= 1

    t = Throttle(slow, interval=0.0)

    def work(i: int) -> None:
        for n in range(200):
            t.update("Pushing", f"id{i}", n + 1, 200)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert overlaps == 0
    assert len(got) == 800
