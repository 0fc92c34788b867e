"""Networking building blocks: veth into a namespace, bridge, nft apply, veth teardown.

Micro benchmarks of ``portside.network`` (run as root; every name is unique, everything
made is removed, also on failure; traffic: none):

- ``network_veth``: ``create_veth`` with the peer born inside a fresh namespace, then
  ``configure_inside`` (lo up, address, MTU, up, default route), vs creating the veth on
  the host and moving the peer in (what the issue measured at ~65 ms with the delete).
  ``phases`` splits ours, and times opening a netlink socket inside the namespace through
  pyroute2's forked child vs a throwaway thread that ``setns()``es.
- ``network_bridge``: ``ensure_bridge`` of a new bridge; ``phases``: again on an existing one.
- ``network_nft``: ``apply`` of a ruleset of 10 networks and 50 published ports (one
  transaction); ``phases``: building the JSON, applying with a reused context, deleting.
- ``network_teardown``: what removing a container's veth costs its caller: handing it to
  a ``LinkReaper`` vs deleting it synchronously vs just dropping the namespace.

End to end, with the engine wired (these start a daemon or an engine of their own, on a
bridge of their own; traffic only on that bridge and on loopback):

- ``network_start``: ``Engine.container_start`` of a created busybox ``true`` on the
  default bridge vs with ``--network none`` (in-process: the endpoint's cost alone).
- ``network_run_rm``: ``portside run --rm busybox true`` on the default bridge vs
  ``--network none`` through our CLI and daemon, and the same pair for podman (netavark)
  and docker where they run; ``added_ms`` is each engine's bridge minus none.
- ``network_port``: throughput through a published port, host -> container: a loopback
  HTTP client (Python, the same for all) downloading a 64 MiB file from busybox httpd
  through ``-p 127.0.0.1:PORT:80`` (MB/s) and fetching a small page on 4 connections at a
  time (requests/s); vs the container's address directly (no NAT) and podman's ``-p``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from bench.harness import Command, compare, emit

__all__ = [
    "bench_network_bridge",
    "bench_network_nft",
    "bench_network_port",
    "bench_network_run_rm",
    "bench_network_start",
    "bench_network_teardown",
    "bench_network_veth",
]

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
SUBNET = IPv4Network("10.215.0.0/24")
GATEWAY = IPv4Interface("10.215.0.1/24")
ADDRESS = IPv4Interface("10.215.0.2/24")


def _name(prefix: str = "psb") -> str:
    return prefix + uuid.uuid4().hex[:8]


class _Netns:
    """A network namespace bind-mounted in ``directory``, and an fd on it."""

    def __init__(self, directory: str) -> None:
        from portside.linux._libc import libc

        self.path = os.path.join(directory, _name("ns"))
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        pid = os.fork()
        if pid == 0:
            ok = libc.unshare(CLONE_NEWNET) == 0 and (
                libc.mount(b"/proc/self/ns/net", self.path.encode(), None, MS_BIND, None) == 0
            )
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            os.unlink(self.path)
            raise OSError(f"cannot make a network namespace at {self.path}")
        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        from portside.linux._libc import libc

        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        libc.umount2(self.path.encode(), MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class _Fixture:
    """A test bridge, a fresh namespace per run, and the veth names made: all removed."""

    def __init__(self) -> None:
        from portside.network import netlink

        self.netlink = netlink
        self.dir = tempfile.mkdtemp(prefix="bench-netns-")
        self.bridge = _name()
        self.links: list[str] = []
        self.spaces: list[_Netns] = []
        self.ns: _Netns | None = None
        self.host = ""
        netlink.ensure_bridge(self.bridge, GATEWAY, 1500)

    def fresh(self) -> None:
        """Setup of a run: a new namespace and a new host veth name."""
        self.ns = _Netns(self.dir)
        self.spaces.append(self.ns)
        self.host = _name()
        self.links.append(self.host)

    def plugged(self) -> None:
        """Setup of a run: a fresh namespace with a veth in it."""
        self.fresh()
        assert self.ns is not None
        self.netlink.create_veth(self.host, self.ns.fd, bridge=self.bridge)

    def drop_ns(self) -> None:
        if self.ns is not None:
            self.ns.close()
            self.ns = None

    def settle(self) -> None:
        """Teardown of a run: drop the namespace and wait until the kernel has deleted
        its veth (cleanup_net holds the rtnl lock meanwhile, slowing the next run)."""
        self.drop_ns()
        deadline = time.monotonic() + 5
        while self.host in self.netlink.link_names("veth") and time.monotonic() < deadline:
            time.sleep(0.002)

    def close(self) -> None:
        self.drop_ns()
        for ns in self.spaces:
            ns.close()
        for name in self.links:
            self.netlink.delete_link(name)
        self.netlink.delete_link(self.bridge)
        os.rmdir(self.dir)


@contextlib.contextmanager
def _fixture() -> Iterator[_Fixture]:
    fx = _Fixture()
    try:
        yield fx
    finally:
        fx.close()


def _median_ms(
    func: Callable[[], Any],
    n: int,
    setup: Callable[[], None] | None = None,
    teardown: Callable[[], None] | None = None,
) -> float:
    samples = []
    for _ in range(n):
        if setup is not None:
            setup()
        try:
            start = time.perf_counter_ns()
            func()
            samples.append(time.perf_counter_ns() - start)
        finally:
            if teardown is not None:
                teardown()
    return round(statistics.median(samples) / 1e6, 3)


# --- network_veth ------------------------------------------------------------------------


def _veth_phases(fx: _Fixture, n: int) -> dict[str, Any]:
    def create() -> None:
        assert fx.ns is not None
        fx.netlink.create_veth(fx.host, fx.ns.fd, bridge=fx.bridge)

    def configure(method: str) -> Callable[[], None]:
        def run() -> None:
            assert fx.ns is not None
            fx.netlink.configure_inside(
                fx.ns.fd, "eth0", ADDRESS, GATEWAY.ip, 1500, netns_socket=method
            )

        return run

    def netns_iproute(method: str) -> Callable[[], None]:
        def run() -> None:  # open an IPRoute inside the namespace, and close it
            assert fx.ns is not None
            fx.netlink._iproute(fx.ns.fd, method).close()

        return run

    return {
        "create_veth_ms": _median_ms(create, n, fx.fresh, fx.settle),
        "create_veth_during_netns_cleanup_ms": _median_ms(create, n, fx.fresh, fx.drop_ns),
        "configure_inside_fork_ms": _median_ms(configure("fork"), n, fx.plugged, fx.settle),
        "configure_inside_thread_ms": _median_ms(configure("thread"), n, fx.plugged, fx.settle),
        "netns_iproute_fork_ms": _median_ms(netns_iproute("fork"), n, fx.fresh, fx.settle),
        "netns_iproute_thread_ms": _median_ms(netns_iproute("thread"), n, fx.fresh, fx.settle),
    }


def bench_network_veth(*, runs: int, warmup: int, out: str | None = None) -> None:
    """A veth born in the namespace and configured inside, vs created on the host and moved in."""
    from pyroute2 import IPRoute

    with _fixture() as fx:

        def born_inside(method: str) -> Callable[[], None]:
            def run() -> None:
                assert fx.ns is not None
                fx.netlink.create_veth(fx.host, fx.ns.fd, bridge=fx.bridge)
                fx.netlink.configure_inside(
                    fx.ns.fd, "eth0", ADDRESS, GATEWAY.ip, 1500, netns_socket=method
                )

            return run

        def moved_in() -> None:
            assert fx.ns is not None
            with IPRoute() as ipr:
                master = ipr.link_lookup(ifname=fx.bridge)[0]
                peer = _name("psp")
                ipr.link("add", ifname=fx.host, kind="veth", master=master, state="up", peer=peer)
                ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fx.ns.fd)
            fx.netlink.configure_inside(fx.ns.fd, peer, ADDRESS, GATEWAY.ip, 1500)

        compare(
            "network_veth",
            Command("in-netns+configure(fork)", born_inside("fork"), fx.fresh, fx.settle),
            [
                Command("in-netns+configure(thread)", born_inside("thread"), fx.fresh, fx.settle),
                Command("on-host+move+configure(fork)", moved_in, fx.fresh, fx.settle),
            ],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=lambda: {"phases": _veth_phases(fx, runs)},
        )


# --- network_bridge ----------------------------------------------------------------------


def bench_network_bridge(*, runs: int, warmup: int, out: str | None = None) -> None:
    """ensure_bridge of a new bridge (address, MTU, up); phases: of an existing one."""
    from portside.network import netlink

    names: list[str] = []

    def fresh() -> None:
        names.append(_name())

    def ensure() -> None:
        netlink.ensure_bridge(names[-1], GATEWAY, 1500)

    def remove() -> None:
        netlink.delete_link(names[-1])

    try:
        compare(
            "network_bridge",
            Command("ensure_bridge-new", ensure, fresh, remove),
            [],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=lambda: {
                "phases": {
                    "ensure_bridge_existing_ms": _existing(runs, fresh, ensure, remove),
                    "delete_bridge_ms": _median_ms(remove, runs, lambda: (fresh(), ensure())),
                }
            },
        )
    finally:
        for name in names:
            netlink.delete_link(name)


def _existing(
    n: int, fresh: Callable[[], None], ensure: Callable[[], None], remove: Callable[[], None]
) -> float:
    fresh()
    ensure()
    try:
        return _median_ms(ensure, n)
    finally:
        remove()


# --- network_nft -------------------------------------------------------------------------


def _big_ruleset(table: str) -> Any:
    from portside.network.nft import BridgeNetwork, PublishedPort, Ruleset

    networks = tuple(
        BridgeNetwork(f"psbr{i}", IPv4Network(f"10.216.{i}.0/24"), internal=(i == 9))
        for i in range(10)
    )
    ports = tuple(
        PublishedPort(
            "tcp" if i % 2 else "udp",
            30000 + i,
            IPv4Address(f"10.216.{i % 9}.{2 + i // 9}"),
            80 + i,
            IPv4Address("127.0.0.1") if i % 5 == 0 else None,
        )
        for i in range(50)
    )
    return Ruleset(networks, ports, table)


def bench_network_nft(*, runs: int, warmup: int, out: str | None = None) -> None:
    """nft apply of 10 networks and 50 published ports, one atomic transaction."""
    from portside.network import nft

    table = _name("pstb")
    ruleset = _big_ruleset(table)
    try:
        with nft.Nftables() as ctx:

            def phases() -> dict[str, Any]:
                nft.apply(ruleset)
                return {
                    "rules": sum(
                        1 for i in nft.build(ruleset)["nftables"] if "rule" in i.get("add", {})
                    ),
                    "build_json_ms": _median_ms(lambda: nft.build(ruleset), runs),
                    "apply_reused_context_ms": _median_ms(lambda: nft.apply(ruleset, ctx), runs),
                    "list_table_ms": _median_ms(lambda: nft.list_table(table, ctx), runs),
                    "delete_table_ms": _median_ms(
                        lambda: nft.delete_table(table, ctx), runs, lambda: nft.apply(ruleset, ctx)
                    ),
                }

            compare(
                "network_nft",
                Command("apply-10-networks-50-ports", lambda: nft.apply(ruleset)),
                [],
                runs=runs,
                warmup=warmup,
                out=out,
                extra=lambda: {"phases": phases()},
            )
    finally:
        nft.delete_table(table)


# --- network_teardown --------------------------------------------------------------------


def bench_network_teardown(*, runs: int, warmup: int, out: str | None = None) -> None:
    """Removing a container's veth, the caller's cost: LinkReaper vs sync delete vs netns drop."""
    from portside.network.netlink import LinkReaper

    with _fixture() as fx, LinkReaper() as reaper:

        def settle() -> None:  # untimed: let background deletions finish, drop the netns
            reaper.wait_idle()
            fx.drop_ns()
            deadline = time.monotonic() + 5
            while fx.host in fx.netlink.link_names("veth") and time.monotonic() < deadline:
                time.sleep(0.005)

        compare(
            "network_teardown",
            Command(
                "reaper-nowait", lambda: reaper.delete_link_nowait(fx.host), fx.plugged, settle
            ),
            [
                Command(
                    "teardown_veth-sync",
                    lambda: fx.netlink.teardown_veth(fx.host),
                    fx.plugged,
                    settle,
                ),
                Command("drop-netns", fx.drop_ns, fx.plugged, settle),
            ],
            runs=runs,
            warmup=warmup,
            out=out,
            extra=lambda: {"reaper": reaper.statistics()},
        )


# --- end to end: the engine wired --------------------------------------------------------

HTTPD = "mkdir -p /www && echo hello > /www/index.html && head -c 67108864 /dev/zero > /www/big"
HTTPD += " && exec httpd -f -p 80 -h /www"
BIG = 64 << 20


def _engine_roots() -> tuple[Any, Callable[[], None]]:
    """An engine config of our own (bridge, nftables table, roots), busybox loaded; and
    the cleanup that removes everything it made."""
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(repo, "tests", "integration"))
    from engine_helpers import add_busybox, cleanup, make_config  # the tests' own fixtures

    config = make_config()
    add_busybox(config)
    return config, lambda: cleanup(config)


def bench_network_start(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """Engine.container_start on the default bridge vs --network none (in-process)."""
    from portside.engine.engine import Engine

    config, cleanup = _engine_roots()
    try:
        engine = Engine(config)
        try:
            made: list[str] = []

            def create(mode: str) -> Callable[[], None]:
                def setup() -> None:
                    host = {"NetworkMode": mode}
                    cmd = {"Image": "busybox", "Cmd": ["true"]}
                    made.append(engine.container_create(None, cmd, host)["Id"])

                return setup

            def start() -> None:
                engine.container_start(made[-1])

            def remove() -> None:
                engine.container_wait(made[-1], timeout=10)
                engine.container_remove(made[-1], force=True)

            result = compare(
                "network_start",
                Command("start-bridge", start, create("bridge"), remove),
                [Command("start-none", start, create("none"), remove)],
                runs=runs,
                warmup=warmup,
                out=None,
            )
        finally:
            engine.close()
    finally:
        cleanup()
    return _added(result, "network_start", {"portside": ("start-bridge", "start-none")}, out)


def _added(
    result: dict[str, Any], name: str, pairs: dict[str, tuple[str, str]], out: str | None
) -> dict[str, Any]:
    """One more line: what bridge networking adds, per engine (bridge minus none)."""
    import json

    medians = {result["ours"]["name"]: result["ours"]["median_ms"]}
    medians.update({k: v["median_ms"] for k, v in result["peers"].items()})
    added = {
        engine: round(medians[bridge] - medians[none], 3)
        for engine, (bridge, none) in pairs.items()
        if bridge in medians and none in medians
    }
    line = {"benchmark": f"{name}_added", "added_ms": added, "goal_ms": 30.0}
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n" + text + "\n")
    return {**result, "added_ms": added}


def _cli_command(name: str, argv: list[str], env: dict[str, str] | None = None) -> Command:
    import subprocess

    from bench.harness import BenchmarkError

    def run() -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise BenchmarkError(f"{name}: exited {proc.returncode}: {proc.stderr[-300:]!r}")

    return Command(name, run) if _installed(argv[0]) else Command(name, argv)


def _installed(program: str) -> bool:
    import shutil

    return os.path.isabs(program) or shutil.which(program) is not None


def bench_network_run_rm(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """`run --rm busybox true`, default bridge vs none: ours, podman, docker (where up)."""
    from bench.bench_engine import _docker_engine_up, _Podman, portside_cli
    from portside.testing.daemon import running_daemon

    with running_daemon() as d:
        from portside.testing.baseimage import write_busybox_archive

        archive = os.path.join(d.dir, "busybox.tar")
        if not os.path.exists(archive):
            write_busybox_archive(archive)
        podman = _Podman(archive)
        try:
            cli = [*portside_cli(), "run", "--rm"]
            ours = _cli_command("portside-bridge", [*cli, "busybox", "true"], d.env())
            peers = [_cli_command("portside-none", [*cli, "--network", "none", "busybox", "true"],
                                  d.env())]  # fmt: skip
            pairs = {"portside": ("portside-bridge", "portside-none")}
            if podman.ok:
                run = podman.run_argv("--rm", "busybox", "true")  # --net=none
                bridged = [a for a in run if a != "--net=none"]
                peers += [_cli_command("podman-bridge", bridged), _cli_command("podman-none", run)]
                pairs["podman"] = ("podman-bridge", "podman-none")
            if _docker_engine_up():
                env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
                argv = ["docker", "run", "--rm"]
                peers += [
                    _cli_command("docker-bridge", [*argv, "busybox", "true"], env),
                    _cli_command("docker-none", [*argv, "--net=none", "busybox", "true"], env),
                ]
                pairs["docker"] = ("docker-bridge", "docker-none")
            result = compare("network_run_rm", ours, peers, runs=runs, warmup=warmup, out=None)
        finally:
            podman.close()
    return _added(result, "network_run_rm", pairs, out)


class _PortTarget:
    """Where a client reaches busybox httpd: ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def get(self, path: str, sink: bytearray) -> int:
        """One HTTP/1.0 GET; the body's size."""
        import socket

        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            view, total = memoryview(sink), 0
            while n := sock.recv_into(view):
                total += n
        return total

    def download_mb_s(self) -> float:
        sink = bytearray(1 << 20)
        start = time.perf_counter()
        size = self.get("/big", sink)
        if size < BIG:
            raise RuntimeError(f"short download from {self.host}:{self.port}: {size} bytes")
        return round(size / (time.perf_counter() - start) / 1e6, 1)

    def requests_per_s(self, count: int = 400, parallel: int = 4) -> float:
        from concurrent.futures import ThreadPoolExecutor

        def fetch(_: int) -> int:
            return self.get("/index.html", bytearray(4096))

        start = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            sizes = list(pool.map(fetch, range(count)))
        if min(sizes) == 0:
            raise RuntimeError("an empty answer")
        return round(count / (time.perf_counter() - start), 1)


