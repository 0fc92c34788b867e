"""The registry server's settings: built-in defaults, then a ``--config`` file (JSON,
or TOML when its name ends in ``.toml``), then command-line flags, each overriding
the one before. Keys are the attribute names of :class:`RegistryConfig` (``max_manifest_size``,
``token_ttl``…); an unknown key or a value of the wrong type is an error, not ignored.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from portside.errors import InvalidArgument
from portside.text import is_number

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_ROOT", "RegistryConfig", "build_config", "load_file"]

DEFAULT_ROOT = "/var/lib/portside-registry"


@dataclass(frozen=True)
class RegistryConfig:
    #: where to listen, HOST:PORT (port 0: any free port, logged at start)
    addr: str = "127.0.0.1:5000"
    #: blobs, uploads, keys, and the SQLite database unless ``db`` says otherwise
    root: str = DEFAULT_ROOT
    #: metadata store URL: "" = SQLite in ROOT/registry.db; ``postgresql://…``
    db: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: "token" (accounts and the Docker token flow) or "none" (open, as distribution's default)
    auth: str = "token"
    #: how clients reach this registry ("https://registry.example.com"); "" = from the
    #: address it listens on. Names the token realm and the URLs in webhook events
    external_url: str = ""
    #: the token service name (``service=`` of the challenge, ``aud`` of the tokens)
    service: str = "portside-registry"
    #: the tokens' issuer (``iss``)
    issuer: str = "portside-registry"
    #: seconds a bearer token lives
    token_ttl: int = 300
    #: how tokens are signed: "ES256" (default) or "RS256"; the key is made under ROOT/keys
    token_algorithm: str = "ES256"
    #: the largest manifest accepted (bytes); larger ones get 413
    max_manifest_size: int = 4 << 20
    #: the most entries a tags list or catalog page returns
    max_page: int = 1000
    #: garbage collection never sweeps a blob or manifest younger than this (seconds)
    gc_grace: int = 3600
    #: upload sessions idle this long (seconds) are removed by garbage collection
    upload_ttl: int = 86400
    #: deliver webhooks (when the webhooks module is present)
    webhooks: bool = True
    #: attempts per webhook delivery before it is marked failed
    webhook_attempts: int = 12
    #: seconds before the first retry of a webhook delivery (doubling, up to 10 minutes)
    webhook_backoff: int = 1
    #: seconds a webhook receiver has to answer one attempt
    webhook_timeout: int = 10
    #: "debug", "info", "warning", "error"
    log_level: str = "info"
    #: log every request (aiohttp's access log)
    access_log: bool = False

    @property
    def db_url(self) -> str:
        """The metadata store's URL (SQLite under the root by default)."""
        from portside.registry.db import sqlite_url

        return self.db or sqlite_url(self.root)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def external_host(self) -> str:
        """HOST[:PORT] of :attr:`external_url` ("" when not set)."""
        return self.external_url.partition("://")[2].split("/", 1)[0]

    def listen(self) -> tuple[str, int]:
        """:attr:`addr` as (host, port); "" for all interfaces."""
        host, sep, port = self.addr.rpartition(":")
        if not sep or not is_number(port) or int(port) > 65535:
            raise InvalidArgument(f"invalid --addr {self.addr!r}: want HOST:PORT")
        return host.strip("[]"), int(port)


_FIELDS = {f.name: f for f in dataclasses.fields(RegistryConfig)}
_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool}


def load_file(path: str) -> dict[str, object]:
    """The settings in a JSON or TOML file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.endswith(".toml"):
            import tomllib

            doc: object = tomllib.loads(data.decode())
        else:
            import json

            doc = json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"invalid config file {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid config file {path}: not a table of settings")
    return doc


def _check(key: str, value: object, source: str) -> object:
    spec = _FIELDS.get(key.replace("-", "_"))
    if spec is None:
        raise InvalidArgument(f"unknown registry setting {key!r} in {source}")
    want = _TYPES[str(spec.type)]
    if want is int and isinstance(value, bool):
        raise InvalidArgument(f"setting {key} in {source}: want an integer, got {value!r}")
    if not isinstance(value, want):
        raise InvalidArgument(f"setting {key} in {source}: want {want.__name__}, got {value!r}")
    return value


def build_config(
    flags: Mapping[str, object] | None = None, file: str | None = None
) -> RegistryConfig:
    """Defaults < ``file`` < ``flags`` (None values in ``flags`` are not given)."""
    values: dict[str, object] = {}
    if file:
        for key, value in load_file(file).items():
            values[key.replace("-", "_")] = _check(key, value, file)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key.replace("-", "_")] = _check(key, value, "flags")
    config = RegistryConfig(**values)  # type: ignore[arg-type]
    return _validate(config)


def _validate(config: RegistryConfig) -> RegistryConfig:
    if config.auth not in ("token", "none"):
        raise InvalidArgument(f"invalid auth mode {config.auth!r}: want token or none")
    if config.token_algorithm not in ("ES256", "RS256"):
        raise InvalidArgument(
            f"invalid token_algorithm {config.token_algorithm!r}: want ES256 or RS256"
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    if config.max_manifest_size < 4 << 20:
        raise InvalidArgument(
            f"max_manifest_size {config.max_manifest_size} is below 4 MiB, the spec's minimum"
        )
    for key in ("token_ttl", "max_page", "gc_grace", "upload_ttl"):
        if getattr(config, key) < (60 if key == "token_ttl" else 0):
            raise InvalidArgument(f"setting {key} is out of range: {getattr(config, key)}")
    for key in ("max_page", "webhook_attempts", "webhook_backoff", "webhook_timeout"):
        if getattr(config, key) < 1:
            raise InvalidArgument(f"setting {key} must be at least 1: {getattr(config, key)}")
    if config.external_url and not config.external_url.startswith(("http://", "https://")):
        raise InvalidArgument(f"invalid external_url {config.external_url!r}: want http(s)://…")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise InvalidArgument(f"invalid log_level {config.log_level!r}")
    config.listen()
    return dataclasses.replace(
        config,
        root=os.path.abspath(config.root),
        external_url=config.external_url.rstrip("/"),
    )
