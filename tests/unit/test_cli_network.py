"""``portside network ...`` against the fake daemon, run in-process: docker 28's help,
errors and exit codes, the requests sent and the output printed; the pure parts
(IPAM consolidation, natural order, Go's time format) on their own."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portside.cli.main import main_usage, run_cli
from portside.cli.network import go_time, ipam_config, natural_key
from portside.client.fakeserver import FakeDaemon

ID1 = "7d2c1e9b0a11" + "1" * 52
ID2 = "0a9f8e7d6c22" + "2" * 52
ID3 = "5b4a39281733" + "3" * 52
NETWORKS = [
    {
        "Name": "web10",
        "Id": ID1,
        "Created": "2026-11-28T03:30:19.12Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv4": True,
        "EnableIPv6": False,
        "Internal": True,
        "Labels": {"tier": "front"},
    },
    {"Name": "web9", "Id": ID2, "Scope": "local", "Driver": "bridge", "Labels": {}},
    {"Name": "host", "Id": ID3, "Scope": "local", "Driver": "host", "Labels": None},
]


@pytest.fixture
def fake(tmp_path):
    with FakeDaemon(str(tmp_path)) as daemon:
        assert daemon.server is not None
        report = daemon.server.handle_error

        def quiet(request, address):  # the client may hang up first on an empty answer
            if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
                report(request, address)

        daemon.server.handle_error = quiet  # type: ignore[method-assign]
        yield daemon


@pytest.fixture
def cli(fake, capsys, monkeypatch):
    """Run ``portside -H fake ARGS`` in this process: (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = run_cli(["-H", fake.host, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# -- help, dispatch, argument and flag errors (docker 28's texts) -----------------

GROUP_HELP = """\
Usage:  portside network COMMAND

Manage networks

Commands:
  connect     Connect a container to a network
  create      Create a network
  disconnect  Disconnect a container from a network
  inspect     Display detailed information on one or more networks
  ls          List networks
  prune       Remove all unused networks
  rm          Remove one or more networks

Run 'portside network COMMAND --help' for more information on a command.
"""
RM_HELP = """\
Usage:  portside network rm NETWORK [NETWORK...]

Remove one or more networks

Aliases:
  portside network rm, portside network remove

Options:
  -f, --force   Do not error if the network does not exist
"""
CONNECT_HELP = """\
Usage:  portside network connect [OPTIONS] NETWORK CONTAINER

Connect a container to a network

Options:
      --alias strings           Add network-scoped alias for the container
      --driver-opt strings      driver options for the network
      --gw-priority int         Highest gw-priority provides the default
                                gateway. Accepts positive and negative values.
      --ip string               IPv4 address (e.g., "172.30.100.104")
      --ip6 string              IPv6 address (e.g., "2001:db8::33")
      --link list               Add link to another container
      --link-local-ip strings   Add a link-local address for the container
"""


def test_group_help_and_unknown_subcommands(cli) -> None:
    assert cli("network") == (0, "", GROUP_HELP)
    assert cli("network", "--help") == (0, GROUP_HELP, "")
    assert cli("help", "network") == (0, GROUP_HELP, "")
    assert cli("network", "bogus") == (
        1,
        "",
        "portside: unknown command: portside network bogus\n\nUsage:  portside network\n\n"
        "Run 'portside network --help' for more information\n",
    )
    assert "  network    Manage networks\n" in main_usage().split("Management Commands:")[1]
    assert "  network " not in main_usage().split("Management Commands:")[0]


def test_subcommand_help_and_aliases(cli) -> None:
    assert cli("network", "rm", "--help") == (0, RM_HELP, "")
    assert cli("network", "remove", "-h") == (0, RM_HELP, "")
    assert cli("network", "connect", "--ip", "1.2.3.4", "--help") == (0, CONNECT_HELP, "")
    code, out, _ = cli("network", "list", "--help")
    assert code == 0 and out.startswith("Usage:  portside network ls [OPTIONS]\n\nList networks\n")
    code, out, _ = cli("network", "create", "--help")
    assert '  -d, --driver string        Driver to manage the Network (default "bridge")\n' in out


@pytest.mark.parametrize(
    ("args", "need", "usage"),
    [
        (["ls", "x"], "accepts no arguments", "ls [OPTIONS]"),
        (["list", "x"], "accepts no arguments", "ls [OPTIONS]"),
        (["prune", "x"], "accepts no arguments", "prune [OPTIONS]"),
        (["create"], "requires 1 argument", "create [OPTIONS] NETWORK"),
        (["create", "a", "b"], "requires 1 argument", "create [OPTIONS] NETWORK"),
        (["inspect"], "requires at least 1 argument", "inspect [OPTIONS] NETWORK [NETWORK...]"),
        (["rm"], "requires at least 1 argument", "rm NETWORK [NETWORK...]"),
        (["connect", "a"], "requires 2 arguments", "connect [OPTIONS] NETWORK CONTAINER"),
        (["disconnect"], "requires 2 arguments", "disconnect [OPTIONS] NETWORK CONTAINER"),
    ],
)
def test_argument_counts(cli, fake, args: list[str], need: str, usage: str) -> None:
    sub = usage.split(maxsplit=1)[0]
    verb = "See" if "at least" in need else "Run"  # cobra's RequiresMinArgs says "See"
    assert cli("network", *args) == (
        1,
        "",
        f"portside: 'portside network {sub}' {need}\n\nUsage:  portside network {usage}\n\n"
        f"{verb} 'portside network {sub} --help' for more information\n",
    )
    assert fake.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "--bogus"], "unknown flag: --bogus"),
        (["ls", "-x"], "unknown shorthand flag: 'x' in -x"),
        (
            ["ls", "-f", "foo"],
            'invalid argument "foo" for "-f, --filter" flag: '
            "bad format of filter (expected name=value)",
        ),
        (
            ["create", "--label", "=a", "n"],
            'invalid argument "=a" for "--label" flag: invalid label \'=a\': empty name',
        ),
        (
            ["create", "--label", "a b=c", "n"],
            'invalid argument "a b=c" for "--label" flag: label \'a b\' contains whitespaces',
        ),
        (
            ["create", "--ipv6=maybe", "n"],
            'invalid argument "maybe" for "--ipv6" flag: strconv.ParseBool: '
            'parsing "maybe": invalid syntax',
        ),
        (
            ["connect", "--link", "a:b:c", "n", "c"],
            'invalid argument "a:b:c" for "--link" flag: bad format for links: a:b:c',
        ),
    ],
)
def test_flag_errors_exit_125(cli, fake, args: list[str], message: str) -> None:
    code, out, err = cli("network", *args)
    sub = args[0]
    usage = {"ls": "ls [OPTIONS]", "create": "create [OPTIONS] NETWORK"}.get(
        sub, "connect [OPTIONS] NETWORK CONTAINER"
    )
    assert (code, out) == (125, "")
    assert err == (
        f"{message}\n\nUsage:  portside network {usage}\n\n"
        f"Run 'portside network {sub} --help' for more information\n"
    )
    assert fake.requests == []


