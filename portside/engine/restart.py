"""Restart policies as pure logic: ``no``, ``always``, ``unless-stopped``,
``on-failure[:N]``, and Docker's back-off (100 ms, doubling, at most a minute,
back to 100 ms once a run lasted 10 seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portside.errors import InvalidArgument

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "RESET_AFTER", "Backoff", "Policy", "parse_policy"]

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0
_NAMES = ("", "no", "always", "unless-stopped", "on-failure")


@dataclass(frozen=True)
class Policy:
    name: str = "no"  # no always unless-stopped on-failure
    max_retries: int = 0  # on-failure only; 0 = no limit

    def should_restart(self, exit_code: int, restart_count: int, cancelled: bool) -> bool:
        """Whether a container that exited with ``exit_code`` after ``restart_count``
        automatic restarts is started again. A manual stop or kill cancels every policy."""
        if cancelled:
            return False
        if self.name in ("always", "unless-stopped"):
            return True
        if self.name == "on-failure":
            if self.max_retries and restart_count >= self.max_retries:
                return False
            return exit_code != 0
        return False

    def start_with_daemon(self, exit_code: int, restart_count: int, manually_stopped: bool) -> bool:
        """Whether the daemon starts a stopped container when it starts (Docker: ``always``
        even after a manual stop; ``unless-stopped`` and ``on-failure`` unless stopped by
        hand, ``on-failure`` only after a failure within its retries)."""
        if self.name == "always":
            return True
        if manually_stopped:
            return False
        return self.should_restart(exit_code, restart_count, False)


def parse_policy(data: dict[str, Any] | None) -> Policy:
    """The Policy of HostConfig.RestartPolicy ``{"Name", "MaximumRetryCount"}``."""
    data = data or {}
    name = str(data.get("Name") or "no")
    count = int(data.get("MaximumRetryCount") or 0)
    if name not in _NAMES:
        raise InvalidArgument(f"invalid restart policy '{name}'")
    if count < 0:
        raise InvalidArgument("maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    return Policy(name, count)


@dataclass
class Backoff:
    """The delay before each automatic restart of one container."""

    timeout: float = 0.0

    def next(self, ran_for: float) -> float:
        """The delay before the next restart, after a run of ``ran_for`` seconds."""
        if ran_for >= RESET_AFTER:
            self.timeout = 0.0
        if self.timeout == 0.0:
            self.timeout = BACKOFF_START
        elif self.timeout < BACKOFF_MAX:
            self.timeout *= 2
        self.timeout = min(self.timeout, BACKOFF_MAX)
        return self.timeout

    def reset(self) -> None:
        self.timeout = 0.0
