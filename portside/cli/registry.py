"""pull, push, login, logout: the registry commands.

The daemon talks to the registries; the CLI holds the credentials (a Docker-style
config.json, see :mod:`portside.distribution.credentials`) and sends those of the
reference's registry as ``X-Registry-Auth``. Output as docker's: the JSON progress
stream drawn with per-layer lines on a terminal, plain status lines otherwise.
"""

from __future__ import annotations

import os
import sys

from portside.cli.flags import Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from portside.cli.main import Context
    from portside.distribution.config import AuthConfig
    from portside.distribution.credentials import CredentialStore
    from portside.oci.reference import Reference

__all__ = ["credential_store", "login", "logout", "pull", "pull_image", "push", "registry_auth"]

ALL_TAGS_CONFLICT = "tag can't be used with --all-tags/-a"
UNENCRYPTED_WARNING = (
    "WARNING! Your credentials are stored unencrypted in '{path}'.\n"
    "Configure a credential helper to remove this warning. See\n"
    "https://docs.docker.com/go/credential-store/\n"
)


def credential_store(ctx: Context) -> CredentialStore:
    """The credentials of this CLI: ``--config DIR``'s config.json alone, else
    Portside's (``$PORTSIDE_CONFIG`` or ``~/.portside``) then Docker's."""
    from portside.distribution.credentials import CredentialStore

    directory = ctx.globals.config
    if directory:
        path = os.path.join(os.path.expanduser(directory), "config.json")
        return CredentialStore(path, fallback=None)
    return CredentialStore()


def registry_auth(ctx: Context, domain: str) -> str:
    """The X-Registry-Auth value for registry ``domain`` (``e30=``: anonymous)."""
    from portside.distribution.credentials import encode_registry_auth

    return encode_registry_auth(credential_store(ctx).get(domain))


def _parse(ctx: Context, text: str) -> Reference:
    from portside.oci.reference import InvalidReference, parse_reference

    try:
        return parse_reference(text)
    except InvalidReference as exc:
        raise ctx.error(exc.reason, 1) from None


def _api_tag(ref: Reference) -> str | None:
    """What docker sends as ``tag``: the digest, else the tag."""
    return str(ref.digest) if ref.digest is not None else ref.tag


def _show(ctx: Context, response: object, out: TextIO | None) -> None:
    """Display a pull's or push's message stream; a stream error exits 1."""
    from portside.cli.progress import StreamError, display_json_messages

    try:
        display_json_messages(response.iter_json(), out)  # type: ignore[attr-defined]
    except StreamError as exc:
        if out is not None:
            out.flush()
        raise ctx.error(exc.message, 1) from None
    finally:
        response.close()  # type: ignore[attr-defined]


def pull_image(ctx: Context, ref: Reference, *, platform: str | None, out: TextIO | None) -> None:
    """Pull ``ref`` (tagged or digested; name-only: every tag), its progress to
    ``out`` (None: discarded). Raises APIError, or StreamError from the stream."""
    from portside.cli.progress import display_json_messages

    response = ctx.client.image_pull(
        ref.name, _api_tag(ref), platform=platform, auth=registry_auth(ctx, ref.domain)
    )
    try:
        display_json_messages(response.iter_json(), out)
    finally:
        response.close()


def _target(ctx: Context, p: Any, *, push: bool = False) -> Reference:
    """The reference of a pull or push: ``-a`` wants a bare name; without it a bare
    name gets ``latest`` (said on stdout unless ``-q``, as docker)."""
    ref = _parse(ctx, p.args[0])
    name_only = ref.tag is None and ref.digest is None
    if p.all_tags and not name_only:
        raise ctx.error(ALL_TAGS_CONFLICT, 1)
    if push and ref.digest is not None:
        raise ctx.error("cannot push a digest reference", 1)
    if not p.all_tags and name_only:
        ref = ref.with_default_tag()
        if not p.quiet:
            ctx.out.write(f"Using default tag: {ref.tag}\n")
            ctx.out.flush()
    return ref


PULL_OPTS = [
    Opt("a|all-tags", "bool", "Download all tagged images in the repository"),
    Opt("disable-content-trust", "bool", "Skip image verification (ignored)", default=True),
    Opt("platform", "str", "Set platform if server is multi-platform capable"),
    Opt("q|quiet", "bool", "Suppress verbose output"),
]


def pull(ctx: Context, argv: list[str]) -> int:
    """``portside pull [-a] [--platform P] [-q] NAME[:TAG|@DIGEST]``."""
    p = ctx.parse(PULL_OPTS, argv, min_args=1, max_args=1)
    ref = _target(ctx, p)
    response = ctx.client.image_pull(
        ref.name, _api_tag(ref), platform=p.platform, auth=registry_auth(ctx, ref.domain)
    )
    _show(ctx, response, None if p.quiet else ctx.out)
    ctx.out.write(f"{ref}\n")
    return 0


PUSH_OPTS = [
    Opt("a|all-tags", "bool", "Push all tags of an image to the repository"),
    Opt("disable-content-trust", "bool", "Skip image signing (ignored)", default=True),
    Opt("platform", "str", "Push a platform-specific manifest (not supported)"),
    Opt("q|quiet", "bool", "Suppress verbose output"),
]


