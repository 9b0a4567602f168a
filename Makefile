# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOSTS ?= 3

.PHONY: demo test unit e2e lint bench testbed-up testbed-down venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

## A rehearsal on the local test bed: deploy v1.0.0, v1.0.1, then v1.0.3 (rolled back).
demo: venv
	scripts/testbed up
	scripts/demo

## Everything the tests need, then lint, types and the whole suite.
test: venv lint
	scripts/testbed up --hosts $(HOSTS)
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: venv
	scripts/testbed up --hosts 10
	$(PY) -m bench

testbed-up:
	scripts/testbed up --hosts $(HOSTS)

testbed-down:
	scripts/testbed down
