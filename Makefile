# Pulse: every command a developer or CI needs. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

# Runs a step and prints how long it took: $(call timed,label,command)
timed = start=$$SECONDS; $(2); echo "[make] $(1) took $$((SECONDS - start))s"

.PHONY: all env lint fmt crds rules-test test test-only bench-ingest bench-processor bench-history bench-compat bench-query demo chart-test

all: test

## env: build (first run) or check (cached) the local stack of real servers
env:
	@$(call timed,env,bash tests/env/build-stack.sh)
	@$(call timed,python sdks,bash tests/env/python-sdks.sh)
	@$(call timed,node sdks,bash tests/env/node-sdks.sh)
	@$(call timed,chdb,bash tests/env/python-chdb.sh)
	@$(call timed,schemathesis,bash tests/env/python-schemathesis.sh)
	@$(call timed,influxdb,bash tests/env/influxdb.sh)

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## crds: regenerate crds/*.yaml, the chart's copy and docs/crd-reference.md from the Rust types (tests fail when they differ)
crds:
	$(CARGO) run -q -p pulse-crds --bin crdgen
	cp crds/analyticspipelines.yaml crds/funnels.yaml charts/pulse/crds/
	$(CARGO) run -q -p pulse-crds --bin crddoc

## lint: formatting check and clippy with warnings as errors
lint:
	@$(call timed,fmt --check,$(CARGO) fmt --all --check)
	@$(call timed,clippy,$(CARGO) clippy --workspace --all-targets --locked -- -D warnings)

# FerretDB backends of `make test-only`: "sqlite" runs every test of the workspace on FerretDB's
# SQLite backend, "postgresql" the store and processor tests on its PostgreSQL backend.
PULSE_TEST_BACKENDS ?= sqlite postgresql
# The processor's tests that exercise the store: all of services/processor/tests but
# schemathesis, which is about the HTTP API.
PROCESSOR_STORE_TESTS := $(filter-out schemathesis,$(basename $(notdir $(wildcard services/processor/tests/*.rs))))

## rules-test: check the alerting rules and run their unit tests with promtool (part of `make test`)
PROMTOOL ?= $(or $(PULSE_BIN_DIR),$(or $(PULSE_CACHE),$(HOME)/.cache/pulse)/bin)/promtool
rules-test:
	@$(call timed,promtool check rules,$(PROMTOOL) check rules charts/pulse/rules/pulse-rules.yaml)
	@$(call timed,promtool test rules,$(PROMTOOL) test rules tests/prometheus/pulse-rules.test.yaml)

## test-only: run every test (the stack must be built) on FerretDB's SQLite backend, then the
## store and processor tests (fault tests included) again on its PostgreSQL backend; for a quick
## local run pick one pass: PULSE_TEST_BACKENDS=sqlite (or postgresql) make test-only
test-only:
	@[[ -n "$(strip $(PULSE_TEST_BACKENDS))" ]] || { echo "PULSE_TEST_BACKENDS is empty (known: sqlite postgresql)" >&2; exit 2; }
	@for b in $(PULSE_TEST_BACKENDS); do case "$$b" in sqlite|postgresql) ;; \
	  *) echo "PULSE_TEST_BACKENDS: unknown backend '$$b' (known: sqlite postgresql)" >&2; exit 2 ;; esac; done
	@$(MAKE) --no-print-directory rules-test
	@if [[ " $(PULSE_TEST_BACKENDS) " == *" sqlite "* ]]; then \
	  $(call timed,tests (sqlite),PULSE_TEST_BACKEND=sqlite $(CARGO) test --workspace --locked); fi
	@if [[ " $(PULSE_TEST_BACKENDS) " == *" postgresql "* ]]; then \
	  $(call timed,store tests (postgresql),PULSE_TEST_BACKEND=postgresql $(CARGO) test --locked -p pulse-store); \
	  $(call timed,processor tests (postgresql),PULSE_TEST_BACKEND=postgresql $(CARGO) test --locked \
	    -p pulse-processor $(addprefix --test ,$(PROCESSOR_STORE_TESTS))); fi

## test: build the stack, lint, and run every test
test: env lint test-only

## bench-ingest: raw Redis XADD throughput vs. the ingest path, side by side
bench-ingest: env
	@bash tests/bench/ingest.sh

## bench-processor: raw insert_many into the store vs. the processor end to end, and rollup freshness
bench-processor: env
	@bash tests/bench/processor.sh

## bench-history: the processor on a store holding 1, 3 and 10 days of history (BENCH_DAYS, BENCH_EVENTS_PER_DAY, BENCH_BACKEND=sqlite|postgresql)
bench-history: env
	@bash tests/bench/history.sh

## bench-compat: ingest throughput through the Segment and PostHog compat endpoints next to native
bench-compat: env
	@bash tests/bench/compat.sh

## demo: a whole tenant pipeline on the local stack, fed synthetic traffic, its answers printed
## (DEMO_ARGS=--exit stops after printing; the default serves until Ctrl-C)
demo:
	@$(call timed,stack,bash tests/env/build-stack.sh)
	@$(call timed,release build,$(CARGO) build --release --locked -p pulse-operator -p pulse-ingest -p pulse-processor -p pulse-query -p pulse-demo)
	@./target/release/pulse-demo $(DEMO_ARGS)

## chart-test: the Helm chart and GitOps tests only (part of `make test`)
chart-test:
	@$(call timed,chart tests,$(CARGO) test --locked -p pulse-operator --test install)

## bench-query: query latency over 1,000,000 loaded events (pre-aggregated, ad hoc cold and cached: funnels, paths, lifecycle, a person's timeline) next to chDB
bench-query: env
	@bash tests/bench/query.sh