# -- create ---------------------------------------------------------------------------


def test_create_sends_dockers_request(cli, fake) -> None:
    fake.route("POST", "/networks/create", json_body={"Id": ID1, "Warning": ""}, status=201)
    assert cli("network", "create", "web") == (0, ID1 + "\n", "")
    assert fake.requests[-1].json() == {
        "Name": "web",
        "Driver": "bridge",
        "Scope": "",
        "IPAM": {"Driver": "default", "Config": [], "Options": {}},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigOnly": False,
        "ConfigFrom": None,
        "Options": {},
        "Labels": {},
    }
    code, _, _ = cli(
        "network", "create", "-d", "bridge", "--subnet", "10.9.0.0/16,10.8.0.0/24",
        "--gateway", "10.9.0.1", "--ip-range", "10.9.128.0/17", "--aux-address", "r=10.8.0.9",
        "--internal", "--attachable", "--label", "tier=front", "--label", "bare",
        "-o", "com.docker.network.bridge.name=br-web", "-o", "com.docker.network.driver.mtu=1400",
        "--ipam-opt", "x=y", "--ipv6", "--ipv4=false", "web",
    )  # fmt: skip
    assert code == 0
    body = fake.requests[-1].json()
    assert body["IPAM"] == {
        "Driver": "default",
        "Config": [
            {"Subnet": "10.9.0.0/16", "IPRange": "10.9.128.0/17", "Gateway": "10.9.0.1"},
            {"Subnet": "10.8.0.0/24", "AuxiliaryAddresses": {"r": "10.8.0.9"}},
        ],
        "Options": {"x": "y"},
    }
    assert (body["Internal"], body["Attachable"]) == (True, True)
    assert (body["EnableIPv4"], body["EnableIPv6"]) == (False, True)
    assert body["Labels"] == {"tier": "front", "bare": ""}
    assert body["Options"] == {
        "com.docker.network.bridge.name": "br-web",
        "com.docker.network.driver.mtu": "1400",
    }


