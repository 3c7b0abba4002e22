# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install carbon_magic (with its built labextension), run the quickstart
#   make test   install the test dependencies (and Debian's chromium where missing), run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test install install-test lint pytest browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The editable install runs the labextension build (hatch-jupyter-builder, needs node and npm).
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/jupyter server extension list 2>&1 | grep -i carbon_magic
	$(BIN)/jupyter labextension list 2>&1 | grep -i carbon_magic

install-test: install
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	$(BIN)/python scripts/demo.py

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collected no test: that fails here like any other non-zero code.
pytest: install-test
	$(BIN)/python -m pytest -p no:cacheprovider

test: lint pytest

bench: install-test
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build dist carbon_magic/labextension labextension/node_modules labextension/lib
