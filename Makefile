# Two entry points: `make quickstart` and `make test` (see README).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.torch: $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install -q -e '.[serve]'
	touch $@

$(VENV)/.dev: $(VENV)/.torch pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: quickstart test lint bench
quickstart: $(VENV)/.installed
	$(BIN)/recforge quickstart

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check .
