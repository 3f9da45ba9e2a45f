# The two commands of the README: `make demo` and `make test`. Each creates .venv
# and installs what the project needs on first use (and again when pyproject changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The installed layout as links (strangler/proxy -> proxy/, ...), for mypy, which cannot
# follow setuptools' editable import hook. Folders are linked whole, so new modules need
# no reinstall.
TREE := $(VENV)/tree
PARTS := proxy flags legacy_adapters reference

.PHONY: demo test lint check clean

# The native part of the frame scanner is compiled by the install: a change to it installs
# again (scripts/install-build-deps.sh makes sure a C compiler is there).
$(STAMP): pyproject.toml proxy/relay/_wsscan.c
	scripts/install-build-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -rf $(TREE) && mkdir -p $(TREE)/strangler
	for part in $(PARTS); do ln -s ../../../$$part $(TREE)/strangler/$$part; done
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/strangler demo

test: $(STAMP)
	scripts/install-test-deps.sh
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: test lint

clean:
	rm -rf $(VENV) .demo .mypy_cache .pytest_cache .ruff_cache proxy/relay/_wsscan.*.so
