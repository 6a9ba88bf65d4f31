# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv under the repo and installs the pinned dependencies itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck unit serve bench clean browser native

$(BIN)/.installed-runtime: requirements-build.txt requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade -r requirements-build.txt
	$(PIP) install -r requirements.txt
	@# setuptools explains editable installs in a framed notice; informational, so kept quiet.
	PYTHONWARNINGS=ignore::UserWarning $(PIP) install --no-deps --no-build-isolation -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed-runtime requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

# mypyc compiles the dispatcher's hot modules (postback/native.py lists them) into
# postback/.native; Postback uses them only while they match their sources, and runs the
# sources where they do not or where compiling fails (no C compiler: a message, not an error).
# The step is a no-op when the build is current.
$(BIN)/.installed-native: $(BIN)/.installed-runtime requirements-native.txt
	$(PIP) install -r requirements-native.txt
	touch $@

native: $(BIN)/.installed-native
	$(BIN)/python -m postback.native_build

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; no browser
# build is downloaded. Installed here when missing (needs root, as on CI); without it those
# tests fail rather than skip.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q chromium chromium-driver; }

demo: $(BIN)/.installed-runtime
	$(BIN)/python examples/demo.py

test: $(BIN)/.installed-dev native browser lint typecheck
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check postback tests bench examples
	$(BIN)/ruff format --check postback tests bench examples

typecheck: $(BIN)/.installed-dev
	$(BIN)/mypy

serve: $(BIN)/.installed-runtime native
	$(BIN)/postback serve

bench: $(BIN)/.installed-runtime native
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache postback/.native postback/.native.old
