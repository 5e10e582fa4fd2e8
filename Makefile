# medledger: `make run` brings up the local network, `make test` runs the whole suite.
# Both install what they need first (Debian packages, a .venv, the Python packages).

# The distribution's optimised python3 when it is recent enough (see deploy/pick-python.sh),
# chosen once per make run (`:=`); PYTHON=... on the command line or in the environment wins.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell bash deploy/pick-python.sh)
endif
VENV := .venv
BIN := $(VENV)/bin
# One stamp per interpreter: choosing another one rebuilds the .venv with it.
STAMP := $(VENV)/.installed-$(subst /,_,$(PYTHON))
NETWORK ?= var/local
SEEDS ?= 10000
SIM_FLAGS ?=

.PHONY: run test lint bench bench-raft bench-e2e sim clean deps

# The local network: the ministry's orderer and four hospital peers as five processes on
# 127.0.0.1 over mutual TLS (initialised under $(NETWORK) on first use). Ctrl-C stops them.
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

# The ordering service against etcd, 3 and 5 members each (installs Debian's etcd-server if
# missing).
bench-raft: $(STAMP)
	$(BIN)/python bench/raft_vs_etcd.py --rounds 3 --wait-quiet 30

# End to end on the local network: committed registry writes/s and latency at 1-256 clients,
# against the limit the signatures alone would set on this machine's cores.
bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py

# Deep deterministic simulation of the Raft core: SEEDS seeds (make test runs 500); a quarter
# of the seeds also validate blocks on every node (SIM_FLAGS="--ledger all": every seed).
sim: $(STAMP)
	$(BIN)/python -m tests.sim.run --seeds $(SEEDS) $(SIM_FLAGS)

clean:
	rm -rf $(VENV) var

deps:
	@PYTHON=$(PYTHON) bash deploy/install-debian-deps.sh

$(STAMP): pyproject.toml deploy/install-debian-deps.sh deploy/pick-python.sh
	@PYTHON=$(PYTHON) bash deploy/install-debian-deps.sh
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
