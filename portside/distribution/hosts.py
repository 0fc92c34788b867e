"""Where and how a registry is reached, as dockerd decides it (moby ``registry/``):
the endpoints to try for a domain (Docker Hub's mirrors, https, the plain-http fallback
of an insecure registry), which hosts are insecure, and the TLS settings of each host
from a certs.d directory (``HOST[:PORT]/*.crt`` CAs, ``*.cert`` + ``*.key`` client pair).

No DNS here: a host is matched against insecure CIDRs only when it is an IP literal;
loopback addresses and ``localhost`` are always insecure-allowed, as dockerd's default
``127.0.0.0/8`` and ``::1/128``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from portside.distribution.config import RegistryConfig
from portside.distribution.credentials import DOCKER_HUB, HUB_ALIASES, INDEX_SERVER
from portside.errors import InvalidArgument
from portside.text import is_number

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_HOST",
    "INDEX_SERVER",
    "LOOPBACK_CIDRS",
    "Endpoint",
    "certs_path",
    "endpoints",
    "insecure_cidrs",
    "insecure_hosts",
    "is_insecure",
    "registry_host",
    "ssl_context",
    "validate_config",
    "validate_mirror",
]

DOCKER_HUB_HOST = "registry-1.docker.io"
#: always insecure-allowed, shown in ``docker info`` as InsecureRegistryCIDRs
LOOPBACK_CIDRS = ("::1/128", "127.0.0.0/8")

_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*",
    re.ASCII,
)
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Endpoint:
    """One place to reach a registry's ``/v2/`` API."""

    #: ``host[:port]`` as put in URLs (``registry-1.docker.io``, ``127.0.0.1:5000``)
    host: str
    #: ``https`` or ``http``
    scheme: str
    #: a registry mirror (pull only, Docker Hub only)
    mirror: bool = False
    #: certificate not checked; plain http allowed as a fallback
    insecure: bool = False
    #: a mirror URL's path, without the final ``/`` (``https://m.example/prefix``)
    path_prefix: str = ""

    @property
    def base(self) -> str:
        """``scheme://host[/prefix]``, for messages."""
        return f"{self.scheme}://{self.host}{self.path_prefix}"

    def url(self, path: str) -> str:
        """The URL of ``path`` (``/v2/...``) on this endpoint."""
        if not path.startswith("/"):
            raise InvalidArgument(f"registry path {path!r} must start with /")
        return f"{self.scheme}://{self.host}{self.path_prefix}{path}"


def registry_host(domain: str) -> str:
    """The host serving ``domain``'s API: ``docker.io`` is ``registry-1.docker.io``."""
    return DOCKER_HUB_HOST if domain.lower() in HUB_ALIASES else domain


def _split_host_port(host: str) -> tuple[str, str]:
    """``("::1", "5000")`` from ``[::1]:5000``, ``("h", "")`` from ``h``; a bare IPv6
    address is a host without port. ValueError when brackets are unbalanced."""
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed host {host!r}")
        return name, rest[1:]
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, port
    return host, ""


