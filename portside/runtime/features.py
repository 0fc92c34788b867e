"""``portside-runtime features``: what this runtime supports, in runc's shape."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["features"]


def features() -> dict[str, Any]:
    from portside.linux.caps import known_caps
    from portside.linux.mountopts import FLAGS, PROPAGATION
    from portside.oci.runtime_spec import NAMESPACE_TYPES
    from portside.runtime import cgroups, seccomp
    from portside.runtime.cli import SPEC_VERSION

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ],
        "mountOptions": sorted([*FLAGS, *PROPAGATION]),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": known_caps(),
            "cgroup": cgroups.features(),
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.portside.runtime.version": "0.1.0"},
    }
