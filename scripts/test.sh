#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages, .venv) and runs everything CI runs:
# ruff, mypy, and the whole test suite against real components (swtpm, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
