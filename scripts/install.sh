#!/bin/sh
# Install everything Portside needs on a Debian 12 machine (run as root):
# the apt packages, then a virtualenv in .venv with Portside and its dev tools.
#   --peers  also install the peers the tests drive (podman, containerd, runc, crun, skopeo)
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# docker-registry (distribution 2.8): the registry the pull/push tests and benchmarks start
# on their own ports (portside.testing.registry); the service its package enables is not used.
# postgresql: the registry server's tests start a throwaway cluster of their own
# (portside.testing.registryserver) to run two instances on one metadata store;
# chromium + chromium-driver: the registry web UI's browser test (headless, via selenium)
base="python3 python3-venv python3-pip busybox-static libseccomp2 uidmap iproute2 procps
  nftables ca-certificates tini tmux debootstrap docker-registry postgresql
  chromium chromium-driver"
# the peer engines come with their recommended packages (network and init helpers)
peers="podman containerd runc crun conmon skopeo"

missing() {
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

updated=""
install() {  # install [apt flags] -- packages...
    flags=""
    while [ "$1" != "--" ]; do flags="$flags $1"; shift; done
    shift
    [ $# -gt 0 ] || return 0
    [ -n "$updated" ] || { apt-get update -qq; updated=1; }
    # shellcheck disable=SC2086
    apt-get install -y -qq $flags "$@" >/dev/null
}

# shellcheck disable=SC2086
install --no-install-recommends -- $(missing $base)
if [ "${1:-}" = "--peers" ]; then
    # shellcheck disable=SC2086
    install -- $(missing $peers)
fi
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# lean launchers for the runtime and the CLI (python -I -S): see portside/runtime/launcher.py
.venv/bin/python -m portside.runtime.launcher .venv/bin/portside-runtime
.venv/bin/python -m portside.runtime.launcher .venv/bin/portside portside.cli.main
