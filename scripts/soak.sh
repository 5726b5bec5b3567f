#!/usr/bin/env bash
# make soak: the release server on the 11,200-entity bench data set under
# mixed traffic at a fixed rate (repeated, cached decisions and unique,
# uncached ones, half each) for SOAK_MINUTES, while every SOAK_CHURN_SECONDS
# an API policy is rewritten and an entity changed (each change a new
# policy or entity generation, so the caches keep being invalidated).
# For each window of SOAK_SAMPLE_SECONDS it records the server's RSS (the
# median of once-a-second samples), open file descriptors and the window's
# p99, then plots them to a PNG and fails
# on an upward trend (scripts/soak_check.py): RSS's trend flat within 10 % after
# warm-up, descriptors flat, p99 within 2x of its median.
#
#   make soak                                        # 30 min, 60 s windows
#   SOAK_PNG=docs/soak.png make soak                 # where the plot goes
#   SOAK_MINUTES=3 SOAK_SAMPLE_SECONDS=30 SOAK_RATE=400 \
#     SOAK_DECISION_CAPACITY=5000 SOAK_ENTITY_CAPACITY=5000 \
#     make soak                                      # what CI runs
#
# The first fifth of the windows is warm-up: the decision cache fills at
# half the rate (unique requests), and so does the entity-slice cache (each
# unique request names a new document), so a short run needs small caches
# (SOAK_DECISION_CAPACITY, SOAK_ENTITY_CAPACITY) for its memory to settle
# within it: at 200 unique requests/s, 5,000 entries fill in 25 s.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${SOAK_MINUTES:-30}
SAMPLE=${SOAK_SAMPLE_SECONDS:-60}
RATE=${SOAK_RATE:-1000}
CHURN=${SOAK_CHURN_SECONDS:-5}
PORT=${SOAK_PORT:-18190}
source scripts/bench-lib.sh
PNG=${SOAK_PNG:-$CARGO_TARGET_DIR/soak.png}
ADMIN_TOKEN=soak-operator-token-0123456789
scripts/install-deps.sh soak
build_release
workspace

"$helper" dataset "$work"
if [ -n "${SOAK_DECISION_CAPACITY:-}" ]; then
  export PORTCULLIS_CACHE__DECISION_CAPACITY=$SOAK_DECISION_CAPACITY
fi
if [ -n "${SOAK_ENTITY_CAPACITY:-}" ]; then
  export PORTCULLIS_CACHE__ENTITY_CAPACITY=$SOAK_ENTITY_CAPACITY
fi
start_portcullis "$PORT"
base="http://127.0.0.1:$PORT"
auth=(-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json")

# The churn: policy and entity changes, a new generation every few seconds.
churn() {
  local i=0
  while true; do
    i=$((i + 1))
    curl -fsS -X PUT "${auth[@]}" "$base/v1/policies/soak-churn" \
      -d "{\"content\": \"permit (principal == Portcullis::User::\\\"u$((i % 1000))\\\", action == Docs::Action::\\\"read\\\", resource);\"}" > /dev/null
    curl -fsS -X PATCH "${auth[@]}" "$base/v1/entities" \
      -d "[{\"uid\": {\"type\": \"Docs::Document\", \"id\": \"soak\"}, \"attrs\": {\"owner\": {\"__entity\": {\"type\": \"Portcullis::User\", \"id\": \"u$((i % 1000))\"}}, \"classification\": \"internal\", \"public\": false}, \"parents\": []}]" > /dev/null
    sleep "$CHURN"
  done
}
churn &
pids+=($!)

windows=$(( MINUTES * 60 / SAMPLE ))
samples="$work/soak.csv"
echo "minute,rss_kib,fds,p99_us,requests" > "$samples"
echo "== $windows windows of ${SAMPLE}s at $RATE requests/s (half repeated, half unique), churn every ${CHURN}s"
for w in $(seq "$windows"); do
  # RSS once a second through the window; the window's RSS is their median.
  # A sample that catches a snapshot rebuild (two entity sets for a moment)
  # is one of many, where a leak moves them all. The sampler ends by itself
  # once the server is gone, should the script exit mid-window.
  : > "$work/rss.txt"
  (while [ -e "/proc/$server_pid" ]; do
    awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status" >> "$work/rss.txt"
    sleep 1
  done) &
  sampler=$!
  "$helper" rate "127.0.0.1:$PORT" $((RATE / 2)) "$SAMPLE" repeated > "$work/repeated.out" &
  "$helper" rate "127.0.0.1:$PORT" $((RATE / 2)) "$SAMPLE" unique > "$work/unique.out"
  wait $!
  kill "$sampler"
  wait "$sampler" 2> /dev/null || true
  p99=$(cat "$work/repeated.out" "$work/unique.out" | sed -nE 's/.* p99=([0-9]+)us.*/\1/p' | sort -n | tail -1)
  requests=$(cat "$work/repeated.out" "$work/unique.out" | sed -nE 's/.* requests=([0-9]+) .*/\1/p' | awk '{s += $1} END {print s + 0}')
  rss=$(sort -n "$work/rss.txt" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  fds=$(ls "/proc/$server_pid/fd" | wc -l)
  minute=$(python3 -c "print(round($w * $SAMPLE / 60, 2))")
  echo "$minute,$rss,$fds,$p99,$requests" >> "$samples"
  echo "  minute $minute: rss ${rss} KiB, fds $fds, p99 ${p99} us, $requests requests"
done

"$CARGO_TARGET_DIR/py-venv/bin/python" scripts/soak_check.py "$samples" "$PNG"
