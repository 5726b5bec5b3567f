#!/usr/bin/env bash
# make load: HTTP throughput and latency of POST /v1/is_authorized on the
# 11,200-entity bench data set, against the bare-hyper floor on this machine.
#
#   LOAD_DURATION=10s LOAD_ROUNDS=3 LOAD_CONNECTIONS=64 LOAD_RATE=5000 scripts/load.sh
#
# Prints one RESULT line per run and fails when the cached path answers
# fewer than half the requests/s of a bare hyper server returning a fixed
# body. Both vary ~10-20% run to run on a 2-core machine, so they are
# measured alternately LOAD_ROUNDS times and their medians compared.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${LOAD_DURATION:-10s}
ROUNDS=${LOAD_ROUNDS:-3}
CONNECTIONS=${LOAD_CONNECTIONS:-64}
THREADS=${LOAD_THREADS:-2}
RATE=${LOAD_RATE:-5000}
RATE_SECONDS=${LOAD_RATE_SECONDS:-10}
PORT=${LOAD_PORT:-18180}
FLOOR_PORT=${LOAD_FLOOR_PORT:-18181}
source scripts/bench-lib.sh
# The operator's token: the data routes need an admin.
ADMIN_TOKEN=load-operator-token-0123456789
build_release

workspace

"$helper" dataset "$work"

"$helper" floor "127.0.0.1:$FLOOR_PORT" > /dev/null &
pids+=($!)
start_portcullis "$PORT"
echo "== loaded $(curl -fsS "http://127.0.0.1:$PORT/health" | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["entities"]["count"], "entities,", h["policies"]["count"], "policies")')"

run() { # name url script
  local line
  line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$3" "$2" | grep '^RESULT')
  echo "$1: ${line#RESULT }" >&2
  echo "$line" | sed -E 's/.*requests\/s=([0-9]+).*/\1/'
}

echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION, floor and cached interleaved $ROUNDS times (medians compared)"
floors=()
cacheds=()
for _ in $(seq "$ROUNDS"); do
  floors+=("$(run "bare hyper floor (fixed body)   " "http://127.0.0.1:$FLOOR_PORT/v1/is_authorized" scripts/load/repeated.lua)")
  cacheds+=("$(run "portcullis repeated (cached)     " "http://127.0.0.1:$PORT/v1/is_authorized" scripts/load/repeated.lua)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
floor=$(median "${floors[@]}")
cached=$(median "${cacheds[@]}")
run "portcullis unique (uncached)     " "http://127.0.0.1:$PORT/v1/is_authorized" scripts/load/unique.lua > /dev/null

echo "== fixed rate, open loop"
"$helper" rate "127.0.0.1:$PORT" "$RATE" "$RATE_SECONDS" repeated
"$helper" rate "127.0.0.1:$PORT" "$RATE" "$RATE_SECONDS" unique

ratio=$(python3 -c "print(f'{$cached / max($floor, 1):.2f}')")
echo "== median cached $cached / median floor $floor = $ratio (must be >= 0.50)"
python3 -c "import sys; sys.exit(0 if $cached * 2 >= $floor else 1)" || {
  echo "FLOOR MISSED: cached decisions answered $cached requests/s, under half of bare hyper's $floor" >&2
  exit 1
}
