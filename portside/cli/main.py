"""``portside``: docker's command line, talking to the daemon over the Docker
Engine API. Each command lives in a module imported only when it runs."""

from __future__ import annotations

import os
import sys

from portside.cli.flags import FlagError, Opt, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.cli.flags import Parsed
    from portside.client import Client

__all__ = ["Context", "Exit", "main"]

VERSION = "0.1.0"

# name → (module, function, usage, summary); usage "" = no arguments
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "attach": ("containers", "attach", "CONTAINER", "Attach to a running container"),
    "commit": (
        "transfer",
        "commit",
        "CONTAINER [REPOSITORY[:TAG]]",
        "Create a new image from a container's changes",
    ),
    "cp": (
        "transfer",
        "cp",
        "CONTAINER:SRC_PATH DEST_PATH|-\n\tportside cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
        "Copy files/folders between a container and the local filesystem",
    ),
    "create": ("containers", "create", "IMAGE [COMMAND] [ARG...]", "Create a new container"),
    "diff": (
        "transfer",
        "diff",
        "CONTAINER",
        "Inspect changes to files or directories on a container's filesystem",
    ),
    "events": ("system", "events", "", "Get real time events from the server"),
    "exec": (
        "containers",
        "exec_",
        "CONTAINER COMMAND [ARG...]",
        "Execute a command in a running container",
    ),
    "export": (
        "transfer",
        "export",
        "CONTAINER",
        "Export a container's filesystem as a tar archive",
    ),
    "history": ("images", "history", "IMAGE", "Show the history of an image"),
    "images": ("images", "images", "[REPOSITORY[:TAG]]", "List images"),
    "import": (
        "images",
        "import_",
        "file|URL|- [REPOSITORY[:TAG]]",
        "Import the contents from a tarball to create a filesystem image",
    ),
    "info": ("system", "info", "", "Display system-wide information"),
    "inspect": (
        "info",
        "inspect",
        "NAME|ID [NAME|ID...]",
        "Return low-level information on Docker objects",
    ),
    "kill": (
        "lifecycle",
        "kill",
        "CONTAINER [CONTAINER...]",
        "Kill one or more running containers",
    ),
    "load": ("images", "load", "", "Load an image from a tar archive or STDIN"),
    "login": (
        "registry",
        "login",
        "[SERVER]",
        "Authenticate to a registry (Docker Hub if no server is specified)",
    ),
    "logout": (
        "registry",
        "logout",
        "[SERVER]",
        "Log out from a registry (Docker Hub if no server is specified)",
    ),
    "logs": ("info", "logs", "CONTAINER", "Fetch the logs of a container"),
    "pause": (
        "lifecycle",
        "pause",
        "CONTAINER [CONTAINER...]",
        "Pause all processes within one or more containers",
    ),
    "port": ("info", "port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings"),
    "ps": ("info", "ps", "", "List containers"),
    "pull": ("registry", "pull", "NAME[:TAG|@DIGEST]", "Download an image from a registry"),
    "push": ("registry", "push", "NAME[:TAG]", "Upload an image to a registry"),
    "rename": ("lifecycle", "rename", "CONTAINER NEW_NAME", "Rename a container"),
    "restart": (
        "lifecycle",
        "restart",
        "CONTAINER [CONTAINER...]",
        "Restart one or more containers",
    ),
    "rm": ("lifecycle", "rm", "CONTAINER [CONTAINER...]", "Remove one or more containers"),
    "rmi": ("images", "rmi", "IMAGE [IMAGE...]", "Remove one or more images"),
    "run": (
        "containers",
        "run",
        "IMAGE [COMMAND] [ARG...]",
        "Create and run a new container from an image",
    ),
    "save": (
        "images",
        "save",
        "IMAGE [IMAGE...]",
        "Save one or more images to a tar archive (streamed to STDOUT by default)",
    ),
    "start": (
        "containers",
        "start",
        "CONTAINER [CONTAINER...]",
        "Start one or more stopped containers",
    ),
    "stats": (
        "info",
        "stats",
        "[CONTAINER...]",
        "Display a live stream of container(s) resource usage statistics",
    ),
    "stop": (
        "lifecycle",
        "stop",
        "CONTAINER [CONTAINER...]",
        "Stop one or more running containers",
    ),
    "tag": (
        "images",
        "tag",
        "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
        "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    ),
    "top": (
        "info",
        "top",
        "CONTAINER [ps OPTIONS]",
        "Display the running processes of a container",
    ),
    "unpause": (
        "lifecycle",
        "unpause",
        "CONTAINER [CONTAINER...]",
        "Unpause all processes within one or more containers",
    ),
    "update": (
        "lifecycle",
        "update",
        "CONTAINER [CONTAINER...]",
        "Update configuration of one or more containers",
    ),
    "version": ("system", "version", "", "Show the Portside version information"),
    "wait": (
        "lifecycle",
        "wait",
        "CONTAINER [CONTAINER...]",
        "Block until one or more containers stop, then print their exit codes",
    ),
    "volume": ("volumes", "volume", "COMMAND", "Manage volumes"),
    "network": ("network", "network", "COMMAND", "Manage networks"),
    "system": ("system", "system", "COMMAND", "Manage Portside"),
}

