"""Fixtures that ship with Portside: busybox root filesystems and OCI bundles.

For Portside's own tests and benchmarks, and for anyone testing against Portside.
"""

from portside.testing.bundle import clone_rootfs, make_bundle, unique_id
from portside.testing.busybox import BusyboxUnavailable, busybox_available, make_busybox_rootfs

__all__ = [
    "BusyboxUnavailable",
    "busybox_available",
    "clone_rootfs",
    "make_bundle",
    "make_busybox_rootfs",
    "unique_id",
]
