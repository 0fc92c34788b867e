"""Webhooks end to end: a real ``portside registry serve`` process, pushes over HTTP,
and receivers on 127.0.0.1 (``http.server`` threads) that check the signature, fail
on purpose, or hang. Needs no root."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portside.testing.registryserver import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Receiver:
    """An HTTP receiver: answers each POST with the next status of ``plan`` (the last
    one forever after) and records (time, path, headers, body). With ``hold``, the
    first POST is answered only once that event is set."""

    def __init__(self, plan: list[int] | None = None, hold: threading.Event | None = None) -> None:
        self.plan = list(plan or [200])
        self.hold = hold
        self.seen: list[tuple[float, str, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.cond:
                    status = receiver.plan.pop(0) if len(receiver.plan) > 1 else receiver.plan[0]
                    receiver.seen.append((time.monotonic(), self.path, dict(self.headers), body))
                    receiver.cond.notify_all()
                    first = len(receiver.seen) == 1
                if first and receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(
        self, count: int, timeout: float = 20.0
    ) -> list[tuple[float, str, dict[str, str], bytes]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"{len(self.seen)} of {count} deliveries after {timeout}s")
            return list(self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/dead"
    sock.close()


def push(reg: RegistryServer, repo: str, tag: str, **auth: Any) -> str:
    """Push a one-config image as ``repo:tag``; the manifest's digest."""
    config = json.dumps({"tag": tag}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    status, _, body = reg.request(
        "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=config, **auth
    )
    assert status == 201, body
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    status, headers, body = reg.request(
        "PUT",
        f"/v2/{repo}/manifests/{tag}",
        body=manifest,
        headers={"Content-Type": OCI_MANIFEST},
        **auth,
    )
    assert status == 201, body
    return headers["docker-content-digest"]


def api(reg: RegistryServer, method: str, path: str, doc: Any = None, **auth: Any) -> Any:
    body = json.dumps(doc).encode() if doc is not None else None
    status, _, raw = reg.request(
        method, path, body=body, headers={"Content-Type": "application/json"}, **auth
    )
    assert 200 <= status < 300, (status, raw)
    return json.loads(raw) if raw else None


def deliveries(reg: RegistryServer, hook_id: int, **auth: Any) -> list[dict[str, Any]]:
    return api(reg, "GET", f"/api/v1/webhooks/{hook_id}/deliveries", **auth)["deliveries"]


def delivered(reg: RegistryServer, hook_id: int, **auth: Any) -> list[dict[str, Any]]:
    """The hook's delivery log once its newest delivery is delivered (within 10 s)."""
    deadline = time.monotonic() + 10
    while (log := deliveries(reg, hook_id, **auth))[0]["state"] != "delivered":
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    return log


def test_a_push_produces_a_signed_push_event(tmp_path: Any, receivers: list[Receiver]) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    with RegistryServer(str(tmp_path), auth="token") as reg:
        reg.add_user("alice", "alice-pw")
        reg.add_user("bob", "bob-pw")
        alice = {"auth": ("alice", "alice-pw")}
        status, _, _ = reg.request("GET", "/api/v1/webhooks")
        assert status == 401
        new = {"namespace": "alice", "url": receiver.url, "events": ["push"]}
        status, _, _ = reg.request(
            "POST", "/api/v1/webhooks", body=json.dumps(new).encode(), auth=("bob", "bob-pw")
        )
        assert status == 403  # bob does not manage alice's namespace
        hook = api(reg, "POST", "/api/v1/webhooks", new, **alice)
        token = reg.token(["repository:alice/app:pull,push"], auth=("alice", "alice-pw"))
        digest = push(reg, "alice/app", "1", token=token)

        ((_, path, headers, body),) = receiver.wait(1)
        assert path == "/hook"
        assert headers["Content-Type"] == "application/vnd.docker.distribution.events.v1+json"
        expected = hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Portside-Signature-256"] == f"sha256={expected}"
        (event,) = json.loads(body)["events"]
        assert event["action"] == "push"
        assert event["target"]["repository"] == "alice/app"
        assert event["target"]["digest"] == digest
        assert event["target"]["mediaType"] == OCI_MANIFEST
        assert event["actor"]["name"] == "alice"
        assert {"id", "timestamp", "request", "source"} <= set(event)

        log = delivered(reg, hook["id"], **alice)
        (row,) = log
        assert (row["attempts"], row["status_code"]) == (1, 200)
        assert row["delivery"] == headers["X-Portside-Delivery"]
        status, _, _ = reg.request(
            "GET", f"/api/v1/webhooks/{hook['id']}/deliveries", auth=("bob", "bob-pw")
        )
        assert status == 404


def test_a_failing_receiver_gets_it_on_the_third_attempt(
    tmp_path: Any, receivers: list[Receiver]
) -> None:
    receiver = Receiver([500, 503, 200])
    receivers.append(receiver)
    with RegistryServer(str(tmp_path), auth="none") as reg:
        hook = api(
            reg,
            "POST",
            "/api/v1/webhooks",
            {"repository": "app", "url": receiver.url, "events": ["push"]},
        )
        push(reg, "app", "1")
        seen = receiver.wait(3)
        times = [t for t, _, _, _ in seen]
        assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9  # 1 s, then 2 s
        assert len({h["X-Portside-Delivery"] for _, _, h, _ in seen}) == 1
        assert len({body for _, _, _, body in seen}) == 1
        log = delivered(reg, hook["id"])
        detail = api(reg, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries/{log[0]['id']}")
        assert [a["status_code"] for a in detail["attempts_log"]] == [500, 503, 200]
        assert receiver.wait(3, timeout=1.5) == seen  # nothing more


def test_a_crash_mid_retry_still_delivers(tmp_path: Any, receivers: list[Receiver]) -> None:
    receiver = Receiver([500, 200])
    receivers.append(receiver)
    # the retry is due 3 s after the first attempt: the kill lands before it
    with RegistryServer(str(tmp_path), auth="none", config={"webhook_backoff": 3}) as reg:
        hook = api(
            reg,
            "POST",
            "/api/v1/webhooks",
            {"namespace": "alice", "url": receiver.url, "events": ["push"]},
        )
        push(reg, "alice/app", "1")
        receiver.wait(1)
        deadline = time.monotonic() + 10
        while (log := deliveries(reg, hook["id"]))[0]["status_code"] != 500:
            assert time.monotonic() < deadline, log
            time.sleep(0.02)
        assert log[0]["state"] == "pending"
        reg.stop(signal.SIGKILL)  # nothing of the retry survives but the database
        reg.start()
        seen = receiver.wait(2)
        assert seen[0][2]["X-Portside-Delivery"] == seen[1][2]["X-Portside-Delivery"]
        log = delivered(reg, hook["id"])
        assert (log[0]["attempts"], log[0]["status_code"]) == (2, 200)


def test_a_crash_mid_attempt_sends_again_at_restart(
    tmp_path: Any, receivers: list[Receiver]
) -> None:
    answer = threading.Event()
    receiver = Receiver(hold=answer)
    receivers.append(receiver)
    with RegistryServer(str(tmp_path), auth="none") as reg:
        hook = api(
            reg,
            "POST",
            "/api/v1/webhooks",
            {"namespace": "alice", "url": receiver.url, "events": ["push"]},
        )
        push(reg, "alice/app", "1")
        receiver.wait(1)  # the first attempt is in flight, unanswered
        reg.stop(signal.SIGKILL)  # dies holding the row's lease (60 s)
        answer.set()
        reg.start()
        seen = receiver.wait(2, timeout=10)  # the dead process's lease is freed at start
        assert seen[0][2]["X-Portside-Delivery"] == seen[1][2]["X-Portside-Delivery"]
        log = delivered(reg, hook["id"])
        assert (log[0]["attempts"], log[0]["status_code"]) == (2, 200)


def test_a_dead_receiver_does_not_delay_a_live_one(
    tmp_path: Any, receivers: list[Receiver], dead_url: str
) -> None:
    live = Receiver()
    receivers.append(live)
    with RegistryServer(str(tmp_path), auth="none") as reg:
        for url in (dead_url, live.url):
            api(
                reg,
                "POST",
                "/api/v1/webhooks",
                {"namespace": "alice", "url": url, "events": ["push"]},
            )
        start = time.monotonic()
        for n in range(3):
            push(reg, "alice/app", str(n))
        seen = live.wait(3, timeout=5)
        assert seen[-1][0] - start < 5  # the dead hook's POST hangs for 10 s meanwhile
        tags = [json.loads(body)["events"][0]["target"].get("tag") for _, _, _, body in seen]
        assert tags == ["0", "1", "2"]
        reg.stop(signal.SIGKILL)  # do not wait for the hanging POST


# -- several processes on PostgreSQL --------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL (Debian's) on a unix socket in a fresh directory, run as
    the ``postgres`` user; its URL."""
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    if os.geteuid() != 0 or not os.path.exists(initdb):
        pytest.skip("needs root and Debian's postgresql (initdb) to start a throwaway server")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user to run PostgreSQL as")
    pg_ctl = os.path.join(os.path.dirname(os.path.realpath(initdb)), "pg_ctl")
    top = tempfile.mkdtemp(prefix="portside-pg-")
    data = os.path.join(top, "data")
    os.chown(top, user.pw_uid, user.pw_gid)

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    try:
        as_postgres(initdb, "-D", data, "-A", "trust", "-U", "portside", "--no-sync")
        options = f"-k {top} -c listen_addresses='' -c fsync=off"
        as_postgres(pg_ctl, "-D", data, "-o", options, "-l", f"{top}/log", "-w", "start")
        yield f"postgresql://portside@/postgres?host={top}"
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            as_postgres(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.root
def test_two_processes_on_postgresql_share_the_outbox(postgres_url: str) -> None:
    """Two deliverers, each with its own connection pool (as two registry processes):
    every row is sent exactly once and each hook's rows in order."""
    from portside.registry.db import Database
    from portside.registry.delivery import Deliverer
    from portside.registry.webhooks import DELIVERED, Webhooks

    sent: list[tuple[str, str]] = []
    senders: set[threading.Thread] = set()
    lock = threading.Lock()

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        with lock:
            sent.append((url, json.loads(body)["events"][0]["id"]))
            senders.add(threading.current_thread())
        time.sleep(0.002)
        return 200

    databases = [Database(postgres_url), Database(postgres_url)]
    try:
        first, second = (Webhooks(db) for db in databases)
        urls = [f"http://h/{n}" for n in range(5)]
        for url in urls:
            first.create(url, namespace="alice")
        for n in range(20):
            first.enqueue({"id": f"ev-{n:02d}", "action": "push",
                           "target": {"repository": "alice/app"}})  # fmt: skip
        workers = [Deliverer(hooks, concurrency=3, send=send, poll=0.05)
                   for hooks in (first, second)]  # fmt: skip
        threads = [set(worker._threads) for worker in workers]
        try:
            deadline = time.monotonic() + 30
            while first.statistics()[DELIVERED] < 100:
                assert time.monotonic() < deadline, first.statistics()
                time.sleep(0.05)
        finally:
            for worker in workers:
                worker.close()
        assert len(sent) == 100 == len(set(sent))
        assert all(senders & mine for mine in threads)  # both "processes" delivered
        for url in urls:
            assert [ev for u, ev in sent if u == url] == [f"ev-{n:02d}" for n in range(20)]
    finally:
        for db in databases:
            db.close()