# management commands: group → {subcommand: top-level command or own entry}
GROUPS: dict[str, dict[str, str]] = {
    "container": {
        "attach": "attach",
        "commit": "commit",
        "cp": "cp",
        "create": "create",
        "diff": "diff",
        "exec": "exec",
        "export": "export",
        "inspect": "container inspect",
        "kill": "kill",
        "logs": "logs",
        "ls": "ps",
        "list": "ps",
        "ps": "ps",
        "pause": "pause",
        "port": "port",
        "prune": "container prune",
        "rename": "rename",
        "restart": "restart",
        "rm": "rm",
        "remove": "rm",
        "run": "run",
        "start": "start",
        "stats": "stats",
        "stop": "stop",
        "top": "top",
        "unpause": "unpause",
        "update": "update",
        "wait": "wait",
    },
    "image": {
        "history": "history",
        "import": "import",
        "inspect": "image inspect",
        "load": "load",
        "ls": "images",
        "list": "images",
        "prune": "image prune",
        "pull": "pull",
        "push": "push",
        "rm": "rmi",
        "remove": "rmi",
        "save": "save",
        "tag": "tag",
    },
}
EXTRA: dict[str, tuple[str, str, str, str]] = {
    "container inspect": (
        "info",
        "container_inspect",
        "CONTAINER [CONTAINER...]",
        "Display detailed information on one or more containers",
    ),
    "image inspect": (
        "info",
        "image_inspect",
        "IMAGE [IMAGE...]",
        "Display detailed information on one or more images",
    ),
    "container prune": ("lifecycle", "prune", "", "Remove all stopped containers"),
    "image prune": ("images", "prune", "", "Remove unused images"),
}

GLOBAL_OPTS = [
    Opt("config", "str", "Location of client config files"),
    Opt("c|context", "str", "Name of the context to use (ignored)"),
    Opt("D|debug", "bool", "Enable debug mode"),
    Opt("H|host", "list", "Daemon socket to connect to"),
    Opt("l|log-level", "str", "Set the logging level"),
    Opt("tls", "bool", "Use TLS; implied by --tlsverify"),
    Opt("tlscacert", "str", "Trust certs signed only by this CA"),
    Opt("tlscert", "str", "Path to TLS certificate file"),
    Opt("tlskey", "str", "Path to TLS key file"),
    Opt("tlsverify", "bool", "Use TLS and verify the remote"),
    Opt("v|version", "bool", "Print version information and quit"),
]


