# tripquote: `make demo` runs the service on an embedded PostgreSQL with demo data; `make test`
# runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The locked set: every runtime and dev dependency pinned with its hashes (requirements-dev.txt;
# requirements.txt: the runtime alone), installed by plain pip; the package itself on top.
UV_VERSION := 0.13.9
LOCK_FLAGS := --quiet --universal --generate-hashes --no-strip-extras --python-version 3.11 --upgrade

.PHONY: install lock demo serve test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Re-resolve both lock files to the newest releases pyproject.toml allows (run after editing its
# dependencies, or to upgrade); then `make install` installs exactly them.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile $(LOCK_FLAGS) -o requirements.txt pyproject.toml
	$(BIN)/uv pip compile $(LOCK_FLAGS) --extra dev -o requirements-dev.txt pyproject.toml

# make demo DEMO_ARGS="--port 8100" (any of tripquote demo --help)
demo: install
	$(BIN)/tripquote demo $(DEMO_ARGS)

serve: install
	$(BIN)/tripquote serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# make bench BENCH_ARGS="--through-pgbouncer" (any of python -m bench.run --help)
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)
