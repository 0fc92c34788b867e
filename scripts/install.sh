#!/bin/sh
# Install everything Portside needs on a Debian 12 machine (run as root):
# the apt packages, then a virtualenv in .venv with Portside and its dev tools.
#   --peers  also install the engines the peer tests drive (podman, containerd, runc, crun)
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
packages="python3 python3-venv python3-pip busybox-static libseccomp2 uidmap iproute2 procps
  nftables ca-certificates"
if [ "${1:-}" = "--peers" ]; then
    packages="$packages podman containerd runc crun conmon"
fi
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# a lean launcher for the runtime CLI (python -I -S): see portside/runtime/launcher.py
.venv/bin/python -m portside.runtime.launcher .venv/bin/portside-runtime
