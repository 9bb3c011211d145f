# samlab developer commands. Everything runs inside $(VENV) (created by `make install`).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The constraints pin the known-good torch/torchvision pair; PIP_CONSTRAINT also reaches the isolated build of
# sam2's sdist (which needs torch), and SAM2_BUILD_CUDA=0 skips its optional CUDA extension.
PIP_ENV := PIP_CONSTRAINT=$(CURDIR)/constraints.txt SAM2_BUILD_CUDA=0

.PHONY: install quickstart test test-fast lint format bench notebooks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

install: $(BIN)/python
	$(PIP_ENV) $(BIN)/python -m pip install --quiet -e ".[dev]"
	$(PIP_ENV) $(BIN)/python -m pip install --quiet --no-deps trackeval
	$(PIP_ENV) $(BIN)/python -m pip install --quiet --no-deps ultralytics ultralytics-thop

quickstart:
	$(BIN)/samlab fit --config configs/quickstart.yaml

test:
	$(BIN)/python -m pytest -q

test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

# Every notebook top to bottom, in notebooks/ (`jupyter execute`, from nbclient in .[dev]); what they write goes to
# notebooks/data/ (git-ignored) and the notebooks themselves stay unchanged.
notebooks:
	cd notebooks && $(abspath $(BIN))/jupyter execute --timeout=900 *.ipynb

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format:
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The figures of docs/benchmarks.md: data pipeline on synthetic 720p MOSE videos, then VOS and COCO evaluation speed.
BENCH_DIR ?= /tmp/samlab-bench
bench:
	rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	$(BIN)/samlab data synth --format mose $(BENCH_DIR)/mose720 --videos 4 --frames 12 --size 720 1280 --objects 3
	$(BIN)/samlab bench data --format mose $(BENCH_DIR)/mose720 --num-frames 8 --size 1024 --json
	$(BIN)/python benchmarks/bench_eval_vos.py --videos 4 --frames 50
	$(BIN)/python benchmarks/bench_eval_coco.py --images 5000 --objects 7
