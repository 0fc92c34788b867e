"""``portside network create/ls/inspect/rm/prune/connect/disconnect``, as docker CLI 28's.

Help texts, flag errors and argument-count errors are docker 28's, word for word
(``docker`` read ``portside``); so are the request bodies, the table and the messages.
"""

from __future__ import annotations

from portside.cli.flags import FlagError, Opt, parse
from portside.client.http import APIError, ConnectionFailed
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portside.cli.flags import Parsed
    from portside.cli.main import Context
    from portside.cli.template import Template

__all__ = ["NetworkRow", "ipam_config", "natural_key", "network"]

DEFAULT_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
PRUNE_WARNING = "WARNING! This will remove all custom networks not used by at least one container."


# -- flag values ----------------------------------------------------------------


def _filter(text: str) -> str:
    """docker's FilterOpt: ``name=value``, both trimmed ("" is no filter)."""
    if not text:
        return ""
    if "=" not in text:
        raise ValueError("bad format of filter (expected name=value)")
    name, _, value = text.partition("=")
    return f"{name.strip()}={value.strip()}"


def _label(text: str) -> str:
    """docker's opts.ValidateLabel."""
    key = text.partition("=")[0].lstrip(" \t\n\v\f\r")
    if not key:
        raise ValueError(f"invalid label '{text}': empty name")
    if any(c in key for c in " \t\n\v\f\r"):
        raise ValueError(f"label '{key}' contains whitespaces")
    return text


def _link(text: str) -> str:
    """docker's opts.ValidateLink: ``name`` or ``name:alias``."""
    if not text:
        raise ValueError("empty string specified for links")
    if text.count(":") > 1:
        raise ValueError(f"bad format for links: {text}")
    return text


def _kv(items: list[str]) -> dict[str, str]:
    """docker's MapOpts / ConvertKVStringsToMap: ``k=v`` (``k`` alone is ``k=``)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _csv(items: list[str]) -> list[str]:
    """pflag's string slices: every value may hold several, comma-separated."""
    return [part for item in items for part in item.split(",") if item]


CREATE_OPTS = [
    Opt("attachable", "bool"),
    Opt("aux-address", "list"),
    Opt("config-from", "str", default=""),
    Opt("config-only", "bool"),
    Opt("d|driver", "str", default="bridge"),
    Opt("gateway", "list"),
    Opt("ingress", "bool"),
    Opt("internal", "bool"),
    Opt("ip-range", "list"),
    Opt("ipam-driver", "str", default="default"),
    Opt("ipam-opt", "list"),
    Opt("ipv4", "bool", default=True),
    Opt("ipv6", "bool"),
    Opt("label", _label, default=[]),
    Opt("o|opt", "list"),
    Opt("scope", "str", default=""),
    Opt("subnet", "list"),
]
LS_OPTS = [
    Opt("f|filter", _filter, default=[]),
    Opt("format", "str", default=""),
    Opt("no-trunc", "bool"),
    Opt("q|quiet", "bool"),
]
INSPECT_OPTS = [Opt("f|format", "str", default=""), Opt("v|verbose", "bool")]
RM_OPTS = [Opt("f|force", "bool")]
PRUNE_OPTS = [Opt("filter", _filter, default=[]), Opt("f|force", "bool")]
CONNECT_OPTS = [
    Opt("alias", "list"),
    Opt("driver-opt", "list"),
    Opt("gw-priority", "int", default=0),
    Opt("ip", "str", default=""),
    Opt("ip6", "str", default=""),
    Opt("link", _link, default=[]),
    Opt("link-local-ip", "list"),
]
DISCONNECT_OPTS = [Opt("f|force", "bool")]

# name -> (options, usage after the command path, least and most arguments, the
# "for more information" verb of docker's argument-count error)
SUBCOMMANDS: dict[str, tuple[list[Opt], str, int, int, str]] = {
    "connect": (CONNECT_OPTS, "[OPTIONS] NETWORK CONTAINER", 2, 2, "Run"),
    "create": (CREATE_OPTS, "[OPTIONS] NETWORK", 1, 1, "Run"),
    "disconnect": (DISCONNECT_OPTS, "[OPTIONS] NETWORK CONTAINER", 2, 2, "Run"),
    "inspect": (INSPECT_OPTS, "[OPTIONS] NETWORK [NETWORK...]", 1, -1, "See"),
    "ls": (LS_OPTS, "[OPTIONS]", 0, 0, "Run"),
    "prune": (PRUNE_OPTS, "[OPTIONS]", 0, 0, "Run"),
    "rm": (RM_OPTS, "NETWORK [NETWORK...]", 1, -1, "See"),
}
ALIASES = {"list": "ls", "remove": "rm"}

