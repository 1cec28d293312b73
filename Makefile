# Everything bootstraps a local .venv from a bare Python 3.11+; no other set-up needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: replay test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q ".[test]"
	touch $(STAMP)

# The main job: replay every session log that ships with the package.
replay: $(BIN)/python
	$(BIN)/python -m pip install -q .
	$(BIN)/ctlwire replay

# The whole test suite: lint, formatting, strict types, then pytest.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy checks the package as installed (the source folders map onto ctlwire.*).
typecheck: $(STAMP)
	rm -rf build/typecheck
	$(BIN)/python -m pip install -q --no-deps --no-compile --target build/typecheck .
	cd build/typecheck && MYPYPATH=. ../../$(BIN)/mypy --strict --no-incremental \
		-p ctlwire.transport -p ctlwire.protocol -p ctlwire.fixtures

pytest: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --force-reinstall .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench --json bench-results.json

clean:
	rm -rf $(VENV) build *.egg-info
