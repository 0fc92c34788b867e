"""Webhook delivery: threads that take due rows of the outbox
(:class:`~portside.registry.webhooks.Webhooks`), POST them and settle them, with the
back-off and lease rules described in :mod:`portside.registry.webhooks`."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from portside import __version__
from portside.errors import InvalidArgument
from portside.linux.process import pid_exists
from portside.registry.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    KEEP,
    MEDIA_TYPE,
    SIGNATURE_HEADER,
    Attempt,
    Claim,
    Webhooks,
    backoff,
    check_url,
    sign,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Deliverer", "post_http", "process_place"]

log = logging.getLogger("portside.registry.webhooks")

#: the longest error text kept for an attempt
_MAX_ERROR = 500


def process_place() -> str:
    """Where this process's pid means something: the host name and the pid
    namespace. Lease owners start with it, so a deliverer judges only leases of
    processes it can see."""
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = 0
    return f"{socket.gethostname()[:20]}/{pidns}"


def post_http(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` (http or https, certificates verified, redirects not
    followed); the status code. ``timeout`` bounds each network operation."""
    parts = urlsplit(check_url(url))
    assert parts.hostname is not None
    headers = dict(headers)
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()


class Deliverer:
    """Threads delivering the outbox: each takes one due row at a time, POSTs it and
    settles it. Starts at once unless ``start=False`` (then :meth:`run_once` drives it).
    ``send`` and ``clock`` are for tests: how to POST, and what time it is."""

    def __init__(
        self,
        webhooks: Webhooks,
        *,
        concurrency: int = 4,
        timeout: float = 10.0,
        max_attempts: int = 12,
        backoff_base: float = 1.0,
        backoff_cap: float = 600.0,
        lease: float | None = None,
        poll: float = 1.0,
        keep: float = KEEP,
        send: Callable[[str, bytes, dict[str, str], float], int] = post_http,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or timeout <= 0:
            raise InvalidArgument("webhook delivery needs concurrency, attempts and timeout > 0")
        self.webhooks = webhooks
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease = lease if lease is not None else timeout * 3 + 30.0
        self.poll = poll
        self.keep = keep
        self._pruned = 0.0
        self._prune_lock = threading.Lock()
        self.place = process_place()
        self.owner = f"{self.place}:{os.getpid()}:{secrets.token_hex(4)}"
        self._send = send
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        webhooks.add_listener(self.wake)
        if start:
            self.start()

    def start(self) -> Deliverer:
        """Free the leases of dead processes that ran here, then start the threads."""
        if self._threads:
            return self
        try:
            freed = self.webhooks.release_dead(self.place, pid_exists, now=self._clock())
        except Exception:
            log.exception("cannot read the webhook outbox")
        else:
            if freed:
                log.info("retrying %d webhook deliveries a dead process had claimed", freed)
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"portside-webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wake(self) -> None:
        """Look for due rows now (new rows were queued)."""
        self._wake.set()

    def close(self, timeout: float | None = None) -> None:
        """Stop: let attempts in flight finish (each bounded by the timeout), then
        return. Rows still leased are retried by whoever runs next."""
        self._stop.set()
        self._wake.set()
        self.webhooks.remove_listener(self.wake)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._threads = []

    def __enter__(self) -> Deliverer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._prune()
                worked = self.run_once()
            except Exception:
                log.exception("webhook delivery failed")
                worked = False
            if not worked and not self._stop.is_set():
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _prune(self) -> None:
        """Once an hour (per process), forget rows settled more than ``keep`` ago."""
        now = self._clock()
        if now - self._pruned < 3600 or not self._prune_lock.acquire(blocking=False):
            return
        try:
            self._pruned = now
            gone = self.webhooks.prune(now - self.keep)
            if gone:
                log.info(
                    "forgot %d webhook deliveries older than %d days", gone, self.keep // 86400
                )
        finally:
            self._prune_lock.release()

    def _idle_wait(self) -> float:
        try:
            due = self.webhooks.next_due()
        except Exception:
            log.exception("cannot read the webhook outbox")
            return self.poll
        if due is None:
            return self.poll
        return min(self.poll, max(0.05, due - self._clock()))

    def run_once(self) -> bool:
        """Claim one due row and try to deliver it; False when none was due."""
        claim = self.webhooks.claim(self.owner, now=self._clock(), lease=self.lease)
        if claim is None:
            return False
        attempt = self.attempt(claim)
        delivered = attempt.error is None
        retry_at = None
        if not delivered and claim.attempt < self.max_attempts:
            retry_at = self._clock() + backoff(claim.attempt, self.backoff_base, self.backoff_cap)
        if not self.webhooks.finish(claim, attempt, delivered=delivered, retry_at=retry_at):
            log.warning("webhook delivery %s: lease lost before the attempt ended", claim.uuid)
        elif not delivered and retry_at is None:
            log.warning(
                "webhook delivery %s to %s failed after %d attempts: %s",
                claim.uuid,
                claim.url,
                claim.attempt,
                attempt.error,
            )
        return True

    def attempt(self, claim: Claim) -> Attempt:
        """POST the claimed row once; what happened."""
        headers = {
            "Content-Type": MEDIA_TYPE,
            "User-Agent": f"Portside-Registry/{__version__}",
            SIGNATURE_HEADER: sign(claim.secret, claim.payload),
            DELIVERY_HEADER: claim.uuid,
            EVENT_HEADER: claim.action,
        }
        started, t0 = self._clock(), time.monotonic()
        status: int | None = None
        try:
            status = self._send(claim.url, claim.payload, headers, self.timeout)
            error = None if 200 <= status < 300 else f"http status {status}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if error is not None:
            error = error[:_MAX_ERROR]
        return Attempt(claim.attempt, started, time.monotonic() - t0, status, error)
