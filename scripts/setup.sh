#!/usr/bin/env bash
# Sets up (or refreshes) the project's virtual environment in .venv from uv.lock.
# Needs only Python 3.11 and access to the package registry. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  # uv itself is pinned in the lock (dev group); this bootstrap pin must match it.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi
UV_PROJECT_ENVIRONMENT=.venv UV_PYTHON_DOWNLOADS=never .venv/bin/uv sync --frozen --quiet --python .venv/bin/python
