#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, through cargo fuzz) of every input
# parser: each target of tests/fuzz runs for FUZZ_SECONDS (default 60),
# starting from its seed corpus in tests/fuzz/corpus/<target>. What the
# fuzzer adds to the corpus, and any crash, stays under the cargo target
# directory; the committed seeds are only read.
#
#   make fuzz                                  # every target, 60 s each
#   FUZZ_SECONDS=600 make fuzz                 # the nightly-style run
#   FUZZ_TARGETS="decision config" make fuzz   # some of them
#
# A crash stops the run with the input that caused it; rerun it with
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz -s none <target> <file>
# and make it a regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-decision entities policies ext_authz_http ext_authz_grpc credentials config store_keys}
target_dir=${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}/fuzz
work=${CARGO_TARGET_DIR:-/var/tmp/portcullis-target}/fuzz-work

# cargo fuzz passes flags only a nightly compiler takes. The machine's
# nightly when there is one; else the stable compiler, allowed them.
if rustup run nightly rustc --version > /dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked --version 0.13.2

# No sanitizer: the crate forbids unsafe code, so the fuzzer looks for
# panics, failed checks and overflows (debug assertions are on), and the
# build stays fast enough for CI.
opts=(--fuzz-dir tests/fuzz --sanitizer none --target-dir "$target_dir")
echo "building the fuzz targets"
"${cargo[@]}" fuzz build "${opts[@]}"

failed=()
for target in $targets; do
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  echo "fuzzing $target for ${seconds}s"
  log="$work/$target.log"
  "${cargo[@]}" fuzz run "${opts[@]}" "$target" "$work/corpus/$target" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -artifact_prefix="$work/artifacts/$target/" \
    -print_final_stats=1 -rss_limit_mb=4096 -timeout=20 > "$log" 2>&1 &
  pid=$!
  # A progress line every 30 s: libFuzzer's latest status.
  while kill -0 "$pid" 2> /dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2> /dev/null && sleep 1; done
    kill -0 "$pid" 2> /dev/null && { grep -a '^#[0-9]' "$log" | tail -1 | sed "s/^/  $target: /" || true; }
  done
  if wait "$pid"; then
    runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    corpus=$(find "$work/corpus/$target" -type f | wc -l)
    echo "  $target: ok, $runs runs, coverage $cov, corpus $corpus"
  else
    echo "  $target: FAILED; the end of $log:"
    tail -40 "$log" | sed 's/^/    /'
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs under $work/artifacts)" >&2
  exit 1
fi
echo "fuzzing passed: $targets"
