# i9lyfe build and run tooling. `make run` serves the API locally; `make test` is what CI runs (.ci/run).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export VENV

# When make started, for the elapsed time `make test` reports (covers venv, services and every check).
START := $(shell date +%s.%N)

.PHONY: help venv services test-tools migrate run lint types imports test openapi clean

help:
	@echo "make run      venv + PostgreSQL/Redis + migrations + local Ray head, then serve on http://127.0.0.1:8000"
	@echo "make test     lint, types, import contracts and the whole test suite (what CI runs)"
	@echo "make venv | services | migrate | lint | types | imports | openapi | clean"

venv: $(STAMP)

# Re-installs only when pyproject.toml or constraints.txt is newer than the stamp.
$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x "$(PY)" ]; then \
	  py=""; \
	  for cand in python3.11 python3; do \
	    if command -v "$$cand" >/dev/null 2>&1 && \
	       [ "$$("$$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "3.11" ]; then \
	      py="$$cand"; break; \
	    fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "error: Python 3.11 not found (tried python3.11, python3)" >&2; exit 1; fi; \
	  echo "creating $(VENV) with $$(command -v $$py)"; \
	  if ! "$$py" -m venv "$(VENV)"; then \
	    rm -rf "$(VENV)"; \
	    echo "error: '$$py -m venv' failed; on Debian/Ubuntu install python3.11-venv (or python3-venv)" >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
	@touch $@

# .env (when present) applies to the services check and the migrations as it does to the server (run.sh).
ENV_RUN := $(if $(wildcard .env),scripts/with_env.sh .env,)

services:
	$(ENV_RUN) scripts/services.sh

migrate: venv services
	$(ENV_RUN) $(PY) -m storage.migrate

# Ctrl-C in the terminal stops the server and its Ray head. From another shell send SIGTERM to make (GNU make
# forwards SIGTERM to the job; SIGINT it expects to reach the whole process group, as a terminal's Ctrl-C does).
run: venv services migrate
	exec scripts/run.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

test-tools:
	$(ENV_RUN) scripts/services.sh --test-tools

test: venv test-tools lint types imports
	@rc=0; $(PY) -m pytest || rc=$$?; \
	  awk -v s=$(START) -v e="$$(date +%s.%N)" -v rc=$$rc \
	    'BEGIN { printf "make test: %s in %.1f s\n", (rc == 0 ? "passed" : "FAILED (pytest exit " rc ")"), e - s }'; \
	  exit $$rc

openapi: venv
	$(PY) scripts/gen_openapi.py
	$(PY) scripts/gen_asyncapi.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
