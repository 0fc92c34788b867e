"""OCI bundles for tests and benchmarks: a config.json from :func:`default_spec` and a rootfs."""

from __future__ import annotations

import os
import secrets

from portside.errors import AlreadyExists, Internal, InvalidArgument
from portside.runtime.specgen import default_spec, write_spec
from portside.testing.busybox import make_busybox_rootfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["clone_rootfs", "make_bundle", "unique_id"]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
#: room left for a prefix: interface names are at most 15 bytes (IFNAMSIZ - 1)
_MAX_PREFIX = 7


def unique_id(prefix: str = "t") -> str:
    """A short random ID (``prefix`` + 8 hex digits, at most 15 characters).

    Safe as a container ID, a cgroup name, a hostname label and a network interface
    name. ``prefix`` must be 1-7 lowercase letters or digits, starting with a letter.
    """
    ok = prefix[:1].isalpha() and all(c in _ID_ALPHABET for c in prefix)
    if not ok or len(prefix) > _MAX_PREFIX:
        raise InvalidArgument(f"unique_id: bad prefix {prefix!r} (1-7 of [a-z0-9], a letter first)")
    return prefix + secrets.token_hex(4)


def clone_rootfs(src: str, dest: str) -> str:
    """Copy the tree ``src`` to ``dest`` (must not exist; parents are made), keeping hard links.

    Uses ``cp -a --reflink=auto``: a busybox rootfs (one binary, hundreds of links)
    copies in milliseconds. Returns the absolute path of ``dest``.
    """
    import subprocess

    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise AlreadyExists(f"{dest}: already exists")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--", src, dest], capture_output=True, check=False
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise Internal(f"cp -a {src} {dest} failed: {msg}")
    return dest


def make_bundle(
    dir: str,
    rootfs: str | None = None,
    *,
    args: list[str],
    terminal: bool = False,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Write an OCI bundle in ``dir`` (created if missing) and return its absolute path.

    The config is :func:`default_spec` with ``args``, ``terminal`` and a writable root,
    then edited in place by ``mutate``. Without ``rootfs`` a busybox rootfs is built in
    ``dir/rootfs``; an existing ``rootfs`` is used where it is (relative path when it is
    ``dir/rootfs``, absolute otherwise).
    """
    bundle = os.path.abspath(dir)
    os.makedirs(bundle, exist_ok=True)
    default_root = os.path.join(bundle, "rootfs")
    if rootfs is None:
        rootfs = make_busybox_rootfs(default_root)
    spec = default_spec(terminal=terminal, args=args)
    rootfs = os.path.abspath(rootfs)
    spec["root"] = {"path": "rootfs" if rootfs == default_root else rootfs, "readonly": False}
    if mutate is not None:
        mutate(spec)
    write_spec(bundle, spec)
    return bundle
