#!/usr/bin/env bash
# make accounts-load: what accounts cost. Login latency (Argon2id at OWASP
# parameters, so a login is meant to be slow) and the latency of a decision
# made with an API key (checked against the store on every request) next to
# the same decision without credentials.
#
#   LOAD_DURATION=10s scripts/accounts-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${LOAD_DURATION:-10s}
PORT=${LOAD_PORT:-18182}
source scripts/bench-lib.sh
build_release

workspace

PORTCULLIS_SERVER__LISTEN=127.0.0.1:$PORT \
PORTCULLIS_STORE__PATH="$work/portcullis.db" \
PORTCULLIS_REGISTRY__STATE_FILE="$work/active-store" \
PORTCULLIS_MAIL__OUTBOX_DIR="$work/outbox" \
PORTCULLIS_POLICIES__WATCH=false \
PORTCULLIS_LOG__LEVEL=warn \
  "$CARGO_TARGET_DIR/release/portcullis" serve &
pids+=($!)
wait_ready "$PORT"
base="http://127.0.0.1:$PORT"
curl -fsS -X PUT --data-binary @policies/examples/entities.json "$base/v1/data" > /dev/null

export LOAD_USER=load@example.com LOAD_PASSWORD="correct horse battery"
curl -fsS "$base/auth/register" -d "{\"email\":\"$LOAD_USER\",\"password\":\"$LOAD_PASSWORD\"}" > /dev/null
access=$(curl -fsS "$base/auth/jwt/login" -d "{\"username\":\"$LOAD_USER\",\"password\":\"$LOAD_PASSWORD\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
LOAD_API_KEY=$(curl -fsS "$base/auth/api-keys/" -H "Authorization: Bearer $access" -d '{"name":"load","scopes":["decide"]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
export LOAD_API_KEY

result() { # name connections script url
  echo "$1: $(wrk -t1 -c"$2" -d"$DURATION" -s "$3" "$4" | grep '^RESULT' | sed 's/^RESULT //')"
}
echo "== wrk -t1 -d$DURATION"
result "login (-c2)" 2 scripts/load/login.lua "$base/auth/jwt/login"
result "decision, anonymous (-c8)" 8 scripts/load/decide-anonymous.lua "$base/v1/is_authorized"
result "decision, API key (-c8)" 8 scripts/load/decide-api-key.lua "$base/v1/is_authorized"
