# samlab developer commands. Everything runs inside $(VENV) (created by `make install`).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The constraints pin the known-good torch/torchvision pair; PIP_CONSTRAINT also reaches the isolated build of
# sam2's sdist (which needs torch), and SAM2_BUILD_CUDA=0 skips its optional CUDA extension.
PIP_ENV := PIP_CONSTRAINT=$(CURDIR)/constraints.txt SAM2_BUILD_CUDA=0

.PHONY: install quickstart test test-fast lint format bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

install: $(BIN)/python
	$(PIP_ENV) $(BIN)/python -m pip install --quiet -e ".[dev]"

quickstart:
	$(BIN)/samlab fit --config configs/quickstart.yaml

test:
	$(BIN)/python -m pytest -q

test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format:
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench:
	$(BIN)/python benchmarks/run_all.py
