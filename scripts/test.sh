#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, starts what is
# not running, lints, type-checks and runs pytest. `make test` and .ci/run call it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '\n== %s\n' "$*"; }

log "Python environment ($VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'

log "Services"
scripts/services.sh

log "ruff"
"$VENV/bin/ruff" check src tests benchmarks docs/hooks examples
"$VENV/bin/ruff" format --check src tests benchmarks docs/hooks examples

log "mypy"
"$VENV/bin/mypy"

log "pytest"
# Tests are independent (own databases, leased Redis dbs, own servers on free ports) and
# mostly wait on I/O, so four workers on two cores halve the time; the slowest are listed.
exec "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-4}" --dist worksteal --durations=15 "$@"
