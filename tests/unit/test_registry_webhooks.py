"""Webhooks: hooks, the durable outbox, the delivery workers and the JSON API, on a
SQLite database in a temporary directory, with a fake ``send`` and a fake clock (the
real HTTP path is in tests/integration/test_registry_webhooks.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from portside.errors import InvalidArgument, NotFound
from portside.linux.process import pid_exists
from portside.registry import hooks_api
from portside.registry.db import Database, sqlite_url
from portside.registry.delivery import Deliverer, post_http, process_place
from portside.registry.interfaces import ANONYMOUS, AuthChallenge, OpenAccess, Principal
from portside.registry.webhooks import (
    DELIVERED,
    EVENTS,
    FAILED,
    MEDIA_TYPE,
    PENDING,
    OutboxSink,
    Webhooks,
    backoff,
    check_url,
    namespace_of,
    sign,
)


def push_event(repo: str = "alice/app", action: str = "push", **extra: Any) -> dict[str, Any]:
    return {
        "id": extra.pop("id", "ev-1"),
        "timestamp": "2026-01-02T03:04:05.000000Z",
        "action": action,
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 123,
            "digest": "sha256:" + "a" * 64,
            "repository": repo,
            "url": f"http://reg/v2/{repo}/manifests/sha256:{'a' * 64}",
            "tag": "1",
        },
        "request": {"id": "r1", "addr": "127.0.0.1", "host": "reg", "method": "PUT"},
        "actor": {"name": "alice"},
        "source": {"addr": "reg:5000", "instanceID": "i1"},
        **extra,
    }


class Clock:
    """A fake clock, by default a second after now (rows are due when queued)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() + 1 if now is None else now

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A fake ``send``: answers per URL from a list of statuses (then the last one),
    recording every call; an exception instance in the list is raised."""

    def __init__(self, answers: dict[str, list[Any]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.calls.append((url, body, headers))
        queue = self.answers.get(url, [200])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return int(answer)


@pytest.fixture
def db(tmp_path: Any) -> Iterator[Database]:
    database = Database(sqlite_url(str(tmp_path)))
    yield database
    database.close()


@pytest.fixture
def hooks(db: Database) -> Webhooks:
    return Webhooks(db)


def deliverer(hooks: Webhooks, receiver: Receiver, clock: Clock, **kw: Any) -> Deliverer:
    return Deliverer(hooks, send=receiver, clock=clock, start=False, **kw)


# -- hooks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "http://", "file:///etc/passwd", "x", "http://h:99999/", "//h/x", ""],
)
def test_only_http_and_https_urls(hooks: Webhooks, url: str) -> None:
    with pytest.raises(InvalidArgument):
        hooks.create(url, namespace="alice")


def test_create_checks_scope_and_events(hooks: Webhooks) -> None:
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/")
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", namespace="a", repository="a/b")
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", namespace="a/b")
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", repository="../x")
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", repository="Upper/x")
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", namespace="a", events=["push", "build"])
    with pytest.raises(InvalidArgument):
        hooks.create("http://h/", namespace="a", events=[])
    for secret in ("", "s" * 256):
        with pytest.raises(InvalidArgument):
            hooks.create("http://h/", namespace="a", secret=secret)


def test_create_generates_a_secret_and_hides_it(hooks: Webhooks) -> None:
    hook = hooks.create("https://h/x", namespace="alice", created_by="alice")
    assert len(hook.secret) == 64
    assert hook.secret not in repr(hook)
    assert "secret" not in hook.to_json()
    assert hook.to_json(with_secret=True)["secret"] == hook.secret
    assert hook.to_json()["namespace"] == "alice"
    assert hooks.get(hook.id) == hook
    assert hooks.create("https://h/x", namespace="alice").secret != hook.secret


def test_matching_by_namespace_repository_action_and_enabled(hooks: Webhooks) -> None:
    ns = hooks.create("http://h/ns", namespace="alice")
    repo = hooks.create("http://h/repo", repository="alice/app", events=["push"])
    lib = hooks.create("http://h/lib", namespace="library", events=["pull"])
    off = hooks.create("http://h/off", namespace="alice", enabled=False)

    def ids(repository: str, action: str) -> set[int]:
        return {h.id for h in hooks.matching(repository, action)}

    assert ids("alice/app", "push") == {ns.id, repo.id}
    assert ids("alice/app", "pull") == {ns.id}
    assert ids("alice/other/deep", "delete") == {ns.id}
    assert ids("bob/app", "push") == set()
    assert ids("alpine", "pull") == {lib.id}
    assert ids("alice", "pull") == {lib.id}  # a single-component name is in library
    hooks.update(off.id, enabled=True)
    assert off.id in ids("alice/app", "tag")


@given(st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}", fullmatch=True))
def test_namespace_of(name: str) -> None:
    ns = namespace_of(name)
    assert ns == (name.split("/", 1)[0] if "/" in name else "library")


def test_update_and_delete(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/", namespace="alice")
    changed = hooks.update(hook.id, url="https://h2/x", events=["tag"], secret="s")
    assert (changed.url, changed.events, changed.secret) == ("https://h2/x", {"tag"}, "s")
    with pytest.raises(InvalidArgument):
        hooks.update(hook.id, url="gopher://x")
    with pytest.raises(InvalidArgument):
        hooks.update(hook.id, secret="")
    hooks.enqueue(push_event(action="tag"))
    hooks.delete(hook.id)
    assert hooks.statistics() == {PENDING: 0, DELIVERED: 0, FAILED: 0}
    with pytest.raises(NotFound):
        hooks.get(hook.id)
    with pytest.raises(NotFound):
        hooks.delete(hook.id)
    with pytest.raises(NotFound):
        hooks.update(hook.id, enabled=False)


# -- the outbox: payload, signature ----------------------------------------------------


def test_one_row_per_matching_hook_with_the_envelope(hooks: Webhooks) -> None:
    a = hooks.create("http://h/a", namespace="alice")
    b = hooks.create("http://h/b", repository="alice/app")
    hooks.create("http://h/c", repository="alice/app", events=["pull"])
    event = push_event()
    ids = hooks.enqueue(event)
    assert len(ids) == 2
    for hook_id in (a.id, b.id):
        (delivery,) = hooks.deliveries(hook_id)
        assert (delivery.state, delivery.action, delivery.repository) == (
            PENDING,
            "push",
            "alice/app",
        )
        assert json.loads(hooks.payload(delivery.id)) == {"events": [event]}
    assert hooks.enqueue(push_event(repo="bob/app")) == []
    assert hooks.enqueue({"action": "push"}) == []  # no repository: nothing to match


def test_envelope_fills_id_and_timestamp(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    event = push_event()
    del event["id"], event["timestamp"]
    hooks.enqueue(event)
    (sent,) = json.loads(hooks.payload(hooks.deliveries(hook.id)[0].id))["events"]
    assert len(sent["id"]) == 36
    assert sent["timestamp"].endswith("Z")
    assert time.strptime(sent["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert {k: v for k, v in sent.items() if k not in ("id", "timestamp")} == event


def test_delivery_headers_and_signature(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice", secret="s3cret")
    hooks.enqueue(push_event())
    receiver = Receiver()
    assert deliverer(hooks, receiver, Clock()).run_once()
    ((url, body, headers),) = receiver.calls
    assert url == "http://h/a"
    assert json.loads(body)["events"][0]["target"]["repository"] == "alice/app"
    assert headers["Content-Type"] == MEDIA_TYPE
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Portside-Signature-256"] == f"sha256={expected}" == sign("s3cret", body)
    (delivery,) = hooks.deliveries(hook.id)
    assert headers["X-Portside-Delivery"] == delivery.uuid
    assert headers["X-Portside-Event"] == "push"
    assert (delivery.state, delivery.attempts, delivery.last_status) == (DELIVERED, 1, 200)


def test_sign_known_vector() -> None:
    # RFC 4231 test case 2
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


# -- retries ---------------------------------------------------------------------------


def test_backoff_schedule() -> None:
    assert [backoff(n) for n in range(1, 13)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600,
    ]  # fmt: skip
    assert backoff(10_000) == 600
    assert backoff(3, base=0.5, cap=10) == 2.0


def test_retries_back_off_then_fail(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    clock, receiver = Clock(), Receiver({"http://h/a": [503]})
    worker = deliverer(hooks, receiver, clock, max_attempts=4)
    times = []
    for _ in range(20):
        if worker.run_once():
            times.append(clock.now)
        clock.now += 0.5
    start = times[0]
    assert [t - start for t in times] == [0, 1, 3, 7]  # after 1 s, 2 s, 4 s
    (delivery,) = hooks.deliveries(hook.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == (FAILED, 4, 503)
    assert delivery.last_error == "http status 503"
    log = hooks.attempts(delivery.id)
    assert [a.attempt for a in log] == [1, 2, 3, 4]
    assert all(a.status_code == 503 and a.error == "http status 503" for a in log)


def test_errors_without_an_answer_are_logged(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    receiver = Receiver({"http://h/a": [ConnectionRefusedError(111, "refused"), 204]})
    clock = Clock()
    worker = deliverer(hooks, receiver, clock)
    assert worker.run_once()
    assert not worker.run_once()  # not due before 1 s
    clock.now += 1
    assert worker.run_once()
    (delivery,) = hooks.deliveries(hook.id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == (DELIVERED, 2, 204)
    first, second = hooks.attempts(delivery.id)
    assert first.status_code is None and "refused" in (first.error or "")
    assert second.status_code == 204 and second.error is None


def test_redirects_and_client_errors_are_failures(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    worker = deliverer(hooks, Receiver({"http://h/a": [302]}), Clock(), max_attempts=1)
    assert worker.run_once()
    assert hooks.deliveries(hook.id)[0].state == FAILED


# -- ordering, head-of-line blocking, leases -----------------------------------------


def test_per_hook_order_while_the_head_waits(hooks: Webhooks) -> None:
    hooks.create("http://h/a", namespace="alice")
    for n in range(3):
        hooks.enqueue(push_event(id=f"ev-{n}"))
    clock = Clock()
    receiver = Receiver({"http://h/a": [500, 200]})
    worker = deliverer(hooks, receiver, clock)
    assert worker.run_once()  # ev-0 fails
    assert not worker.run_once()  # ev-1 is due but behind ev-0
    clock.now += 1
    while worker.run_once():
        pass
    sent = [json.loads(body)["events"][0]["id"] for _, body, _ in receiver.calls]
    assert sent == ["ev-0", "ev-0", "ev-1", "ev-2"]
    assert hooks.statistics()[DELIVERED] == 3


def test_a_waiting_hook_does_not_hold_others(hooks: Webhooks) -> None:
    dead = hooks.create("http://dead/", namespace="alice")
    live = hooks.create("http://live/", namespace="alice")
    for n in range(3):
        hooks.enqueue(push_event(id=f"ev-{n}"))
    clock = Clock()
    receiver = Receiver({"http://dead/": [OSError("timed out")], "http://live/": [200]})
    worker = deliverer(hooks, receiver, clock)
    while worker.run_once():
        pass
    assert [d.state for d in hooks.deliveries(live.id)] == [DELIVERED] * 3
    assert [d.state for d in hooks.deliveries(dead.id)] == [PENDING] * 3
    assert sum(1 for url, _, _ in receiver.calls if url == "http://dead/") == 1


def test_no_head_of_line_blocking_with_a_hanging_receiver(hooks: Webhooks) -> None:
    """Threads: the dead hook's first POST hangs; the live hook's events all arrive
    meanwhile, and the dead hook never has two POSTs in flight."""
    hooks.create("http://dead/", namespace="alice")
    live = hooks.create("http://live/", namespace="alice")
    release, lock = threading.Event(), threading.Lock()
    in_flight = {"now": 0, "max": 0}
    delivered: list[str] = []

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if url == "http://dead/":
            with lock:
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])
            release.wait(10)
            with lock:
                in_flight["now"] -= 1
            raise TimeoutError("timed out")
        delivered.append(json.loads(body)["events"][0]["id"])
        return 200

    sink = OutboxSink(hooks)
    with Deliverer(hooks, concurrency=3, send=send, poll=0.05):
        for n in range(5):
            sink.publish(push_event(id=f"ev-{n}"))
        sink.flush(10)
        deadline = time.monotonic() + 5
        while len(delivered) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert delivered == [f"ev-{n}" for n in range(5)]
        assert in_flight["max"] == 1
        release.set()
    sink.close()
    assert [d.state for d in hooks.deliveries(live.id)] == [DELIVERED] * 5


def test_a_lease_keeps_others_off_until_it_expires(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event(id="ev-0"))
    hooks.enqueue(push_event(id="ev-1"))
    t = time.time() + 1
    first = hooks.claim("A", now=t, lease=10.0)
    assert first is not None and first.attempt == 1
    assert hooks.claim("B", now=t + 5, lease=10.0) is None  # neither ev-0 nor ev-1
    assert hooks.next_due() == t + 10
    second = hooks.claim("B", now=t + 11, lease=10.0)  # A died: its lease ran out
    assert second is not None
    assert (second.outbox_id, second.attempt) == (first.outbox_id, 2)
    worker = deliverer(hooks, Receiver(), Clock(t + 12))
    ok = worker.attempt(second)
    late = worker.attempt(first)
    assert not hooks.finish(first, late, delivered=True, retry_at=None)  # lease lost
    assert hooks.deliveries(hook.id)[-1].state == PENDING
    assert hooks.finish(second, ok, delivered=True, retry_at=None)
    assert hooks.deliveries(hook.id)[-1].state == DELIVERED
    assert len(hooks.attempts(first.outbox_id)) == 2  # both POSTs are in the log


def test_a_claim_read_before_another_attempt_does_not_send_again(hooks: Webhooks) -> None:
    # two workers read the due row; one claims it, fails and sets the retry; the
    # other's claim, from what it read before, must not send it again at once
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    t = time.time() + 1
    with hooks.db.begin() as conn:
        (stale,) = hooks._due(conn, t)
    first = hooks.claim("A", now=t, lease=60)
    assert first is not None and first.attempt == 1
    worker = deliverer(hooks, Receiver({"http://h/a": [500]}), Clock(t))
    failed = worker.attempt(first)
    assert hooks.finish(first, failed, delivered=False, retry_at=t + 2)
    with hooks.db.begin() as conn:
        assert hooks._take(conn, stale, "B", t + 0.01, 60) is None
    assert hooks.claim("B", now=t + 0.01, lease=60) is None  # not due until t + 2
    again = hooks.claim("B", now=t + 2, lease=60)
    assert again is not None and again.attempt == 2
    assert hooks.deliveries(hook.id)[0].attempts == 2


def test_concurrent_claims_never_share_a_row(hooks: Webhooks) -> None:
    for n in range(12):
        hooks.create(f"http://h/{n}", namespace="alice")
    hooks.enqueue(push_event())
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (claim := hooks.claim(name, lease=60)) is not None:
            with lock:
                claimed.append(claim.outbox_id)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 12 == len(set(claimed))


def test_a_disabled_hook_pauses_its_deliveries(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    hooks.update(hook.id, enabled=False)
    worker = deliverer(hooks, Receiver(), Clock())
    assert not worker.run_once()
    assert hooks.next_due() is None
    hooks.update(hook.id, enabled=True)
    assert worker.run_once()


def test_a_new_deliverer_finishes_what_the_old_left(db: Database, tmp_path: Any) -> None:
    hooks = Webhooks(db)
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event(id="ev-0"))
    hooks.enqueue(push_event(id="ev-1"))
    clock = Clock()
    old = deliverer(hooks, Receiver({"http://h/a": [500]}), clock)
    assert old.run_once()
    hooks.claim("crashed", now=clock.now + 1, lease=30)  # a process dies holding ev-0
    old.close()
    db.close()

    again = Database(sqlite_url(str(tmp_path)))  # "restart": a new pool, new objects
    try:
        restarted = Webhooks(again)
        receiver = Receiver()
        new = deliverer(restarted, receiver, Clock(clock.now + 20))
        assert not new.run_once()  # ev-0 is still leased by the dead process
        new._clock = Clock(clock.now + 32)
        while new.run_once():
            pass
        sent = [json.loads(body)["events"][0]["id"] for _, body, _ in receiver.calls]
        assert sent == ["ev-0", "ev-1"]
        assert [d.attempts for d in restarted.deliveries(hook.id)] == [1, 3]
    finally:
        again.close()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_leases_of_dead_processes_here_are_freed(hooks: Webhooks, dead_pid: int) -> None:
    hooks.create("http://h/a", namespace="alice")
    hooks.create("http://h/b", namespace="alice")
    hooks.create("http://h/c", namespace="alice")
    hooks.enqueue(push_event())  # one row per hook
    t = time.time() + 1
    place = process_place()
    dead = hooks.claim(f"{place}:{dead_pid}:x", now=t, lease=60)
    living = hooks.claim(f"{place}:{os.getpid()}:x", now=t, lease=60)
    far = hooks.claim(f"otherhost/1:{dead_pid}:x", now=t, lease=60)  # not ours to judge
    assert dead is not None and living is not None and far is not None
    assert not pid_exists(dead_pid) and pid_exists(os.getpid())
    assert hooks.release_dead(place, pid_exists, now=t + 1) == 1
    again = hooks.claim("new", now=t + 1, lease=60)
    assert again is not None and (again.outbox_id, again.attempt) == (dead.outbox_id, 2)
    assert hooks.claim("new", now=t + 1, lease=60) is None  # the others still hold theirs
    assert hooks.release_dead(place, pid_exists, now=t + 2) == 0


def test_a_starting_deliverer_retries_what_a_dead_process_held(
    hooks: Webhooks, dead_pid: int
) -> None:
    hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    clock = Clock()
    assert hooks.claim(f"{process_place()}:{dead_pid}:x", now=clock.now, lease=600) is not None
    receiver = Receiver()
    worker = deliverer(hooks, receiver, clock, concurrency=1, poll=0.05)
    assert not worker.run_once()  # before start: still leased
    worker._clock = time.time  # the threads see real time
    with worker.start():
        deadline = time.monotonic() + 10
        while not receiver.calls:
            assert time.monotonic() < deadline
            time.sleep(0.01)


# -- redelivery, retention, the sink --------------------------------------------------


def test_redeliver_queues_a_copy(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event())
    worker = deliverer(hooks, Receiver(), Clock())
    assert worker.run_once()
    (old,) = hooks.deliveries(hook.id)
    new = hooks.redeliver(hook.id, old.id)
    assert (new.state, new.attempts, new.event_id) == (PENDING, 0, old.event_id)
    assert new.uuid != old.uuid and new.id > old.id
    assert hooks.payload(new.id) == hooks.payload(old.id)
    with pytest.raises(NotFound):
        hooks.redeliver(hook.id + 1, old.id)


def test_prune_forgets_old_finished_rows(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event(id="done"))
    hooks.enqueue(push_event(id="waiting"))
    clock = Clock()
    assert deliverer(hooks, Receiver(), clock).run_once()
    assert hooks.prune(before=clock.now - 1) == 0
    assert hooks.prune(before=clock.now + 1) == 1
    assert [d.event_id for d in hooks.deliveries(hook.id)] == ["waiting"]


def test_the_deliverer_prunes_hourly(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    hooks.enqueue(push_event(id="old"))
    clock = Clock()
    worker = deliverer(hooks, Receiver(), clock, keep=100)
    worker._prune()  # nothing to forget yet
    assert worker.run_once()
    hooks.enqueue(push_event(id="new"))
    assert worker.run_once()
    clock.now += 101
    worker._prune()  # within the hour of the last: not yet
    assert len(hooks.deliveries(hook.id)) == 2
    clock.now += 3600
    worker._prune()
    assert hooks.deliveries(hook.id) == []


def test_sink_keeps_order_and_never_raises(hooks: Webhooks, caplog: Any) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    sink = OutboxSink(hooks)
    for n in range(30):
        sink.publish(push_event(id=f"ev-{n}"))
    sink.publish({"action": "push", "target": "not a dict"})  # logged, not raised
    sink.flush(10)
    ids = [d.event_id for d in reversed(hooks.deliveries(hook.id, limit=100))]
    assert ids == [f"ev-{n}" for n in range(30)]
    assert "cannot queue webhook event" in caplog.text
    sink.close()
    sink.publish(push_event())  # after close: dropped with a warning
    assert "dropped" in caplog.text


def test_deliveries_filters_and_pages(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="alice")
    for n in range(5):
        hooks.enqueue(push_event(id=f"ev-{n}"))
    first = hooks.deliveries(hook.id, limit=2)
    assert [d.event_id for d in first] == ["ev-4", "ev-3"]
    more = hooks.deliveries(hook.id, limit=2, before=first[-1].id)
    assert [d.event_id for d in more] == ["ev-2", "ev-1"]
    assert hooks.deliveries(hook.id, state=DELIVERED) == []
    with pytest.raises(InvalidArgument):
        hooks.deliveries(hook.id, state="lost")


def test_deliverer_wakes_on_enqueue(hooks: Webhooks) -> None:
    hooks.create("http://h/a", namespace="alice")
    receiver = Receiver()
    with Deliverer(hooks, send=receiver, poll=30):
        time.sleep(0.1)  # the workers are idle, waiting up to 30 s
        hooks.enqueue(push_event())
        deadline = time.monotonic() + 5
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(receiver.calls) == 1


# -- post_http over loopback ---------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, dict(self.headers), body))
        status = 302 if self.path.startswith("/moved") else 201
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[str]:
    _Handler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_post_http(http_receiver: str) -> None:
    url = f"http://user:p%40ss@{http_receiver[7:]}/hook?x=1"
    assert post_http(url, b"{}", {"Content-Type": MEDIA_TYPE}, 5) == 201
    assert post_http(http_receiver + "/moved", b"{}", {}, 5) == 302  # not followed
    (path, headers, body), moved = _Handler.seen
    assert (path, body, moved[0]) == ("/hook?x=1", b"{}", "/moved")
    assert headers["Content-Type"] == MEDIA_TYPE
    assert base64.b64decode(headers["Authorization"].split()[1]) == b"user:p@ss"
    with pytest.raises(InvalidArgument):
        post_http("ftp://127.0.0.1/", b"", {}, 5)
    assert check_url("https://[::1]:8443/x") == "https://[::1]:8443/x"


# -- the JSON API ----------------------------------------------------------------------


class FakeAccess:
    """Basic ``name:x``: "root" is an admin; a user manages their own namespace."""

    def authenticate(self, headers: Any, remote: str) -> Principal:
        auth = headers.get("Authorization", "")
        if not auth:
            return ANONYMOUS
        name = base64.b64decode(auth.split()[1]).decode().split(":")[0]
        if name == "bad":
            raise AuthChallenge("invalid credentials", 'Basic realm="t"')
        return Principal(name=name, kind="user", admin=name == "root")

    def authorize(self, principal: Principal, repository: str, actions: set[str]) -> set[str]:
        return set(actions) if namespace_of(repository) == principal.name else set()

    def challenge(self, scopes: Any, error: str = "") -> str:
        return 'Basic realm="t"'

    def may_list(self, principal: Principal, repositories: Any) -> list[str]:
        return list(repositories)

    def routes(self) -> list[Any]:
        return []


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:x".encode()).decode()}


def api(hooks: Webhooks, access: Any, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = web.Application()
        for method, path, handler in hooks_api.routes(hooks, None, access):
            app.router.add_route(method, path, handler)
        async with TestClient(TestServer(app)) as client:
            return await body(client)

    return asyncio.run(main())


async def answer(response: Any) -> tuple[int, Any]:
    text = await response.text()
    return response.status, json.loads(text) if text else None


def test_api_needs_a_manager(hooks: Webhooks) -> None:
    other = hooks.create("http://h/b", namespace="bob")

    async def body(c: TestClient) -> list[Any]:
        new = {"namespace": "alice", "url": "http://h/a"}
        return [
            await c.get("/api/v1/webhooks"),
            await c.post("/api/v1/webhooks", json=new),
            await c.get("/api/v1/webhooks", headers=basic("bad")),
            await c.post("/api/v1/webhooks", json=new, headers=basic("bob")),
            await c.get(f"/api/v1/webhooks/{other.id}", headers=basic("alice")),
            await c.delete(f"/api/v1/webhooks/{other.id}", headers=basic("alice")),
            await c.get("/api/v1/webhooks", headers=basic("alice")),
        ]

    anon, anon_post, bad, denied, hidden, undeletable, listed = api(hooks, FakeAccess(), body)
    assert anon.status == anon_post.status == bad.status == 401
    assert anon.headers["WWW-Authenticate"] == 'Basic realm="t"'
    assert denied.status == 403
    assert hidden.status == undeletable.status == 404
    assert listed.status == 200
    assert hooks.get(other.id) == other


def test_api_manages_hooks_and_shows_deliveries(hooks: Webhooks) -> None:
    alice = basic("alice")

    async def body(c: TestClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        new = {"repository": "alice/app", "url": "http://h/a", "events": ["push", "tag"]}
        out["create"] = await answer(await c.post("/api/v1/webhooks", json=new, headers=alice))
        hook_id = out["create"][1]["id"]
        out["bad"] = await answer(
            await c.post("/api/v1/webhooks", json={**new, "url": "ftp://x"}, headers=alice)
        )
        out["notjson"] = await answer(await c.post("/api/v1/webhooks", data=b"{", headers=alice))
        out["list"] = await answer(await c.get("/api/v1/webhooks", headers=alice))
        out["root"] = await answer(await c.get("/api/v1/webhooks", headers=basic("root")))
        out["disable"] = await answer(
            await c.patch(f"/api/v1/webhooks/{hook_id}", json={"enabled": False}, headers=alice)
        )
        await c.patch(f"/api/v1/webhooks/{hook_id}", json={"enabled": True}, headers=alice)
        await asyncio.to_thread(hooks.enqueue, push_event())
        worker = deliverer(hooks, Receiver({"http://h/a": [500]}), Clock(), max_attempts=1)
        await asyncio.to_thread(worker.run_once)
        path = f"/api/v1/webhooks/{hook_id}/deliveries"
        out["deliveries"] = await answer(await c.get(path, headers=alice))
        delivery = out["deliveries"][1]["deliveries"][0]["id"]
        out["one"] = await answer(await c.get(f"{path}/{delivery}", headers=alice))
        out["again"] = await answer(await c.post(f"{path}/{delivery}/redeliver", headers=alice))
        out["delete"] = (await c.delete(f"/api/v1/webhooks/{hook_id}", headers=alice)).status
        out["gone"] = (await c.get(f"/api/v1/webhooks/{hook_id}", headers=alice)).status
        return out

    out = api(hooks, FakeAccess(), body)
    status, created = out["create"]
    assert status == 201
    assert created["repository"] == "alice/app" and created["events"] == ["push", "tag"]
    assert created["created_by"] == "alice" and len(created["secret"]) == 64
    assert out["bad"][0] == out["notjson"][0] == 400
    assert out["bad"][1]["errors"][0]["code"] == "INVALID"
    assert [h["id"] for h in out["list"][1]["webhooks"]] == [created["id"]]
    assert "secret" not in out["list"][1]["webhooks"][0]
    assert len(out["root"][1]["webhooks"]) == 1
    assert out["disable"][1]["enabled"] is False
    (row,) = out["deliveries"][1]["deliveries"]
    assert (row["state"], row["attempts"], row["status_code"]) == ("failed", 1, 500)
    one = out["one"][1]
    assert one["attempts_log"][0]["status_code"] == 500
    assert one["payload"]["events"][0]["action"] == "push"
    assert out["again"][0] == 202 and out["again"][1]["state"] == "pending"
    assert (out["delete"], out["gone"]) == (204, 404)


def test_api_on_an_open_registry_lets_anyone_manage(hooks: Webhooks) -> None:
    async def body(c: TestClient) -> tuple[int, Any]:
        new = {"namespace": "alice", "url": "http://h/a"}
        return await answer(await c.post("/api/v1/webhooks", json=new))

    status, created = api(hooks, OpenAccess(), body)
    assert status == 201 and created["events"] == sorted(EVENTS)


def test_api_refuses_bad_ids_and_numbers(hooks: Webhooks) -> None:
    hook = hooks.create("http://h/a", namespace="root")
    root = basic("root")

    async def body(c: TestClient) -> list[int]:
        path = f"/api/v1/webhooks/{hook.id}/deliveries"
        return [
            (await c.get("/api/v1/webhooks/" + "9" * 30, headers=root)).status,
            (await c.get(path + "/" + "9" * 30, headers=root)).status,
            (await c.get(path + "?limit=x", headers=root)).status,
            (await c.get(path + "?before=" + "9" * 30, headers=root)).status,
            (await c.get(path + "?state=lost", headers=root)).status,
            (await c.patch(f"/api/v1/webhooks/{hook.id}", json=[1], headers=root)).status,
            (
                await c.patch(f"/api/v1/webhooks/{hook.id}", json={"enabled": "yes"}, headers=root)
            ).status,
            (await c.post("/api/v1/webhooks", data=b"x" * 70_000, headers=root)).status,
        ]

    assert api(hooks, FakeAccess(), body) == [404, 404, 400, 400, 400, 400, 400, 400]