def test_create_errors(cli, fake) -> None:
    fake.error("POST", "/networks/create", 400, "IPv6 networks are not supported")
    assert cli("network", "create", "--ipv6", "v6") == (
        1,
        "",
        "Error response from daemon: IPv6 networks are not supported\n",
    )
    fake.requests.clear()
    assert cli("network", "create", "--gateway", "10.0.0.1", "x") == (
        1,
        "",
        "every ip-range or gateway must have a corresponding subnet\n",
    )
    assert fake.requests == []


@pytest.mark.parametrize(
    ("subnets", "ranges", "gateways", "aux", "message"),
    [
        ([], ["10.0.0.0/25"], [], {}, "every ip-range or gateway must have a corresponding subnet"),
        (
            ["10.0.0.0/24", "10.0.0.0/16"],
            [],
            [],
            {},
            "multiple overlapping subnet configuration is not supported",
        ),
        (
            ["10.0.0.0/24", "10.0.0.0/24"],
            [],
            [],
            {},
            "multiple overlapping subnet configuration is not supported",
        ),
        (["10.0.0.0/24"], ["10.1.0.0/25"], [], {}, "no matching subnet for range 10.1.0.0/25"),
        (["10.0.0.0/24"], [], ["10.1.0.1"], {}, "no matching subnet for gateway 10.1.0.1"),
        (["10.0.0.0/24"], [], ["bogus"], {}, "no matching subnet for gateway bogus"),
        (["10.0.0.0/24"], [], ["::1"], {}, "no matching subnet for gateway ::1"),
        (["10.0.0.0/24"], [], [], {"a": "10.1.0.3"}, "no matching subnet for aux-address 10.1.0.3"),
        (["10.0.0.0/24", "nope"], [], [], {}, "invalid subnet nope: invalid CIDR address: nope"),
        (["10.0.0.0/24"], ["x/24"], [], {}, "invalid CIDR address: x/24"),
        (
            ["10.0.0.0/24", "10.1.0.0/24"],
            [],
            ["10.0.0.1", "10.0.0.2"],
            {},
            "cannot configure multiple gateways (10.0.0.2, 10.0.0.1) for the same subnet "
            "(10.0.0.0/24)",
        ),
        (
            ["10.0.0.0/24", "10.1.0.0/24"],
            ["10.0.0.0/25", "10.0.0.128/25"],
            [],
            {},
            "cannot configure multiple ranges (10.0.0.128/25, 10.0.0.0/25) on the same subnet "
            "(10.0.0.0/24)",
        ),
    ],
)
def test_ipam_config_refusals(
    subnets: list[str], ranges: list[str], gateways: list[str], aux: dict, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        ipam_config(subnets, ranges, gateways, aux)
    assert str(caught.value) == message


def test_ipam_config_joins_each_value_to_its_subnet() -> None:
    assert ipam_config(
        ["10.1.0.0/24", "fd00::/64", "10.2.0.0/16"],
        ["10.2.3.0/24", "10.1.0.128/25"],
        ["fd00::1", "10.2.0.254"],
        {"router": "10.1.0.2", "dns": "10.2.0.53"},
    ) == [
        {
            "Subnet": "10.1.0.0/24",
            "IPRange": "10.1.0.128/25",
            "AuxiliaryAddresses": {"router": "10.1.0.2"},
        },
        {"Subnet": "fd00::/64", "Gateway": "fd00::1"},
        {
            "Subnet": "10.2.0.0/16",
            "IPRange": "10.2.3.0/24",
            "Gateway": "10.2.0.254",
            "AuxiliaryAddresses": {"dns": "10.2.0.53"},
        },
    ]


# -- ls --------------------------------------------------------------------------------


def test_ls_table_sorted_naturally_and_truncated(cli, fake) -> None:
    fake.route("GET", "/networks", json_body=NETWORKS)
    assert cli("network", "ls") == (
        0,
        "NETWORK ID     NAME      DRIVER    SCOPE\n"
        f"{ID3[:12]}   host      host      local\n"
        f"{ID2[:12]}   web9      bridge    local\n"
        f"{ID1[:12]}   web10     bridge    local\n",
        "",
    )
    assert fake.requests[-1].query == {}
    assert cli("network", "ls", "-q")[1] == f"{ID3[:12]}\n{ID2[:12]}\n{ID1[:12]}\n"
    assert cli("network", "ls", "-q", "--no-trunc")[1] == f"{ID3}\n{ID2}\n{ID1}\n"
    code, out, _ = cli(
        "network", "ls", "--no-trunc", "-f", " Driver = bridge ", "-f", "label=a=b", "-f", ""
    )
    assert code == 0 and out.splitlines()[1].startswith(f"{ID3}   host")
    assert json.loads(fake.requests[-1].query["filters"][0]) == {
        "driver": {"bridge": True},
        "label": {"a=b": True},
    }


def test_ls_formats(cli, fake) -> None:
    fake.route("GET", "/networks", json_body=NETWORKS[:1])
    lines = cli("network", "ls", "--format", "json")[1].splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "CreatedAt": "2026-11-28 03:30:19.12 +0000 UTC",
            "Driver": "bridge",
            "ID": ID1[:12],
            "IPv4": "true",
            "IPv6": "false",
            "Internal": "true",
            "Labels": "tier=front",
            "Name": "web10",
            "Scope": "local",
        }
    ]
    assert lines[0].startswith('{"CreatedAt":')
    fmt = '{{.Name}} {{.Label "tier"}} {{.Label "nope"}}|{{.Internal}}'
    assert cli("network", "ls", "--format", fmt)[1] == "web10 front |true\n"
    assert cli("network", "ls", "--format", "table {{.Name}}\t{{.IPv6}}")[1] == (
        "NAME      IPV6\nweb10     false\n"
    )
    assert cli("network", "ls", "--format", "raw")[1] == (
        f"network_id: {ID1[:12]}\nname: web10\ndriver: bridge\nscope: local\n\n"
    )


