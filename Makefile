# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install carbon_magic (with its built labextension), run the quickstart
#   make test   install the test dependencies (and Debian's chromium where missing), run every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# jlpm and jupyter-builder (run by the labextension's scripts) live in the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test install install-test lint lint-python lint-ts typecheck test-ts pytest browser screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The install builds the labextension (hatch-jupyter-builder runs jlpm; needs node and npm)
# and enables the server extension; both listings must show carbon_magic enabled. The test
# install asks for both extras in one pip run, so the labextension is built once.
define check_extensions
	$(BIN)/jupyter server extension list 2>&1 | grep -E "carbon_magic.*enabled"
	$(BIN)/jupyter labextension list 2>&1 | grep -E "carbon_magic.*enabled"
endef

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	$(check_extensions)

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	$(check_extensions)
	cd labextension && jlpm install --immutable

demo: install
	$(BIN)/python scripts/demo.py

lint-python: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint-ts: install-test
	cd labextension && jlpm lint:check && jlpm build:lib

lint: lint-python lint-ts

# Unit tests of the labextension's modules (node's test runner); the checks of the kernel,
# cells and summary JSON (generated from carbon_magic/records.py, and failing here when
# stale) read real answers of the server, written by the Python tests named here.
test-ts: install-test
	$(BIN)/python scripts/generate_schema_ts.py --check
	$(BIN)/python -m pytest -p no:cacheprovider -q tests/test_server_kernel.py tests/test_server_cells.py \
		tests/test_server.py::test_summary_lists_the_servers_kernels
	cd labextension && jlpm test

# mypy over carbon_magic/, configured in pyproject.toml (strict on the public API and the
# sensor and provider seams).
typecheck: install-test
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that fails here like any other non-zero code.
# The fleet test needs Debian's prometheus (installed by the script when missing).
pytest: install-test
	bash scripts/ensure_prometheus.sh
	$(BIN)/python -m pytest -p no:cacheprovider

# Galata/Playwright in Debian's chromium (installed by the script when missing).
browser: install-test
	bash scripts/test_browser.sh

# Refresh the README's images: run the browser tests, then copy what they captured.
screenshots: browser
	mkdir -p docs/images
	cp build/screenshots/*.png docs/images/

test: lint typecheck pytest test-ts browser

bench: install-test
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build dist carbon_magic/labextension labextension/node_modules \
		labextension/lib labextension/ui-tests/node_modules