def _ip(hostname: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(hostname)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _valid_host_port(value: str) -> bool:
    """``host[:port]`` as moby's ``validateHostPort``: a domain name or an IP literal,
    and a port in 0..65535."""
    try:
        hostname, port = _split_host_port(value)
    except ValueError:
        return False
    if port and not (is_number(port) and int(port) <= 65535):
        return False
    if value.startswith("[") and _ip(hostname) is None:
        return False
    return _HOSTNAME_RE.fullmatch(hostname) is not None or _ip(hostname) is not None


@dataclass(frozen=True)
class _Insecure:
    names: frozenset[str]
    networks: tuple[_Network, ...]


@functools.lru_cache(maxsize=16)
def _insecure(entries: tuple[str, ...]) -> _Insecure:
    """Parse ``insecure-registries`` as dockerd does: a CIDR, or ``host[:port]`` (an
    ``http://`` or ``https://`` prefix is dropped)."""
    names: set[str] = set()
    networks: list[_Network] = []
    for entry in entries:
        value = entry.strip()
        lower = value.lower()
        for scheme in ("http://", "https://"):
            if lower.startswith(scheme):
                value = value[len(scheme) :].rstrip("/")
                break
        else:
            if "://" in value:
                raise InvalidArgument(f"insecure registry {entry} should not contain '://'")
        if value.startswith("-") or value.endswith("-"):
            raise InvalidArgument(
                f"invalid index name ({entry}): cannot begin or end with a hyphen"
            )
        if "/" in value:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError as exc:
                raise InvalidArgument(f"insecure registry {entry} is not valid: {exc}") from exc
        elif _valid_host_port(value):
            names.add(value.lower())
        else:
            raise InvalidArgument(f"insecure registry {entry} is not valid: invalid host")
    return _Insecure(frozenset(names), tuple(networks))


def is_insecure(host: str, cfg: RegistryConfig) -> bool:
    """Whether ``host`` (``host[:port]``) may be reached without certificate checks and
    over plain http: listed in ``cfg.insecure``, an IP literal inside a listed CIDR, or
    loopback (``127.0.0.0/8``, ``::1``, ``localhost``). Docker Hub never is. Names other
    than ``localhost`` are not resolved."""
    name = host.strip().lower()
    if name in HUB_ALIASES:
        return False
    insecure = _insecure(cfg.insecure)
    if name in insecure.names:
        return True
    try:
        hostname, _ = _split_host_port(name)
    except ValueError:
        return False
    if hostname == "localhost":
        return True
    ip = _ip(hostname)
    if ip is None:
        return False
    return ip.is_loopback or any(ip in net for net in insecure.networks)


def insecure_cidrs(cfg: RegistryConfig) -> list[str]:
    """The CIDRs treated as insecure, loopback first (``docker info``'s
    ``InsecureRegistryCIDRs``)."""
    listed = [str(net) for net in _insecure(cfg.insecure).networks]
    return list(LOOPBACK_CIDRS) + [c for c in listed if c not in LOOPBACK_CIDRS]


def insecure_hosts(cfg: RegistryConfig) -> list[str]:
    """The ``host[:port]`` names listed as insecure, in order (``IndexConfigs``)."""
    names = _insecure(cfg.insecure).names
    out: list[str] = []
    for entry in cfg.insecure:
        value = entry.strip().lower().removeprefix("http://").removeprefix("https://")
        value = value.rstrip("/")
        if value in names and value not in out:
            out.append(value)
    return out


def validate_mirror(url: str) -> str:
    """Check a ``registry-mirrors`` URL as moby's ``ValidateMirror``: http or https,
    a host, no credentials, no query or fragment. Returns it normalised with one
    final ``/`` (as ``docker info`` shows mirrors)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError when not a number in 0..65535
    except ValueError as exc:
        raise InvalidArgument(f"invalid mirror: {url!r} is not a valid URI: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror: unsupported scheme {parts.scheme!r} in {url!r}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidArgument(f"invalid mirror: query or fragment at end of the URI {url!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("invalid mirror: username/password not allowed in URI")
    hostname = parts.hostname or ""
    if port == 0 or not (_HOSTNAME_RE.fullmatch(hostname) or _ip(hostname)):
        raise InvalidArgument(f"invalid mirror: invalid host in {url!r}")
    return url.strip().rstrip("/") + "/"


@functools.lru_cache(maxsize=16)
def _mirror_endpoints(mirrors: tuple[str, ...], insecure: tuple[str, ...]) -> tuple[Endpoint, ...]:
    cfg = RegistryConfig(insecure=insecure)
    out = []
    for mirror in mirrors:
        parts = urlsplit(validate_mirror(mirror))
        host = parts.netloc.lower()
        out.append(
            Endpoint(
                host,
                parts.scheme.lower(),
                mirror=True,
                insecure=is_insecure(host, cfg),
                path_prefix=parts.path.rstrip("/"),
            )
        )
    return tuple(out)


def endpoints(domain: str, cfg: RegistryConfig, *, push: bool = False) -> list[Endpoint]:
    """The endpoints to try, in order, for a registry ``domain`` (``Reference.domain``).

    Docker Hub: each mirror (pull only), then ``https://registry-1.docker.io``. Other
    registries: ``https``; an insecure one then also plain ``http``, as dockerd."""
    if domain.lower() in HUB_ALIASES:
        mirrors = [] if push else list(_mirror_endpoints(cfg.mirrors, cfg.insecure))
        return [*mirrors, Endpoint(DOCKER_HUB_HOST, "https")]
    if not _valid_host_port(domain):
        raise InvalidArgument(f"invalid registry host {domain!r}")
    if is_insecure(domain, cfg):
        return [Endpoint(domain, "https", insecure=True), Endpoint(domain, "http", insecure=True)]
    return [Endpoint(domain, "https")]


def validate_config(cfg: RegistryConfig) -> None:
    """What the daemon checks at start: every mirror URL, every insecure entry
    (CIDR or ``host[:port]``), the limits; InvalidArgument naming the bad value."""
    for mirror in cfg.mirrors:
        validate_mirror(mirror)
    _insecure(cfg.insecure)
    limits = {
        "max concurrent downloads": cfg.max_concurrent_downloads,
        "max concurrent uploads": cfg.max_concurrent_uploads,
        "max download attempts": cfg.max_download_attempts,
    }
    for what, value in limits.items():
        if not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"invalid {what}: {value!r} (must be at least 1)")
    if not cfg.certs_dir:
        raise InvalidArgument("registry certs directory must not be empty")


# --- TLS ----------------------------------------------------------------------------------


def certs_path(host: str, cfg: RegistryConfig) -> str:
    """``host``'s directory in the certs.d (``/etc/portside/certs.d/HOST:PORT``)."""
    if not host or "/" in host or "\0" in host or host in (".", ".."):
        raise InvalidArgument(f"invalid registry host {host!r}")
    return os.path.join(cfg.certs_dir, host)


_Files = tuple[tuple[str, int, int], ...]
_contexts_lock = threading.Lock()
_contexts: dict[tuple[str, bool], tuple[_Files, ssl.SSLContext]] = {}


def _scan(directory: str) -> _Files:
    """The certificate files of ``directory`` with their mtime and size, sorted;
    ``()`` when it does not exist."""
    out = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.endswith((".crt", ".cert", ".key")):
                    st = entry.stat()
                    out.append((entry.name, st.st_mtime_ns, st.st_size))
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as exc:
        raise InvalidArgument(
            f"cannot read certificates directory {directory}: {exc.strerror or exc}"
        ) from exc
    return tuple(sorted(out))


def ssl_context(host: str, cfg: RegistryConfig, *, verify: bool = True) -> ssl.SSLContext:
    """The TLS client context for ``host``: the system's trust plus every
    ``certs_dir/HOST/*.crt`` as a CA, and the client pair ``X.cert`` + ``X.key`` (the
    first by name when there are several). ``verify=False`` checks no certificate.

    Cached per (directory, verify) and rebuilt when a file there changes, so a CA
    added after a failed pull is used by the next one without a daemon restart."""
    directory = certs_path(host, cfg)
    files = _scan(directory)
    key = (directory, verify)
    with _contexts_lock:
        cached = _contexts.get(key)
    if cached is not None and cached[0] == files:
        return cached[1]
    ctx = _build_context(directory, [name for name, _, _ in files], verify)
    with _contexts_lock:
        _contexts[key] = (files, ctx)
    return ctx


def _build_context(directory: str, names: list[str], verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    present = set(names)
    pairs = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".crt") and verify:
            try:
                ctx.load_verify_locations(cafile=path)
            except OSError as exc:
                raise InvalidArgument(f"invalid CA certificate {path}: {exc}") from exc
        elif name.endswith(".cert"):
            key = os.path.join(directory, name[: -len(".cert")] + ".key")
            if os.path.basename(key) not in present:
                raise InvalidArgument(
                    f"missing key {key} for client certificate {path} "
                    "(CA certificates must use the extension .crt)"
                )
            pairs.append((path, key))
        elif name.endswith(".key"):
            cert = os.path.join(directory, name[: -len(".key")] + ".cert")
            if os.path.basename(cert) not in present:
                raise InvalidArgument(f"missing client certificate {cert} for key {path}")
    if pairs:
        cert, key = pairs[0]
        try:
            ctx.load_cert_chain(cert, key, password=_no_password)
        except (OSError, _EncryptedKey) as exc:
            raise InvalidArgument(f"invalid client certificate {cert} or key {key}: {exc}") from exc
    return ctx


class _EncryptedKey(Exception):
    def __str__(self) -> str:
        return "the key is encrypted (not supported)"


def _no_password() -> bytes:
    """Asked only for an encrypted key: fail instead of prompting on a terminal."""
    raise _EncryptedKey
