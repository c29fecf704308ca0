# Grid Governance Engine — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
GRIDGOV := $(VENV)/bin/gridgov
TICKS ?= 48
SEED ?= 7
SCENARIO ?= agents/scenarios/default.toml
STRESS_SCENARIO ?= agents/scenarios/heatwave.toml
BENCH_COUNT ?= 200000
BENCH_RUNS ?= 3
BENCH_MEMORY_COUNT ?= 1000000
SOAK_S ?= 1800

.PHONY: help setup infra-up infra-down status topics migrate run stress test test-unit test-integration test-e2e fuzz lint bench validator sinks dashboard n8n verify clean up down live-status soak

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## install system packages (as root), the venv and the project
	@bash scripts/setup.sh

infra-up: setup ## start the local Kafka broker and PostgreSQL (idempotent)
	@$(GRIDGOV) infra up

infra-down: ## stop what infra-up started (and a background dashboard)
	@$(GRIDGOV) down; $(GRIDGOV) dashboard stop; $(GRIDGOV) infra down

status: ## show what runs where (bootstrap address, postgresql:// URL)
	@$(GRIDGOV) infra status; $(GRIDGOV) topics

topics: infra-up ## create the Kafka topics (idempotent) and show them
	@$(GRIDGOV) topics

migrate: infra-up ## apply pending database migrations
	@$(GRIDGOV) migrate

run: infra-up ## run the pipeline on the default scenario and the heat wave, then compare the market mechanisms (TICKS, SEED)
	@$(GRIDGOV) simulate --scenario $(SCENARIO) --ticks $(TICKS) --seed $(SEED) --market book
	@$(GRIDGOV) --log-level WARNING compare --scenarios $(SCENARIO),$(STRESS_SCENARIO) --ticks $(TICKS) --seed $(SEED)
	@$(GRIDGOV) simulate --scenario $(STRESS_SCENARIO) --ticks $(TICKS) --seed $(SEED) --market book --dashboard

stress: infra-up ## run only the heat-wave scenario that trips the circuit breaker
	@$(GRIDGOV) simulate --scenario $(STRESS_SCENARIO) --ticks $(TICKS) --seed $(SEED)

test: setup ## every test: unit, integration (real Kafka + Postgres, started as needed) and browser
	@$(PY) -m pytest -q -p no:cacheprovider

test-unit: setup ## unit tests only: no I/O, seconds
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-integration: setup ## integration tests against the real broker and database
	@$(PY) -m pytest -q -p no:cacheprovider -m integration

test-e2e: setup ## the dashboard in headless Chromium
	@$(PY) -m pytest -q -p no:cacheprovider -m e2e

fuzz: setup ## the law's stateful fuzz through the real Postgres commit path, long (GRID_FUZZ_EXAMPLES, GRID_FUZZ_STEPS)
	@GRID_FUZZ=1 $(PY) -m pytest -q -p no:cacheprovider -o timeout=0 -s tests/integration/test_law_machine.py

lint: setup ## ruff, mypy and the import contracts (the layers)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy && $(VENV)/bin/lint-imports --no-cache --no-logo

bench: infra-up ## throughput, latency, rehydrate, replay vs baseline and ceilings: medians of BENCH_RUNS, memory at BENCH_MEMORY_COUNT
	@$(GRIDGOV) --log-level WARNING bench --count $(BENCH_COUNT) --runs $(BENCH_RUNS) --memory-count $(BENCH_MEMORY_COUNT)

validator: infra-up ## run the validator in the foreground
	@$(GRIDGOV) validator

sinks: infra-up ## run the Linear and Discord sinks in the foreground
	@$(GRIDGOV) sinks

dashboard: infra-up ## serve the Streamlit dashboard
	@$(GRIDGOV) dashboard

n8n: infra-up ## install (once) and start n8n, import and activate connectors/n8n/*.json, show its state
	@$(GRIDGOV) n8n up && $(GRIDGOV) n8n status

verify: infra-up ## audit the ledger: chain, conservation, offsets, world_state
	@$(GRIDGOV) verify

up: infra-up ## run the live grid as services (validator, meter, one process per participant, sinks, dashboard)
	@$(GRIDGOV) up

down: ## stop the live grid that `make up` started (the infrastructure keeps running)
	@$(GRIDGOV) down

live-status: ## the live grid's services: up/down, restarts, consumer lag, last decision, memory
	@$(GRIDGOV) status

soak: infra-up ## run the live grid for SOAK_S seconds, then report memory, restarts, decisions, lag and verify
	@$(GRIDGOV) --log-level WARNING soak --duration-s $(SOAK_S)

clean: infra-down ## stop services and delete local state (.grid)
	rm -rf .grid
