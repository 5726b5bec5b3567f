#!/usr/bin/env bash
# make accounts-load: what accounts and the sidecar cost. Login latency
# (Argon2id at OWASP parameters, so a login is meant to be slow); a decision
# made with an API key next to the same decision without credentials; and
# Envoy-style ext_authz checks with a JWT principal, cached and uncached, in
# HTTP mode (wrk) and gRPC mode (the load helper's tonic client), with
# decision logging on (to a file); and, for scale, a bare hyper server at
# the same fixed rate, measured by the same client.
#
#   LOAD_DURATION=10s scripts/accounts-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${LOAD_DURATION:-10s}
PORT=${LOAD_PORT:-18182}
GRPC_PORT=${LOAD_GRPC_PORT:-18183}
source scripts/bench-lib.sh
build_release

workspace
# The operator's token: the data routes need an admin.
ADMIN_TOKEN=load-operator-token-0123456789

PORTCULLIS_SERVER__LISTEN=127.0.0.1:$PORT \
PORTCULLIS_SERVER__ADMIN_TOKEN=$ADMIN_TOKEN \
PORTCULLIS_STORE__PATH="$work/portcullis.db" \
PORTCULLIS_REGISTRY__STATE_FILE="$work/active-store" \
PORTCULLIS_MAIL__OUTBOX_DIR="$work/outbox" \
PORTCULLIS_POLICIES__WATCH=false \
PORTCULLIS_LOG__LEVEL=warn \
PORTCULLIS_EXT_AUTHZ__GRPC_LISTEN=127.0.0.1:$GRPC_PORT \
PORTCULLIS_EXT_AUTHZ__RULES='[{methods = ["GET"], path = "/documents/{id}", action = "Docs::Action::\"read\"", resource = {type = "Docs::Document", id = "{id}"}}]' \
PORTCULLIS_DECISION_LOG__ENABLED=true \
PORTCULLIS_DECISION_LOG__SINK=file \
PORTCULLIS_DECISION_LOG__PATH="$work/decisions.log" \
  "$CARGO_TARGET_DIR/release/portcullis" serve &
pids+=($!)
FLOOR_PORT=${LOAD_FLOOR_PORT:-18184}
"$helper" floor "127.0.0.1:$FLOOR_PORT" > /dev/null &
pids+=($!)
wait_ready "$PORT"
base="http://127.0.0.1:$PORT"
curl -fsS -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary @policies/examples/entities.json "$base/v1/data" > /dev/null

export LOAD_USER=load@example.com LOAD_PASSWORD="correct horse battery"
curl -fsS "$base/auth/register" -d "{\"email\":\"$LOAD_USER\",\"password\":\"$LOAD_PASSWORD\"}" > /dev/null
access=$(curl -fsS "$base/auth/jwt/login" -d "{\"username\":\"$LOAD_USER\",\"password\":\"$LOAD_PASSWORD\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
LOAD_API_KEY=$(curl -fsS "$base/auth/api-keys/" -H "Authorization: Bearer $access" -d "{\"name\":\"load\",\"scopes\":[\"decide\"],\"current_password\":\"$LOAD_PASSWORD\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
export LOAD_API_KEY LOAD_TOKEN=$access
curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "$base/v1/policies" -d '{"id": "load-read", "content": "permit (principal is Portcullis::User, action == Docs::Action::\"read\", resource is Docs::Document) when { principal has email };"}' > /dev/null

result() { # name connections script url
  echo "$1: $(wrk -t1 -c"$2" -d"$DURATION" -s "$3" "$4" | grep '^RESULT' | sed 's/^RESULT //')"
}
echo "== wrk -t1 -d$DURATION"
result "login (-c2)" 2 scripts/load/login.lua "$base/auth/jwt/login"
result "decision, anonymous (-c8)" 8 scripts/load/decide-anonymous.lua "$base/v1/is_authorized"
result "decision, API key (-c8)" 8 scripts/load/decide-api-key.lua "$base/v1/is_authorized"
result "ext_authz, JWT, cached (-c8)" 8 scripts/load/ext-authz.lua "$base"
export LOAD_UNIQUE=1
result "ext_authz, JWT, uncached (-c8)" 8 scripts/load/ext-authz.lua "$base"
unset LOAD_UNIQUE
RATE_SECONDS=${LOAD_RATE_SECONDS:-10}
echo "== ext_authz gRPC, closed loop (8 callers, ${RATE_SECONDS}s)"
for mode in ext-authz-grpc ext-authz-grpc-unique; do
  "$helper" max "127.0.0.1:$GRPC_PORT" 8 "$RATE_SECONDS" "$mode" | grep '^RESULT' | sed 's/^RESULT //'
done
echo "== fixed rate: 5,000 ext_authz checks/s for ${RATE_SECONDS}s (open loop), decision logging on"
echo "   (the client's latency, then the server's own p99 from its /metrics histogram)"
rate() { # mode port http|grpc
  curl -fsS "$base/metrics" > "$work/before.prom"
  "$helper" rate "127.0.0.1:$2" 5000 "$RATE_SECONDS" "$1" | grep '^RESULT' | sed 's/^RESULT //'
  curl -fsS "$base/metrics" > "$work/after.prom"
  echo "  $(python3 scripts/load/server-p99.py "$work/before.prom" "$work/after.prom" "$3")"
}
for mode in ext-authz ext-authz-unique; do rate "$mode" "$PORT" http; done
for mode in ext-authz-grpc ext-authz-grpc-unique; do rate "$mode" "$GRPC_PORT" grpc; done
# The log's own counters: the file rotates at 100 MiB, so its line count
# is not the total.
logged() { curl -fsS "$base/metrics" | awk -v o="$1" '$1 == "portcullis_decision_log_entries_total{outcome=\""o"\"}" {print $2}'; }
echo "decision log: $(logged written) entries written, $(logged dropped) dropped"
# What this machine allows: a bare hyper server answering a fixed body (up
# since the start), at the same rate, measured by the same client. No check
# can be faster.
echo "== the floor: a bare hyper server, 5,000 requests/s for ${RATE_SECONDS}s, same client"
"$helper" rate "127.0.0.1:$FLOOR_PORT" 5000 "$RATE_SECONDS" repeated | grep '^RESULT' | sed 's/^RESULT //'
