#!/usr/bin/env bash
# Sets up .venv from the lock file, then runs the static checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy keyless_gitops flows tasks blocks sandbox
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
