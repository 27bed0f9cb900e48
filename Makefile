# Lead Orchestrator. `make run` starts everything; `make test` runs the whole suite.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: help install run test test-faults lint format migrations-check migrate bench clean-db

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the project with its development tools

run: install ## Run the app (web, worker, dispatcher) with the demo brand at http://tintworld.localhost:8000/admin/
	DEBUG=$${DEBUG:-1} $(PY) manage.py runstack

test: install ## Lint, check migrations and run the whole test suite on PostgreSQL
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -m "not faults"

test-faults: install ## Fault tests on real processes (tests/faults), then docs/reliability.md with their figures
	status=0; $(PY) -m pytest tests/faults -m faults --ds tests.faults.settings || status=$$?; $(PY) tests/faults/report.py || [ $$status -ne 0 ] || status=1; exit $$status

lint: install ## Lint and check formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## Fix lint where safe and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrations-check: install ## Fail when a model change has no migration
	$(PY) manage.py makemigrations --check --dry-run

migrate: install ## Apply migrations to the public schema and every brand's schema
	$(PY) manage.py migrate_schemas

bench: install ## Run every benchmark in bench/ (results in bench/results/)
	@set -e; for script in bench/[a-z]*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script"; done

clean-db: ## Delete the embedded database (all local data)
	rm -rf .var/postgres
