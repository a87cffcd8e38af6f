# Weir — build, run and test. `make run` and `make test` work on a fresh
# Debian/Ubuntu machine with only Rust installed: they install what is
# missing first (`make deps`, idempotent).

SHELL := /bin/bash
# Keep build output outside the clone so CI runs can reuse it; a machine
# without the cache simply builds from scratch.
CARGO_TARGET_DIR ?= $(HOME)/.cache/weir-target
export CARGO_TARGET_DIR

# e2fsprogs (mkfs.ext4) and faketime are for the fault tests: a full
# loop-mounted disk and wall-clock steps.
APT_PACKAGES := clang libclang-dev librocksdb-dev prometheus python3-venv e2fsprogs faketime
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps run build test lint unit blackbox ws-python dashboards helm openapi openapi-check clients bench fmt docs examples ui monitoring soak soak-cluster fuzz

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

build: deps
	cargo build --release -p weir-server -p weir-client

run: build
	$(CARGO_TARGET_DIR)/release/weir-server --listen 127.0.0.1:8080 --data-dir ./weir-data

fmt:
	cargo fmt --all

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Unit tests, then the black-box and fault suites against real server
# processes (kill -9 cycles, dropped responses, corruption, power loss on
# weir-lazyfs, a full loop-mounted disk, clock steps, memory bounds; the
# last three need root, as CI has).
unit: deps
	cargo build -p weir-server -p weir-client -p weir-lazyfs
	WEIR_REQUIRE_PROMTOOL=1 cargo test --workspace

# The WebSocket endpoints driven by an independent client (Python
# `websockets`, installed into .tools/ws-python on first use).
WS_PYTHON := .tools/ws-python/bin/python
ws-python: deps
	@$(WS_PYTHON) -c 'import websockets' 2>/dev/null || { \
	  echo "installing websockets into .tools/ws-python"; \
	  python3 -m venv .tools/ws-python && \
	  $(WS_PYTHON) -m pip install --quiet --disable-pip-version-check 'websockets>=14,<18'; }
	cargo build -p weir-server
	$(WS_PYTHON) tests/python/ws_check.py $(CARGO_TARGET_DIR)/debug/weir-server
	python3 tests/python/sse_check.py $(CARGO_TARGET_DIR)/debug/weir-server

dashboards:
	bash scripts/check-dashboards.sh

# The dashboards and alerts against a real Prometheus (Debian's package, run
# as a plain process) scraping a real server under CLI-generated traffic:
# every query returns data, no alert fires (scripts/check-monitoring.sh).
monitoring: deps
	bash scripts/check-monitoring.sh

helm:
	bash scripts/check-helm.sh

# The spec through openapi-spec-validator, then a bounded, seeded
# schemathesis run against a real server (tools into .tools/openapi-check).
openapi-check:
	bash scripts/check-openapi.sh

# Python and TypeScript clients generated from the committed spec with
# standard generators, each running a round trip against a real server
# (tools into .tools/clients; needs python3-venv and npm).
clients:
	bash scripts/check-clients.sh

# Documentation: links, code blocks run against a real server, coverage of
# options, metrics, alerts and API paths (scripts/check-docs.sh).
docs:
	bash scripts/check-docs.sh

# The examples end to end: the pizza story against real servers, and the
# Compose stack's configuration (schema, promtool, wiring, tokens).
examples:
	bash examples/pizza/run.sh
	bash examples/compose/check.sh

# The web console (/ui) in a real headless Chromium (Debian's chromium +
# playwright-core from tests/ui/package-lock.json into .tools/ui), with and
# without authentication.
ui:
	bash scripts/check-ui.sh

test: lint unit fuzz ws-python dashboards helm openapi-check clients docs examples ui monitoring

# Every fuzz target (record decoder, WebSocket frames, request bodies) for
# WEIR_FUZZ_SECONDS (default 10 here) each, on stable (scripts/fuzz.sh;
# cargo-fuzz into .tools/cargo-fuzz on first use).
fuzz:
	WEIR_FUZZ_SECONDS=$${WEIR_FUZZ_SECONDS:-10} bash scripts/fuzz.sh

# The long fault runs (not in CI): 1,000 kill -9 cycles, dropped responses,
# corruption, 50 power-loss cycles and long fuzzing, with a summary table
# (scripts/soak.sh; knobs: WEIR_FAULT_CYCLES, WEIR_POWERLOSS_CYCLES,
# WEIR_FUZZ_SECONDS, WEIR_FAULT_SEED).
soak: deps
	bash scripts/soak.sh

# The long cluster fault run (not in CI): random faults (kill -9, SIGSTOP,
# partition of a leader, wiped follower, rolling restart) on a 3-node
# cluster under load; history checker, replica comparison and failover
# write gaps printed at the end. Knobs: WEIR_CLUSTER_CYCLES (default 50),
# WEIR_CLUSTER_FAULT (one kind only), WEIR_FAULT_SEED (replay).
soak-cluster: deps
	cargo build --release -p weir-server
	@WEIR_SERVER_BIN="$${CARGO_TARGET_DIR:-$$PWD/target}/release/weir-server" \
	WEIR_CLUSTER_CYCLES=$${WEIR_CLUSTER_CYCLES:-50} \
	cargo test --release -p weir-tests --test cluster faults -- --nocapture 2>&1 | \
	grep -E '^(fault|  |cycle|FAULT-SUMMARY|failover|test |cluster faults)'; \
	test $${PIPESTATUS[0]} -eq 0

# Regenerate openapi/openapi.json from the code.
openapi:
	WEIR_UPDATE_OPENAPI=1 cargo test -p weir-server committed_spec_is_current

# The standard workloads (publish JSON/binary on 1 and 64 partitions, 1 KiB,
# consume + ack, publish → receive latency) against a fresh release server on
# a temporary data directory; prints one table. Run on a quiet machine.
bench: build
	python3 scripts/bench.py --bin-dir $(CARGO_TARGET_DIR)/release
