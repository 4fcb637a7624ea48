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

.PHONY: install demo test dev lint fmt clean bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -m my_data_platform.runner

demo: install
	$(BIN)/mdp seed --days 3 --users 300 --photos 3000 --events-per-day 60000 --corrupt-rate 0.01 --force
	$(BIN)/mdp run
	$(BIN)/mdp demo-summary

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

dev: install
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/seed.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/versioning.py

clean:
	rm -rf data/lake data/warehouse data/oltp.sqlite data/ground_truth data/dagster_home data/alerts
