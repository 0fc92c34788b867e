#!/bin/sh
# The main job: install, build a busybox root filesystem from Debian's busybox-static,
# make an OCI bundle of it, and run a container with portside-runtime.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
exec .venv/bin/python -m portside.testing.demo "$@"