class Exit(Exception):
    """Leave with ``code`` (after the message, if any, was printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Context:
    """What a command needs: the parsed global flags, a client, the output."""

    def __init__(self, globals_: Parsed, command: str) -> None:
        self.globals = globals_
        self.command = command  # "run", "volume ls"...
        self.out = sys.stdout
        self.err = sys.stderr
        self._client: Client | None = None

    @property
    def host(self) -> str:
        hosts = self.globals.host
        if hosts:
            return hosts[-1]
        return (
            os.environ.get("PORTSIDE_HOST")
            or os.environ.get("DOCKER_HOST")
            or "unix:///run/portside.sock"
        )

    @property
    def client(self) -> Client:
        if self._client is None:
            from portside.client import Client, TLSOptions

            self._client = Client(self.host, self._tls(TLSOptions))
        return self._client

    def _tls(self, cls: Any) -> Any:
        g = self.globals
        env_verify = os.environ.get("PORTSIDE_TLS_VERIFY") or os.environ.get("DOCKER_TLS_VERIFY")
        verify = g.tlsverify or ("tlsverify" not in g.changed and bool(env_verify))
        if not (verify or g.tls or g.tlscacert or g.tlscert):
            return None
        from portside.client.http import default_cert_path

        base = default_cert_path()

        def pick(value: str | None, name: str) -> str | None:
            path = value or os.path.join(base, name)
            return path if value or os.path.exists(path) else None

        return cls(
            verify=bool(verify),
            ca=pick(g.tlscacert, "ca.pem"),
            cert=pick(g.tlscert, "cert.pem"),
            key=pick(g.tlskey, "key.pem"),
        )

    def parse(
        self,
        opts: list[Opt],
        argv: list[str],
        *,
        min_args: int = 0,
        max_args: int = -1,
        interspersed: bool = True,
    ) -> Parsed:
        """Parse a command's flags; --help prints usage and exits 0; wrong argument
        counts exit 1 with docker's message."""
        parsed = parse(opts, argv, interspersed=interspersed)
        if parsed.help:
            self.out.write(usage_text(self.command, opts))
            raise Exit(0)
        count = len(parsed.args)
        if count < min_args or (max_args >= 0 and count > max_args):
            need = _arity(min_args, max_args)
            entry = command_entry(self.command)
            usage = f"portside {self.command} [OPTIONS] {entry[2]}".rstrip()
            self.err.write(
                f'"portside {self.command}" {need}.\n'
                f"See 'portside {self.command} --help'.\n\n"
                f"Usage:  {usage}\n\n{entry[3]}\n"
            )
            raise Exit(1)
        return parsed

    def error(self, message: str, code: int = 1) -> Exit:
        """Print ``message`` to stderr; the Exit to raise."""
        self.err.write(message.rstrip("\n") + "\n")
        return Exit(code)


def _arity(low: int, high: int) -> str:
    """cobra's argument-count texts (cli.RequiresMinArgs, ExactArgs, NoArgs...)."""

    def n(count: int) -> str:
        return f"{count} argument" + ("" if count == 1 else "s")

    if high == 0:
        return "accepts no arguments"
    if high == low:
        return f"requires exactly {n(low)}"
    if high < 0:
        return f"requires at least {n(low)}"
    if low == 0:
        return f"requires at most {n(high)}"
    return f"requires at least {low} and at most {n(high)}"


def command_entry(name: str) -> tuple[str, str, str, str]:
    return COMMANDS.get(name) or EXTRA.get(name) or ("", "", "", "")


def usage_text(command: str, opts: list[Opt]) -> str:
    entry = command_entry(command)
    lines = [f"\nUsage:  portside {command} [OPTIONS] {entry[2]}".rstrip(), "", entry[3], ""]
    if opts:
        lines.append("Options:")
        width = max(len(_opt_label(o)) for o in opts) + 2
        for opt in sorted(opts, key=lambda o: o.long):
            lines.append(f"  {_opt_label(opt).ljust(width)} {opt.help}".rstrip())
    return "\n".join(lines) + "\n"


def _opt_label(opt: Opt) -> str:
    kind = opt.kind
    arg = "" if kind == "bool" else (" list" if kind == "list" else " value")
    if kind == "int":
        arg = " int"
    return (f"-{opt.short}, --{opt.long}" if opt.short else f"    --{opt.long}") + arg


