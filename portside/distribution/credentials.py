"""Registry credentials as Docker keeps them: ``config.json`` (``auths``, ``credsStore``,
``credHelpers``), the ``docker-credential-*`` helper protocol, and the API's
``X-Registry-Auth`` header.

Standard library only and cheap to import: the CLI imports this module inside its
login, logout, pull and push commands (``subprocess`` is imported only when a helper
runs). :class:`CredentialStore` reads Portside's file (``~/.portside/config.json``)
first, then Docker's (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), and
writes only Portside's.
"""

from __future__ import annotations

import binascii
import json
import os

from portside.distribution.config import AuthConfig
from portside.errors import Internal, InvalidArgument, PermissionDenied, Unavailable

__all__ = [
    "DOCKER_CONFIG_PATH",
    "DOCKER_HUB",
    "HUB_ALIASES",
    "INDEX_SERVER",
    "CredentialHelperError",
    "CredentialStore",
    "config_key",
    "decode_registry_auth",
    "default_config_path",
    "encode_registry_auth",
    "helper_erase",
    "helper_get",
    "helper_store",
    "load_config",
    "server_domain",
    "write_config",
]

DOCKER_HUB = "docker.io"
#: the key of Docker Hub's credentials in config.json and for credential helpers
INDEX_SERVER = "https://index.docker.io/v1/"
#: the default fallback: Docker's file (``$DOCKER_CONFIG/config.json`` when that is set)
DOCKER_CONFIG_PATH = "~/.docker/config.json"
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: what a helper prints (with a non-zero exit) when it has nothing for that server
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
#: a helper's Username meaning that Secret is an identity token
TOKEN_USERNAME = "<token>"
# the keys of a config.json entry that hold a secret (replaced on store)
_SECRET_KEYS = frozenset({"auth", "username", "password", "identitytoken", "registrytoken"})
# X-Registry-Auth field (lowercased, Go decodes JSON keys case-insensitively) -> attribute
_HEADER_FIELDS = {
    "username": "username",
    "password": "password",
    "identitytoken": "identity_token",
    "registrytoken": "registry_token",
    "serveraddress": "server",
}
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class CredentialHelperError(Unavailable):
    """A ``docker-credential-*`` program is missing, failed, or printed nonsense."""


# --- names -------------------------------------------------------------------------------


def server_domain(server: str) -> str:
    """The registry domain a login server names, as ``docker login`` reads it:
    ``https://index.docker.io/v1/`` and ``""`` are ``docker.io``, ``http://h:5000/x``
    is ``h:5000`` (docker/cli's ``ConvertToHostname``)."""
    stripped = server.strip()
    for scheme in ("http://", "https://"):
        if stripped[: len(scheme)].lower() == scheme:
            stripped = stripped[len(scheme) :]
            break
    host = stripped.partition("/")[0]
    if not host or host.lower() in HUB_ALIASES:
        return DOCKER_HUB
    return host


def config_key(domain: str) -> str:
    """The key of ``domain``'s entry in config.json: Docker Hub's is
    ``https://index.docker.io/v1/``, any other registry's its ``host[:port]``."""
    domain = server_domain(domain)
    return INDEX_SERVER if domain == DOCKER_HUB else domain


def default_config_path() -> str:
    """``$PORTSIDE_CONFIG/config.json``, else ``~/.portside/config.json``."""
    directory = os.environ.get("PORTSIDE_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".portside"
    )
    return os.path.join(directory, "config.json")


def _docker_config_path() -> str:
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return os.path.join(directory, "config.json")
    return os.path.expanduser(DOCKER_CONFIG_PATH)


# --- base64 -----------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; ValueError on anything else."""
    if not text.isascii():
        raise ValueError("not base64")
    data = text.strip().encode("ascii").translate(_URLSAFE).rstrip(b"=")
    if len(data) % 4 == 1 or not _B64_ALPHABET.issuperset(data):
        raise ValueError("not base64")
    data += b"=" * (-len(data) % 4)
    return binascii.a2b_base64(data, strict_mode=True)


