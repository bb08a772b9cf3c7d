# graspfleet — every target starts from nothing: `make setup` creates .venv, installs the
# CPU build of torch first (so no dependency range can pull a CUDA build), then the project,
# and installs redis-server through apt where it is missing. It is idempotent.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
PYTEST_ARGS ?=

PROTO_SRC := $(shell find protos -name '*.proto')
PROTO_GEN := replay/v1/replay_pb2.py
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

.PHONY: help setup system-deps protos proto-lint run sim test test-all pytest lint format typecheck bench clean

help:
	@echo "make setup      create .venv, install everything, generate the protocol code (idempotent)"
	@echo "make protos     regenerate Python code from protos/ (runs when a .proto changes)"
	@echo "make run        the main job: graspfleet train (Ray actors, replay shards, Redis, learner; this machine)"
	@echo "make sim        grasp cells with the scripted controller (graspfleet sim)"
	@echo "make test       layer contracts + lint + typecheck + the default test suite (CI runs this)"
	@echo "make test-all   the whole suite, slow tests included"
	@echo "make bench      benchmarks (figures quoted in README.md)"
	@echo "make lint | format | typecheck | clean"

setup: $(STAMP) system-deps $(PROTO_GEN)

protos: $(PROTO_GEN)

$(PROTO_GEN): $(PROTO_SRC) $(STAMP)
	$(BIN)/python -m replay.codegen
	@touch $(PROTO_GEN)

# buf (from npm) lints the protos; skipped with a note where npm is missing.
proto-lint:
	@if command -v npm >/dev/null 2>&1; then \
	  test -x $(BUF) || npm install --silent --no-save --prefix .tools @bufbuild/buf@$(BUF_VERSION) >/dev/null; \
	  $(BUF) lint protos; \
	else echo "npm not found: skipping buf lint of protos/"; fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

# redis-server (the control plane) and Prometheus (promtool checks the alert rules; the tests
# scrape a real run), from Debian's packages, where they are missing
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt-get:$$missing"; \
	  SUDO=""; if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "could not install$$missing; install it and re-run make setup"; exit 1; }; \
	fi

run: setup
	$(BIN)/graspfleet train --run-dir runs/latest

sim: setup
	$(BIN)/graspfleet sim --tier T0 --cells 4 --episodes 40

pytest: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test: lint typecheck pytest

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup proto-lint
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy bench/*.py

bench: setup
	OMP_NUM_THREADS=1 $(BIN)/python bench/sim.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/safety.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/replay.py
	$(BIN)/python bench/update.py
	$(BIN)/python bench/e2e.py --seconds 45 --warmup 25
	$(BIN)/python bench/learn.py
	$(BIN)/python bench/curriculum.py

clean:
	rm -rf $(VENV) .tools build *.egg-info .pytest_cache .mypy_cache .ruff_cache replay/v1/*_pb2*
