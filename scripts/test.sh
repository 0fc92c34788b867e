#!/bin/sh
# Install everything (including the peer engines the integration tests drive),
# lint, and run the whole test suite as root.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh --peers
.venv/bin/ruff check portside tests bench
.venv/bin/ruff format --check portside tests bench
exec .venv/bin/python -m pytest -q "$@"