def test_ls_of_nothing_still_has_the_header(cli, fake) -> None:
    fake.route("GET", "/networks", json_body=[])
    assert cli("network", "ls") == (0, "NETWORK ID   NAME      DRIVER    SCOPE\n", "")
    assert cli("network", "ls", "--format", "table {{.Name}}\t{{.CreatedAt}}")[1] == (
        "NAME      CREATED AT\n"
    )
    assert cli("network", "ls", "-q") == (0, "", "")


def _strcmp(a: str, b: str) -> int:
    return (a > b) - (a < b)


def natural_less(a: str, b: str) -> bool:
    """A line-by-line port of Go's sortorder.NaturalLess, the reference."""
    i = j = 0
    while i < len(a) and j < len(b):
        ca, cb = a[i], b[j]
        da, db = ca.isascii() and ca.isdigit(), cb.isascii() and cb.isdigit()
        if da != db:
            return da
        if not da:
            if ca != cb:
                return ca < cb
            i, j = i + 1, j + 1
            continue
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        nz_a, nz_b = i, j
        while i < len(a) and a[i].isascii() and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isascii() and b[j].isdigit():
            j += 1
        if i - nz_a != j - nz_b:
            return i - nz_a < j - nz_b
        if a[nz_a:i] != b[nz_b:j]:
            return a[nz_a:i] < b[nz_b:j]
        if nz_a != nz_b:
            return nz_a < nz_b
    return len(a) < len(b)


@given(st.lists(st.text(alphabet="0129ab-_.é", max_size=8), max_size=12))
def test_natural_key_orders_as_go_sortorder(names: list[str]) -> None:
    def cmp(a: str, b: str) -> int:
        return -1 if natural_less(a, b) else (1 if natural_less(b, a) else 0)

    expected = sorted(names, key=functools.cmp_to_key(cmp))
    assert [natural_key(n) for n in sorted(names, key=natural_key)] == [
        natural_key(n) for n in expected
    ]


