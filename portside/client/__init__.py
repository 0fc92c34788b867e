"""A small client of the Docker Engine API (the daemon's), used by the CLI.

Standard library only and cheap to import: the CLI starts a fresh interpreter
per command.
"""

from __future__ import annotations

from portside.client.api import API_VERSION, Client, encode_filters, read_wait
from portside.client.http import (
    DEFAULT_HOST,
    APIError,
    ConnectionFailed,
    Response,
    TLSOptions,
    Transport,
    parse_host,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_HOST",
    "APIError",
    "Client",
    "ConnectionFailed",
    "Response",
    "TLSOptions",
    "Transport",
    "encode_filters",
    "parse_host",
    "read_wait",
]
