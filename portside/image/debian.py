"""``debian:bookworm`` (or another suite) made with debootstrap, with no registry.

The rootfs is bootstrapped from the Debian mirror this host's apt already uses
(``/etc/apt/sources.list`` and ``sources.list.d``), apt's caches are emptied as in
Docker's official image, and the tree becomes one gzip layer with a Docker-like
config (``Cmd ["bash"]``, ``Env PATH``). Slow (a minute or more): opt-in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from portside.errors import FailedPrecondition, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portside.image.content import ContentStore
    from portside.image.store import ImageStore
    from portside.image.store_db import Image

__all__ = ["DebootstrapFailed", "apt_mirror", "make_debian_image"]

DEBOOTSTRAP = "debootstrap"
APT_SOURCES = "/etc/apt/sources.list"
#: paths emptied after the bootstrap (their contents only), as the official image does
_CACHES = ("var/cache/apt/archives", "var/lib/apt/lists", "var/cache/debconf", "tmp")
_CACHE_FILES = ("var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin")
_TIMEOUT = 1800


class DebootstrapFailed(Unavailable):
    """debootstrap is missing or failed."""


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of each ``deb`` line of a ``.list`` file."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            rest = words[1:]
            if rest[0].startswith("["):  # options: [arch=amd64 signed-by=…]
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if len(rest) >= 2:
                out.append((rest[0], [rest[1]]))
    return out


def _deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of each enabled ``deb`` stanza of a ``.sources`` file."""
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        suites = fields.get("suites", "").split()
        out.extend((uri, suites) for uri in fields.get("uris", "").split())
    return out


def apt_mirror(suite: str = "bookworm", sources: str = APT_SOURCES) -> str:
    """The mirror URI the host's apt uses for ``suite`` (any Debian one if none lists
    it); FailedPrecondition when apt lists no ``deb`` source at all."""
    found: list[tuple[str, list[str]]] = []
    paths = [sources]
    parts = sources + ".d"
    if os.path.isdir(parts):
        paths += [os.path.join(parts, n) for n in sorted(os.listdir(parts))]
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
        if path.endswith(".sources"):
            found += _deb822_sources(text)
        elif path == sources or path.endswith(".list"):
            found += _one_line_sources(text)
    for uri, suites in found:
        if suite in suites and "security" not in uri:
            return uri.rstrip("/")
    if found:
        return found[0][0].rstrip("/")
    raise FailedPrecondition(f"no deb source in {sources} or {parts}: cannot find a mirror")


def _debootstrap(target: str, suite: str, mirror: str, variant: str) -> None:
    import subprocess

    exe = shutil.which(DEBOOTSTRAP) or shutil.which(DEBOOTSTRAP, path="/usr/sbin:/sbin")
    if exe is None:
        raise DebootstrapFailed(f"{DEBOOTSTRAP}: not found (apt-get install debootstrap)")
    argv = [exe, f"--variant={variant}", suite, target, mirror]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DebootstrapFailed(f"{' '.join(argv)}: timed out after {_TIMEOUT} s") from exc
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-5:]
        raise DebootstrapFailed(
            f"{' '.join(argv)}: exit status {run.returncode}: {' | '.join(tail).lower()}"
        )


def _clean(rootfs: str) -> None:
    """Empty apt's caches and lists, and drop debootstrap's leftovers."""
    for rel in _CACHES:
        top = os.path.join(rootfs, rel)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for name in os.listdir(top):
            path = os.path.join(top, name)
            if os.path.isdir(path) and not os.path.islink(path):
                if name != "partial":
                    shutil.rmtree(path)
                else:
                    for inner in os.listdir(path):
                        os.unlink(os.path.join(path, inner))
            elif name != "lock":
                os.unlink(path)
    for rel in _CACHE_FILES:
        try:
            os.unlink(os.path.join(rootfs, rel))
        except FileNotFoundError:
            pass


def _unmount_below(path: str) -> None:
    """Detach whatever a failed debootstrap left mounted below ``path`` (its /proc,
    /sys or /dev), deepest first, so removing the tree never reaches the host's."""
    import subprocess

    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def make_debian_image(
    content: ContentStore,
    store: ImageStore,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    tag: str = "debian:bookworm",
    variant: str = "minbase",
) -> Image:
    """Bootstrap Debian ``suite`` from ``mirror`` (default: the host's apt mirror,
    :func:`apt_mirror`) and record it as a one-layer image tagged ``tag``. Needs
    root and debootstrap; raises :class:`DebootstrapFailed` when it fails."""
    from portside.image.base import base_config, one_layer_image, rfc3339, store_rootfs_layer

    mirror = mirror or apt_mirror(suite)
    created = rfc3339(time.time())
    history = f"portside: debootstrap --variant={variant} {suite} {mirror}"
    tmp = tempfile.mkdtemp(prefix="portside-debootstrap-")
    try:
        rootfs = os.path.join(tmp, "rootfs")
        _debootstrap(rootfs, suite, mirror, variant)
        _clean(rootfs)
        return one_layer_image(
            content,
            store,
            lambda lease: store_rootfs_layer(content, rootfs, lease, prefix="debian"),
            lambda diff_id: base_config(diff_id, created, ["bash"], history),
            tag,
        )
    finally:
        _unmount_below(tmp)
        shutil.rmtree(tmp)