HELP = {
    "": """\
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
""",
    "connect": """\
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
""",
    "create": """\
Usage:  portside network create [OPTIONS] NETWORK

Create a network

Options:
      --attachable           Enable manual container attachment
      --aux-address map      Auxiliary IPv4 or IPv6 addresses used by
                             Network driver (default map[])
      --config-from string   The network from which to copy the configuration
      --config-only          Create a configuration only network
  -d, --driver string        Driver to manage the Network (default "bridge")
      --gateway strings      IPv4 or IPv6 Gateway for the master subnet
      --ingress              Create swarm routing-mesh network
      --internal             Restrict external access to the network
      --ip-range strings     Allocate container ip from a sub-range
      --ipam-driver string   IP Address Management Driver (default "default")
      --ipam-opt map         Set IPAM driver specific options (default map[])
      --ipv4                 Enable or disable IPv4 address assignment
                             (default true)
      --ipv6                 Enable or disable IPv6 address assignment
      --label list           Set metadata on a network
  -o, --opt map              Set driver specific options (default map[])
      --scope string         Control the network's scope
      --subnet strings       Subnet in CIDR format that represents a
                             network segment
""",
    "disconnect": """\
Usage:  portside network disconnect [OPTIONS] NETWORK CONTAINER

Disconnect a container from a network

Options:
  -f, --force   Force the container to disconnect from a network
""",
    "inspect": """\
Usage:  portside network inspect [OPTIONS] NETWORK [NETWORK...]

Display detailed information on one or more networks

Options:
  -f, --format string   Format output using a custom template:
                        'json':             Print in JSON format
                        'TEMPLATE':         Print output using the given
                        Go template.
                        Refer to https://docs.docker.com/go/formatting/
                        for more information about formatting output with
                        templates
  -v, --verbose         Verbose output for diagnostics
""",
    "ls": """\
Usage:  portside network ls [OPTIONS]

List networks

Aliases:
  portside network ls, portside network list

Options:
  -f, --filter filter   Provide filter values (e.g. "driver=bridge")
      --format string   Format output using a custom template:
                        'table':            Print output in table format
                        with column headers (default)
                        'table TEMPLATE':   Print output in table format
                        using the given Go template
                        'json':             Print in JSON format
                        'TEMPLATE':         Print output using the given
                        Go template.
                        Refer to https://docs.docker.com/go/formatting/
                        for more information about formatting output with
                        templates
      --no-trunc        Do not truncate the output
  -q, --quiet           Only display network IDs
""",
    "prune": """\
Usage:  portside network prune [OPTIONS]

Remove all unused networks

Options:
      --filter filter   Provide filter values (e.g. "until=<timestamp>")
  -f, --force           Do not prompt for confirmation
""",
    "rm": """\
Usage:  portside network rm NETWORK [NETWORK...]

Remove one or more networks

Aliases:
  portside network rm, portside network remove

Options:
  -f, --force   Do not error if the network does not exist
""",
}


# -- dispatch -------------------------------------------------------------------


def network(ctx: Context, argv: list[str]) -> int:
    """``portside network SUBCOMMAND ...``."""
    if not argv:  # docker prints the group's help on stderr, and succeeds
        ctx.err.write(HELP[""])
        return 0
    if argv[0] in ("-h", "--help"):
        ctx.out.write(HELP[""])
        return 0
    sub = ALIASES.get(argv[0], argv[0])
    if sub not in SUBCOMMANDS:
        raise ctx.error(
            f"portside: unknown command: portside network {argv[0]}\n\n"
            "Usage:  portside network\n\n"
            "Run 'portside network --help' for more information",
            1,
        )
    ctx.command = f"network {sub}"
    return _RUN[sub](ctx, argv[1:])


