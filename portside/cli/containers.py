"""run, create, start, attach, exec: the commands that attach to a container."""

from __future__ import annotations

import os
import sys

from portside.cli.flags import FlagError, Opt, parse_env, parse_env_file
from portside.cli.progress import StreamError
from portside.client.http import APIError, ConnectionFailed, quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portside.cli.flags import Parsed
    from portside.cli.main import Context
    from portside.client import Client
    from portside.client.http import Socket
    from portside.oci.reference import Reference

__all__ = ["attach", "create", "exec_", "run", "start"]


def _run_status(exc: Exception, command: str, *, with_help: bool = True) -> tuple[str, int]:
    """docker's reportError + runStartContainerErr: "portside: <error>." (with the
    help hint for create errors) and the exit code 125, 126 or 127. An error inside
    a pull's message stream (StreamError) is shown as it is."""
    text = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, APIError):
        text = f"Error response from daemon: {text}"
    code = 125
    if any(s in text for s in ("executable file not found", "no such file or directory")):
        code = 127
    elif "permission denied" in text or "is a directory" in text:
        code = 126
    message = "portside: " + text.removesuffix(".") + "."
    if with_help:
        message += f"\nSee 'portside {command} --help'."
    return message, code


PULL_POLICIES = ("always", "missing", "never")


def _named(image: str) -> Reference | None:
    """The reference a create would pull for ``image`` (default tag added), or None
    for an image ID or digest, as docker's ParseAnyReference tells them apart."""
    from portside.oci.reference import InvalidReference, parse_reference

    bare = image.removeprefix("sha256:")
    if len(bare) == 64 and all(c in "0123456789abcdef" for c in bare):
        return None
    try:
        return parse_reference(image).with_default_tag()
    except InvalidReference:
        return None


def _pull_for_create(ctx: Context, ref: Reference, p: Parsed) -> None:
    """docker run's pullImage: progress on stderr (none with -q)."""
    from portside.cli.registry import pull_image

    pull_image(ctx, ref, platform=p.platform, out=None if p.quiet else ctx.err)


def _create(ctx: Context, p: Parsed, *, detach: bool, command: str) -> tuple[str, dict]:
    from portside.cli.runopts import build_create_body

    policy = p.pull or "missing"
    if policy not in PULL_POLICIES:
        raise ctx.error(
            f"portside: invalid pull option: '{policy}': must be one of \"always\", "
            f'"missing" or "never".\nSee \'portside {command} --help\'.',
            125,
        )
    body, name = build_create_body(p, detach=detach)
    cidfile = body["HostConfig"].get("ContainerIDFile")
    if cidfile and os.path.exists(cidfile):
        raise FlagError(
            f"container ID file found, make sure the other container isn't running or delete "
            f"{cidfile}"
        )
    # the reference is parsed only for a pull: its regexps cost every run ~10 ms of imports
    ref = _named(body["Image"]) if policy == "always" else None
    if ref is not None:
        _pull_for_create(ctx, ref, p)
    try:
        created = ctx.client.container_create(body, name)
    except APIError as exc:
        missing = exc.status == 404 and "No such image" in exc.message
        ref = _named(body["Image"]) if missing and policy == "missing" else None
        if ref is None:
            raise
        if not p.quiet:
            ctx.err.write(f"Unable to find image '{ref.familiar()}' locally\n")
            ctx.err.flush()
        _pull_for_create(ctx, ref, p)
        created = ctx.client.container_create(body, name)
    for warning in created.get("Warnings") or []:
        ctx.err.write(f"WARNING: {warning}\n")
    cid = created["Id"]
    if cidfile:
        with open(cidfile, "w") as handle:
            handle.write(cid)
    return cid, body


def create(ctx: Context, argv: list[str]) -> int:
    from portside.cli.runopts import CREATE_OPTS

    p = ctx.parse(CREATE_OPTS, argv, min_args=1, interspersed=False)
    try:
        cid, _ = _create(ctx, p, detach=False, command="create")
    except (APIError, ConnectionFailed, StreamError) as exc:
        message, code = _run_status(exc, "create")
        raise ctx.error(message, code) from None
    ctx.out.write(cid + "\n")
    return 0


