#!/usr/bin/env bash
# make callgrind: instructions per ext_authz check, counted by valgrind's
# callgrind on the release server (repeatable, unlike a clock on a shared
# 2-core machine). Three runs of the same server: one check (the baseline:
# start-up and shut-down), then N checks of one document (cached), then N
# checks of a new document each (uncached), over one keep-alive connection,
# with decision logging on; once without credentials and once with a JWT
# principal (a registered user's access token, as accounts-load sends).
# Prints instructions per check.
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

# One server under callgrind, `$2` checks (`$3` = 1: a new document each;
# `$4` = jwt: as a signed-in user, who registers and logs in first, in the
# baseline too); writes the profile to `$1`.
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
  if [ "$4" = jwt ]; then
    # As accounts-load: signed-in users may read any document, so every
    # JWT check is an allow.
    curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/policies" -d '{"id": "load-read", "content": "permit (principal is Portcullis::User, action == Docs::Action::\"read\", resource is Docs::Document) when { principal has email };"}' > /dev/null
  fi
  python3 - "$PORT" "$2" "$3" "$4" <<'EOF'
import http.client, json, sys
port, n, unique, jwt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "jwt"
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
def post(path, body):
    connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    text = answer.read()
    assert answer.status < 300, (path, answer.status, text)
    return json.loads(text)
headers = {"Host": "docs.example.com"}
if jwt:
    account = {"email": "callgrind@example.com", "password": "correct horse battery"}
    post("/auth/register", account)
    token = post("/auth/jwt/login", {"username": account["email"], "password": account["password"]})["access_token"]
    headers["Authorization"] = "Bearer " + token
for i in range(n):
    path = "/ext_authz/documents/d%d" % i if unique else "/ext_authz/documents/onboarding"
    connection.request("GET", path, headers=headers)
    answer = connection.getresponse()
    answer.read()
    # Without credentials a new document is a deny (it is not public).
    assert answer.status == 200 or (not jwt and answer.status == 403), (path, answer.status)
EOF
  kill -INT "$pid"
  wait "$pid" 2> /dev/null || true
}

total() { # profile
  callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

for caller in anonymous jwt; do
  echo "== callgrind: $CHECKS ext_authz checks, $caller (decision logging on)"
  profile "$work/base.out" 1 0 "$caller"
  profile "$work/cached.out" "$((CHECKS + 1))" 0 "$caller"
  profile "$work/unique.out" "$((CHECKS + 1))" 1 "$caller"
  base=$(total "$work/base.out")
  for run in cached unique; do
    all=$(total "$work/$run.out")
    echo "$run: $(( (all - base) / CHECKS )) instructions per check"
  done
  # The profiles stay for callgrind_annotate when CALLGRIND_KEEP names a directory.
  if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    cp "$work"/base.out "$work"/cached.out "$work"/unique.out "$CALLGRIND_KEEP/" 
    for run in base cached unique; do mv "$CALLGRIND_KEEP/$run.out" "$CALLGRIND_KEEP/$caller-$run.out"; done
  fi
done