def main_usage() -> str:
    lines = [
        "",
        "Usage:  portside [OPTIONS] COMMAND",
        "",
        "A self-sufficient runtime for containers",
        "",
        "Commands:",
    ]
    for name in sorted(COMMANDS):
        if name not in ("volume", "system", "network"):
            lines.append(f"  {name.ljust(10)} {COMMANDS[name][3]}")
    lines += ["", "Management Commands:"]
    for name, text in (
        ("container", "Manage containers"),
        ("image", "Manage images"),
        ("network", "Manage networks"),
        ("system", "Manage Portside"),
        ("volume", "Manage volumes"),
        ("daemon", "Run the Portside daemon"),
        ("tls", "Make TLS certificates"),
        ("registry", "Run and manage a registry server"),
    ):
        lines.append(f"  {name.ljust(10)} {text}")
    lines += ["", "Global Options:"]
    for opt in GLOBAL_OPTS:
        lines.append(f"  {_opt_label(opt).ljust(24)} {opt.help}")
    lines += ["", "Run 'portside COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"


def resolve(argv: list[str]) -> tuple[str, list[str]]:
    """The command name ("run", "volume ls", "container inspect") and its arguments."""
    name, rest = argv[0], argv[1:]
    if name in GROUPS:
        if not rest or rest[0] in ("--help", "-h"):
            return name, rest
        sub = GROUPS[name].get(rest[0])
        if sub is None:
            return f"{name} {rest[0]}", rest[1:]
        return sub, rest[1:]
    return name, rest


def dispatch(ctx: Context, name: str, argv: list[str]) -> int:
    if name in ("container", "image"):
        ctx.out.write(group_usage(name))
        return 0 if argv else 1
    entry = COMMANDS.get(name) or EXTRA.get(name)
    if entry is None:
        if " " in name:
            base = name.split(maxsplit=1)[0]
            raise ctx.error(
                f"portside: unknown command: portside {name}\n\n"
                f"Run 'portside {base} --help' for more information",
                1,
            )
        raise ctx.error(f"portside: '{name}' is not a portside command.\nSee 'portside --help'", 1)
    import importlib

    module = importlib.import_module(f"portside.cli.{entry[0]}")
    return getattr(module, entry[1])(ctx, argv) or 0


def group_usage(name: str) -> str:
    lines = ["", f"Usage:  portside {name} COMMAND", "", f"Manage {name}s", "", "Commands:"]
    for sub, target in sorted(GROUPS[name].items()):
        lines.append(f"  {sub.ljust(10)} {command_entry(target)[3]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns (and with ``sys.exit`` raises) the exit code."""
    args = sys.argv[1:] if argv is None else argv
    code = run_cli(args)
    if argv is None:
        sys.exit(code)
    return code


def run_cli(args: list[str]) -> int:
    try:
        glob = parse(GLOBAL_OPTS, args, interspersed=False)
    except FlagError as exc:
        sys.stderr.write(f"{exc}\nSee 'portside --help'.\n")
        return 125
    if glob.version:
        sys.stdout.write(f"Portside version {VERSION}\n")
        return 0
    if glob.help or not glob.args:
        sys.stdout.write(main_usage())
        return 0
    first = glob.args[0]
    if first == "daemon":
        from portside.api.daemon import main as daemon_main

        return daemon_main(glob.args[1:]) or 0
    if first == "tls":
        from portside.tls import main as tls_main

        return tls_main(glob.args[1:]) or 0
    if first == "registry":
        from portside.registry.cli import main as registry_main

        return registry_main(glob.args[1:]) or 0
    if first == "help":
        glob.args = [*glob.args[1:], "--help"] if len(glob.args) > 1 else []
        if not glob.args:
            sys.stdout.write(main_usage())
            return 0
    name, rest = resolve(glob.args)
    ctx = Context(glob, name)
    return run_command(ctx, name, rest)


def run_command(ctx: Context, name: str, rest: list[str]) -> int:
    from portside.client.http import APIError, ConnectionFailed
    from portside.errors import PortsideError

    try:
        return dispatch(ctx, name, rest)
    except Exit as exc:
        return exc.code
    except FlagError as exc:
        ctx.err.write(f"{exc}\nSee 'portside {ctx.command} --help'.\n")
        return 125
    except ConnectionFailed as exc:
        ctx.err.write(f"{exc}\n")
        return 1
    except APIError as exc:
        ctx.err.write(f"Error response from daemon: {exc.message}\n")
        return 1
    except PortsideError as exc:
        ctx.err.write(f"portside: {exc}\n")
        return 1
    except BrokenPipeError:
        return 0
    except OSError as exc:
        ctx.err.write(f"portside: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # run the importable module, not this __main__ copy, so that the command
    # modules share its classes (Exit) and tables
    from portside.cli.main import main as _main

    _main()