def push(ctx: Context, argv: list[str]) -> int:
    """``portside push [-a] [-q] NAME[:TAG]``."""
    p = ctx.parse(PUSH_OPTS, argv, min_args=1, max_args=1)
    ref = _target(ctx, p, push=True)
    response = ctx.client.image_push(ref.name, ref.tag, auth=registry_auth(ctx, ref.domain))
    _show(ctx, response, None if p.quiet else ctx.out)
    if p.quiet:
        ctx.out.write(f"{ref}\n")
    return 0


# --- login, logout --------------------------------------------------------------------------

LOGIN_OPTS = [
    Opt("p|password", "str", "Password or Personal Access Token (PAT)"),
    Opt("password-stdin", "bool", "Take the Password or Personal Access Token (PAT) from stdin"),
    Opt("u|username", "str", "Username"),
]


def _login_server(arg: str) -> str:
    """docker's: no server, or ``docker.io``, is Docker Hub's index server."""
    from portside.distribution.credentials import INDEX_SERVER

    return arg if arg and arg != "docker.io" else INDEX_SERVER


def _read_password_stdin(ctx: Context, username: str | None) -> str:
    if not username:
        raise ctx.error("Must provide --username with --password-stdin", 1)
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


def login(ctx: Context, argv: list[str]) -> int:
    """``portside login [-u U] [-p P | --password-stdin] [SERVER]``: check the
    credentials through the daemon (``POST /auth``), then store them."""
    from portside.distribution.config import AuthConfig

    p = ctx.parse(LOGIN_OPTS, argv, max_args=1)
    password = p.password or ""
    if p.password:
        ctx.err.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
        if p.password_stdin:
            raise ctx.error("--password and --password-stdin are mutually exclusive", 1)
    if p.password_stdin:
        password = _read_password_stdin(ctx, p.username)
    server = _login_server(p.args[0] if p.args else "")
    store = credential_store(ctx)
    stored = AuthConfig()
    if not p.username and not password:
        stored = store.get(server)
        if stored.username and stored.password:
            answer = _login_stored(ctx, store, server, stored)
            if answer is not None:
                ctx.out.write(f"{answer.get('Status') or 'Login Succeeded'}\n")
                return 0
    username, password = _prompt(ctx, p.username or "", password, stored.username)
    answer = ctx.client.login(username, password, server)
    _store(ctx, store, server, AuthConfig(username=username, password=password), answer)
    ctx.out.write(f"{answer.get('Status') or 'Login Succeeded'}\n")
    return 0


def _login_stored(
    ctx: Context, store: CredentialStore, server: str, stored: AuthConfig
) -> dict | None:
    """Try the stored credentials; None when the daemon refused them."""
    from portside.client.http import APIError

    user = stored.username
    ctx.err.write(f"Authenticating with existing credentials... [Username: {user}]\n")
    try:
        answer = ctx.client.login(user, stored.password, server)
    except APIError as exc:
        if exc.status == 401:
            ctx.err.write("Stored credentials invalid or expired\n")
        else:
            ctx.err.write(f"Login did not succeed, error: Error response from daemon: {exc}\n")
        return None
    _store(ctx, store, server, stored, answer)
    return answer


def _prompt(ctx: Context, username: str, password: str, default_user: str) -> tuple[str, str]:
    """docker's PromptUserForCredentials: ask for what the flags did not give
    (only on a terminal)."""
    username, password = username.strip(), password.strip()
    if username and password:
        return username, password
    if not sys.stdin.isatty():
        raise ctx.error("Error: Cannot perform an interactive login from a non TTY device", 1)
    if not username:
        prompt = f"Username ({default_user}): " if default_user else "Username: "
        ctx.out.write(prompt)
        ctx.out.flush()
        username = (sys.stdin.readline().strip()) or default_user
        if not username:
            raise ctx.error("Error: Non-null Username Required", 1)
    if not password:
        import getpass

        password = getpass.getpass("Password: ").strip()
        if not password:
            raise ctx.error("Error: Password Required", 1)
    return username, password


def _store(
    ctx: Context, store: CredentialStore, server: str, auth: AuthConfig, answer: dict
) -> None:
    """Keep the credentials that worked (an identity token instead of the password
    when the registry gave one); warn when they land in a plain file."""
    from dataclasses import replace

    from portside.distribution.credentials import config_key, load_config
    from portside.errors import PortsideError

    token = str(answer.get("IdentityToken") or "")
    if token:
        auth = replace(auth, password="", identity_token=token)
    auth = replace(auth, server=server)
    try:
        store.store(server, auth)
    except PortsideError as exc:
        raise ctx.error(f"Error saving credentials: {exc}", 1) from None
    doc = load_config(store.path)
    helpers = doc.get("credHelpers") or {}
    if not doc.get("credsStore") and not helpers.get(config_key(server)):
        ctx.err.write(UNENCRYPTED_WARNING.format(path=store.path))


def logout(ctx: Context, argv: list[str]) -> int:
    """``portside logout [SERVER]``: forget the stored credentials of a registry
    (Docker Hub's by default)."""
    from portside.distribution.credentials import INDEX_SERVER
    from portside.errors import PortsideError

    p = ctx.parse([], argv, max_args=1)
    server = p.args[0] if p.args else ""
    shown = INDEX_SERVER
    if server:
        shown = server.removeprefix("https://").removeprefix("http://").partition("/")[0]
    ctx.out.write(f"Removing login credentials for {shown}\n")
    try:
        credential_store(ctx).erase(server or INDEX_SERVER)
    except PortsideError as exc:
        ctx.err.write(f"WARNING: could not erase credentials:\n{shown}: {exc}\n")
    return 0