def _b64encode(data: bytes, *, urlsafe: bool = False) -> str:
    out = binascii.b2a_base64(data, newline=False).decode("ascii")
    return out.replace("+", "-").replace("/", "_") if urlsafe else out


def _split_auth(value: str) -> tuple[str, str]:
    """``auth`` fields: base64 of ``user:password``; ValueError when malformed."""
    user, sep, password = _b64decode(value).decode("utf-8").partition(":")
    if not sep:
        raise ValueError("no ':' between username and password")
    return user, password


# --- X-Registry-Auth ----------------------------------------------------------------------


def decode_registry_auth(header: str | None) -> AuthConfig:
    """Docker's ``X-Registry-Auth``: base64url of a JSON AuthConfig. ``None``, ``""``,
    ``{}`` and ``null`` are anonymous; a field ``auth`` (base64 ``user:pw``) is used
    when username and password are absent. Garbage raises InvalidArgument (whose
    message never repeats the header: it carries a password)."""
    if header is None or not header.strip():
        return AuthConfig()
    try:
        doc = json.loads(_b64decode(header).decode("utf-8"))
    except (ValueError, UnicodeError) as exc:
        raise InvalidArgument(f"invalid X-Registry-Auth header: {_reason(exc)}") from exc
    if doc is None:
        return AuthConfig()
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    fields: dict[str, str] = {}
    basic = ""
    for key, value in doc.items():
        name = key.lower()
        if name not in _HEADER_FIELDS and name != "auth":
            continue  # email and the like
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidArgument(f"invalid X-Registry-Auth header: {key} is not a string")
        if name == "auth":
            basic = value
        else:
            fields[_HEADER_FIELDS[name]] = value
    if basic and not (fields.get("username") or fields.get("password")):
        try:
            fields["username"], fields["password"] = _split_auth(basic)
        except (ValueError, UnicodeError) as exc:
            raise InvalidArgument(f"invalid X-Registry-Auth header: auth: {_reason(exc)}") from exc
    return AuthConfig(**fields)


