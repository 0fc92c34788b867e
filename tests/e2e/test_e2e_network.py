"""Networking through real clients against a real daemon: the docker CLI's ``network``
commands, ``run -p/-P``, ``port`` and ``ps``; docker-py's networks API; Portside's CLI
with ``--ip`` and ``--network-alias``. The daemon has its own bridge and nftables table
(portside.testing.daemon); traffic only between its containers and on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from portside.network import netlink, nft
from portside.testing.daemon import Daemon

pytestmark = pytest.mark.root

HTTPD = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")


def name(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def docker(d: Daemon, *args: str, check: bool = True) -> str:
    return d.run(["docker"], *args, check=check).stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ports_rules(d: Daemon) -> list[dict[str, Any]]:
    return [
        item["rule"]
        for item in nft.list_table(d.nft_table)
        if "rule" in item and item["rule"]["chain"] == "ports"
    ]


@needs_docker
def test_docker_network_commands_and_dns(daemon: Daemon) -> None:
    net, srv = name("net"), name("srv")
    nid = docker(daemon, "network", "create", "--subnet", "10.213.91.0/24", "--label", "t=e2e",
                 net).strip()  # fmt: skip
    assert len(nid) == 64
    listed = docker(daemon, "network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert f"{net} bridge" in listed.splitlines() and "bridge bridge" in listed.splitlines()
    doc = json.loads(docker(daemon, "network", "inspect", net))[0]
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.213.91.0/24", "Gateway": "10.213.91.1"}]
    assert doc["Labels"] == {"t": "e2e"}
    docker(daemon, "run", "-d", "--name", srv, "--network", net, "--network-alias", "web",
           "--ip", "10.213.91.50", "busybox", "sh", "-c", HTTPD)  # fmt: skip
    template = f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}'
    ip = docker(daemon, "inspect", "-f", template, srv).strip()
    assert ip == "10.213.91.50"
    got = docker(daemon, "run", "--rm", "--network", net, "busybox", "sh", "-c",
                 "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web/ && break;"
                 " sleep 0.3; done")  # fmt: skip
    assert got.startswith("hello-")
    # connect a container of the default bridge live, then disconnect it
    side = name("side")
    docker(daemon, "run", "-d", "--name", side, "busybox", "sleep", "100")
    docker(daemon, "network", "connect", "--alias", "sidekick", net, side)
    out = docker(daemon, "exec", side, "sh", "-c", f"wget -qO- http://{srv}/")
    assert out.startswith("hello-")
    containers = json.loads(docker(daemon, "network", "inspect", net))[0]["Containers"]
    assert {c["Name"] for c in containers.values()} == {srv, side}
    proc = daemon.run(["docker"], "network", "rm", net, check=False)
    assert proc.returncode != 0 and "has active endpoints" in proc.stderr
    docker(daemon, "network", "disconnect", net, side)
    assert daemon.run(["docker"], "exec", side, "ip", "link", "show", "eth1",
                      check=False).returncode != 0  # fmt: skip
    docker(daemon, "rm", "-f", srv, side)
    bridge = doc["Options"].get("com.docker.network.bridge.name") or "br-" + nid[:12]
    docker(daemon, "network", "rm", net)
    assert bridge not in netlink.link_names()
    assert net not in docker(daemon, "network", "ls", "--format", "{{.Name}}").split()


@needs_docker
def test_docker_run_publish_port_and_ps(daemon: Daemon) -> None:
    port, n = _free_port(), name("pub")
    docker(daemon, "run", "-d", "--name", n, "-p", f"127.0.0.1:{port}:80", "busybox", "sh",
           "-c", HTTPD)  # fmt: skip
    assert _http_get(f"http://127.0.0.1:{port}/").startswith("hello-")
    assert docker(daemon, "port", n) == f"80/tcp -> 127.0.0.1:{port}\n"
    assert docker(daemon, "port", n, "80") == f"127.0.0.1:{port}\n"
    shown = docker(daemon, "ps", "--filter", f"name={n}", "--format", "{{.Ports}}").strip()
    assert shown == f"127.0.0.1:{port}->80/tcp"
    taken = daemon.run(["docker"], "run", "--rm", "-p", f"127.0.0.1:{port}:81", "busybox",
                       "true", check=False)  # fmt: skip
    assert taken.returncode != 0 and "port is already allocated" in taken.stderr
    docker(daemon, "rm", "-f", n)
    assert _ports_rules(daemon) == []
    auto = name("auto")
    docker(daemon, "run", "-d", "--name", auto, "--expose", "80", "-P", "busybox", "sh", "-c",
           HTTPD)  # fmt: skip
    mapping = docker(daemon, "port", auto, "80/tcp").split()[0]
    host_port = int(mapping.rsplit(":", 1)[1])
    assert _http_get(f"http://127.0.0.1:{host_port}/").startswith("hello-")
    docker(daemon, "rm", "-f", auto)


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Any]:
    docker_py = pytest.importorskip("docker")
    c = docker_py.DockerClient(base_url=daemon.host, timeout=60)
    try:
        yield c
    finally:
        c.close()


def test_docker_py_networks(daemon: Daemon, client: Any) -> None:
    from docker.types import IPAMConfig, IPAMPool

    net_name = name("py")
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.213.92.0/24", gateway="10.213.92.1")])
    net = client.networks.create(net_name, driver="bridge", ipam=ipam, labels={"k": "v"})
    assert [n.name for n in client.networks.list(names=[net_name])] == [net_name]
    assert client.networks.get(net.id[:10]).attrs["IPAM"]["Config"][0]["Subnet"] == (
        "10.213.92.0/24"
    )
    box = client.containers.run("busybox", ["sleep", "100"], detach=True, name=name("box"))
    try:
        net.connect(box, aliases=["pybox"], ipv4_address="10.213.92.77")
        box.reload()
        endpoint = box.attrs["NetworkSettings"]["Networks"][net_name]
        assert endpoint["IPAddress"] == "10.213.92.77" and "pybox" in endpoint["Aliases"]
        net.reload()
        assert box.id in net.attrs["Containers"]
        code, out = box.exec_run(["ip", "-o", "-4", "addr", "show", "eth1"])
        assert code == 0 and b"10.213.92.77/24" in out
        net.disconnect(box)
        box.reload()
        assert net_name not in box.attrs["NetworkSettings"]["Networks"]
    finally:
        box.remove(force=True)
    assert client.networks.prune(filters={"label": "k=v"})["NetworksDeleted"] == [net_name]
    assert client.networks.list(names=[net_name]) == []


def test_portside_cli_ip_alias_and_nothing_left(daemon: Daemon) -> None:
    cli = [sys.executable, "-m", "portside.cli.main"]
    net, srv = name("pc"), name("srv")
    daemon.run(cli, "network", "create", "--subnet", "10.213.93.0/24", net)
    daemon.run(cli, "run", "-d", "--name", srv, "--network", net, "--ip", "10.213.93.9",
               "--network-alias", "api", "busybox", "sh", "-c", HTTPD)  # fmt: skip
    out = daemon.run(cli, "run", "--rm", "--network", net, "busybox", "sh", "-c",
                     "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://api/ && break;"
                     " sleep 0.3; done").stdout  # fmt: skip
    assert out.startswith("hello-")
    template = f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}'
    ip = daemon.run(cli, "inspect", "-f", template, srv).stdout.strip()
    assert ip == "10.213.93.9"
    daemon.run(cli, "rm", "-f", srv)
    daemon.run(cli, "network", "rm", net)
    # every container of the module is gone: no veth on the daemon's bridge, no port rule
    assert daemon.run(cli, "ps", "-aq").stdout.split() == []
    deadline = time.monotonic() + 10
    while netlink.bridge_ports(daemon.bridge) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert netlink.bridge_ports(daemon.bridge) == []
    assert _ports_rules(daemon) == []