def test_natural_key_examples() -> None:
    names = ["net10", "net9", "net09", "Net", "net", "net1a", "net1", "a"]
    assert sorted(names, key=natural_key) == [
        "Net",
        "a",
        "net",
        "net1",
        "net1a",
        "net9",
        "net09",
        "net10",
    ]


@pytest.mark.parametrize(
    ("stamp", "text"),
    [
        ("2026-11-28T03:30:19.123456789Z", "2026-11-28 03:30:19.123456789 +0000 UTC"),
        ("2026-11-28T03:30:19.120000Z", "2026-11-28 03:30:19.12 +0000 UTC"),
        ("2026-11-28T03:30:19.000Z", "2026-11-28 03:30:19 +0000 UTC"),
        ("2026-11-28T03:30:19Z", "2026-11-28 03:30:19 +0000 UTC"),
        ("2026-11-28T04:30:19.5+01:00", "2026-11-28 04:30:19.5 +0100 +0100"),
        ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00 +0000 UTC"),
        ("", ""),
        ("yesterday", "yesterday"),
    ],
)
def test_go_time(stamp: str, text: str) -> None:
    assert go_time(stamp) == text


# -- inspect, rm, prune ------------------------------------------------------------------


def _inspect_handler(rec, params):
    if params["id"] == "nope":
        return 404, json.dumps({"message": "network nope not found"}).encode(), {}
    body = {"Name": params["id"], "Id": ID1, "Containers": {}, "Labels": {"a": "<b>"}}
    return 200, json.dumps(body).encode(), {}


def test_inspect(cli, fake) -> None:
    fake.route("GET", "/networks/{id}", handler=_inspect_handler)
    code, out, err = cli("network", "inspect", "web")
    assert (code, err) == (0, "")
    assert out == (
        "[\n    {\n"
        '        "Name": "web",\n'
        f'        "Id": "{ID1}",\n'
        '        "Containers": {},\n'
        '        "Labels": {\n            "a": "<b>"\n        }\n'
        "    }\n]\n"
    )
    assert fake.requests[-1].query == {}
    assert cli("network", "inspect", "-v", "-f", "{{.Name}} {{.Id}}", "web", "db") == (
        0,
        f"web {ID1}\ndb {ID1}\n",
        "",
    )
    assert fake.requests[-1].query == {"verbose": ["true"]}
    assert cli("network", "inspect", "--format", "json", "web", "nope") == (
        1,
        f'[{{"Name":"web","Id":"{ID1}","Containers":{{}},"Labels":{{"a":"<b>"}}}}]\n',
        "Error response from daemon: network nope not found\n",
    )
    fake.requests.clear()
    assert cli("network", "inspect", "-f", "{{.Name", "web") == (
        64,
        "",
        'template parsing error: template: :1: unclosed action in "{{.Name"\n',
    )
    assert fake.requests == []


def test_inspect_missing(cli, fake) -> None:
    fake.route("GET", "/networks/{id}", handler=_inspect_handler)
    assert cli("network", "inspect", "nope") == (
        1,
        "[]\n",
        "Error response from daemon: network nope not found\n",
    )
    assert cli("network", "inspect", "-f", "{{.Name}}", "nope", "web", "nope") == (
        1,
        "web\n",
        "Error response from daemon: network nope not found\n"
        "Error response from daemon: network nope not found\n",
    )
    assert cli("network", "inspect", "-f", "{{.Name}}", "nope") == (
        1,
        "\n",
        "Error response from daemon: network nope not found\n",
    )
    assert cli("network", "inspect", "-f", "{{index .Name 9}}", "web") == (
        1,
        "\n",
        'template parsing error: template: :1: executing "" at <index>: error calling '
        "index: string index out of range\n",
    )


def _remove_handler(rec, params):
    answers = {
        "nope": (404, "network nope not found"),
        "bridge": (403, "bridge is a pre-defined network and cannot be removed"),
    }
    if params["id"] in answers:
        status, message = answers[params["id"]]
        return status, json.dumps({"message": message}).encode(), {}
    return 204, b"", {}


