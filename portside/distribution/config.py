"""Registry settings of a daemon, and one set of credentials."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_CERTS_DIR", "AuthConfig", "RegistryConfig"]

DEFAULT_CERTS_DIR = "/etc/portside/certs.d"


@dataclass(frozen=True)
class RegistryConfig:
    """dockerd's registry options, as ``portside daemon`` takes them."""

    #: ``registry-mirrors``: URLs (``https://mirror:5000``) tried before docker.io, pull only
    mirrors: tuple[str, ...] = ()
    #: ``insecure-registries``: ``host[:port]`` or CIDRs allowed over plain HTTP (and
    #: without certificate checks); loopback addresses are always allowed
    insecure: tuple[str, ...] = ()
    #: like /etc/docker/certs.d: ``HOST[:PORT]/ca.crt``, ``*.crt``, ``client.cert`` + ``client.key``
    certs_dir: str = DEFAULT_CERTS_DIR
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    max_download_attempts: int = 5


@dataclass(frozen=True)
class AuthConfig:
    """Credentials for one registry, as Docker's AuthConfig (``X-Registry-Auth``)."""

    username: str = ""
    password: str = ""
    #: an OAuth2 refresh token the registry's token server gave at login
    identity_token: str = ""
    #: a bearer token to send as it is
    registry_token: str = ""
    server: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)
