#!/bin/sh
# The main job: install, start the Portside daemon, load a busybox image made from
# Debian's busybox-static, and run a container from it with the portside CLI.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
exec .venv/bin/python -m portside.testing.demo "$@"