def test_rm(cli, fake) -> None:
    fake.route("DELETE", "/networks/{id}", handler=_remove_handler)
    assert cli("network", "rm", "a", "b") == (0, "a\nb\n", "")
    assert [r.path for r in fake.requests] == ["/networks/a", "/networks/b"]
    assert cli("network", "rm", "a", "nope", "bridge", "b") == (
        1,
        "a\nb\n",
        "Error response from daemon: network nope not found\n"
        "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"
        "exit status 1\n",
    )
    assert cli("network", "remove", "-f", "nope", "a") == (0, "a\n", "")
    assert cli("network", "rm", "-f", "bridge") == (
        1,
        "",
        "Error response from daemon: bridge is a pre-defined network and cannot be removed\n"
        "exit status 1\n",
    )


WARNING = (
    "WARNING! This will remove all custom networks not used by at least one container.\n"
    "Are you sure you want to continue? [y/N] "
)


def test_prune(cli, fake) -> None:
    fake.route("POST", "/networks/prune", json_body={"NetworksDeleted": ["old1", "old2"]})
    assert cli("network", "prune", stdin="n\n") == (0, WARNING, "")
    assert cli("network", "prune", stdin="") == (0, WARNING, "")
    assert fake.requests == []
    assert cli("network", "prune", stdin="y\n") == (
        0,
        WARNING + "Deleted Networks:\nold1\nold2\n\n",
        "",
    )
    assert fake.requests[-1].query == {}
    assert cli("network", "prune", "-f", "--filter", "until=24h", "--filter", "label!=keep") == (
        0,
        "Deleted Networks:\nold1\nold2\n\n",
        "",
    )
    assert json.loads(fake.requests[-1].query["filters"][0]) == {
        "until": {"24h": True},
        "label!": {"keep": True},
    }
    fake.route("POST", "/networks/prune", json_body={"NetworksDeleted": None})
    assert cli("network", "prune", "-f") == (0, "", "")


# -- connect, disconnect ----------------------------------------------------------------


def test_connect_and_disconnect(cli, fake) -> None:
    fake.route("POST", "/networks/{id}/connect", status=200)
    fake.route("POST", "/networks/{id}/disconnect", status=200)
    assert cli("network", "connect", "web", "c1") == (0, "", "")
    assert fake.requests[-1].path == "/networks/web/connect"
    assert fake.requests[-1].json() == {
        "Container": "c1",
        "EndpointConfig": {"IPAMConfig": {}, "Links": None, "Aliases": [], "DriverOpts": {}},
    }
    args = ["--ip", "10.9.0.7", "--alias", "db,cache", "--alias", "store", "--link", "x:y"]
    args += ["--driver-opt", "k= v ", "--gw-priority", "-3"]
    assert cli("network", "connect", *args, "web", "c1") == (0, "", "")
    assert fake.requests[-1].json()["EndpointConfig"] == {
        "IPAMConfig": {"IPv4Address": "10.9.0.7"},
        "Links": ["x:y"],
        "Aliases": ["db", "cache", "store"],
        "DriverOpts": {"k": "v"},
        "GwPriority": -3,
    }
    assert cli("network", "disconnect", "-f", "web", "c1") == (0, "", "")
    assert fake.requests[-1].path == "/networks/web/disconnect"
    assert fake.requests[-1].json() == {"Container": "c1", "Force": True}
    assert cli("network", "disconnect", "web", "c2") == (0, "", "")
    assert fake.requests[-1].json() == {"Container": "c2", "Force": False}


def test_connect_errors(cli, fake) -> None:
    assert cli("network", "connect", "--driver-opt", "novalue", "web", "c1") == (
        1,
        "",
        "invalid key/value pair format in driver options\n",
    )
    assert fake.requests == []
    fake.error("POST", "/networks/{id}/connect", 404, "No such container: c1")
    assert cli("network", "connect", "web", "c1") == (
        1,
        "",
        "Error response from daemon: No such container: c1\n",
    )


def test_network_ls_imports_nothing_heavy(tmp_path) -> None:
    code = (
        "import sys, json\n"
        "from portside.cli.main import run_cli\n"
        f"run_cli(['-H', 'unix://{tmp_path}/none.sock', 'network', 'ls'])\n"
        "sys.stderr.write('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    modules = set(json.loads(result.stderr.decode().rsplit("\n", 1)[-1]))
    assert "portside.cli.network" in modules
    heavy = {"typing", "dataclasses", "asyncio", "aiohttp", "subprocess", "inspect", "ssl"}
    heavy |= {"portside.engine", "portside.api", "portside.network"}
    assert not heavy & modules
