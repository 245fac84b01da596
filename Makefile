# The two commands of the README's quick start, and a few helpers.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run demo test bench-setup lint mutate clean

## Install and run the service on the embedded defaults (SQLite, local disk, in-process jobs).
run: $(VENV)/.installed
	$(VENV)/bin/tenantry serve

## The same, filled with demo data on its first start (a living dashboard).
demo: $(VENV)/.installed
	$(VENV)/bin/tenantry serve --demo

## Install everything and run the whole test suite (ruff, mypy, pytest on SQLite and PostgreSQL).
test:
	scripts/test.sh

## Install the benchmarks' peers (the [bench] extra, arq, rclone) and start the services.
bench-setup:
	scripts/bench-setup.sh

## Mutation testing of the modules that carry guarantees (the [mutate] extra; not in CI):
## a table of mutants killed per module, also written to docs/mutation.json.
mutate: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,mutate]'
	scripts/services.sh
	$(PY) scripts/mutate.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
