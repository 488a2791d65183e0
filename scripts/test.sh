#!/usr/bin/env bash
# The project's test command: the runner's tests (pytest), then the Galaxy tool's lint and tests
# on a real Galaxy server (galaxy/run_tests.sh). Run scripts/setup.sh once before.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0
"$PY" -m pytest -q "$@" || status=$?
if [ -z "${SKIP_GALAXY:-}" ]; then
    RUNNER_VENV="$PWD/.venv" bash galaxy/run_tests.sh || status=$?
fi
exit "$status"