def run(ctx: Context, argv: list[str]) -> int:
    from portside.cli.runopts import RUN_OPTS

    p = ctx.parse(RUN_OPTS, argv, min_args=1, interspersed=False)
    keys = _detach_keys(p.detach_keys)
    if not p.detach and p.tty and p.interactive and not os.isatty(0):
        raise ctx.error("the input device is not a TTY", 1)
    try:
        cid, body = _create(ctx, p, detach=p.detach, command="run")
    except (APIError, ConnectionFailed, StreamError) as exc:
        message, code = _run_status(exc, "run")
        raise ctx.error(message, code) from None
    try:
        if p.detach:
            ctx.client.container_start(cid)
            ctx.out.write(cid + "\n")
            return 0
        return _run_attached(ctx, cid, body, keys, keys_spec=p.detach_keys, sig_proxy=p.sig_proxy)
    except (APIError, ConnectionFailed) as exc:
        message, code = _run_status(exc, "run", with_help=False)
        raise ctx.error(message, code) from None


def _detach_keys(spec: str | None) -> bytes:
    from portside.cli.interactive import DEFAULT_DETACH_KEYS, parse_detach_keys

    try:
        return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)
    except ValueError as exc:
        raise FlagError(f"invalid detach keys ({spec}): {exc}") from None


def _run_attached(
    ctx: Context, cid: str, body: dict, keys: bytes, *, keys_spec: str | None, sig_proxy: bool
) -> int:
    """docker's runContainer after create: proxy signals, attach, wait, start, stream."""
    from portside.cli.interactive import SignalProxy, nothing

    client = ctx.client
    with SignalProxy(lambda sig: client.container_kill(cid, sig)) if sig_proxy else nothing():
        return _attach_start_wait(ctx, client, cid, body, keys, keys_spec=keys_spec)


def _attach_start_wait(
    ctx: Context, client: Client, cid: str, body: dict, keys: bytes, *, keys_spec: str | None
) -> int:
    tty = bool(body["Tty"])
    stdin = bool(body["AttachStdin"])
    attached = stdin or body["AttachStdout"] or body["AttachStderr"]
    sock = buffered = None
    if attached:
        sock, buffered = client.container_attach(
            cid,
            stdin=stdin,
            stdout=body["AttachStdout"],
            stderr=body["AttachStderr"],
            detach_keys=keys_spec,
        )
    condition = "removed" if body["HostConfig"]["AutoRemove"] else "next-exit"
    waiter = _Waiter(client, cid, condition)
    try:
        client.container_start(cid)
    except BaseException:
        if sock is not None:
            sock.close()
        waiter.cancel()
        raise
    if sock is None:
        return waiter.result(ctx)
    detached = _attached_session(
        ctx, client, cid, sock, buffered or b"", tty=tty, stdin=stdin, keys=keys
    )
    if detached or (stdin and waiter.detached(client, cid)):
        waiter.cancel()
        return 0
    return waiter.result(ctx)


def _attached_session(
    ctx: Context,
    client: Client,
    ref: str,
    sock: Socket,
    buffered: bytes,
    *,
    tty: bool,
    stdin: bool,
    keys: bytes | None,
    sig_proxy: bool = False,
    exec_: bool = False,
) -> bool:
    """Stream until the end; True when the user detached."""
    from portside.cli.interactive import (
        ResizeMonitor,
        SignalProxy,
        nothing,
        raw_terminal,
        stream,
    )

    ctx.out.flush()
    with (
        raw_terminal(0) if tty and stdin and os.isatty(0) else nothing(),
        ResizeMonitor(lambda h, w: client.container_resize(ref, h, w, exec_=exec_))
        if tty and os.isatty(1)
        else nothing(),
        SignalProxy(lambda sig: client.container_kill(ref, sig)) if sig_proxy else nothing(),
    ):
        try:
            return stream(
                sock,
                buffered,
                tty=tty,
                stdin_fd=0 if stdin else None,
                stdout_fd=ctx.out.fileno() if ctx.out is sys.stdout else 1,
                stderr_fd=ctx.err.fileno() if ctx.err is sys.stderr else 2,
                detach_keys=keys if stdin else None,
            )
        finally:
            sock.close()


