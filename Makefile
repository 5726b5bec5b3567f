# Portcullis. The two commands a fresh machine needs:
#   make run    serve on the embedded SQLite store with the sample policies
#   make test   install what the tests need, then run all of them, then
#               `make gauntlet`: the release binary end to end over HTTP,
#               and `make ui-test`: the web UI in headless Chromium
export CARGO_TARGET_DIR ?= /var/tmp/portcullis-target

.PHONY: run test gauntlet ui-test fuzz api-fuzz chaos soak lint bench load switch-bench accounts-load callgrind ci

run:
	cargo run --release -- serve

test:
	scripts/install-deps.sh test
	cargo test --all-targets --locked
	$(MAKE) gauntlet
	$(MAKE) ui-test

gauntlet:
	cargo build --release --locked
	python3 scripts/gauntlet.py

# The web UI in Debian's Chromium, driven by playwright-core; screenshots
# go to target/screenshots/.
ui-test:
	tests/ui/install.sh
	cargo build --release --locked
	node --test tests/ui/ui.test.mjs

# Each fuzz target for FUZZ_SECONDS (default 60); see scripts/fuzz.sh.
fuzz:
	scripts/fuzz.sh

# Schemathesis against /openapi.json of the release binary; see
# scripts/api_fuzz.py (API_FUZZ_EXAMPLES, API_FUZZ_SECONDS).
api-fuzz:
	scripts/install-deps.sh api-fuzz
	cargo build --release --locked
	python3 scripts/api_fuzz.py

# Decisions and writes checked against an oracle while spare stores crash,
# the store is switched twice and Portcullis is killed; see scripts/chaos.py.
chaos:
	cargo build --release --locked
	python3 scripts/chaos.py

# Mixed traffic with policy and entity churn; RSS, descriptors and p99
# plotted and checked; see scripts/soak.sh (SOAK_MINUTES, default 30).
soak:
	scripts/soak.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings

bench:
	cargo bench --bench decision

load:
	scripts/load.sh

switch-bench:
	scripts/switch-bench.sh

accounts-load:
	scripts/accounts-load.sh

callgrind:
	scripts/callgrind-checks.sh

ci: lint test
