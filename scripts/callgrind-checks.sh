#!/usr/bin/env bash
# make callgrind: instructions per ext_authz check, counted by valgrind's
# callgrind on the release server (repeatable, unlike a clock on a shared
# 2-core machine). Three runs of the same server: one check (the baseline:
# start-up and shut-down), then N checks of one document (cached), then N
# checks of a new document each (uncached), over one keep-alive connection,
# with decision logging on. Prints instructions per check.
#
#   CALLGRIND_CHECKS=2000 scripts/callgrind-checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKS=${CALLGRIND_CHECKS:-2000}
PORT=${CALLGRIND_PORT:-18190}
source scripts/bench-lib.sh
command -v valgrind > /dev/null || { echo "valgrind is required" >&2; exit 1; }
build_release
workspace
# The operator's token: the data routes need an admin.
ADMIN_TOKEN=callgrind-operator-token-0123456789

# One server under callgrind, `$2` checks (`$3` = 1: a new document each);
# writes the profile to `$1`.
profile() {
  rm -f "$work"/p.db*
  PORTCULLIS_SERVER__LISTEN=127.0.0.1:$PORT \
  PORTCULLIS_SERVER__ADMIN_TOKEN=$ADMIN_TOKEN \
  PORTCULLIS_STORE__PATH="$work/p.db" \
  PORTCULLIS_REGISTRY__STATE_FILE="$work/active-store" \
  PORTCULLIS_MAIL__OUTBOX_DIR="$work/outbox" \
  PORTCULLIS_POLICIES__WATCH=false \
  PORTCULLIS_LOG__LEVEL=warn \
  PORTCULLIS_EXT_AUTHZ__RULES='[{methods = ["GET"], path = "/documents/{id}", action = "Docs::Action::\"read\"", resource = {type = "Docs::Document", id = "{id}"}, require_principal = false}]' \
  PORTCULLIS_DECISION_LOG__ENABLED=true \
  PORTCULLIS_DECISION_LOG__SINK=file \
  PORTCULLIS_DECISION_LOG__PATH="$work/decisions.log" \
    valgrind --tool=callgrind --callgrind-out-file="$1" \
      "$CARGO_TARGET_DIR/release/portcullis" serve > "$work/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$PORT/ready" > /dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary @policies/examples/entities.json "http://127.0.0.1:$PORT/v1/data" > /dev/null
  python3 - "$PORT" "$2" "$3" <<'EOF'
import http.client, sys
port, n, unique = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
connection = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    path = "/ext_authz/documents/d%d" % i if unique else "/ext_authz/documents/onboarding"
    connection.request("GET", path, headers={"Host": "docs.example.com"})
    connection.getresponse().read()
EOF
  kill -INT "$pid"
  wait "$pid" 2> /dev/null || true
}

total() { # profile
  callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

echo "== callgrind: $CHECKS anonymous ext_authz checks (decision logging on)"
profile "$work/base.out" 1 0
profile "$work/cached.out" "$((CHECKS + 1))" 0
profile "$work/unique.out" "$((CHECKS + 1))" 1
base=$(total "$work/base.out")
for run in cached unique; do
  all=$(total "$work/$run.out")
  echo "$run: $(( (all - base) / CHECKS )) instructions per check"
done
