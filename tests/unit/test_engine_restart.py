"""Restart policies and Docker's back-off, as pure logic; health results."""

from __future__ import annotations

import pytest

from portside.engine.health import apply_result, parse_healthcheck
from portside.engine.restart import BACKOFF_MAX, Backoff, Policy, parse_policy
from portside.errors import InvalidArgument


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (None, Policy("no", 0)),
        ({"Name": ""}, Policy("no", 0)),
        ({"Name": "always"}, Policy("always", 0)),
        ({"Name": "on-failure", "MaximumRetryCount": 2}, Policy("on-failure", 2)),
        ({"Name": "unless-stopped"}, Policy("unless-stopped", 0)),
    ],
)
def test_parse_policy(data: dict | None, want: Policy) -> None:
    assert parse_policy(data) == want


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Name": "sometimes"}, "invalid restart policy 'sometimes'"),
        ({"Name": "on-failure", "MaximumRetryCount": -1}, "cannot be negative"),
        ({"Name": "always", "MaximumRetryCount": 3}, "cannot be used with restart policy"),
    ],
)
def test_parse_policy_refuses(data: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_policy(data)


def test_should_restart() -> None:
    never, always = Policy("no"), Policy("always")
    unless, on_failure = Policy("unless-stopped"), Policy("on-failure", 2)
    assert not never.should_restart(1, 0, False)
    assert always.should_restart(0, 100, False) and not always.should_restart(0, 0, True)
    assert unless.should_restart(0, 0, False) and not unless.should_restart(1, 0, True)
    assert on_failure.should_restart(1, 0, False) and on_failure.should_restart(3, 1, False)
    assert not on_failure.should_restart(1, 2, False)  # two restarts done
    assert not on_failure.should_restart(0, 0, False)  # success
    assert Policy("on-failure", 0).should_restart(1, 1000, False)  # no limit


def test_start_with_daemon() -> None:
    assert Policy("always").start_with_daemon(0, 0, True)  # even after a manual stop
    assert Policy("unless-stopped").start_with_daemon(0, 0, False)
    assert not Policy("unless-stopped").start_with_daemon(0, 0, True)
    assert Policy("on-failure", 2).start_with_daemon(1, 1, False)
    assert not Policy("on-failure", 2).start_with_daemon(1, 2, False)
    assert not Policy("on-failure").start_with_daemon(0, 0, False)
    assert not Policy("on-failure").start_with_daemon(1, 0, True)
    assert not Policy("no").start_with_daemon(1, 0, False)


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff()
    delays = [b.next(0.5) for _ in range(12)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == BACKOFF_MAX and delays[-1] == BACKOFF_MAX
    assert b.next(10.0) == 0.1  # a run of 10 s resets it
    assert b.next(9.9) == 0.2
    b.reset()
    assert b.next(0) == 0.1


def test_parse_healthcheck() -> None:
    assert parse_healthcheck({}) is None
    assert parse_healthcheck({"Healthcheck": {"Test": ["NONE"]}}) is None
    p = parse_healthcheck({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /x"]}})
    assert p is not None and p.cmd == ["/bin/sh", "-c", "test -f /x"]
    assert (p.interval, p.timeout, p.start_period, p.retries) == (30.0, 30.0, 0.0, 3)
    p = parse_healthcheck(
        {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 1}}
    )
    assert p is not None and p.cmd == ["true"] and p.interval == 2.0 and p.retries == 1


def _entry(code: int) -> dict:
    return {"Start": "s", "End": "e", "ExitCode": code, "Output": ""}


def test_health_results() -> None:
    h: dict = {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert not apply_result(h, _entry(1), in_start_period=True, retries=2)
    assert h["FailingStreak"] == 0  # failures in the start period do not count
    assert not apply_result(h, _entry(1), in_start_period=False, retries=2)
    assert apply_result(h, _entry(1), in_start_period=False, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("unhealthy", 2)
    assert apply_result(h, _entry(0), in_start_period=False, retries=2)
    assert (h["Status"], h["FailingStreak"]) == ("healthy", 0)
    for _ in range(10):
        apply_result(h, _entry(0), in_start_period=False, retries=2)
    assert len(h["Log"]) == 5
