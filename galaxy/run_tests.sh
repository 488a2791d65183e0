#!/usr/bin/env bash
# Test the Galaxy tool on a real Galaxy server, offline (package registries only).
#
#   bash galaxy/run_tests.sh            # lint + tool tests + workflow test
#
# It installs Galaxy and planemo in their own virtual environments (their pins conflict with each
# other and with the runner's), starts a Galaxy server on 127.0.0.1 whose jobs find
# `biapy-runner` first on PATH, runs `planemo lint` and `planemo test --engine external_galaxy`,
# prints `N passed, N failed, N skipped` and stops the server. Everything is written under
# $GALAXY_TEST_SCRATCH (default: .galaxy-test/ in the repository, git-ignored).
#
# Environment (all optional):
#   GALAXY_TEST_SCRATCH  scratch folder (venvs, server data, logs, reports)
#   RUNNER_VENV          virtualenv whose bin/ holds biapy-runner (default: the one on PATH,
#                        else a new venv in the scratch folder with the project installed)
#   RUNNER_BIN           folder holding the biapy-runner executable (takes precedence)
#   GALAXY_VENV / PLANEMO_VENV   reuse existing installations
#   GALAXY_TEST_INDEX    only run these tool tests (1-based, space separated, e.g. "1 3")
#   GALAXY_SKIP_WORKFLOW=1       skip the workflow test
#   GALAXY_SKIP_EVALUATE=1       skip the tests of biapy_evaluate.xml
#   GALAXY_SKIP_SPLIT=1          skip the tests of biapy_split.xml and biapy_merge.xml
#   GALAXY_WORKFLOWS     only test these workflows of galaxy/workflows/ (names without .ga,
#                        space separated, e.g. "split_volume"; default: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="${GALAXY_TEST_SCRATCH:-$ROOT/.galaxy-test}"
GALAXY_VERSION="26.1.2"
PLANEMO_VERSION="0.75.47"
GALAXY_VENV="${GALAXY_VENV:-$SCRATCH/galaxy-venv}"
PLANEMO_VENV="${PLANEMO_VENV:-$SCRATCH/planemo-venv}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$SCRATCH"
SCRATCH="$(cd "$SCRATCH" && pwd)"

