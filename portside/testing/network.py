"""Networking for tests: a unique default bridge per engine or daemon, and the cleanup
that removes every bridge and the nftables table it made, even after a failure."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid

__all__ = ["remove_networks", "unique_bridge"]


def unique_bridge() -> str:
    """A bridge name of a test's own: ``pst`` + 8 hex (never a real ``portside0``)."""
    return "pst" + uuid.uuid4().hex[:8]


def _bridges_in(data_root: str) -> list[str]:
    """The bridges the engine DB under ``data_root`` records."""
    path = os.path.join(data_root, "engine.db")
    if not os.path.exists(path):
        return []
    try:
        db = sqlite3.connect(path, timeout=5)
        try:
            rows = db.execute("SELECT doc FROM networks").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    found = []
    for (doc,) in rows:
        with contextlib.suppress(ValueError, TypeError):
            bridge = json.loads(doc).get("bridge")
            if bridge:
                found.append(str(bridge))
    return found


def remove_networks(data_root: str, bridge: str, table: str) -> None:
    """Delete the bridges of the engine at ``data_root`` (its DB's and ``bridge``) and
    its nftables ``table``; what is already gone is fine."""
    from portside.network import netlink, nft

    for name in {bridge, *_bridges_in(data_root)}:
        with contextlib.suppress(Exception):
            netlink.delete_link(name)
    with contextlib.suppress(Exception):
        nft.delete_table(table)
