# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every install goes through the constraints file so that nothing can replace the CPU torch 2.13.0.
PIP := $(BIN)/python -m pip install --constraint constraints.txt
EXTRAS ?= all,dev

.PHONY: demo test venv lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(PIP) --quiet -e ".[$(EXTRAS)]"
	touch $@

venv: $(BIN)/.installed

# The leaderboard on the bundled shop, then the service and its web page on 127.0.0.1:8000.
demo: venv
	$(BIN)/shoprec demo
	$(BIN)/shoprec serve --demo

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts

bench: venv
	$(BIN)/python benchmarks/baselines.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
