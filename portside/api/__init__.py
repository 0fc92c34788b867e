"""The Docker Engine API over Portside's Engine (aiohttp), and ``portside daemon``."""

from __future__ import annotations

from portside.api.server import API_VERSION, MIN_API_VERSION, create_app

__all__ = ["API_VERSION", "MIN_API_VERSION", "create_app"]
