#!/usr/bin/env bash
# The test command: install what is needed, then run lint, types and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
OCS_WITH_INTEROP=1 ./scripts/bootstrap.sh
.venv/bin/ruff check ocs tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -p no:cacheprovider "$@"
