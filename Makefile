# livechat: one Makefile for set-up, tests, lint and benchmarks (CI runs `make lint test`).
PY ?= python3
PIP := $(PY) -m pip
# Python paths every linter sees (only those present: a fresh tree may lack one).
PY_PATHS := $(wildcard python tests bench loadtest pyext/*.py)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install pyext redis chromium serve test test-rust test-py lint lint-rust lint-python stubtest bench loadgen bench-fanout loadtest autobahn clean
.PHONY: services services-down cluster cluster-down faults soak
.PHONY: fuzz fuzz-short

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## build the Rust core (maturin, release) and the Cython fast path; install livechat with test tools
	$(PIP) install -q -e '.[test]'

pyext: ## rebuild only the Cython module into python/livechat/
	$(PY) pyext/setup.py

redis: ## make sure Debian's redis-server is installed (the tests start their own instances)
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)

services: ## start Kafka, Cassandra, PostgreSQL, Redis (single + cluster), Toxiproxy on the standard ports
	scripts/services.sh up all

services-down: ## stop the services scripts/services.sh started
	scripts/services.sh down

cluster: install ## the local cluster: services, schema, three edges and the workers; prints the URLs
	scripts/cluster.sh up

cluster-down: ## stop the local cluster (edges and workers, then the services)
	scripts/cluster.sh down

chromium: ## make sure Debian's chromium is installed (the browser test drives it; never a downloaded browser)
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji)

serve: install ## start livechat, embedded mode (no services), on ws://127.0.0.1:8765/
	livechat serve

test: install redis chromium services test-rust test-py ## everything CI runs: Rust unit/property tests, then pytest

test-rust: ## cargo tests of the pure Rust code (no Python needed)
	cargo test -q --workspace --no-default-features

test-py: ## pytest: unit, contract (embedded + real Redis), edge, service, ops, browser e2e, conformance subset
	$(PY) -m pytest -q

lint: lint-rust lint-python stubtest ## every linter, warnings are errors

lint-rust:
	cargo fmt --all --check
	cargo clippy -q --workspace --all-targets -- -D warnings
	cargo clippy -q --manifest-path edge_core/Cargo.toml --all-targets --no-default-features -- -D warnings
	cargo fmt --manifest-path edge_core/fuzz/Cargo.toml --check

lint-python:
	$(PY) -m ruff check $(PY_PATHS)
	$(PY) -m ruff format --check $(PY_PATHS)
	$(PY) -m mypy

stubtest: ## the .pyi files against the built modules
	$(PY) -m mypy.stubtest livechat._edge livechat._speedups

bench: ## pytest-benchmark micro-benchmarks (frames, deflate, msgpack, Cython loops) with peers
	$(PY) -m pytest bench -q -o addopts="" --benchmark-only -p no:cacheprovider

loadtest: ## a 3-minute locust run with 2 000 users against a fresh `livechat serve` (results in loadtest/results.md)
	$(PY) loadtest/run.py --users 2000 --spawn-rate 50 --time 3m --port 18600

loadgen: ## the compiled viewer load generator the fan-out bench uses (bench/loadgen_rs)
	cargo build -q --release -p lc-loadgen

faults: install services ## long fault-injection run: every link x toxic, kill -9/SIGSTOP of an edge and the persist worker, 300 viewers (~15 min)
	rm -f bench/results/faults-long.jsonl
	LIVECHAT_FAULTS=long LIVECHAT_FAULTS_REPORT=bench/results/faults-long.jsonl $(PY) -m pytest -q tests/faults/test_faults.py
	$(PY) -m tests.faults.report bench/results/faults-long.jsonl

soak: install services ## 30 minutes of steady mixed load on the cluster: RSS drift < 5 %, no errors, nothing lost
	rm -f bench/results/soak.jsonl
	LIVECHAT_FAULTS=soak LIVECHAT_FAULTS_REPORT=bench/results/soak.jsonl $(PY) -m pytest -q tests/faults/test_faults.py
	$(PY) -m tests.faults.report bench/results/soak.jsonl

.PHONY: node-peer
node-peer: ## the Node ws peer's pinned packages (npm ci into ~/.cache/livechat-bench/node-ws, once)
	scripts/node-peer.sh install

bench-fanout: loadgen node-peer ## livechat fanout vs picows vs websockets vs node ws, 15 000 viewers (about 8 minutes)
	$(PY) -m bench.fanout --loadgen rust --wait-quiet 120 --targets livechat,picows,websockets,node-ws

FUZZ_SECONDS ?= 300
fuzz: ## libFuzzer (cargo-fuzz, ASan) on the protocol code: frames, handshake, inflate, msgpack, UTF-8; FUZZ_SECONDS (300) per target
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-short: ## the CI fuzz step: 20 s per target
	scripts/fuzz.sh 20

autobahn: ## the full Autobahn TestSuite (kosoku) against `livechat echo`; summary in artifacts/autobahn
	$(PY) -m tests.conformance.autobahn --full

clean:
	rm -rf target build artifacts python/livechat/*.so