def _parse(ctx: Context, sub: str, argv: list[str]) -> Parsed:
    """Parse as cobra does: flag errors exit 125, --help prints docker's help, a wrong
    argument count exits 1; every message as docker 28 words it."""
    from portside.cli.main import Exit

    opts, usage, low, high, verb = SUBCOMMANDS[sub]
    path = f"portside network {sub}"
    tail = f"Usage:  {path} {usage}\n\n"
    try:
        parsed = parse(opts, argv)
    except FlagError as exc:
        raise ctx.error(f"{exc}\n\n{tail}Run '{path} --help' for more information", 125) from None
    if parsed.help:
        ctx.out.write(HELP[sub])
        raise Exit(0)
    count = len(parsed.args)
    if count < low or (high >= 0 and count > high):
        if high == 0:
            need = "accepts no arguments"
        elif high == low:
            need = f"requires {low} argument" + ("s" if low > 1 else "")
        else:
            need = f"requires at least {low} argument" + ("s" if low > 1 else "")
        raise ctx.error(
            f"portside: '{path}' {need}\n\n{tail}{verb} '{path} --help' for more information", 1
        )
    return parsed


# -- create ---------------------------------------------------------------------


def create(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "create", argv)
    try:
        config = ipam_config(_csv(p.subnet), _csv(p.ip_range), _csv(p.gateway), _kv(p.aux_address))
    except ValueError as exc:
        raise ctx.error(str(exc), 1) from None
    body: dict = {
        "Name": p.args[0],
        "Driver": p.driver,
        "Scope": p.scope,
        "IPAM": {"Driver": p.ipam_driver, "Config": config, "Options": _kv(p.ipam_opt)},
        "Internal": p.internal,
        "Attachable": p.attachable,
        "Ingress": p.ingress,
        "ConfigOnly": p.config_only,
        "ConfigFrom": {"Network": p.config_from} if p.config_from else None,
        "Options": _kv(p.opt),
        "Labels": _kv(p.label),
    }
    if "ipv4" in p.changed:  # sent only when given, as docker's *bool
        body["EnableIPv4"] = p.ipv4
    if "ipv6" in p.changed:
        body["EnableIPv6"] = p.ipv6
    result = ctx.client.network_create(body)
    ctx.out.write(f"{result.get('Id', '')}\n")
    return 0


def ipam_config(
    subnets: list[str], ranges: list[str], gateways: list[str], aux: dict[str, str]
) -> list[dict]:
    """docker's createIPAMConfig: each ip-range, gateway and aux-address joins the one
    subnet that contains it; a ValueError with docker's message otherwise."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise ValueError("every ip-range or gateway must have a corresponding subnet")
    configs: dict[str, dict] = {}
    for subnet in subnets:
        for other in configs:
            if _subnet_matches(subnet, other) or _subnet_matches(other, subnet):
                raise ValueError("multiple overlapping subnet configuration is not supported")
        configs[subnet] = {"Subnet": subnet}
    for key, what, values in (("IPRange", "range", ranges), ("Gateway", "gateway", gateways)):
        plural = "ranges" if key == "IPRange" else "gateways"
        for value in values:
            match = False
            for subnet in subnets:
                if not _subnet_matches(subnet, value):
                    continue
                if key in configs[subnet]:
                    where = "on" if key == "IPRange" else "for"
                    raise ValueError(
                        f"cannot configure multiple {plural} ({value}, {configs[subnet][key]}) "
                        f"{where} the same subnet ({subnet})"
                    )
                configs[subnet][key] = value
                match = True
            if not match:
                raise ValueError(f"no matching subnet for {what} {value}")
    for name, address in aux.items():
        matching = [s for s in subnets if _subnet_matches(s, address)]
        if not matching:
            raise ValueError(f"no matching subnet for aux-address {address}")
        for subnet in matching:
            configs[subnet].setdefault("AuxiliaryAddresses", {})[name] = address
    return list(configs.values())


def _parse_cidr(text: str) -> object:
    """Go's net.ParseCIDR (an address with its prefix length)."""
    import ipaddress

    try:
        if "/" not in text:
            raise ValueError(text)
        return ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {text}") from None


def _subnet_matches(subnet: str, data: str) -> bool:
    """docker's subnetMatches: is the address (or a CIDR's address) ``data`` in ``subnet``."""
    import ipaddress

    try:
        network = _parse_cidr(subnet).network  # type: ignore[attr-defined]
    except ValueError as exc:
        raise ValueError(f"invalid subnet {subnet}: {exc}") from None
    if "/" in data:
        address = _parse_cidr(data).ip  # type: ignore[attr-defined]
    else:
        try:
            address = ipaddress.ip_address(data)
        except ValueError:
            return False  # Go's ParseIP gives nil, in no network
    return address.version == network.version and address in network