def _wait_http(target: _PortTarget) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if target.get("/index.html", bytearray(4096)) > 0:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"httpd on {target.host}:{target.port} does not answer")
        time.sleep(0.1)


def _measure(target: _PortTarget, runs: int) -> dict[str, Any]:
    _wait_http(target)
    mb = [target.download_mb_s() for _ in range(max(runs, 3))]
    rps = [target.requests_per_s() for _ in range(max(runs // 4, 2))]
    return {"download_mb_s": statistics.median(mb), "requests_per_s": statistics.median(rps)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _podman_port(runs: int) -> dict[str, Any] | None:
    import subprocess

    from bench.bench_engine import _Podman
    from portside.testing.baseimage import write_busybox_archive

    tmp = tempfile.mkdtemp(prefix="bench-podman-img-")
    archive = os.path.join(tmp, "busybox.tar")
    write_busybox_archive(archive)
    podman = _Podman(archive)
    try:
        if not podman.ok:
            return None
        port = _free_port()
        run = [a for a in podman.run_argv("-d", "-p", f"127.0.0.1:{port}:80") if a != "--net=none"]
        proc = subprocess.run(
            [*run, "busybox", "sh", "-c", HTTPD], capture_output=True, check=False
        )
        if proc.returncode != 0:
            return {"error": proc.stderr.decode(errors="replace")[-300:]}
        return _measure(_PortTarget("127.0.0.1", port), runs)
    finally:
        podman.close()
        os.unlink(archive)
        os.rmdir(tmp)


def bench_network_port(*, runs: int, warmup: int, out: str | None = None) -> dict[str, Any]:
    """Host -> container through a published port (MB/s, requests/s) vs direct, podman."""
    from bench.harness import machine
    from portside.engine.engine import Engine

    del warmup  # each measurement is a median of several already
    config, cleanup = _engine_roots()
    result: dict[str, Any] = {"benchmark": "network_port", "runs": runs}
    try:
        engine = Engine(config)
        try:
            port = _free_port()
            bindings = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
            cmd = {"Image": "busybox", "Cmd": ["sh", "-c", HTTPD]}
            cid = engine.container_create(None, cmd, {"PortBindings": bindings})["Id"]
            engine.container_start(cid)
            ip = engine.container_inspect(cid)["NetworkSettings"]["IPAddress"]
            result["published_127.0.0.1"] = _measure(_PortTarget("127.0.0.1", port), runs)
            result["direct_container_ip"] = _measure(_PortTarget(ip, 80), runs)
            engine.container_remove(cid, force=True)
        finally:
            engine.close()
    finally:
        cleanup()
    podman = _podman_port(runs)
    if podman is not None:
        result["podman_published_127.0.0.1"] = podman
    result["machine"] = machine()
    return emit(result, out)