class _Waiter:
    """A wait request sent before start and read in a thread. Docker's daemon
    answers the headers at once (the wait is registered then); we go on after
    them, or after two seconds from a daemon that holds them back. The thread is
    ``_thread``'s: importing ``threading`` would cost every run ~4 ms."""

    def __init__(self, client: Client, cid: str, condition: str) -> None:
        import _thread

        self.response: object = None
        self.value: tuple[int, str | None] | None = None
        self.error: Exception | None = None
        self.registered = _thread.allocate_lock()
        self.finished = _thread.allocate_lock()
        self.registered.acquire()
        self.finished.acquire()
        _thread.start_new_thread(self._run, (client, cid, condition))
        _released(self.registered, 2.0)

    def _run(self, client: Client, cid: str, condition: str) -> None:
        from portside.client.api import read_wait

        registered = False
        try:
            self.response = client.container_wait_request(cid, condition)
            self.registered.release()
            registered = True
            self.value = read_wait(self.response)  # type: ignore[arg-type]
        except Exception as exc:
            self.error = exc
        finally:
            if not registered:
                self.registered.release()
            self.finished.release()

    def cancel(self) -> None:
        if self.response is not None:
            self.response.close()  # type: ignore[attr-defined]

    def detached(self, client: Client, cid: str) -> bool:
        """After the stream ended: did the container keep running (a detach)?"""
        if _released(self.finished, 1.0):
            return False
        try:
            state = client.container_inspect(cid).get("State") or {}
        except (APIError, ConnectionFailed):
            return False
        return bool(state.get("Running")) and not state.get("Restarting")

    def result(self, ctx: Context) -> int:
        _released(self.finished)
        if self.error is not None:
            if isinstance(self.error, APIError | ConnectionFailed):
                raise self.error
            raise ctx.error(f"portside: error waiting for container: {self.error}", 125)
        code, message = self.value or (0, None)
        if message:
            raise ctx.error(f"portside: error waiting for container: {message}", 125)
        return code


def _released(lock: Any, timeout: float = -1) -> bool:
    """Wait until ``lock`` (held until an event) is released; False on timeout."""
    if not lock.acquire(timeout=timeout):
        return False
    lock.release()
    return True


START_OPTS = [
    Opt("a|attach", "bool", "Attach STDOUT/STDERR and forward signals"),
    Opt("detach-keys", "str", "Override the key sequence for detaching a container"),
    Opt("i|interactive", "bool", "Attach container's STDIN"),
]


