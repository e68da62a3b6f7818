#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, type-check, then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k archive).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGTOOL_VENV:-$PWD/.venv}
bash scripts/setup.sh
"$VENV/bin/ruff" check src tests scripts benchmarks
"$VENV/bin/ruff" format --check src tests scripts benchmarks
# Strict type check of src/ (configuration in pyproject.toml).
"$VENV/bin/mypy"
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/pytest" "$@"