def encode_registry_auth(auth: AuthConfig) -> str:
    """The ``X-Registry-Auth`` value for ``auth`` (base64url, padded, empty fields
    left out, as the docker CLI sends it); anonymous is ``e30=`` (``{}``)."""
    doc = {key: getattr(auth, attr) for key, attr in _HEADER_FIELDS.items() if getattr(auth, attr)}
    return _b64encode(json.dumps(doc, separators=(",", ":")).encode("utf-8"), urlsafe=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"bad JSON: {exc.msg}"
    if isinstance(exc, UnicodeError):
        return "not UTF-8"
    return "not base64"


# --- config.json --------------------------------------------------------------------------


def load_config(path: str) -> dict:
    """A config.json as a dict; a missing file is ``{}``. InvalidArgument naming
    ``path`` when it is not JSON of the right shape."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except PermissionError as exc:
        raise PermissionDenied(f"cannot read {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise Internal(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeError) as exc:
        raise InvalidArgument(f"invalid credentials file {path}: {_reason(exc)}") from exc
    _check_shape(doc, path)
    return doc


def _check_shape(doc: object, path: str) -> None:
    def bad(what: str) -> InvalidArgument:
        return InvalidArgument(f"invalid credentials file {path}: {what}")

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    auths = doc.get("auths")
    if auths is not None:
        if not isinstance(auths, dict):
            raise bad("auths is not an object")
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise bad(f"auths[{key!r}] is not an object")
    helpers = doc.get("credHelpers")
    if helpers is not None and not (
        isinstance(helpers, dict) and all(isinstance(v, str) for v in helpers.values())
    ):
        raise bad("credHelpers is not an object of strings")
    if not isinstance(doc.get("credsStore", ""), str):
        raise bad("credsStore is not a string")


def _entry_auth(entry: dict, path: str, key: str) -> AuthConfig:
    """The credentials of one ``auths`` entry (``auth`` or legacy username/password)."""

    def text(name: str) -> str:
        value = entry.get(name)
        return value if isinstance(value, str) else ""

    username, password = text("username"), text("password")
    if text("auth"):
        try:
            username, password = _split_auth(text("auth"))
        except (ValueError, UnicodeError) as exc:
            raise InvalidArgument(
                f"invalid credentials file {path}: auths[{key!r}].auth: {_reason(exc)}"
            ) from exc
    return AuthConfig(
        username=username,
        password=password,
        identity_token=text("identitytoken"),
        registry_token=text("registrytoken"),
        server=key,
    )


def _matching_keys(auths: dict, domain: str, key: str) -> list[str]:
    """The ``auths`` keys naming ``domain``: its own key first, then legacy spellings
    (``https://host``, ``host/v1/``...), as docker/cli's file store looks them up."""
    keys = [key] if key in auths else []
    return keys + [k for k in auths if k != key and server_domain(k) == domain]


def _helper_for(doc: dict, domain: str, key: str) -> str:
    """The helper configured for this registry: ``credHelpers`` then ``credsStore``."""
    helpers = doc.get("credHelpers") or {}
    for name in (key, domain):
        if helpers.get(name):
            return helpers[name]
    return doc.get("credsStore") or ""


def write_config(path: str, doc: dict) -> None:
    """Write ``doc`` to ``path`` atomically (temp file, fsync, rename, fsync of the
    directory), mode 0600, the directory created 0700. A symlinked file is written
    through to its target, as docker/cli does."""
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    data = json.dumps(doc, indent="\t").encode("utf-8") + b"\n"
    tmp = f"{real}.tmp{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cls = PermissionDenied if isinstance(exc, PermissionError) else Internal
        raise cls(f"cannot write {path}: {exc.strerror or exc}") from exc


# --- credential helpers -------------------------------------------------------------------


def _run_helper(helper: str, action: str, data: bytes, origin: str) -> tuple[int, str]:
    """Run ``docker-credential-HELPER ACTION`` with ``data`` on stdin; returns the exit
    status and what it printed (helpers print their errors on stdout)."""
    program = f"docker-credential-{helper}"
    if "/" in helper or not helper.strip():
        raise InvalidArgument(f"invalid credential helper name {helper!r} in {origin}")
    import subprocess

    try:
        proc = subprocess.run([program, action], input=data, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise CredentialHelperError(
            f"credential helper {program} (from {origin}) not found in PATH"
        ) from exc
    except OSError as exc:
        raise CredentialHelperError(
            f"cannot run credential helper {program} (from {origin}): {exc.strerror or exc}"
        ) from exc
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0 and not out:
        out = proc.stderr.decode("utf-8", "replace").strip()
    return proc.returncode, out


def _helper_failed(helper: str, action: str, status: int, out: str) -> CredentialHelperError:
    return CredentialHelperError(
        f"docker-credential-{helper} {action} failed (exit status {status}): {out or 'no output'}"
    )


def helper_get(helper: str, server: str, origin: str = "config") -> AuthConfig:
    """Ask ``docker-credential-HELPER get`` for ``server``; ``AuthConfig()`` when it has
    none. A Username of ``<token>`` means Secret is an identity token."""
    status, out = _run_helper(helper, "get", server.encode("utf-8"), origin)
    if status != 0:
        if NOT_FOUND_MESSAGE in out:
            return AuthConfig()
        raise _helper_failed(helper, "get", status, out)
    try:
        doc = json.loads(out) if out else {}
    except ValueError as exc:
        raise CredentialHelperError(
            f"docker-credential-{helper} get printed invalid JSON: {out[:200]!r}"
        ) from exc
    if not isinstance(doc, dict):
        raise CredentialHelperError(f"docker-credential-{helper} get printed {out[:200]!r}")
    username = doc.get("Username") or ""
    secret = doc.get("Secret") or ""
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialHelperError(f"docker-credential-{helper} get: Username, Secret not strings")
    if not secret:
        return AuthConfig()
    if username == TOKEN_USERNAME:
        return AuthConfig(identity_token=secret, server=server)
    return AuthConfig(username=username, password=secret, server=server)


def helper_store(helper: str, server: str, auth: AuthConfig, origin: str = "config") -> None:
    """``docker-credential-HELPER store`` of ``auth`` for ``server``."""
    if auth.identity_token:
        creds = {"ServerURL": server, "Username": TOKEN_USERNAME, "Secret": auth.identity_token}
    else:
        creds = {"ServerURL": server, "Username": auth.username, "Secret": auth.password}
    status, out = _run_helper(helper, "store", json.dumps(creds).encode("utf-8") + b"\n", origin)
    if status != 0:
        raise _helper_failed(helper, "store", status, out)


def helper_erase(helper: str, server: str, origin: str = "config") -> bool:
    """``docker-credential-HELPER erase``; False when it had nothing for ``server``."""
    status, out = _run_helper(helper, "erase", server.encode("utf-8"), origin)
    if status == 0:
        return True
    if NOT_FOUND_MESSAGE in out:
        return False
    raise _helper_failed(helper, "erase", status, out)


# --- the store ----------------------------------------------------------------------------


class CredentialStore:
    """Credentials by registry, kept as ``docker login`` keeps them.

    ``path`` is Portside's config.json (default :func:`default_config_path`), the only
    file written; ``fallback`` is read after it (Docker's; ``None``: none). Each file's
    ``credHelpers`` / ``credsStore`` apply to the lookups in that file. Methods take a
    registry domain (``docker.io``, ``host:5000``) or a login server address."""

    def __init__(self, path: str | None = None, *, fallback: str | None = DOCKER_CONFIG_PATH):
        self.path = os.path.expanduser(path) if path else default_config_path()
        if fallback == DOCKER_CONFIG_PATH:
            self.fallback: str | None = _docker_config_path()
        else:
            self.fallback = os.path.expanduser(fallback) if fallback else None

    def get(self, domain: str) -> AuthConfig:
        """The credentials for ``domain``, or ``AuthConfig()`` when none are stored."""
        domain = server_domain(domain)
        key = config_key(domain)
        paths = [self.path]
        if self.fallback and os.path.abspath(self.fallback) != os.path.abspath(self.path):
            paths.append(self.fallback)
        for path in paths:
            doc = load_config(path)
            helper = _helper_for(doc, domain, key)
            if helper:
                auth = helper_get(helper, key, origin=path)
            else:
                auths = doc.get("auths") or {}
                keys = _matching_keys(auths, domain, key)
                auth = _entry_auth(auths[keys[0]], path, key) if keys else AuthConfig()
            if not auth.empty:
                return auth
        return AuthConfig()

    def store(self, domain: str, auth: AuthConfig) -> None:
        """Save ``auth`` for ``domain`` in Portside's file, or hand it to the configured
        helper (the file then keeps an empty entry, as Docker's: no secret in it)."""
        domain = server_domain(domain)
        key = config_key(domain)
        doc = load_config(self.path)
        auths = doc.setdefault("auths", {})
        entry = {k: v for k, v in auths.get(key, {}).items() if k not in _SECRET_KEYS}
        helper = _helper_for(doc, domain, key)
        if helper:
            helper_store(helper, key, auth, origin=self.path)
        else:
            if auth.username or auth.password:
                entry["auth"] = _b64encode(f"{auth.username}:{auth.password}".encode())
            if auth.identity_token:
                entry["identitytoken"] = auth.identity_token
            if auth.registry_token:
                entry["registrytoken"] = auth.registry_token
        auths[key] = entry
        write_config(self.path, doc)

    def erase(self, domain: str) -> bool:
        """Forget ``domain``'s credentials in Portside's file and its helper; True when
        there was an entry or the helper had some (``docker logout``'s "logged in").
        Docker's own file is left alone."""
        domain = server_domain(domain)
        key = config_key(domain)
        doc = load_config(self.path)
        auths = doc.get("auths") or {}
        helper = _helper_for(doc, domain, key)
        erased = helper_erase(helper, key, origin=self.path) if helper else False
        keys = _matching_keys(auths, domain, key)
        for k in keys:
            del auths[k]
        if keys:
            write_config(self.path, doc)
        return erased or bool(keys)
