# Everything a fresh machine needs: `make demo` runs the product on embedded services,
# `make test` passes the tests. Both install what they need first, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BYTECODE := $(VENV)/.bytecode
NPM_STAMP := node_modules/.installed
export BENTOML_DO_NOT_TRACK := true

.PHONY: setup test test-fast soak demo bench lint clean

setup: $(STAMP) $(BYTECODE) $(NPM_STAMP)

# Re-installs only when the dependency pins change; `uv` makes a warm run take well under a second.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

# Bytecode for every installed module, once per install: uv writes none, and where
# PYTHONDONTWRITEBYTECODE is set (this machine) Python would compile redis, pydantic, polars, ...
# from source in every `vanta` process (~1 s of CPU per command).
$(BYTECODE): $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') data research execution infra serving bot
	touch $@

# `npm ci` installs exactly package-lock.json and never rewrites it (npm install would).
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Each checkout's own temporary root: pytest deletes all but the 3 newest session directories
# under its root at start, so on a machine shared by several test runs a shared root would remove
# a running session's files (its embedded PostgreSQL among them). Short, for Unix socket paths.
PYTEST_TMP := /tmp/vanta-pytest-$(notdir $(CURDIR))

test: setup
	mkdir -p $(PYTEST_TMP) && PYTEST_DEBUG_TEMPROOT=$(PYTEST_TMP) $(BIN)/python -m pytest

test-fast: setup
	mkdir -p $(PYTEST_TMP) && PYTEST_DEBUG_TEMPROOT=$(PYTEST_TMP) $(BIN)/python -m pytest -m "not integration"

# The heaviest crash and restart variants (minutes): `make test` keeps a lighter one of each.
soak: setup
	mkdir -p $(PYTEST_TMP) && PYTEST_DEBUG_TEMPROOT=$(PYTEST_TMP) $(BIN)/python -m pytest -m soak

demo: setup
	$(BIN)/vanta demo

bench: setup
	$(BIN)/vanta bench

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules .vanta
