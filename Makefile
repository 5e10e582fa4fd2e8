# medledger: `make run` brings up the local network, `make test` runs the whole suite.
# Both install what they need first (Debian packages, a .venv, the Python packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NETWORK ?= var/local

.PHONY: run test lint bench clean deps

# Until the ordering service exists (issue 3), the main job is: initialise the local network
# under $(NETWORK) if it is not there yet, then verify every node's chain and show it.
run: $(STAMP)
	@test -f $(NETWORK)/network.toml || $(BIN)/medledger network init --profile local --out $(NETWORK)
	$(BIN)/medledger chain verify --network $(NETWORK)
	$(BIN)/medledger chain show --network $(NETWORK)

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
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