say() { echo "[galaxy-tests] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# installation (skipped when already there)
# ---------------------------------------------------------------------------------------------
uv_bin() {
    if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
    if [ ! -x "$SCRATCH/uv-venv/bin/uv" ]; then
        say "installing uv"
        "$PYTHON" -m venv "$SCRATCH/uv-venv"
        "$SCRATCH/uv-venv/bin/pip" install -q uv
    fi
    echo "$SCRATCH/uv-venv/bin/uv"
}

install_galaxy() {
    [ -x "$GALAXY_VENV/bin/galaxy-web" ] && return
    say "installing galaxy==$GALAXY_VERSION into $GALAXY_VENV"
    local uv; uv="$(uv_bin)"
    # the metapackage pins a certifi release that the registry does not serve
    echo "certifi==2026.10.18" > "$SCRATCH/galaxy-overrides.txt"
    "$uv" venv -q -p "$PYTHON" "$GALAXY_VENV"
    VIRTUAL_ENV="$GALAXY_VENV" "$uv" pip install -q "galaxy==$GALAXY_VERSION" \
        --override "$SCRATCH/galaxy-overrides.txt"
}

install_planemo() {
    [ -x "$PLANEMO_VENV/bin/planemo" ] && return
    say "installing planemo==$PLANEMO_VERSION into $PLANEMO_VENV"
    local uv; uv="$(uv_bin)"
    "$uv" venv -q -p "$PYTHON" "$PLANEMO_VENV"
    VIRTUAL_ENV="$PLANEMO_VENV" "$uv" pip install -q "planemo==$PLANEMO_VERSION"
}

runner_bin() {
    if [ -n "${RUNNER_BIN:-}" ]; then echo "$RUNNER_BIN"; return; fi
    if [ -n "${RUNNER_VENV:-}" ]; then echo "$RUNNER_VENV/bin"; return; fi
    if command -v biapy-runner >/dev/null 2>&1; then
        dirname "$(command -v biapy-runner)"; return
    fi
    local venv="$SCRATCH/runner-venv"
    if [ ! -x "$venv/bin/biapy-runner" ]; then
        say "installing the runner (CPU torch) into $venv"
        local uv; uv="$(uv_bin)"
        "$uv" venv -q -p "$PYTHON" "$venv"
        VIRTUAL_ENV="$venv" "$uv" pip install -q "$ROOT[onnx]" \
            --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match
    fi
    echo "$venv/bin"
}

# ---------------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------------
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_configs() {
    local conf="$SCRATCH/config" data="$SCRATCH/server"
    local bundled="$GALAXY_VENV/lib/python$("$GALAXY_VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages/galaxy/tools/bundled"
    rm -rf "$data"
    mkdir -p "$conf" "$data"
    sed -e "s|@DATA@|$data|g" -e "s|@CONF@|$conf|g" -e "s|@KEY@|$ADMIN_KEY|g" \
        "$ROOT/galaxy/config/galaxy.yml" > "$conf/galaxy.yml"
    sed -e "s|@RUNNER_BIN@|$RUNNER_BIN|g" "$ROOT/galaxy/config/job_conf.yml" > "$conf/job_conf.yml"
    sed -e "s|@TOOL_DIR@|$ROOT|g" -e "s|@BUNDLED@|$bundled|g" \
        "$ROOT/galaxy/config/tool_conf.xml" > "$conf/tool_conf.xml"
}

start_galaxy() {
    say "starting Galaxy on $GALAXY_URL (log: $SCRATCH/galaxy.log)"
    (
        # Galaxy takes GALAXY_VIRTUAL_ENV from the activated venv (upload jobs need it)
        # shellcheck disable=SC1091
        source "$GALAXY_VENV/bin/activate"
        cd "$SCRATCH/server"
        exec galaxy-web --config "$SCRATCH/config/galaxy.yml" --bind "127.0.0.1:$PORT"
    ) > "$SCRATCH/galaxy.log" 2>&1 &
    GALAXY_PID=$!
    local waited=0
    until curl -sf "$GALAXY_URL/api/version" >/dev/null 2>&1; do
        if ! kill -0 "$GALAXY_PID" 2>/dev/null; then
            tail -n 40 "$SCRATCH/galaxy.log" >&2
            say "Galaxy exited during startup"; return 1
        fi
        if [ "$waited" -ge 600 ]; then say "Galaxy did not answer in 600 s"; return 1; fi
        sleep 3; waited=$((waited + 3))
    done
    say "Galaxy is up after ${waited}s"
}

stop_galaxy() {
    if [ -n "${GALAXY_PID:-}" ] && kill -0 "$GALAXY_PID" 2>/dev/null; then
        say "stopping Galaxy"
        kill "$GALAXY_PID" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$GALAXY_PID" 2>/dev/null || return 0; sleep 1; done
        kill -9 "$GALAXY_PID" 2>/dev/null || true
    fi
}

create_user() {
    local api="$GALAXY_URL/api" uid
    uid="$(curl -sf -H "x-api-key: $ADMIN_KEY" -H 'Content-Type: application/json' \
        -d '{"username": "tester", "email": "tester@example.org", "password": "tester-password"}' \
        "$api/users" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
    curl -sf -X POST -H "x-api-key: $ADMIN_KEY" "$api/users/$uid/api_key" | tr -d '"'
}

# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
summarize() {
    # prints "passed failed skipped" of the planemo JSON reports given as arguments
    "$PYTHON" - "$@" <<'EOF'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        with open(path) as handle:
            tests = json.load(handle).get("tests", [])
    except (OSError, ValueError):
        failed += 1
        continue
    for test in tests:
        status = test.get("data", {}).get("status")
        if status == "success":
            passed += 1
        elif status == "skip":
            skipped += 1
        else:
            failed += 1
            print(f"FAILED: {test.get('id')}", file=sys.stderr)
print(passed, failed, skipped)
EOF
}

watch_jobs() {
    # While planemo runs (it prints nothing until the end), print each finished job of the tool:
    # "[galaxy-tests] biapy_runner job 3/8 ok after 41s". Polls the jobs API every 5 s with the
    # test user's key ($1) for the tool $2 (jobs created from now on), $3 jobs expected; stopped
    # by the caller.
    exec "$PYTHON" - "$GALAXY_URL" "$1" "$2" "$3" <<'EOF'
import json, signal, sys, time, urllib.request
from datetime import datetime, timedelta, timezone
url, key, tool, total = sys.argv[1:]
seen = set()
start = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=2)  # Galaxy: UTC
query = f"{url}/api/jobs?tool_id={tool}&limit=1000&order_by=create_time&view=collection"
class Stop(Exception):
    pass
def stop(*_):
    raise Stop
def seconds(job):
    begin, end = (datetime.fromisoformat(job[k]) for k in ("create_time", "update_time"))
    return int((end - begin).total_seconds())
def poll():
    try:
        request = urllib.request.Request(query, headers={"x-api-key": key})
        jobs = json.load(urllib.request.urlopen(request, timeout=10))
    except (OSError, ValueError):
        return
    for job in jobs:
        if job["id"] in seen or job["state"] not in ("ok", "error", "failed", "deleted"):
            continue
        if datetime.fromisoformat(job["create_time"]) < start:
            continue  # an earlier stage's job
        seen.add(job["id"])
        print(f"[galaxy-tests] {tool} job {len(seen)}/{total} {job['state']} after {seconds(job)}s",
              file=sys.stderr, flush=True)
signal.signal(signal.SIGTERM, stop)
try:
    while True:
        time.sleep(5)
        poll()
except Stop:  # planemo is done: report the jobs that finished since the last poll
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    poll()
EOF
}

