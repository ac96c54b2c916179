# rekap — developer entry points. The local stack targets wrap deploy/local/stack
# (see its header for ports, runtime dir and environment variables).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

STACK := deploy/local/stack
# e.g. make stack-up STACK_ARGS=--with-prometheus
STACK_ARGS ?=

.PHONY: stack-up stack-down stack-status stack-fetch stack-install

stack-up: ## start Kafka + Redis (STACK_ARGS=--with-prometheus adds Prometheus)
	$(STACK) up $(STACK_ARGS)

stack-down: ## stop the local stack, keep data (STACK_ARGS=--purge deletes it)
	$(STACK) down $(STACK_ARGS)

stack-status: ## show what runs where
	$(STACK) status

stack-fetch: ## fill the Kafka jar cache from Maven Central
	$(STACK) fetch

stack-install: ## apt-get install redis-server and prometheus
	$(STACK) install
