# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[serve,examples,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Debian tools the tests use for real (wrk only for bench/).
system-deps:
	@command -v kubectl >/dev/null || { echo "kubectl is required (kubectl kustomize)"; exit 1; }
	@command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/serving.py

clean:
	rm -rf .work .pytest_cache
