# Everything a fresh machine needs: `make demo` runs the product on embedded services,
# `make test` passes the tests. Both install what they need first, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
export BENTOML_DO_NOT_TRACK := true

.PHONY: setup test test-fast soak demo bench lint clean

setup: $(STAMP) $(NPM_STAMP)

# Re-installs only when the dependency pins change; `uv` makes a warm run take well under a second.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not integration"

# The heaviest crash and restart variants (minutes): `make test` keeps a lighter one of each.
soak: setup
	$(BIN)/python -m pytest -m soak

demo: setup
	$(BIN)/vanta demo

bench: setup
	$(BIN)/vanta bench

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules .vanta
