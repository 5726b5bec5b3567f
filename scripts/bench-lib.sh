# Shared by load.sh and switch-bench.sh: build the release server and the
# load helper, and wait for a server to be ready. Source it; it sets
# $helper to the helper's path.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}

build_release() {
  scripts/install-deps.sh load
  echo "== building release binaries"
  cargo build --release --quiet --bin portcullis
  helper=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "load" and m.get("executable"):
        print(m["executable"])')
}

wait_ready() { # port
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$1/ready" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not become ready" >&2
  return 1
}

# Serves the bench data set in $work (written by `$helper dataset $work`)
# on 127.0.0.1:PORT, with $ADMIN_TOKEN as the operator's token, in the
# background (its pid in $server_pid and $pids), and loads the entities.
start_portcullis() { # port
  PORTCULLIS_SERVER__LISTEN=127.0.0.1:$1 \
  PORTCULLIS_SERVER__BODY_LIMIT_BYTES=67108864 \
  PORTCULLIS_SERVER__ADMIN_TOKEN=$ADMIN_TOKEN \
  PORTCULLIS_STORE__PATH="$work/portcullis.db" \
  PORTCULLIS_POLICIES__DIR="$work/policies" \
  PORTCULLIS_POLICIES__WATCH=false \
    "$CARGO_TARGET_DIR/release/portcullis" serve &
  server_pid=$!
  pids+=("$server_pid")
  wait_ready "$1"
  curl -fsS -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary "@$work/entities.json" \
    "http://127.0.0.1:$1/v1/data" > /dev/null
}

# A temporary $work directory and a $pids list of background processes,
# both removed on exit; a script may define cleanup_extra to do more.
workspace() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if declare -f cleanup_extra > /dev/null; then cleanup_extra; fi
  rm -rf "$work"
}
