# medledger: `make run` brings up the local network, `make test` runs the whole suite.
# Both install what they need first (Debian packages, a .venv, the Python packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NETWORK ?= var/local
SEEDS ?= 10000

.PHONY: run test lint unit bench sim clean deps

run: $(STAMP)
	$(BIN)/medledger up --network $(NETWORK)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/floors.py

clean:
	rm -rf $(VENV) var

deps:
	@bash deploy/install-debian-deps.sh

$(STAMP): pyproject.toml deploy/install-debian-deps.sh
	@bash deploy/install-debian-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
