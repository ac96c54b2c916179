# rekap: developer entry points. Two commands matter (see README):
#   make demo   set up, start the local stack and the whole pipeline, replay Lagawi Fest 2022
#   make test   set up, start the local stack, run every test, stop what it started
# The stack targets wrap deploy/local/stack (its header lists ports and variables).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack
# e.g. make stack-up STACK_ARGS=--with-prometheus
STACK_ARGS ?=
# e.g. make test PYTEST_ARGS="-k reconcile -x"
PYTEST_ARGS ?=
# e.g. make bench BENCH_ARGS="--quick"  or  BENCH_ARGS="--records 50000 --runs 5 --skip memory"
BENCH_ARGS ?=
# e.g. make bench-ingest BENCH_INGEST_ARGS="--processes 2 --clients 16,64,128"
BENCH_INGEST_ARGS ?=
# Where `make faults` keeps its summary (JSON; the table is printed too) and, until its next
# run, each scenario's worker and simulator logs.
FAULTS_REPORT ?= .rekap/faults-report.json
FAULTS_DIR ?= .rekap/faults
# Where `make scale` keeps its scenario summary (JSON) and, until its next run, their logs.
SCALE_REPORT ?= .rekap/scale-report.json
SCALE_DIR ?= .rekap/scale
# Debian packages the stack and the tests use, as command:package. Redis, Prometheus
# (+ promtool), Chromium for the venue page test, docker-compose to validate
# docker-compose.yml. Checked by command, not dpkg: a removed package keeps a dpkg record.
APT_NEEDS := redis-server:redis-server redis-cli:redis-tools prometheus:prometheus \
	promtool:prometheus chromium:chromium docker-compose:docker-compose
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup setup-system demo test faults scale lint bench bench-ingest stack-up stack-down stack-status stack-fetch stack-install

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

setup: setup-system $(VENV)/.installed stack-fetch ## install everything a fresh machine lacks (idempotent)

setup-system: ## apt-get install the Debian packages rekap needs, if missing; check Java and Maven
	@command -v java >/dev/null || { echo "setup: Java 17+ is required (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "setup: Maven is required to fetch the Kafka jars (apt-get install maven)" >&2; exit 1; }
	@missing=$$(for need in $(APT_NEEDS); do command -v $${need%%:*} >/dev/null || echo $${need#*:}; done | sort -u | xargs); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing $$missing"; \
	  $(SUDO) apt-get update -q >/dev/null; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup ## the whole path: simulator -> ingest -> Kafka -> worker -> Redis, live leaderboard
	deploy/demo

test: setup ## start the stack if needed, run the whole suite, stop the stack if it started it
	@was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	[ $$was_up = 1 ] || $(STACK) up; \
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	[ $$was_up = 1 ] || $(STACK) down; \
	exit $$status

# The fault suite starts its own private stack (tests/faults/conftest.py): the shared one is
# neither needed nor touched. SIGINT at the deadline lets pytest stop what it started, purge
# its stack and still print the summary.
faults: setup ## fault suite, long: ~112k records per scenario, SIGKILL worker/Redis/Kafka, poison (<= 20 min)
	@mkdir -p $(FAULTS_DIR)
	REKAP_FAULTS_REPORT=$(FAULTS_REPORT) timeout -k 60 -s INT 1200 \
	  $(PY) -m pytest tests/faults --faults-long -p no:cacheprovider --basetemp=$(FAULTS_DIR) $(PYTEST_ARGS)

# Past one machine, each step on private stacks of its own (the shared one is only used, and
# started if needed, by the benchmark): the topologies of deploy/local/stack; the scale-out
# scenarios at full size (Redis Cluster and Sentinel failovers, one of three brokers
# SIGKILLed under ingest, three workers); the worker/API/venue/reconcile/rebuild tests on
# Redis Cluster with three brokers and behind Sentinel; the scale-out benchmark. Each step
# is bounded by `timeout`; SIGINT lets pytest stop and purge what it started.
scale: setup ## scale-out: topologies, failover scenarios, the suite on Cluster/Sentinel, benchmark (<= 60 min)
	@mkdir -p $(SCALE_DIR)
	REKAP_SCALE_FULL=1 REKAP_SCALE_REPORT=$(SCALE_REPORT) timeout -k 60 -s INT 1800 \
	  $(PY) -m pytest tests/scale tests/deploy/test_topologies.py -p no:cacheprovider \
	  --basetemp=$(SCALE_DIR)/scenarios $(PYTEST_ARGS)
	timeout -k 60 -s INT 900 $(PY) -m tests.scale.suite_on cluster --kafka-brokers 3 -q
	timeout -k 60 -s INT 900 $(PY) -m tests.scale.suite_on sentinel -q
	@was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	[ $$was_up = 1 ] || $(STACK) up; \
	status=0; timeout -k 60 -s INT 1200 $(PY) -m bench.scaleout || status=$$?; \
	[ $$was_up = 1 ] || $(STACK) down; \
	exit $$status

lint: $(VENV)/.installed ## ruff (style, complexity), mypy, import directions (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Throughput vs raw aiokafka, naive and stock Faust (30/10k/100k IKM, 1 and 2 workers), latency
# at 1,000 and 5,000 rec/s, Redis memory; self-bounded to ~25 min. Writes .rekap/bench/bench-<UTC>.md
# and .json. Never part of `make test`.
bench: setup ## the benchmark: one table, .rekap/bench/bench-<UTC>.md/.json, <= ~25 min (BENCH_ARGS="--quick")
	@was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	[ $$was_up = 1 ] || $(STACK) up; \
	status=0; $(PY) -m bench $(BENCH_ARGS) || status=$$?; \
	[ $$was_up = 1 ] || $(STACK) down; \
	exit $$status

bench-ingest: setup ## ingest under load: 1, 16 and 64 clients, zero loss checked, ~2 min (BENCH_INGEST_ARGS="--quick")
	@was_up=0; $(STACK) status >/dev/null 2>&1 && was_up=1; \
	[ $$was_up = 1 ] || $(STACK) up; \
	status=0; $(PY) -m bench.ingest $(BENCH_INGEST_ARGS) || status=$$?; \
	[ $$was_up = 1 ] || $(STACK) down; \
	exit $$status

stack-up: ## start Kafka + Redis (STACK_ARGS=--with-prometheus adds Prometheus)
	$(STACK) up $(STACK_ARGS)

stack-down: ## stop the local stack, keep data (STACK_ARGS=--purge deletes it)
	$(STACK) down $(STACK_ARGS)

stack-status: ## show what runs where
	$(STACK) status

stack-fetch: ## fill the Kafka jar cache from Maven Central (no network once cached)
	$(STACK) fetch

stack-install: ## apt-get install redis-server and prometheus
	$(STACK) install
