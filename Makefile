# Portcullis. The two commands a fresh machine needs:
#   make run    serve on the embedded SQLite store with the sample policies
#   make test   install what the tests need, then run all of them, then
#               `make gauntlet`: the release binary end to end over HTTP
export CARGO_TARGET_DIR ?= /var/tmp/portcullis-target

.PHONY: run test gauntlet lint bench load switch-bench accounts-load callgrind ci

run:
	cargo run --release -- serve

test:
	scripts/install-deps.sh test
	cargo test --all-targets --locked
	$(MAKE) gauntlet

gauntlet:
	cargo build --release --locked
	python3 scripts/gauntlet.py

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
