#!/usr/bin/env bash
# Everything the benchmarks compare against, on top of the test setup: the [bench]
# extra, arq (without its dependencies: its redis<6 pin conflicts with bullmq's
# redis>=6.2) and Debian's rclone; then the loopback services. `make bench-setup`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet -e '.[test,bench]'
"$VENV/bin/python" -m pip install --quiet --no-deps arq
if ! command -v rclone >/dev/null; then
  apt-get update -qq && apt-get install -y -qq rclone >/dev/null
fi
echo "rclone: $(rclone version | head -1)"
VENV=$VENV scripts/services.sh