# -- ls ---------------------------------------------------------------------------


class NetworkRow:
    """One network for ``ls`` templates: docker's networkContext fields."""

    HEADERS = {
        "ID": "NETWORK ID",
        "Name": "NAME",
        "Driver": "DRIVER",
        "Scope": "SCOPE",
        "IPv4": "IPV4",
        "IPv6": "IPV6",
        "Internal": "INTERNAL",
        "Labels": "LABELS",
        "CreatedAt": "CREATED AT",
    }
    FIELDS = ("CreatedAt", "Driver", "ID", "IPv4", "IPv6", "Internal", "Labels", "Name", "Scope")

    def __init__(self, n: dict, *, trunc: bool = True) -> None:
        self.n = n
        self.trunc = trunc

    def ID(self) -> str:
        ident = self.n.get("Id") or ""
        if self.trunc:
            from portside.cli.formatting import truncate_id

            return truncate_id(ident)
        return ident

    def Name(self) -> str:
        return self.n.get("Name") or ""

    def Driver(self) -> str:
        return self.n.get("Driver") or ""

    def Scope(self) -> str:
        return self.n.get("Scope") or ""

    def IPv4(self) -> str:
        return "true" if self.n.get("EnableIPv4") else "false"

    def IPv6(self) -> str:
        return "true" if self.n.get("EnableIPv6") else "false"

    def Internal(self) -> str:
        return "true" if self.n.get("Internal") else "false"

    def Labels(self) -> str:
        return ",".join(f"{k}={v}" for k, v in (self.n.get("Labels") or {}).items())

    def Label(self, name: str) -> str:
        return (self.n.get("Labels") or {}).get(name, "")

    def CreatedAt(self) -> str:
        return go_time(self.n.get("Created") or "")

    def to_json(self) -> dict:
        return {name: getattr(self, name)() for name in self.FIELDS}


def go_time(stamp: str) -> str:
    """Go's ``time.Time.String()`` of an RFC 3339 time:
    ``2025-01-02 03:04:05.123 +0000 UTC`` (fraction without trailing zeros)."""
    if len(stamp) < 19 or stamp[10] not in "Tt ":
        return stamp
    rest = stamp[19:]
    fraction = ""
    if rest.startswith("."):
        end = 1
        while end < len(rest) and is_number(rest[end]):
            end += 1
        fraction, rest = rest[1:end].rstrip("0"), rest[end:]
    if rest in ("", "Z", "z", "+00:00", "-00:00"):
        zone = "+0000 UTC"
    else:
        offset = rest.replace(":", "")
        zone = f"{offset} {offset}"
    return f"{stamp[:10]} {stamp[11:19]}{'.' + fraction if fraction else ''} {zone}"


def natural_key(text: str) -> list[tuple]:
    """The order of Go's sortorder.NaturalLess: digit runs compare as numbers (fewer
    leading zeros first on a tie) and sort before other characters."""
    key: list[tuple] = []
    i, n = 0, len(text)
    while i < n:
        if "0" <= text[i] <= "9":
            start = i
            while i < n and text[i] == "0":
                i += 1
            digits = i
            while i < n and "0" <= text[i] <= "9":
                i += 1
            key.append((0, i - digits, text[digits:i], digits - start))
        else:
            key.append((1, text[i]))
            i += 1
    return key


def ls(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "ls", argv)
    networks = ctx.client.network_list([f for f in p.filter if f])
    networks.sort(key=lambda n: natural_key(n.get("Name") or ""))
    fmt = p.format or "table"
    if fmt == "table":
        fmt = "{{.ID}}" if p.quiet else DEFAULT_TABLE
    elif fmt == "raw":
        fmt = (
            "network_id: {{.ID}}"
            if p.quiet
            else "network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n"
        )
    rows = [NetworkRow(n, trunc=not p.no_trunc) for n in networks]
    _render(rows, fmt, ctx)
    return 0