def start(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(START_OPTS, argv, min_args=1)
    client = ctx.client
    if p.attach or p.interactive:
        if len(p.args) > 1:
            raise ctx.error("you cannot start and attach multiple containers at once", 1)
        info = client.container_inspect(p.args[0])
        config = info.get("Config") or {}
        if (info.get("State") or {}).get("Running"):
            raise ctx.error(
                f"Error response from daemon: container {p.args[0]} is already running", 1
            )
        stdin = bool(p.interactive and config.get("OpenStdin"))
        keys = _detach_keys(p.detach_keys)
        cid = info["Id"]
        sock, buffered = client.container_attach(cid, stdin=stdin, detach_keys=p.detach_keys)
        auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
        waiter = _Waiter(client, cid, "removed" if auto_remove else "next-exit")
        try:
            client.container_start(cid)
        except BaseException:
            sock.close()
            waiter.cancel()
            raise
        tty = bool(config.get("Tty"))
        detached = _attached_session(
            ctx,
            client,
            cid,
            sock,
            buffered,
            tty=tty,
            stdin=stdin,
            keys=keys,
            sig_proxy=not tty,
        )
        if detached or (stdin and waiter.detached(client, cid)):
            waiter.cancel()
            return 0
        return waiter.result(ctx)
    failed = []
    for ref in p.args:
        try:
            client.container_start(ref)
            ctx.out.write(ref + "\n")
        except APIError as exc:
            ctx.err.write(f"Error response from daemon: {exc.message}\n")
            failed.append(ref)
    if failed:
        raise ctx.error(f"Error: failed to start containers: {', '.join(failed)}", 1)
    return 0


ATTACH_OPTS = [
    Opt("detach-keys", "str", "Override the key sequence for detaching a container"),
    Opt("no-stdin", "bool", "Do not attach STDIN"),
    Opt("sig-proxy", "bool", "Proxy all received signals to the process", default=True),
]


def attach(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(ATTACH_OPTS, argv, min_args=1, max_args=1)
    client = ctx.client
    info = client.container_inspect(p.args[0])
    state = info.get("State") or {}
    config = info.get("Config") or {}
    if not state.get("Running"):
        raise ctx.error("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise ctx.error("You cannot attach to a paused container, unpause it first", 1)
    if state.get("Restarting"):
        raise ctx.error("You cannot attach to a restarting container, wait until it is running", 1)
    stdin = bool(config.get("OpenStdin")) and not p.no_stdin
    tty = bool(config.get("Tty"))
    if stdin and tty and not os.isatty(0):
        raise ctx.error("the input device is not a TTY", 1)
    keys = _detach_keys(p.detach_keys)
    cid = info["Id"]
    sock, buffered = client.container_attach(cid, stdin=stdin, detach_keys=p.detach_keys)
    waiter = _Waiter(client, cid, "not-running")
    detached = _attached_session(
        ctx,
        client,
        cid,
        sock,
        buffered,
        tty=tty,
        stdin=stdin,
        keys=keys,
        sig_proxy=p.sig_proxy and not tty,
    )
    if detached or (stdin and waiter.detached(client, cid)):
        waiter.cancel()
        return 0
    return waiter.result(ctx)


EXEC_OPTS = [
    Opt("d|detach", "bool", "Detached mode: run command in the background"),
    Opt("detach-keys", "str", "Override the key sequence for detaching a container"),
    Opt("e|env", parse_env, "Set environment variables", default=[]),
    Opt("env-file", "list", "Read in a file of environment variables"),
    Opt("i|interactive", "bool", "Keep STDIN open even if not attached"),
    Opt("privileged", "bool", "Give extended privileges to the command"),
    Opt("t|tty", "bool", "Allocate a pseudo-TTY"),
    Opt("u|user", "str", "Username or UID (format: <name|uid>[:<group|gid>])"),
    Opt("w|workdir", "str", "Working directory inside the container"),
]


def exec_(ctx: Context, argv: list[str]) -> int:
    p = ctx.parse(EXEC_OPTS, argv, min_args=2, interspersed=False)
    keys = _detach_keys(p.detach_keys)
    env: list[str] = []
    for path in p.env_file:
        try:
            env.extend(parse_env_file(path))
        except ValueError as exc:
            raise FlagError(str(exc)) from None
    env.extend(p.env)
    config = {
        "User": p.user or "",
        "Privileged": bool(p.privileged),
        "Tty": bool(p.tty),
        "AttachStdin": bool(p.interactive) and not p.detach,
        "AttachStdout": not p.detach,
        "AttachStderr": not p.detach,
        "Detach": bool(p.detach),
        "Env": env,
        "WorkingDir": p.workdir or "",
        "Cmd": p.args[1:],
    }
    if p.detach_keys:
        config["DetachKeys"] = p.detach_keys
    if p.tty and os.isatty(1):
        from portside.cli.interactive import terminal_size

        size = terminal_size(1)
        if size:
            config["ConsoleSize"] = list(size)
    if config["AttachStdin"] and p.tty and not os.isatty(0):
        raise ctx.error("the input device is not a TTY", 1)
    client = ctx.client
    exec_id = client.call("POST", f"/containers/{quote(p.args[0])}/exec", body=config)["Id"]
    if p.detach:
        client.call("POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": bool(p.tty)})
        return 0
    sock, buffered = client.hijack(
        f"/exec/{exec_id}/start", body={"Detach": False, "Tty": bool(p.tty)}
    )
    detached = _attached_session(
        ctx,
        client,
        exec_id,
        sock,
        buffered,
        tty=bool(p.tty),
        stdin=config["AttachStdin"],
        keys=keys,
        exec_=True,
    )
    if detached:
        return 0
    info = client.call("GET", f"/exec/{exec_id}/json")
    code = info.get("ExitCode")
    if info.get("Running"):
        return 0
    return int(code) if code is not None else 126