planemo_test() {
    # planemo test "${@:2}" with the per-job progress above; $1: how many tool jobs to expect
    local total="$1"; shift
    watch_jobs "$user_key" biapy_runner "$total" &
    local watcher=$! status=0
    "$planemo" test "$@" || status=$?
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    return "$status"
}

main() {
    install_galaxy
    install_planemo
    RUNNER_BIN="$(runner_bin)"
    "$RUNNER_BIN/biapy-runner" --version >&2
    export HOME="$SCRATCH/home"  # planemo writes ~/.planemo
    mkdir -p "$HOME"
    local planemo="$PLANEMO_VENV/bin/planemo" lint_failed=0
    say "planemo lint"
    "$planemo" lint --fail_level warn --skip BioToolsValid "$ROOT/biapy.xml" "$ROOT/biapy_evaluate.xml" \
        "$ROOT/biapy_split.xml" "$ROOT/biapy_merge.xml" || lint_failed=1

    ADMIN_KEY="bootstrap-$(date +%s)-$RANDOM"
    PORT="$(free_port)"
    GALAXY_URL="http://127.0.0.1:$PORT"
    write_configs
    trap stop_galaxy EXIT
    start_galaxy
    local user_key reports=()
    user_key="$(create_user)"
    local common=(--engine external_galaxy --galaxy_url "$GALAXY_URL"
                  --galaxy_admin_key "$ADMIN_KEY" --galaxy_user_key "$user_key"
                  --no_dependency_resolution)
    rm -rf "$SCRATCH/reports"; mkdir -p "$SCRATCH/reports"
    local filter=() index total
    for index in ${GALAXY_TEST_INDEX:-}; do filter+=(--test_index "$index"); done
    total=$(( ${#filter[@]} / 2 ))
    [ "$total" -gt 0 ] || total="$(grep -c '<test[ >]' "$ROOT/biapy.xml")"
    say "planemo test biapy.xml ($total tests: a line per finished job, planemo's report at the end)"
    planemo_test "$total" "${common[@]}" "${filter[@]}" \
        --test_output_json "$SCRATCH/reports/tool.json" \
        --test_output "$SCRATCH/reports/tool.html" "$ROOT/biapy.xml" || true
    reports+=("$SCRATCH/reports/tool.json")
    if [ "${GALAXY_SKIP_EVALUATE:-0}" != "1" ]; then
        say "planemo test biapy_evaluate.xml"
        "$planemo" test "${common[@]}" --test_output_json "$SCRATCH/reports/evaluate.json" \
            --test_output "$SCRATCH/reports/evaluate.html" "$ROOT/biapy_evaluate.xml" || true
        reports+=("$SCRATCH/reports/evaluate.json")
    fi
    if [ "${GALAXY_SKIP_SPLIT:-0}" != "1" ]; then
        local tool
        for tool in split merge; do
            say "planemo test biapy_$tool.xml"
            "$planemo" test "${common[@]}" --test_output_json "$SCRATCH/reports/$tool.json" \
                --test_output "$SCRATCH/reports/$tool.html" "$ROOT/biapy_$tool.xml" || true
            reports+=("$SCRATCH/reports/$tool.json")
        done
    fi
    if [ "${GALAXY_SKIP_WORKFLOW:-0}" != "1" ]; then
        say "planemo test galaxy/workflows"
        for wf in "$ROOT"/galaxy/workflows/*.ga; do
            local name; name="$(basename "$wf" .ga)"
            if [ -n "${GALAXY_WORKFLOWS:-}" ] && [[ " $GALAXY_WORKFLOWS " != *" $name "* ]]; then
                continue
            fi
            planemo_test "?" "${common[@]}" \
                --test_output_json "$SCRATCH/reports/$name.json" \
                --test_output "$SCRATCH/reports/$name.html" "$wf" || true
            reports+=("$SCRATCH/reports/$name.json")
        done
    fi
    stop_galaxy
    local counts passed failed skipped
    counts="$(summarize "${reports[@]}")"
    read -r passed failed skipped <<< "$counts"
    failed=$((failed + lint_failed))
    [ "$lint_failed" = 1 ] && say "planemo lint reported warnings or errors (counted as a failure)"
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

main "$@"
