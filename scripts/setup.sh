#!/usr/bin/env bash
# Create .venv and install the runner exactly as the container does (the locked runtime
# dependencies, then the project itself), plus the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r container/requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -m pip install --quiet -r requirements-test.txt
.venv/bin/biapy-runner --version
