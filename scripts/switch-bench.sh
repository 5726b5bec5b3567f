#!/usr/bin/env bash
# make switch-bench: how long a runtime store switch holds writes, and what
# requests see meanwhile. Loads the 11,200-entity bench data set (11,200+
# keys), then while wrk sends decisions and writes, switches the active
# store SQLite -> Postgres -> Redis -> SQLite and prints each switch report.
#
# Uses the machine's Postgres (database test, its own schema) and Redis
# (its own key prefix), and removes both afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${LOAD_PORT:-18180}
export LOAD_ADMIN_TOKEN=switch-bench-token-0123456789
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
tag="pc_bench_$$"

source scripts/bench-lib.sh
build_release

cleanup_extra() {
  psql "$POSTGRES_URL" -qc "DROP SCHEMA IF EXISTS $tag CASCADE" > /dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$tag:*" | xargs -r redis-cli -u "$REDIS_URL" DEL > /dev/null || true
}
workspace

"$helper" dataset "$work" > /dev/null
PORTCULLIS_SERVER__LISTEN=127.0.0.1:$PORT \
PORTCULLIS_SERVER__BODY_LIMIT_BYTES=67108864 \
PORTCULLIS_SERVER__ADMIN_TOKEN=$LOAD_ADMIN_TOKEN \
PORTCULLIS_STORE__PATH="$work/portcullis.db" \
PORTCULLIS_REGISTRY__STATE_FILE="$work/active-store" \
PORTCULLIS_POLICIES__DIR="$work/policies" \
PORTCULLIS_POLICIES__WATCH=false \
PORTCULLIS_LOG__LEVEL=warn \
PORTCULLIS_BACKENDS__PG__KIND=postgres \
PORTCULLIS_BACKENDS__PG__URL="$POSTGRES_URL" \
PORTCULLIS_BACKENDS__PG__SCHEMA="$tag" \
PORTCULLIS_BACKENDS__CACHE__KIND=redis \
PORTCULLIS_BACKENDS__CACHE__URL="$REDIS_URL" \
PORTCULLIS_BACKENDS__CACHE__PREFIX="$tag:" \
  "$CARGO_TARGET_DIR/release/portcullis" serve &
pids+=($!)
wait_ready "$PORT"
curl -fsS -X PUT -H "Authorization: Bearer $LOAD_ADMIN_TOKEN" --data-binary "@$work/entities.json" "http://127.0.0.1:$PORT/v1/data" > /dev/null

for target in pg cache default; do
  wrk -t1 -c8 -d6s -s scripts/load/unique.lua "http://127.0.0.1:$PORT/v1/is_authorized" > "$work/decide.out" &
  decide=$!
  wrk -t1 -c4 -d6s -s scripts/load/write.lua "http://127.0.0.1:$PORT" > "$work/write.out" &
  writes=$!
  sleep 2
  report=$(curl -fsS -X POST -H "Authorization: Bearer $LOAD_ADMIN_TOKEN" \
    "http://127.0.0.1:$PORT/storage/switch/$target")
  wait $decide $writes
  echo "switch -> $target: $(echo "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%d keys in %d namespaces, writes held %d ms" % (r["keys"], len(r["namespaces"]), r["duration_ms"]))')"
  echo "  decisions during it: $(grep RESULT "$work/decide.out" | sed 's/RESULT //')"
  echo "  writes during it:    $(grep RESULT "$work/write.out" | sed 's/RESULT //')"
done