def _render(rows: list[NetworkRow], fmt: str, ctx: Context) -> None:
    from portside.cli.formatting import render, tabwrite

    if rows or not fmt.startswith("table"):
        render(rows, fmt, ctx.out)
        return
    from portside.cli.template import Template

    class Header:  # an empty table still has its header line
        def __getattr__(self, name: str) -> Callable[..., str]:
            title = NetworkRow.HEADERS.get(name, name.upper())
            return lambda *args: title

    body = fmt[len("table") :].strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    ctx.out.write(tabwrite([Template(body).execute(Header())]))


# -- inspect, rm, prune ------------------------------------------------------------


def inspect_(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "inspect", argv)
    template = _inspect_template(ctx, p.format)
    items, failures = [], []
    for ref in p.args:
        try:
            items.append(ctx.client.network_inspect(ref, verbose=p.verbose))
        except APIError as exc:
            failures.append(f"Error response from daemon: {exc.message}")
    ctx.out.write(_inspect_text(items, p.format, template, failures))
    if failures:
        ctx.out.flush()
        raise ctx.error("\n".join(failures), 1)
    return 0


def _inspect_template(ctx: Context, fmt: str) -> Template | None:
    """docker's inspect template, parsed before any request (exit 64 if it does not)."""
    if fmt in ("", "json"):
        return None
    from portside.cli.template import Template, TemplateError

    try:
        return Template(fmt)
    except TemplateError as exc:
        raise ctx.error(f"template parsing error: {exc}", 64) from None


def _inspect_text(items: list, fmt: str, template: Template | None, failures: list) -> str:
    """docker 28's inspectors: the daemon's JSON indented (no HTML escaping), compact
    for ``json``, else the template per item (a lone newline when none printed)."""
    import json

    if template is None:
        if fmt == "json":
            return json.dumps(items, separators=(",", ":"), ensure_ascii=False) + "\n"
        return json.dumps(items, indent=4, ensure_ascii=False) + "\n"
    from portside.cli.template import TemplateError

    lines = []
    for item in items:
        try:
            lines.append(template.execute(item) + "\n")
        except TemplateError as exc:
            failures.append(f"template parsing error: {exc}")
    return "".join(lines) or "\n"


def rm(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "rm", argv)
    status = 0
    for name in p.args:
        try:
            ctx.client.network_remove(name)
        except APIError as exc:
            if p.force and exc.status == 404:
                continue
            message = f"Error response from daemon: {exc.message}"
        except ConnectionFailed as exc:
            message = str(exc)
        else:
            ctx.out.write(f"{name}\n")
            continue
        ctx.out.flush()
        ctx.err.write(f"{message}\n")
        status = 1
    if status:  # docker 28 ends with its StatusError's text
        ctx.err.write(f"exit status {status}\n")
    return status


def prune(ctx: Context, argv: list[str]) -> int:
    from portside.cli.lifecycle import confirm

    p = _parse(ctx, "prune", argv)
    if not p.force and not confirm(ctx, PRUNE_WARNING):
        return 0
    deleted = ctx.client.networks_prune([f for f in p.filter if f]).get("NetworksDeleted") or []
    if deleted:
        ctx.out.write("Deleted Networks:\n" + "".join(f"{name}\n" for name in deleted) + "\n")
    return 0


# -- connect, disconnect ------------------------------------------------------------


def connect(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "connect", argv)
    driver_opts = {}
    for item in _csv(p.driver_opt):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ctx.error("invalid key/value pair format in driver options", 1)
        driver_opts[key.strip()] = value.strip()
    addresses = {"IPv4Address": p.ip, "IPv6Address": p.ip6, "LinkLocalIPs": _csv(p.link_local_ip)}
    endpoint: dict = {
        "IPAMConfig": {key: value for key, value in addresses.items() if value},
        "Links": p.link or None,
        "Aliases": _csv(p.alias),
        "DriverOpts": driver_opts,
    }
    if p.gw_priority:
        endpoint["GwPriority"] = p.gw_priority
    ctx.client.network_connect(p.args[0], p.args[1], endpoint)
    return 0


def disconnect(ctx: Context, argv: list[str]) -> int:
    p = _parse(ctx, "disconnect", argv)
    ctx.client.network_disconnect(p.args[0], p.args[1], force=p.force)
    return 0


_RUN: dict[str, Callable[[Context, list[str]], int]] = {
    "connect": connect,
    "create": create,
    "disconnect": disconnect,
    "inspect": inspect_,
    "ls": ls,
    "prune": prune,
    "rm": rm,
}
