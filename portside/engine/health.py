"""Health checks: Config.Healthcheck run by exec on a timer thread per running
container, reported in State.Health and as ``health_status`` events (Docker's rules:
failures inside StartPeriod do not count while starting; Retries failures in a row
make it unhealthy; the last 5 results are kept)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from portside.engine.model import Container, now_rfc3339

__all__ = ["HealthChecks", "Probe", "apply_result", "parse_healthcheck"]

SECOND = 1_000_000_000
MAX_LOG = 5


@dataclass(frozen=True)
class Probe:
    cmd: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    start_period: float = 0.0
    retries: int = 3


def _seconds(ns: Any, default: float) -> float:
    return int(ns) / SECOND if ns else default


def parse_healthcheck(config: dict[str, Any]) -> Probe | None:
    """The probe of a container's Config (None without one, or with Test ["NONE"])."""
    hc = config.get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        cmd = [str(x) for x in test[1:]]
    elif test[0] == "CMD-SHELL":
        cmd = ["/bin/sh", "-c", " ".join(str(x) for x in test[1:])]
    else:
        return None
    if not cmd:
        return None
    return Probe(
        cmd,
        interval=_seconds(hc.get("Interval"), 30.0),
        timeout=_seconds(hc.get("Timeout"), 30.0),
        start_period=_seconds(hc.get("StartPeriod"), 0.0),
        retries=int(hc.get("Retries") or 3),
    )


def apply_result(
    health: dict[str, Any], entry: dict[str, Any], *, in_start_period: bool, retries: int
) -> bool:
    """Record probe result ``entry`` ({"Start", "End", "ExitCode", "Output"}) in State.Health
    ``health``; whether its Status changed."""
    before = health.get("Status")
    if entry["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = "healthy"
    elif not (before == "starting" and in_start_period):
        health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
        if health["FailingStreak"] >= retries:
            health["Status"] = "unhealthy"
    health["Log"] = [*(health.get("Log") or []), entry][-MAX_LOG:]
    return health.get("Status") != before


class HealthChecks:
    """One timer thread per running container with a health check."""

    def __init__(
        self,
        run: Callable[[Container, list[str], float], tuple[int, bytes]],
        record: Callable[[Container, Callable[[dict[str, Any]], bool]], None],
    ) -> None:
        self._run = run
        self._record = record  # applies a result to State.Health under the container's lock
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, c: Container) -> None:
        probe = parse_healthcheck(c.config)
        if probe is None:
            return
        self.stop(c.id)
        c.state.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        stop = threading.Event()
        with self._lock:
            self._stops[c.id] = stop
        thread = threading.Thread(
            target=self._loop, args=(c, probe, stop), name=f"health-{c.short_id}", daemon=True
        )
        thread.start()

    def stop(self, cid: str) -> None:
        with self._lock:
            stop = self._stops.pop(cid, None)
        if stop is not None:
            stop.set()

    def close(self) -> None:
        with self._lock:
            stops = list(self._stops.values())
            self._stops.clear()
        for stop in stops:
            stop.set()

    def _loop(self, c: Container, probe: Probe, stop: threading.Event) -> None:
        started = time.monotonic()
        while not stop.wait(probe.interval):
            begin = now_rfc3339()
            in_start = time.monotonic() - started < probe.start_period
            code, output = self._run(c, probe.cmd, probe.timeout)
            if stop.is_set() or c.state.health is None:
                return
            entry = {
                "Start": begin,
                "End": now_rfc3339(),
                "ExitCode": code,
                "Output": output.decode(errors="replace"),
            }
            self._record(
                c,
                partial(apply_result, entry=entry, in_start_period=in_start, retries=probe.retries),
            )
