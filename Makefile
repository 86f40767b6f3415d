# Two commands set everything up: `make demo` runs the end-to-end demo, `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
INSTALLED := $(VENV)/.installed
export MLFLOW_TRACKING_URI ?= sqlite:///mlruns.db

.PHONY: demo test ui

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "medadv needs Python 3.11: make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	PATH=$(BIN):$$PATH mlflow run . -e main --env-manager local --experiment-name medadv

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 3 --dist loadfile

ui: $(INSTALLED)
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000
