# payment-analysis — the newcomer's two commands are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
export UV_CACHE_DIR := $(CURDIR)/.cache/uv
export PYTHONPATH := $(CURDIR)
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)

# (bench-<area> is deliberately not .PHONY: make does not apply the bench-% pattern rule to phony targets)
.PHONY: help install install-python install-system jars web up up-detached down status test lint lock bench \
        simulate scenario backfill clean admin-password dashboards

help: ## List the targets
	@grep -E '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

# --- installation (idempotent; caches in .cache/ and the venv, both git-ignored) -----------------
$(VENV)/.installed: requirements.lock
	@command -v $(PYTHON_BOOTSTRAP) >/dev/null || { echo "error: $(PYTHON_BOOTSTRAP) not found (fix: install Python 3.11)"; exit 2; }
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@$(PY) -m pip -q install --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	@touch $@

install-python: $(VENV)/.installed ## Python environment from requirements.lock

install-system: install-python ## Debian packages (redis-server, postgresql) when missing; checks Java/Maven
	$(PY) -m launcher install-system

WEB := services/control_plane/web
$(WEB)/dist/.installed: $(WEB)/package-lock.json $(WEB)/build.mjs
	@command -v npm >/dev/null || { echo "error: npm not found (fix: install Node.js 20 and npm)"; exit 2; }
	npm ci --prefix $(WEB) --no-audit --no-fund --cache $(CURDIR)/.cache/npm
	npm run --prefix $(WEB) build
	@touch $@

web: $(WEB)/dist/.installed ## Control-plane front-end assets (chart library) from npm, served by the app

jars: install-python ## Kafka broker + Spark Kafka/Delta jars from Maven Central into .cache/jars
	$(PY) -m launcher jars

install: install-python install-system jars web ## Everything the platform needs

lock: ## Re-resolve pyproject.toml into requirements.lock (exact pins)
	@test -x $(VENV)/bin/uv || { $(PYTHON_BOOTSTRAP) -m venv $(VENV) && $(PY) -m pip -q install uv==$(UV_VERSION); }
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11 --no-header

# --- running -------------------------------------------------------------------------------------
up: install ## Whole system: Kafka, Redis, topics, bootstrap, 4 services; streams logs (Ctrl-C stops)
	$(PY) -m launcher up

up-detached: install ## Same as `up`, in the background (logs in .data/logs)
	$(PY) -m launcher up --detach --no-open

down: ## Stop everything `make up` started
	@test -x $(PY) && $(PY) -m launcher down || echo "not installed"

status: ## What runs where
	@$(PY) -m launcher status

admin-password: install-python ## Set a control-plane user's password: make admin-password [USER_NAME=admin]
	$(PY) -m services.control_plane set-password $(or $(USER_NAME),admin)

simulate: install ## Stream simulated transactions (ARGS="--rate max --count 100000")
	$(PY) -m services.simulator run $(ARGS)

scenario: install ## Switch running simulators: make scenario NAME=issuer_outage [ARGS="--issuer iss_br_04"]
	$(PY) -m services.simulator scenario $(NAME) $(ARGS)

backfill: install ## History for dashboards/training: make backfill DAYS=7
	$(PY) -m services.simulator backfill --days $(or $(DAYS),7) $(ARGS)

# --- tests and benchmarks ------------------------------------------------------------------------
# two xdist workers, each with its own servers and Spark session, whole test files per worker;
# PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2
test: install ## Unit + integration tests against real Kafka, Redis, PostgreSQL, Spark, Delta, MLflow
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

LINT_PATHS := payments_core services spark launcher bench tests dashboards agents
lint: install-python ## ruff (rules and format) and mypy (targets in pyproject.toml); what CI and pre-commit run
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

dashboards: install-python ## Regenerate the 12 Lakeview files (dashboards/*.lvdash.json) from their definitions
	$(PY) -m dashboards.generate

bench: bench-simulator bench-score bench-stream bench-etl bench-train bench-dashboards ## All benchmarks (one at a time)

bench-%: install ## One benchmark: simulator, score, stream, etl, train, dashboards, similar, soak -> bench/results/<area>.json
	$(PY) -m bench.$* $(BENCH_ARGS)

clean: down ## Remove local data (topics, tables, models); keeps caches
	rm -rf .data

# --- Databricks (bundle/, docs/deploy.md) ------------------------------------------------------------
.PHONY: deploy bundle-build bundle-validate bundle-validate-cli bundle-resources
deploy: web ## Deploy to Databricks: make deploy TARGET=dev [VARS="catalog=main kafka_bootstrap_servers=h:9092"] [RUN=first_run]
	$(PYTHON_BOOTSTRAP) -m bundle.deploy --target $(or $(TARGET),dev) $(foreach v,$(VARS),--var $(v)) $(foreach r,$(RUN),--run $(r))

bundle-validate: web ## Check the CLI and its sign-in, stage the build, `databricks bundle validate` (TARGET, VARS)
	$(PYTHON_BOOTSTRAP) -m bundle.deploy --validate-only --target $(or $(TARGET),dev) $(foreach v,$(VARS),--var $(v))

bundle-build: web ## Stage what a deploy uploads (apps, pins from requirements.lock); deploys run it themselves
	$(PYTHON_BOOTSTRAP) -m bundle.build

bundle-validate-cli: ## Build the pinned Databricks CLI (Go) into .cache, validate every target against a loopback server
	$(PYTHON_BOOTSTRAP) -m bundle.cli_check

bundle-resources: install-python ## Regenerate bundle/resources/*.dashboard.yml from the dashboard definitions
	$(PY) -m bundle.generate
LINT_PATHS += bundle
